package push

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// WeChatToken fetches and caches a mini-program's access token
// (cgi-bin/token, valid two hours), refreshing it five minutes before it
// expires. Several replicas each hold their own token: WeChat keeps the
// previous token valid for five minutes after a new one is issued, which
// covers replicas refreshing at different times.
type WeChatToken struct {
	BaseURL, AppID, Secret string
	HTTP                   *http.Client
	Now                    func() time.Time

	mu      sync.Mutex
	token   string
	expires time.Time
}

// Token returns a valid access token.
func (w *WeChatToken) Token(ctx context.Context) (string, error) {
	now := time.Now
	if w.Now != nil {
		now = w.Now
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.token != "" && now().Before(w.expires) {
		return w.token, nil
	}
	q := url.Values{"grant_type": {"client_credential"}, "appid": {w.AppID}, "secret": {w.Secret}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, w.BaseURL+"/cgi-bin/token?"+q.Encode(), nil)
	if err != nil {
		return "", err
	}
	client := w.HTTP
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("wechat token: %w", err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
		ErrCode     int    `json:"errcode"`
		ErrMsg      string `json:"errmsg"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("wechat token: decoding: %w", err)
	}
	if out.AccessToken == "" {
		return "", fmt.Errorf("wechat token: errcode %d: %s", out.ErrCode, out.ErrMsg)
	}
	w.token = out.AccessToken
	w.expires = now().Add(time.Duration(out.ExpiresIn)*time.Second - 5*time.Minute)
	return w.token, nil
}
