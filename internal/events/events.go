// Package events owns the member event outbox: each change a member should
// hear about (tier changed, points changed, stored value changed, coupon
// issued or expiring) is written as a member_events row, with an in-app
// notification where it deserves one, in the same transaction as the
// change. seq comes from the member's locked account row, so a member's
// events are numbered without gaps in commit order.
package events

import (
	"context"
	"fmt"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/memberevent"
)

// Types of member events.
const (
	TierChanged        = memberevent.TypeTIER_CHANGED
	PointsChanged      = memberevent.TypePOINTS_CHANGED
	StoredValueChanged = memberevent.TypeSTORED_VALUE_CHANGED
	CouponIssued       = memberevent.TypeCOUPON_ISSUED
	CouponExpiring     = memberevent.TypeCOUPON_EXPIRING
)

// Event is one change to announce.
type Event struct {
	Type    memberevent.Type
	Payload map[string]any
	// Notify, when Title is set, also writes an in-app notification.
	Title, Body string
}

// Emit appends ev to the member's outbox through tx. acct must be the
// member's account locked in tx (account.Lock); its event_seq is advanced.
func Emit(ctx context.Context, tx *ent.Tx, acct *ent.Account, at time.Time, ev Event) (*ent.MemberEvent, error) {
	acct.EventSeq++
	if err := tx.Account.UpdateOneID(acct.ID).SetEventSeq(acct.EventSeq).Exec(ctx); err != nil {
		return nil, fmt.Errorf("advancing event sequence: %w", err)
	}
	e, err := tx.MemberEvent.Create().SetMemberID(acct.MemberID).SetSeq(acct.EventSeq).
		SetType(ev.Type).SetPayload(ev.Payload).SetOccurredAt(at).Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("writing member event: %w", err)
	}
	if ev.Title != "" {
		if err := tx.Notification.Create().SetMemberID(acct.MemberID).SetTitle(ev.Title).
			SetBody(ev.Body).SetEventID(e.ID).SetCreatedAt(at).Exec(ctx); err != nil {
			return nil, fmt.Errorf("writing notification: %w", err)
		}
	}
	return e, nil
}
