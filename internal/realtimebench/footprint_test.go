package realtimebench_test

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/onemember/onemember/internal/apptest"
	"github.com/onemember/onemember/internal/benchtool"
	"github.com/onemember/onemember/internal/realtimebench"
	"github.com/onemember/onemember/internal/seed"
)

// BenchmarkIdleSubscriptionHeap reports the Go heap and goroutine stacks
// in use per idle subscribed connection, the server (the real handler of
// apptest) and its clients (Hold) in one process: /server against the
// GraphQL server, /reference against RefHandler. It is a diagnostic for
// scripts/bench-realtime.sh, which measures RSS of separate processes:
// here the clients' own share is included, and freed stacks of one
// sub-benchmark are reused by the next, so run one sub-benchmark per
// process to compare them. RTBENCH_PROFILE_DIR=dir writes heap and
// goroutine profiles taken while the connections are open (use
// -memprofilerate 512 for a detailed heap profile).
//
//	go test -run '^$' -bench 'IdleSubscriptionHeap/server' -benchtime 1x ./internal/realtimebench/
func BenchmarkIdleSubscriptionHeap(b *testing.B) {
	const n = 1000
	s := apptest.Start(b)
	ctx := context.Background()
	if err := seed.Run(ctx, s.App, seed.Options{Seed: 1, Members: n, SkipHistory: true, AdminPassword: "admin password 1"}); err != nil {
		b.Fatal(err)
	}
	var out bytes.Buffer
	if err := benchtool.Run(ctx, s.App, benchtool.Options{Count: n, Seed: 1}, &out); err != nil {
		b.Fatal(err)
	}
	tokens := strings.Fields(out.String())
	query, err := realtimebench.ClientOperation(apptest.ClientsDir(b), "app/events.graphql", "MemberEvents")
	if err != nil {
		b.Fatal(err)
	}
	ref := httptest.NewServer(realtimebench.RefHandler(true))
	defer ref.Close()

	measure := func(b *testing.B, name, url string, subscribed func() bool) {
		before := inUse()
		g0 := runtime.NumGoroutine()
		p := realtimebench.Hold(ctx, realtimebench.HoldOptions{URL: url, Query: query, Tokens: tokens})
		defer p.Close()
		if st := p.Stats(); st.Connected != n {
			b.Fatalf("%s: %+v", name, st)
		}
		for deadline := time.Now().Add(30 * time.Second); !subscribed(); {
			if time.Now().After(deadline) {
				b.Fatalf("%s: subscriptions not registered after 30 s", name)
			}
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		after := inUse()
		b.ReportMetric(float64(after.heap-before.heap)/n, "heap-B/conn")
		b.ReportMetric(float64(after.stack-before.stack)/n, "stack-B/conn")
		b.ReportMetric(float64(runtime.NumGoroutine()-g0)/n, "goroutines/conn")
		if dir := os.Getenv("RTBENCH_PROFILE_DIR"); dir != "" {
			for _, prof := range []string{"heap", "goroutine"} {
				w, err := os.Create(filepath.Join(dir, name+"-"+prof+".pprof"))
				if err != nil {
					b.Fatal(err)
				}
				if err := pprof.Lookup(prof).WriteTo(w, 0); err != nil {
					b.Fatal(err)
				}
				w.Close()
			}
		}
	}
	b.Run("server", func(b *testing.B) {
		for range b.N {
			measure(b, "server", "ws"+strings.TrimPrefix(s.URL, "http")+"/query", func() bool { return s.Bus.Subscribers() == n })
		}
	})
	b.Run("reference", func(b *testing.B) {
		for range b.N {
			measure(b, "reference", "ws"+strings.TrimPrefix(ref.URL, "http")+"/query", func() bool { return true })
		}
	})
}

type memInUse struct{ heap, stack int64 }

// inUse is the heap and stack memory in use after a full collection.
func inUse() memInUse {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return memInUse{int64(m.HeapInuse), int64(m.StackInuse)}
}
