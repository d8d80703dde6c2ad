package push

import (
	"strings"
	"testing"

	"github.com/onemember/onemember/ent/memberevent"
	"github.com/onemember/onemember/ent/schema/enum"
)

func TestDecideMessage(t *testing.T) {
	for _, c := range []struct {
		payload string
		ch      enum.PushChannel
		skip    string // substring of the reason; "" means pushed
	}{
		{`{"channel":"APP_PUSH","title":"t","body":"b"}`, enum.PushApp, ""},
		{`{"channel":"APP_PUSH","title":"t","body":"b"}`, enum.PushWeChatSubscribe, "APP_PUSH only"},
		{`{"channel":"WECHAT_SUBSCRIBE","title":"t","body":"b"}`, enum.PushWeChatSubscribe, ""},
		{`{"channel":"WECHAT_SUBSCRIBE","title":"t","body":"b"}`, enum.PushApp, "WECHAT_SUBSCRIBE only"},
		{`{"channel":"IN_APP","title":"t","body":"b"}`, enum.PushApp, "not pushed"},
		{`{"channel":"SMS","title":"t","body":"b"}`, enum.PushWeChatSubscribe, "not pushed"},
		{`{"title":"t","body":"b"}`, enum.PushApp, "not pushed"},
		{`{"channel":"APP_PUSH","title":" ","body":"b"}`, enum.PushApp, "no title or body"},
	} {
		p := mustPayload(t, c.payload)
		got := decide(memberevent.TypeMESSAGE, p)
		if got == "" {
			got = decideChannel(memberevent.TypeMESSAGE, p, c.ch)
		}
		if (c.skip == "") != (got == "") || !strings.Contains(got, c.skip) {
			t.Errorf("MESSAGE %s on %s: %q, want reason containing %q", c.payload, c.ch, got, c.skip)
		}
	}
	// Other events go through every channel.
	if got := decideChannel(memberevent.TypeCOUPON_ISSUED, payload{}, enum.PushApp); got != "" {
		t.Errorf("COUPON_ISSUED on APP_PUSH: %q, want pushed", got)
	}
}

func TestComposeMessage(t *testing.T) {
	ev := event{Type: memberevent.TypeMESSAGE,
		Payload: mustPayload(t, `{"channel":"APP_PUSH","title":"生日快乐","body":"小王，送您一张生日券","campaignId":7}`)}
	title, body := compose(ev, refs{}, nil)
	if title != "生日快乐" || body != "小王，送您一张生日券" {
		t.Errorf("compose = %q / %q, want the payload's title and body", title, body)
	}
}
