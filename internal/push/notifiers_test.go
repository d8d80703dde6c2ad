package push_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/push"
)

// recorder is an httptest handler that keeps the last request and answers
// with a status and body chosen by the test.
type recorder struct {
	mu     sync.Mutex
	calls  int
	path   string
	query  string
	body   map[string]any
	status int
	answer string
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	r.path, r.query = req.URL.Path, req.URL.RawQuery
	raw, _ := io.ReadAll(req.Body)
	r.body = nil
	_ = json.Unmarshal(raw, &r.body)
	if ct := req.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") || req.Method != http.MethodPost {
		http.Error(w, "want a JSON POST, got "+req.Method+" "+ct, http.StatusBadRequest)
		return
	}
	w.WriteHeader(r.status)
	_, _ = io.WriteString(w, r.answer)
}

func (r *recorder) set(status int, answer string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status, r.answer = status, answer
}

var testMessage = push.Message{
	EventID: 7, MemberID: 3, Title: "恭喜升级为金卡", Body: "您已升级为金卡，尽享更多会员权益。这一句很长很长很长很长",
	Data: map[string]string{"eventId": "7", "type": "TIER_CHANGED"}, Target: "target-1",
}

func TestWeChatSubscribeRequestShape(t *testing.T) {
	rec := &recorder{status: http.StatusOK, answer: `{"errcode":0,"errmsg":"ok"}`}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	w := &push.WeChatSubscribe{
		BaseURL: srv.URL + "/", TemplateID: "tmpl-1", HTTP: srv.Client(), Page: "pages/member/index",
		Token: func(context.Context) (string, error) { return "tok&en", nil },
	}
	if w.Channel() != enum.PushWeChatSubscribe {
		t.Fatalf("channel %s", w.Channel())
	}
	m := testMessage
	m.Target = "openid-abc"
	if err := w.Send(t.Context(), m); err != nil {
		t.Fatalf("send: %v", err)
	}
	if rec.path != "/cgi-bin/message/subscribe/send" || rec.query != "access_token=tok%26en" {
		t.Errorf("request to %s?%s", rec.path, rec.query)
	}
	b := rec.body
	if b["touser"] != "openid-abc" || b["template_id"] != "tmpl-1" || b["page"] != "pages/member/index" || b["lang"] != "zh_CN" {
		t.Errorf("body %v", b)
	}
	data, _ := b["data"].(map[string]any)
	thing1, _ := data["thing1"].(map[string]any)
	thing2, _ := data["thing2"].(map[string]any)
	if thing1["value"] != "恭喜升级为金卡" {
		t.Errorf("thing1 = %v", thing1)
	}
	if v, _ := thing2["value"].(string); len([]rune(v)) != 20 || !strings.HasSuffix(v, "…") {
		t.Errorf("thing2 = %q, want the body cut to 20 characters", v)
	}

	// Template keywords are configurable.
	w.Fields = func(m push.Message) map[string]string {
		return map[string]string{"thing9": m.Title, "time3": "2025-03-10"}
	}
	if err := w.Send(t.Context(), m); err != nil {
		t.Fatalf("send: %v", err)
	}
	data, _ = rec.body["data"].(map[string]any)
	if _, ok := data["thing9"]; !ok || len(data) != 2 {
		t.Errorf("custom fields: %v", data)
	}
}

