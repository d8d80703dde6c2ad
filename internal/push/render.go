package push

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/onemember/onemember/ent/memberevent"
	"github.com/onemember/onemember/ent/schema/enum"
)

// event is a member event as the dispatcher reads it. Payload numbers are
// json.Number, so amounts in fen never pass through a float.
type event struct {
	ID, MemberID int
	Type         memberevent.Type
	Payload      payload
	OccurredAt   time.Time
}

type payload map[string]any

func decodePayload(raw []byte) (payload, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var p payload
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("decoding event payload: %w", err)
	}
	return p, nil
}

// int returns an integral field. Payloads decoded elsewhere (ent decodes
// JSON numbers as float64) are accepted while they are exact.
func (p payload) int(key string) (int64, bool) {
	switch v := p[key].(type) {
	case json.Number:
		n, err := v.Int64()
		return n, err == nil
	case int:
		return int64(v), true
	case int64:
		return v, true
	case float64:
		if v != math.Trunc(v) || math.Abs(v) > 1<<53 {
			return 0, false
		}
		return int64(v), true
	default:
		return 0, false
	}
}

func (p payload) str(key string) string {
	s, _ := p[key].(string)
	return s
}

// decide says why an event is not pushed at all, or "" when it is: the
// rules that need nothing but the event, shared by Plan and Deliver.
func decide(typ memberevent.Type, p payload) string {
	switch typ {
	case memberevent.TypeTIER_CHANGED:
		if p.str("direction") != "UP" {
			return "tier downgrades are not pushed (in-app notice only)"
		}
		if _, ok := p.int("toTierId"); !ok {
			return "TIER_CHANGED payload has no toTierId"
		}
	case memberevent.TypePOINTS_CHANGED:
		d, ok := p.int("pointsDelta")
		switch {
		case !ok:
			return "POINTS_CHANGED payload has no pointsDelta"
		case d >= 0:
			return "points earned are not pushed (only spends and expiries)"
		}
	case memberevent.TypeSTORED_VALUE_CHANGED:
		d, ok := p.int("amountDelta")
		switch {
		case !ok:
			return "STORED_VALUE_CHANGED payload has no amountDelta"
		case d == 0:
			return "stored value did not change"
		}
	case memberevent.TypeCOUPON_ISSUED, memberevent.TypeCOUPON_EXPIRING:
	case memberevent.TypeMESSAGE:
		switch {
		case messageChannel(p) == "":
			return fmt.Sprintf("message for channel %q is not pushed", p.str("channel"))
		case strings.TrimSpace(p.str("title")) == "" || strings.TrimSpace(p.str("body")) == "":
			return "MESSAGE payload has no title or body"
		}
	default:
		return fmt.Sprintf("event type %s is not pushed", typ)
	}
	return ""
}

// messageChannel is the push channel a campaign's MESSAGE event names in
// its payload (internal/campaign): WECHAT_SUBSCRIBE or APP_PUSH; "" for
// any other (IN_APP messages are notifications, SMS and EMAIL go through
// the campaign's messenger).
func messageChannel(p payload) enum.PushChannel {
	switch ch := enum.PushChannel(p.str("channel")); ch {
	case enum.PushWeChatSubscribe, enum.PushApp:
		return ch
	}
	return ""
}

// decideChannel says why an event that decide lets through is not pushed
// through ch, or "": a campaign's MESSAGE goes only through the channel
// its payload names, every other event through every channel.
func decideChannel(typ memberevent.Type, p payload, ch enum.PushChannel) string {
	if typ != memberevent.TypeMESSAGE {
		return ""
	}
	if want := messageChannel(p); want != ch {
		return fmt.Sprintf("message is for %s only", want)
	}
	return ""
}

// refs are the names an event points to, looked up by Deliver.
type refs struct {
	TierName      string    // TIER_CHANGED: name of toTierId
	CouponTitle   string    // COUPON_*: the coupon template's title
	CouponExpires time.Time // COUPON_*: zero when unknown
}

