package push_test

import (
	"testing"

	"github.com/onemember/onemember/ent/memberevent"
	"github.com/onemember/onemember/ent/pushdelivery"
	"github.com/onemember/onemember/internal/push"
)

// A campaign's MESSAGE goes through the channel its payload names only,
// with the payload's title and body.
func TestMessageGoesThroughItsChannelOnly(t *testing.T) {
	e := newEnv(t)
	m := e.member(t)
	e.consent(t, m, true)
	e.openid(t, m, "openid-m")
	e.device(t, m, "token-m")
	toApp := e.emit(t, m, memberevent.TypeMESSAGE, map[string]any{
		"channel": "APP_PUSH", "title": "周末特惠", "body": "小王，周末满100减20", "campaignId": 1})
	toWeChat := e.emit(t, m, memberevent.TypeMESSAGE, map[string]any{
		"channel": "WECHAT_SUBSCRIBE", "title": "中秋快乐", "body": "月圆人团圆", "campaignId": 2})
	inApp := e.emit(t, m, memberevent.TypeMESSAGE, map[string]any{
		"channel": "IN_APP", "title": "站内信", "body": "只在消息中心", "campaignId": 3})

	wf, af := newFake(wechat), newFake(app)
	d := e.dispatcher(push.Options{}, wf, af)
	e.planAll(t, d, 6)
	wantRow(t, e.delivery(t, toApp, app), pushdelivery.StatusPENDING, "")
	wantRow(t, e.delivery(t, toApp, wechat), pushdelivery.StatusSKIPPED, "APP_PUSH only")
	wantRow(t, e.delivery(t, toWeChat, wechat), pushdelivery.StatusPENDING, "")
	wantRow(t, e.delivery(t, toWeChat, app), pushdelivery.StatusSKIPPED, "WECHAT_SUBSCRIBE only")
	wantRow(t, e.delivery(t, inApp, app), pushdelivery.StatusSKIPPED, "not pushed")
	wantRow(t, e.delivery(t, inApp, wechat), pushdelivery.StatusSKIPPED, "not pushed")

	if n := e.deliver(t, d); n != 2 {
		t.Fatalf("deliver changed %d rows, want 2", n)
	}
	got := af.messages()
	if len(got) != 1 || got[0].EventID != toApp || got[0].Title != "周末特惠" || got[0].Body != "小王，周末满100减20" {
		t.Errorf("app push sent %+v, want the APP_PUSH message as written", got)
	}
	got = wf.messages()
	if len(got) != 1 || got[0].EventID != toWeChat || got[0].Title != "中秋快乐" || got[0].Body != "月圆人团圆" {
		t.Errorf("WeChat sent %+v, want the WECHAT_SUBSCRIBE message as written", got)
	}
}