func TestWeChatSubscribeErrors(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	w := &push.WeChatSubscribe{BaseURL: srv.URL, TemplateID: "t", HTTP: srv.Client(),
		Token: func(context.Context) (string, error) { return "secret-token", nil }}
	for _, c := range []struct {
		status             int
		answer             string
		permanent, invalid bool
	}{
		{200, `{"errcode":43101,"errmsg":"user refuse to accept the msg"}`, true, false},
		{200, `{"errcode":40003,"errmsg":"invalid openid"}`, true, true},
		{200, `{"errcode":47003,"errmsg":"argument invalid"}`, true, false},
		{200, `{"errcode":-1,"errmsg":"system error"}`, false, false},
		{200, `{"errcode":42001,"errmsg":"access_token expired"}`, false, false},
		{200, `{"errcode":45009,"errmsg":"reach max api daily quota limit"}`, false, false},
		{502, `bad gateway`, false, false},
		{200, `not json`, false, false},
	} {
		rec.set(c.status, c.answer)
		err := w.Send(t.Context(), testMessage)
		if err == nil {
			t.Errorf("%d %s: no error", c.status, c.answer)
			continue
		}
		if errors.Is(err, push.ErrPermanent) != c.permanent || errors.Is(err, push.ErrInvalidTarget) != c.invalid {
			t.Errorf("%d %s: %v: permanent %v invalid %v, want %v %v", c.status, c.answer, err,
				errors.Is(err, push.ErrPermanent), errors.Is(err, push.ErrInvalidTarget), c.permanent, c.invalid)
		}
	}

	// A token failure is retried and sends nothing.
	calls := rec.calls
	w.Token = func(context.Context) (string, error) { return "", errors.New("token service down") }
	if err := w.Send(t.Context(), testMessage); err == nil || errors.Is(err, push.ErrPermanent) {
		t.Errorf("token failure: %v, want a retryable error", err)
	}
	if rec.calls != calls {
		t.Error("sent without a token")
	}

	// A transport failure is retried and never shows the access token.
	w.Token = func(context.Context) (string, error) { return "secret-token", nil }
	srv.Close()
	err := w.Send(t.Context(), testMessage)
	if err == nil || errors.Is(err, push.ErrPermanent) {
		t.Fatalf("transport failure: %v, want a retryable error", err)
	}
	if strings.Contains(err.Error(), "secret-token") {
		t.Errorf("error leaks the access token: %v", err)
	}
}

func TestAppPush(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	a := &push.AppPush{URL: srv.URL + "/v1/push", HTTP: srv.Client()}
	if a.Channel() != enum.PushApp {
		t.Fatalf("channel %s", a.Channel())
	}
	for _, c := range []struct {
		status             int
		ok                 bool
		permanent, invalid bool
	}{
		{200, true, false, false},
		{202, true, false, false},
		{400, false, true, false},
		{401, false, true, false},
		{404, false, true, true},
		{410, false, true, true},
		{408, false, false, false},
		{429, false, false, false},
		{500, false, false, false},
		{503, false, false, false},
	} {
		rec.set(c.status, fmt.Sprintf(`{"status":%d}`, c.status))
		err := a.Send(t.Context(), testMessage)
		if (err == nil) != c.ok || errors.Is(err, push.ErrPermanent) != c.permanent || errors.Is(err, push.ErrInvalidTarget) != c.invalid {
			t.Errorf("HTTP %d: %v; want ok %v permanent %v invalid %v", c.status, err, c.ok, c.permanent, c.invalid)
		}
	}
	if rec.path != "/v1/push" {
		t.Errorf("path %s", rec.path)
	}
	b := rec.body
	data, _ := b["data"].(map[string]any)
	if b["token"] != "target-1" || b["title"] != testMessage.Title || b["body"] != testMessage.Body || data["eventId"] != "7" || len(b) != 4 {
		t.Errorf("body %v", b)
	}

	srv.Close()
	if err := a.Send(t.Context(), testMessage); err == nil || errors.Is(err, push.ErrPermanent) {
		t.Errorf("unreachable gateway: %v, want a retryable error", err)
	}
}

func TestLogNotifierNeverFails(t *testing.T) {
	var out strings.Builder
	n := push.NewLogNotifier(enum.PushApp, slog.New(slog.NewTextHandler(&out, nil)))
	if n.Channel() != enum.PushApp {
		t.Fatalf("channel %s", n.Channel())
	}
	if err := n.Send(t.Context(), testMessage); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "恭喜升级为金卡") || strings.Contains(out.String(), "target-1") {
		t.Errorf("log %q: want the title and no full target", out.String())
	}
}
