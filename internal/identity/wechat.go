package identity

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/onemember/onemember/internal/platform/fault"
)

// WeChatSession is what WeChat tells us about a wx.login() code.
type WeChatSession struct {
	OpenID  string
	UnionID string
}

// WeChat exchanges mini-program login codes.
type WeChat interface {
	Code2Session(ctx context.Context, appID, code string) (WeChatSession, error)
}

// ErrWeChatCode is a login code WeChat (or the dev exchanger) refused.
var ErrWeChatCode = fault.New(fault.Unauthenticated, "WeChat login code rejected")

// ErrUnknownApp is an appId that is not configured.
var ErrUnknownApp = fault.New(fault.BadUserInput, "appId is not a configured mini-program")

// WeChatAPI calls WeChat's jscode2session endpoint with each app's secret.
type WeChatAPI struct {
	BaseURL string            // https://api.weixin.qq.com, or a local fake in tests
	Secrets map[string]string // appId → app secret
	HTTP    *http.Client
}

// Code2Session implements WeChat.
func (w WeChatAPI) Code2Session(ctx context.Context, appID, code string) (WeChatSession, error) {
	secret, ok := w.Secrets[appID]
	if !ok {
		return WeChatSession{}, ErrUnknownApp
	}
	q := url.Values{"appid": {appID}, "secret": {secret}, "js_code": {code}, "grant_type": {"authorization_code"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(w.BaseURL, "/")+"/sns/jscode2session?"+q.Encode(), nil)
	if err != nil {
		return WeChatSession{}, fmt.Errorf("jscode2session request: %w", err)
	}
	client := w.HTTP
	if client == nil {
		client = &http.Client{Timeout: 5 * time.Second}
	}
	resp, err := client.Do(req)
	if err != nil {
		return WeChatSession{}, fmt.Errorf("calling jscode2session: %w", err)
	}
	defer resp.Body.Close()
	var body struct {
		OpenID  string `json:"openid"`
		UnionID string `json:"unionid"`
		ErrCode int    `json:"errcode"`
		ErrMsg  string `json:"errmsg"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return WeChatSession{}, fmt.Errorf("decoding jscode2session (HTTP %d): %w", resp.StatusCode, err)
	}
	switch {
	case body.ErrCode == 40029 || body.ErrCode == 40163: // invalid or already used code
		return WeChatSession{}, ErrWeChatCode
	case body.ErrCode != 0:
		return WeChatSession{}, fmt.Errorf("jscode2session: errcode %d: %s", body.ErrCode, body.ErrMsg)
	case body.OpenID == "":
		return WeChatSession{}, fmt.Errorf("jscode2session: no openid in answer")
	}
	return WeChatSession{OpenID: body.OpenID, UnionID: body.UnionID}, nil
}

// DevWeChat accepts codes "dev:<openid>" and "dev:<openid>:<unionid>" so
// that the mini-program flow can be exercised without WeChat. Development
// only.
type DevWeChat struct{}

// Code2Session implements WeChat.
func (DevWeChat) Code2Session(_ context.Context, _ string, code string) (WeChatSession, error) {
	parts := strings.Split(code, ":")
	if parts[0] != "dev" || len(parts) < 2 || len(parts) > 3 || parts[1] == "" {
		return WeChatSession{}, ErrWeChatCode
	}
	s := WeChatSession{OpenID: parts[1]}
	if len(parts) == 3 {
		s.UnionID = parts[2]
	}
	return s, nil
}
