package push

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/onemember/onemember/ent/memberevent"
)

func TestYuan(t *testing.T) {
	for fen, want := range map[int64]string{
		0: "0.00", 5: "0.05", 10: "0.10", 99: "0.99", 100: "1.00", 12345: "123.45", 100005: "1000.05",
		-1: "-0.01", -12345: "-123.45",
		math.MaxInt64: "92233720368547758.07", math.MinInt64: "-92233720368547758.08",
	} {
		if got := yuan(fen); got != want {
			t.Errorf("yuan(%d) = %q, want %q", fen, got, want)
		}
	}
}

func mustPayload(t *testing.T, s string) payload {
	t.Helper()
	p, err := decodePayload([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDecide(t *testing.T) {
	for _, c := range []struct {
		typ     memberevent.Type
		payload string
		skip    string // substring of the reason; "" means pushed
	}{
		{memberevent.TypeTIER_CHANGED, `{"direction":"UP","toTierId":3,"fromTierId":2}`, ""},
		{memberevent.TypeTIER_CHANGED, `{"direction":"UP","toTierId":3,"fromTierId":null}`, ""},
		{memberevent.TypeTIER_CHANGED, `{"direction":"DOWN","toTierId":1}`, "downgrades"},
		{memberevent.TypeTIER_CHANGED, `{"direction":"UP"}`, "no toTierId"},
		{memberevent.TypePOINTS_CHANGED, `{"pointsDelta":-300,"pointsBalance":700}`, ""},
		{memberevent.TypePOINTS_CHANGED, `{"pointsDelta":100,"pointsBalance":700}`, "earned"},
		{memberevent.TypePOINTS_CHANGED, `{}`, "no pointsDelta"},
		{memberevent.TypeSTORED_VALUE_CHANGED, `{"amountDelta":-1,"storedValueBalance":0}`, ""},
		{memberevent.TypeSTORED_VALUE_CHANGED, `{"amountDelta":1,"storedValueBalance":0}`, ""},
		{memberevent.TypeSTORED_VALUE_CHANGED, `{"amountDelta":0}`, "did not change"},
		{memberevent.TypeCOUPON_ISSUED, `{}`, ""},
		{memberevent.TypeCOUPON_EXPIRING, `{"couponId":1}`, ""},
		{memberevent.Type("SOMETHING_ELSE"), `{}`, "not pushed"},
	} {
		got := decide(c.typ, mustPayload(t, c.payload))
		if (c.skip == "") != (got == "") || !strings.Contains(got, c.skip) {
			t.Errorf("decide(%s, %s) = %q, want reason containing %q", c.typ, c.payload, got, c.skip)
		}
	}
}

func TestCompose(t *testing.T) {
	zone := time.FixedZone("CST", 8*3600)
	expires := time.Date(2025, 3, 31, 16, 0, 0, 0, time.UTC) // 2025-04-01 00:00 in Shanghai
	for _, c := range []struct {
		typ         memberevent.Type
		payload     string
		refs        refs
		title, body string
	}{
		{memberevent.TypeTIER_CHANGED, `{"direction":"UP","toTierId":3,"fromTierId":2,"toCode":"GOLD"}`, refs{TierName: "金卡"},
			"恭喜升级为金卡", "您已升级为金卡，尽享更多会员权益。"},
		{memberevent.TypeTIER_CHANGED, `{"direction":"UP","toTierId":3,"fromTierId":null,"toCode":"GOLD"}`, refs{},
			"欢迎成为GOLD", "您已成为GOLD，尽享会员权益。"},
		{memberevent.TypePOINTS_CHANGED, `{"pointsDelta":-300,"pointsBalance":700,"reason":"PAYMENT"}`, refs{},
			"积分变动提醒", "您的账户扣减300积分（积分抵现），当前可用积分700。"},
		{memberevent.TypePOINTS_CHANGED, `{"pointsDelta":-300,"pointsBalance":700,"reason":"internal note"}`, refs{},
			"积分变动提醒", "您的账户扣减300积分，当前可用积分700。"},
		{memberevent.TypePOINTS_CHANGED, `{"pointsDelta":-300,"pointsBalance":700,"reason":"兑换礼品"}`, refs{},
			"积分变动提醒", "您的账户扣减300积分（兑换礼品），当前可用积分700。"},
		{memberevent.TypePOINTS_CHANGED, `{"pointsDelta":-50,"pointsBalance":0,"reason":"points expired"}`, refs{},
			"积分过期提醒", "您有50积分已过期，当前可用积分0。"},
		{memberevent.TypeSTORED_VALUE_CHANGED, `{"amountDelta":12345,"storedValueBalance":100005,"reason":"TOP_UP"}`, refs{},
			"储值到账提醒", "您的储值账户到账¥123.45（充值），当前余额¥1000.05。"},
		{memberevent.TypeSTORED_VALUE_CHANGED, `{"amountDelta":-5,"storedValueBalance":99995,"reason":"PAYMENT"}`, refs{},
			"储值支出提醒", "您的储值账户支出¥0.05（消费），当前余额¥999.95。"},
		{memberevent.TypeCOUPON_ISSUED, `{"couponId":9}`, refs{CouponTitle: "满100减10", CouponExpires: expires},
			"优惠券到账提醒", "您获得一张「满100减10」，有效期至2025-03-31 23:59。"},
		{memberevent.TypeCOUPON_ISSUED, `{"couponId":9}`, refs{CouponTitle: "满100减10", CouponExpires: expires.Add(90 * time.Minute)},
			"优惠券到账提醒", "您获得一张「满100减10」，有效期至2025-04-01 01:30。"},
		{memberevent.TypeCOUPON_ISSUED, `{"title":"生日券"}`, refs{},
			"优惠券到账提醒", "您获得一张「生日券」，快去使用吧。"},
		{memberevent.TypeCOUPON_EXPIRING, `{"title":"生日券","expiresAt":"2025-03-31T16:00:00Z"}`, refs{},
			"优惠券即将过期", "您的「生日券」将于2025-03-31 23:59过期，请尽快使用。"},
		{memberevent.TypeCOUPON_EXPIRING, `{}`, refs{},
			"优惠券即将过期", "您的「优惠券」即将过期，请尽快使用。"},
	} {
		ev := event{Type: c.typ, Payload: mustPayload(t, c.payload)}
		title, body := compose(ev, c.refs, zone)
		if title != c.title || body != c.body {
			t.Errorf("compose(%s, %s) = %q / %q, want %q / %q", c.typ, c.payload, title, body, c.title, c.body)
		}
	}
}

func TestPayloadIntNeverRounds(t *testing.T) {
	p := mustPayload(t, `{"big":9007199254740993,"frac":1.5}`)
	if n, ok := p.int("big"); !ok || n != 9007199254740993 {
		t.Errorf("int(big) = %d, %v; want exact 9007199254740993", n, ok)
	}
	if _, ok := p.int("frac"); ok {
		t.Error("int(frac) accepted 1.5")
	}
	// A payload decoded without UseNumber still works while exact.
	var f map[string]any
	if err := json.Unmarshal([]byte(`{"n":-12345}`), &f); err != nil {
		t.Fatal(err)
	}
	if n, ok := payload(f).int("n"); !ok || n != -12345 {
		t.Errorf("float int = %d, %v", n, ok)
	}
}

func TestDefaultBackoff(t *testing.T) {
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second,
		160 * time.Second, 320 * time.Second, 640 * time.Second, 1280 * time.Second, 2560 * time.Second, time.Hour, time.Hour}
	for i, w := range want {
		if got := DefaultBackoff(i + 1); got != w {
			t.Errorf("DefaultBackoff(%d) = %s, want %s", i+1, got, w)
		}
	}
	if got := DefaultBackoff(1000); got != time.Hour {
		t.Errorf("DefaultBackoff(1000) = %s", got)
	}
}

func TestInvalidTargetIsPermanent(t *testing.T) {
	err := fmt.Errorf("gateway: %w", ErrInvalidTarget)
	if !errors.Is(err, ErrPermanent) || !errors.Is(err, ErrInvalidTarget) {
		t.Fatalf("ErrInvalidTarget must be permanent: %v", err)
	}
	if errors.Is(fmt.Errorf("x: %w", ErrPermanent), ErrInvalidTarget) {
		t.Fatal("ErrPermanent must not be ErrInvalidTarget")
	}
}
