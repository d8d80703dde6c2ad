package graph_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/onemember/onemember/internal/apptest"
)

func TestLimitsRejectAbusiveDocuments(t *testing.T) {
	s := apptest.Start(t)
	// Depth: a chain of nested selections beyond the limit.
	deep := "{ viewer { ... on Staff { businessUnits { code " + strings.Repeat("stores { businessUnit { ", 6) +
		"code" + strings.Repeat(" } }", 6) + " } } } }"
	r := s.Do("", deep, nil)
	wantCode(t, r, "BAD_USER_INPUT")
	if !strings.Contains(r.Errors[0].Message, "nested") {
		t.Fatalf("depth error message %q", r.Errors[0].Message)
	}
	// Complexity: thousands of aliased fields.
	var b strings.Builder
	b.WriteString("{")
	for i := 0; i < 6000; i++ {
		fmt.Fprintf(&b, " a%d: __typename", i)
	}
	b.WriteString(" }")
	r = s.Do("", b.String(), nil)
	wantCode(t, r, "BAD_USER_INPUT")
	if !strings.Contains(r.Errors[0].Message, "complexity") {
		t.Fatalf("complexity error message %q", r.Errors[0].Message)
	}
	// An operation without variables is priced once; the remembered price
	// still rejects it.
	wantCode(t, s.Do("", b.String(), nil), "BAD_USER_INPUT")
	// One document with variables is priced with each request's values.
	paged := `query Page($n: Int) { members(first: $n) { edges { node { id memberNo } } } }`
	for _, n := range []int{10, 100_000, 10} {
		r = s.Do("", paged, map[string]any{"n": n})
		over := len(r.Errors) > 0 && strings.Contains(r.Errors[0].Message, "complexity")
		if over != (n > 10) {
			t.Fatalf("first: %d: errors %+v", n, r.Errors)
		}
	}
	// Page sizes count: nodes of a large page multiply.
	r = s.Do("", `{ viewer { ... on Staff { id } } }`, nil)
	if len(r.Errors) > 0 {
		t.Fatalf("small document rejected: %+v", r.Errors)
	}
	// Syntax and unknown fields are the caller's fault.
	wantCode(t, s.Do("", `{ viewer `, nil), "BAD_USER_INPUT")
	wantCode(t, s.Do("", `{ noSuchField }`, nil), "BAD_USER_INPUT")
}

func TestAutomaticPersistedQueries(t *testing.T) {
	s := apptest.Start(t)
	query := `query WhoAmI { viewer { __typename } }`
	sum := sha256.Sum256([]byte(query))
	ext := map[string]any{"persistedQuery": map[string]any{"version": 1, "sha256Hash": hex.EncodeToString(sum[:])}}
	post := func(body map[string]any) apptest.Response {
		raw, _ := json.Marshal(body)
		res, err := http.Post(s.URL+"/query", "application/json", bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var out apptest.Response
		if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	wantCode(t, post(map[string]any{"extensions": ext}), "PERSISTED_QUERY_NOT_FOUND")
	if r := post(map[string]any{"query": query, "extensions": ext}); len(r.Errors) > 0 {
		t.Fatalf("registering: %+v", r.Errors)
	}
	if r := post(map[string]any{"extensions": ext}); len(r.Errors) > 0 || !strings.Contains(string(r.Data), "viewer") {
		t.Fatalf("hash only after registering: %s %+v", r.Data, r.Errors)
	}
}

func TestHealthReadinessMetricsAndRequestID(t *testing.T) {
	s := apptest.Start(t)
	// /readyz answers 503 until this replica's audience indexes are built
	// (a second or so after start), then 200.
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready"} {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			res, err := http.Get(s.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK && strings.Contains(string(body), want) {
				break
			}
			if res.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
				t.Fatalf("%s: HTTP %d %q", path, res.StatusCode, body)
			}
		}
	}
	s.Do("", `query WhoAmI { viewer { __typename } }`, nil)
	s.Do("", `{ me { id } }`, nil)
	res, err := http.Get(s.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{
		`onemember_graphql_requests_total{operation="WhoAmI",outcome="ok"} 1`,
		`onemember_graphql_errors_total{code="UNAUTHENTICATED"} 1`,
		`onemember_graphql_request_duration_seconds_bucket{operation="WhoAmI"`,
		`go_sql_open_connections{db_name="onemember"}`,
		`onemember_websockets_open 0`,
		`onemember_sql_statements_total`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s in:\n%s", want, grep(string(body), "onemember_"))
		}
	}
	req, _ := http.NewRequest(http.MethodGet, s.URL+"/healthz", nil)
	req.Header.Set("X-Request-Id", "till-42-abc")
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if got := res.Header.Get("X-Request-Id"); got != "till-42-abc" {
		t.Fatalf("request id echoed as %q", got)
	}
}

func grep(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
