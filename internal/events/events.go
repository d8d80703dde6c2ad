// Package events owns the member event outbox: each change a member should
// hear about (tier changed, points changed, stored value changed, coupon
// issued or expiring, a campaign's message) is written as a member_events row, with an in-app
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
	// Message is a campaign's message (payload title, body, channel,
	// campaignId): IN_APP ones also write a notification; WECHAT_SUBSCRIBE
	// and APP_PUSH ones are pushed through that channel only.
	Message = memberevent.TypeMESSAGE
)

// Event is one change to announce.
type Event struct {
	Type    memberevent.Type
	Payload map[string]any
	// Notify, when Title is set, also writes an in-app notification.
	Title, Body string
}

// Waker learns, once a transaction that wrote events has committed, whose
// events to deliver now (the event bus). Without one, the bus's tailer
// finds the events within its poll period.
type Waker interface{ Wake(memberIDs ...int) }

type wakerKey struct{}

// WithWaker makes Emit calls under ctx wake w after their commit. The app
// puts its bus on every request and job context, so that no domain service
// needs to know about delivery.
func WithWaker(ctx context.Context, w Waker) context.Context {
	return context.WithValue(ctx, wakerKey{}, w)
}

// WakeAfterCommit tells the Waker of ctx (if any), once tx has committed,
// that memberIDs have new events; never before, so nobody is woken for an
// event that could still roll back. Emit calls it; writers of events in
// bulk (set-based SQL) call it themselves.
func WakeAfterCommit(ctx context.Context, tx *ent.Tx, memberIDs ...int) {
	w, ok := ctx.Value(wakerKey{}).(Waker)
	if !ok || len(memberIDs) == 0 {
		return
	}
	tx.OnCommit(func(next ent.Committer) ent.Committer {
		return ent.CommitFunc(func(ctx context.Context, tx *ent.Tx) error {
			err := next.Commit(ctx, tx)
			if err == nil {
				w.Wake(memberIDs...)
			}
			return err
		})
	})
}

// Emit appends ev to the member's outbox through tx. acct must be the
// member's account locked in tx (account.Lock); its event_seq is advanced.
// After tx commits, the Waker of ctx (if any) is told; never before, so
// nobody is woken for an event that could still roll back.
func Emit(ctx context.Context, tx *ent.Tx, acct *ent.Account, at time.Time, ev Event) (*ent.MemberEvent, error) {
	WakeAfterCommit(ctx, tx, acct.MemberID)
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
