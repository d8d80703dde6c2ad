package push

import (
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestWeChatTokenIsCachedUntilNearExpiry(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/cgi-bin/token" || r.URL.Query().Get("appid") != "wx1" || r.URL.Query().Get("secret") != "s" {
			t.Errorf("unexpected request %s", r.URL)
		}
		n := calls.Add(1)
		_, _ = w.Write([]byte(`{"access_token":"tok` + string(rune('0'+n)) + `","expires_in":7200}`))
	}))
	defer srv.Close()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tok := &WeChatToken{BaseURL: srv.URL, AppID: "wx1", Secret: "s", Now: func() time.Time { return now }}
	for range 3 {
		if got, err := tok.Token(t.Context()); err != nil || got != "tok1" {
			t.Fatalf("Token() = %q, %v; want tok1", got, err)
		}
	}
	now = now.Add(116 * time.Minute) // within five minutes of expiry
	if got, err := tok.Token(t.Context()); err != nil || got != "tok2" {
		t.Fatalf("after 116 min Token() = %q, %v; want a fresh tok2", got, err)
	}
	if calls.Load() != 2 {
		t.Fatalf("%d token requests, want 2", calls.Load())
	}
}

func TestWeChatTokenError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"errcode":40013,"errmsg":"invalid appid"}`))
	}))
	defer srv.Close()
	tok := &WeChatToken{BaseURL: srv.URL, AppID: "bad", Secret: "s"}
	if _, err := tok.Token(t.Context()); err == nil {
		t.Fatal("no error for errcode 40013")
	}
}
