package push

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/onemember/onemember/ent/schema/enum"
)

const defaultHTTPTimeout = 10 * time.Second

// WeChatSubscribe sends mini-program subscribe messages (订阅消息) through
// POST {BaseURL}/cgi-bin/message/subscribe/send?access_token=….
type WeChatSubscribe struct {
	BaseURL    string // https://api.weixin.qq.com, or a fake in tests
	TemplateID string
	// Token returns a valid access token. Tokens are shared by every
	// caller of one app and last two hours, so the caller caches and
	// refreshes them (a stable-token endpoint or a central token service).
	Token func(ctx context.Context) (string, error)
	HTTP  *http.Client
	// Page is the mini-program page a tap opens; empty opens none.
	Page string
	// State is miniprogram_state: "formal" (default), "trial", "developer".
	State string
	// Fields maps a message to the template's keywords, which are fixed
	// per template in the WeChat console (e.g. thing1, amount2, time3).
	// Nil sends {thing1: Title, thing2: Body}, each cut to the 20
	// characters a thing keyword holds.
	Fields func(m Message) map[string]string
}

var _ Notifier = (*WeChatSubscribe)(nil)

// Channel implements Notifier.
func (w *WeChatSubscribe) Channel() enum.PushChannel { return enum.PushWeChatSubscribe }

// WeChat errcodes that no retry can fix. Every other errcode (system busy
// -1, expired access token 40001/42001, rate limits 45009, …) is retried.
const (
	wxUserRefused     = 43101 // the member has not accepted (or used up) this template
	wxInvalidOpenID   = 40003
	wxInvalidTemplate = 40037
	wxInvalidData     = 47003 // template data does not match the keywords
	wxInvalidPage     = 41030
)

// Send implements Notifier.
func (w *WeChatSubscribe) Send(ctx context.Context, m Message) error {
	token, err := w.Token(ctx)
	if err != nil {
		return fmt.Errorf("getting WeChat access token: %w", err)
	}
	fields := w.Fields
	if fields == nil {
		fields = defaultWeChatFields
	}
	data := map[string]map[string]string{}
	for k, v := range fields(m) {
		data[k] = map[string]string{"value": v}
	}
	body := map[string]any{
		"touser":      m.Target,
		"template_id": w.TemplateID,
		"data":        data,
		"lang":        "zh_CN",
	}
	if w.Page != "" {
		body["page"] = w.Page
	}
	if w.State != "" {
		body["miniprogram_state"] = w.State
	}
	endpoint := strings.TrimRight(w.BaseURL, "/") + "/cgi-bin/message/subscribe/send?access_token=" + url.QueryEscape(token)
	status, answer, err := postJSON(ctx, w.HTTP, endpoint, body)
	if err != nil {
		return fmt.Errorf("calling WeChat subscribe/send: %w", err)
	}
	if status != http.StatusOK {
		return fmt.Errorf("WeChat subscribe/send: HTTP %d", status)
	}
	var res struct {
		ErrCode int    `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
	}
	if err := json.Unmarshal(answer, &res); err != nil {
		return fmt.Errorf("decoding WeChat subscribe/send answer: %w", err)
	}
	switch res.ErrCode {
	case 0:
		return nil
	case wxInvalidOpenID:
		return fmt.Errorf("WeChat subscribe/send: errcode %d %s: %w", res.ErrCode, res.ErrMsg, ErrInvalidTarget)
	case wxUserRefused, wxInvalidTemplate, wxInvalidData, wxInvalidPage:
		return fmt.Errorf("WeChat subscribe/send: errcode %d %s: %w", res.ErrCode, res.ErrMsg, ErrPermanent)
	default:
		return fmt.Errorf("WeChat subscribe/send: errcode %d %s", res.ErrCode, res.ErrMsg)
	}
}

func defaultWeChatFields(m Message) map[string]string {
	return map[string]string{"thing1": truncate(m.Title, 20), "thing2": truncate(m.Body, 20)}
}

// truncate cuts s to n characters, marking the cut with an ellipsis.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// AppPush sends to a generic HTTP push gateway: POST URL with JSON
// {token, title, body, data}. It stands in for APNs and FCM: an adapter
// for either is another Notifier for enum.PushApp (APNs answers 410
// Unregistered and FCM 404 UNREGISTERED for a dead token, which map to
// ErrInvalidTarget as here; the eventId in data suits apns-collapse-id or
// an FCM collapse key so that a rare second send replaces the first).
type AppPush struct {
	URL  string
	HTTP *http.Client
}

var _ Notifier = (*AppPush)(nil)

// Channel implements Notifier.
func (a *AppPush) Channel() enum.PushChannel { return enum.PushApp }

// Send implements Notifier. 2xx is success; 404 and 410 mean the token is
// dead (ErrInvalidTarget); 408 and 429 are retried like 5xx; any other
// 4xx is permanent.
func (a *AppPush) Send(ctx context.Context, m Message) error {
	data := m.Data
	if data == nil {
		data = map[string]string{}
	}
	status, answer, err := postJSON(ctx, a.HTTP, a.URL, map[string]any{
		"token": m.Target, "title": m.Title, "body": m.Body, "data": data,
	})
	if err != nil {
		return fmt.Errorf("calling push gateway: %w", err)
	}
	snippet := truncate(strings.TrimSpace(string(answer)), 200)
	switch {
	case status >= 200 && status < 300:
		return nil
	case status == http.StatusNotFound || status == http.StatusGone:
		return fmt.Errorf("push gateway: HTTP %d %s: %w", status, snippet, ErrInvalidTarget)
	case status == http.StatusRequestTimeout || status == http.StatusTooManyRequests:
		return fmt.Errorf("push gateway: HTTP %d %s", status, snippet)
	case status >= 400 && status < 500:
		return fmt.Errorf("push gateway: HTTP %d %s: %w", status, snippet, ErrPermanent)
	default:
		return fmt.Errorf("push gateway: HTTP %d %s", status, snippet)
	}
}

// postJSON posts body and returns the status and up to 64 KiB of the
// answer. Transport errors drop the URL, which may carry an access token.
func postJSON(ctx context.Context, client *http.Client, endpoint string, body any) (int, []byte, error) {
	raw, err := json.Marshal(body)
	if err != nil {
		return 0, nil, fmt.Errorf("encoding request: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(raw))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, nil, fmt.Errorf("building request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	if client == nil {
		client = &http.Client{Timeout: defaultHTTPTimeout}
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = fmt.Errorf("%s: %w", ue.Op, ue.Err)
		}
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("reading answer: %w", err)
	}
	return resp.StatusCode, answer, nil
}