// compose writes the title and body of a pushed event (decide returned
// ""). Amounts are fen shown as yuan; dates are in zone.
//
// Coupon events carry {"couponId", "templateId", "title", "expiresAt"
// (RFC 3339)} (internal/coupon); Deliver fills refs from the coupon row
// and compose falls back to the payload. A campaign's MESSAGE carries its
// own rendered title and body (internal/campaign), sent as they are.
func compose(ev event, r refs, zone *time.Location) (title, body string) {
	p := ev.Payload
	switch ev.Type {
	case memberevent.TypeMESSAGE:
		return p.str("title"), p.str("body")

	case memberevent.TypeTIER_CHANGED:
		name := r.TierName
		if name == "" {
			name = p.str("toCode")
		}
		if _, hadTier := p.int("fromTierId"); !hadTier {
			return "欢迎成为" + name, "您已成为" + name + "，尽享会员权益。"
		}
		return "恭喜升级为" + name, "您已升级为" + name + "，尽享更多会员权益。"

	case memberevent.TypePOINTS_CHANGED:
		delta, _ := p.int("pointsDelta")
		balance, _ := p.int("pointsBalance")
		reason := p.str("reason")
		if reason == "EXPIRY" || reason == "points expired" {
			return "积分过期提醒", fmt.Sprintf("您有%d积分已过期，当前可用积分%d。", -delta, balance)
		}
		return "积分变动提醒", fmt.Sprintf("您的账户扣减%d积分%s，当前可用积分%d。", -delta, paren(pointsLabel(reason)), balance)

	case memberevent.TypeSTORED_VALUE_CHANGED:
		delta, _ := p.int("amountDelta")
		balance, _ := p.int("storedValueBalance")
		label := paren(storedValueLabel(p.str("reason")))
		if delta > 0 {
			return "储值到账提醒", fmt.Sprintf("您的储值账户到账¥%s%s，当前余额¥%s。", yuan(delta), label, yuan(balance))
		}
		return "储值支出提醒", fmt.Sprintf("您的储值账户支出¥%s%s，当前余额¥%s。", yuan(-delta), label, yuan(balance))

	case memberevent.TypeCOUPON_ISSUED, memberevent.TypeCOUPON_EXPIRING:
		name, expires := couponRefs(p, r)
		if ev.Type == memberevent.TypeCOUPON_ISSUED {
			if expires.IsZero() {
				return "优惠券到账提醒", "您获得一张「" + name + "」，快去使用吧。"
			}
			return "优惠券到账提醒", "您获得一张「" + name + "」，有效期至" + lastUsable(expires, zone) + "。"
		}
		if expires.IsZero() {
			return "优惠券即将过期", "您的「" + name + "」即将过期，请尽快使用。"
		}
		return "优惠券即将过期", "您的「" + name + "」将于" + lastUsable(expires, zone) + "过期，请尽快使用。"
	}
	return "", ""
}

// lastUsable shows an expiry in zone as internal/coupon does: an expiry at
// midnight shows as 23:59 of the day before, the last day it is usable.
func lastUsable(t time.Time, zone *time.Location) string {
	local := t.In(zone)
	if local.Hour() == 0 && local.Minute() == 0 && local.Second() == 0 && local.Nanosecond() == 0 {
		local = local.Add(-time.Minute)
	}
	return local.Format("2006-01-02 15:04")
}

func couponRefs(p payload, r refs) (string, time.Time) {
	name, expires := r.CouponTitle, r.CouponExpires
	if name == "" {
		name = p.str("title")
	}
	if name == "" {
		name = "优惠券"
	}
	if expires.IsZero() {
		if t, err := time.Parse(time.RFC3339, p.str("expiresAt")); err == nil {
			expires = t
		}
	}
	return name, expires
}

// pointsLabel names a points debit for the member: the ledger's source
// codes in Chinese, a reason a person wrote (non-ASCII) as it is, and
// internal English reasons not at all.
func pointsLabel(reason string) string {
	switch reason {
	case "PAYMENT":
		return "积分抵现"
	case "MALL":
		return "积分商城兑换"
	case "LOTTERY":
		return "抽奖"
	case "REFUND", "ORDER":
		return "订单退款"
	case "ADJUSTMENT":
		return "积分调整"
	case "MERGE":
		return "账户合并"
	}
	return humanOnly(reason)
}

func storedValueLabel(reason string) string {
	switch reason {
	case "TOP_UP", "top-up":
		return "充值"
	case "PAYMENT", "stored-value payment":
		return "消费"
	case "REFUND":
		return "退款"
	case "ADJUSTMENT":
		return "调整"
	case "MERGE":
		return "账户合并"
	}
	return humanOnly(reason)
}

func humanOnly(reason string) string {
	for _, r := range reason {
		if r >= utf8.RuneSelf {
			return reason
		}
	}
	return ""
}

func paren(s string) string {
	if s == "" {
		return ""
	}
	return "（" + s + "）"
}

// yuan formats fen as yuan with two decimals, in integers only.
func yuan(fen int64) string {
	var b strings.Builder
	u := uint64(fen)
	if fen < 0 {
		b.WriteByte('-')
		u = -u // two's complement: exact even for math.MinInt64
	}
	b.WriteString(strconv.FormatUint(u/100, 10))
	b.WriteByte('.')
	c := u % 100
	b.WriteByte(byte('0' + c/10))
	b.WriteByte(byte('0' + c%10))
	return b.String()
}
