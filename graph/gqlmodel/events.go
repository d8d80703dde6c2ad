package gqlmodel

import (
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/tierchange"
)

// MemberEvent is one event of the memberEvents subscription. The GraphQL
// interface of the same name would otherwise bind to ent.MemberEvent (the
// stored row), so the API's shapes live here.
type MemberEvent interface{ IsMemberEvent() }

// EventHead is what every member event carries.
type EventHead struct {
	Cursor     string
	OccurredAt time.Time
}

func (EventHead) IsMemberEvent() {}

// TierChanged is a promotion (UP) or a demotion (DOWN).
type TierChanged struct {
	EventHead
	Direction tierchange.Direction
	From, To  *ent.Tier
}

// PointsChanged is any movement of the points balance.
type PointsChanged struct {
	EventHead
	PointsDelta, PointsBalance int64
	Reason                     string
}

// StoredValueChanged is any movement of the stored-value balance.
type StoredValueChanged struct {
	EventHead
	AmountDelta, StoredValueBalance int64
	Reason                          string
}

// CouponIssued and CouponExpiring point at a coupon of the member.
type CouponIssued struct {
	EventHead
	Coupon *ent.Coupon
}

type CouponExpiring struct {
	EventHead
	Coupon *ent.Coupon
}

// MessageReceived is a campaign's message.
type MessageReceived struct {
	EventHead
	Title, Body string
}
