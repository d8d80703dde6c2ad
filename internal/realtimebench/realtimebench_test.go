package realtimebench_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onemember/onemember/internal/apptest"
	"github.com/onemember/onemember/internal/benchtool"
	"github.com/onemember/onemember/internal/realtimebench"
	"github.com/onemember/onemember/internal/seed"
)

func TestPercentiles(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	got := realtimebench.Percentiles(d, 0.5, 0.99, 1)
	want := []time.Duration{50 * time.Millisecond, 99 * time.Millisecond, 100 * time.Millisecond}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("percentile %d: %v, want %v", i, got[i], want[i])
		}
	}
	if d[0] != 100*time.Millisecond {
		t.Error("Percentiles sorted its input")
	}
	if z := realtimebench.Percentiles(nil, 0.5); z[0] != 0 {
		t.Errorf("empty: %v", z)
	}
}

func TestMemberIDOfToken(t *testing.T) {
	claims := base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"47244640257","kind":"member"}`))
	id, err := realtimebench.MemberIDOfToken("h." + claims + ".s")
	if err != nil || id != 47244640257 {
		t.Fatalf("got %d, %v", id, err)
	}
	for _, bad := range []string{"x", "a.b.c", "h." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"x"}`)) + ".s"} {
		if _, err := realtimebench.MemberIDOfToken(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestOperation(t *testing.T) {
	f := filepath.Join(t.TempDir(), "ops.graphql")
	src := "# c\nsubscription MemberEvents($after: String) {\n  memberEvents(after: $after) {\n    cursor\n  }\n}\n\nquery Other {\n  x\n}\n"
	if err := os.WriteFile(f, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	op, err := realtimebench.Operation(f, "MemberEvents")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(op, "subscription MemberEvents(") || !strings.HasSuffix(op, "  }\n}") || strings.Contains(op, "Other") {
		t.Errorf("extracted %q", op)
	}
	if _, err := realtimebench.Operation(f, "Member"); err == nil {
		t.Error("a prefix of a name matched")
	}
}

// The clients complete the graphql-transport-ws handshake with the
// reference server and stay connected until Close.
func TestHoldAgainstReference(t *testing.T) {
	for _, pool := range []bool{true, false} {
		srv := httptest.NewServer(realtimebench.RefHandler(pool))
		tokens := make([]string, 50)
		for i := range tokens {
			tokens[i] = "token"
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		p := realtimebench.Hold(ctx, realtimebench.HoldOptions{
			URL: "ws" + strings.TrimPrefix(srv.URL, "http") + "/query", Query: "subscription { x }", Tokens: tokens, Dialers: 8,
		})
		st := p.Stats()
		if st.Connected != 50 || st.Failed != 0 {
			t.Errorf("write pool %v: %+v", pool, st)
		}
		time.Sleep(50 * time.Millisecond)
		if st := p.Stats(); st.Ended != 0 {
			t.Errorf("connections ended: %+v", st)
		}
		p.Close()
		cancel()
		srv.Close()
	}
}

// Deliver and Ingest against the real server: every generated event
// arrives once, in order; every order is accepted.
func TestDeliverAndIngest(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server")
	}
	s := apptest.Start(t)
	ctx := context.Background()
	if err := seed.Run(ctx, s.App, seed.Options{Seed: 1, Members: 20, SkipHistory: true, AdminPassword: "admin password 1"}); err != nil {
		t.Fatal(err)
	}
	mint := func(o benchtool.Options) []string {
		var out bytes.Buffer
		if err := benchtool.Run(ctx, s.App, o, &out); err != nil {
			t.Fatal(err)
		}
		return strings.Fields(out.String())
	}
	tokens := mint(benchtool.Options{Count: 10, Seed: 1})
	numbers := mint(benchtool.Options{What: benchtool.MemberNumbers, Count: 10, Seed: 1})
	secret := mint(benchtool.Options{What: benchtool.APIClient})[0]
	dir := apptest.ClientsDir(t)
	sub, err := realtimebench.ClientOperation(dir, "app/events.graphql", "MemberEvents")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := realtimebench.Deliver(ctx, realtimebench.DeliverOptions{
		URL: s.WSURL(), Query: sub, DB: s.SQL, Tokens: tokens, Warmup: 200 * time.Millisecond, Drain: 5 * time.Second,
		Gen:   realtimebench.GenOptions{Workers: 2, Waker: s.Bus, Reason: "test"},
		Steps: []realtimebench.Step{{Rate: 200, Batch: 1, Duration: 500 * time.Millisecond}, {Rate: 200, Batch: 5, Duration: 500 * time.Millisecond}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if r.Subscribers != 10 || !r.WarmupOK || r.Events == 0 || r.Received != r.Events || r.Lost+r.Duplicates+r.OutOfOrder+r.Foreign+r.GenErrors != 0 {
			t.Errorf("step %d: %+v", i, r)
		}
	}
	if rs[1].Batch != 5 {
		t.Errorf("step 2 batch %d", rs[1].Batch)
	}

	order, err := realtimebench.ClientOperation(dir, "pos/checkout.graphql", "IngestOrder")
	if err != nil {
		t.Fatal(err)
	}
	r := realtimebench.Ingest(ctx, realtimebench.IngestOptions{
		URL: s.URL + "/query", Secret: secret, Query: order, Members: numbers, Stores: []string{"SUPER-SH-01"},
		Concurrency: 2, Duration: 500 * time.Millisecond, Nonce: "t", PaidAt: time.Now().Add(-time.Minute),
	})
	if r.OK == 0 || r.Failed != 0 {
		t.Errorf("ingest: %+v", r)
	}
}
