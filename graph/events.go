package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/gorilla/websocket"
	"github.com/onemember/onemember/ent/coupon"
	"github.com/onemember/onemember/ent/tierchange"
	"github.com/onemember/onemember/graph/gqlmodel"
	"github.com/onemember/onemember/internal/eventbus"
	"github.com/onemember/onemember/internal/events"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/wsgorilla"
)

// maxSubscriptionsPerConnection bounds the subscriptions one websocket
// carries (the app needs one); connections per member are bounded by the
// bus (eventbus.Options.MaxPerMember).
const maxSubscriptionsPerConnection = 4

var errTooManySubscriptions = fault.New(fault.LimitExceeded, "too many subscriptions on this connection")

// memberEvent maps a stored event to its API shape (amounts decode into
// int64 directly, never through float64).
func (r *Resolver) memberEvent(ctx context.Context, ev eventbus.Event) (gqlmodel.MemberEvent, error) {
	var p struct {
		PointsDelta        int64  `json:"pointsDelta"`
		PointsBalance      int64  `json:"pointsBalance"`
		AmountDelta        int64  `json:"amountDelta"`
		StoredValueBalance int64  `json:"storedValueBalance"`
		Reason             string `json:"reason"`
		Direction          string `json:"direction"`
		FromTierID         *int   `json:"fromTierId"`
		ToTierID           *int   `json:"toTierId"`
		CouponID           int    `json:"couponId"`
		Title              string `json:"title"`
		Body               string `json:"body"`
	}
	if err := json.Unmarshal(ev.Payload, &p); err != nil {
		return nil, fmt.Errorf("decoding event %d: %w", ev.ID, err)
	}
	head := gqlmodel.EventHead{Cursor: eventbus.EncodeCursor(ev.MemberID, ev.Seq), OccurredAt: ev.OccurredAt}
	switch ev.Type {
	case string(events.PointsChanged):
		return &gqlmodel.PointsChanged{EventHead: head, PointsDelta: p.PointsDelta, PointsBalance: p.PointsBalance, Reason: p.Reason}, nil
	case string(events.StoredValueChanged):
		return &gqlmodel.StoredValueChanged{EventHead: head, AmountDelta: p.AmountDelta,
			StoredValueBalance: p.StoredValueBalance, Reason: p.Reason}, nil
	case string(events.TierChanged):
		from, err := r.TierService.Display(ctx, p.FromTierID)
		if err != nil {
			return nil, err
		}
		to, err := r.TierService.Display(ctx, p.ToTierID)
		if err != nil {
			return nil, err
		}
		if to == nil {
			return nil, fmt.Errorf("event %d: tier %v is gone", ev.ID, p.ToTierID)
		}
		return &gqlmodel.TierChanged{EventHead: head, Direction: tierchange.Direction(p.Direction), From: from, To: to}, nil
	case string(events.CouponIssued), string(events.CouponExpiring):
		c, err := r.DB.Coupon.Query().Where(coupon.ID(p.CouponID)).WithTemplate().Only(ctx)
		if err != nil {
			return nil, fmt.Errorf("event %d: loading coupon %d: %w", ev.ID, p.CouponID, err)
		}
		if ev.Type == string(events.CouponIssued) {
			return &gqlmodel.CouponIssued{EventHead: head, Coupon: c}, nil
		}
		return &gqlmodel.CouponExpiring{EventHead: head, Coupon: c}, nil
	case string(events.Message):
		return &gqlmodel.MessageReceived{EventHead: head, Title: p.Title, Body: p.Body}, nil
	}
	return nil, fmt.Errorf("event %d: unknown type %q", ev.ID, ev.Type)
}

// streamMemberEvents maps a bus subscription to the API's events until it
// ends; a subscription the bus ended (slow consumer, restart) closes the
// websocket with a code that tells the app to resume by cursor.
func (r *Resolver) streamMemberEvents(ctx context.Context, sub *eventbus.Subscription, c *wsgorilla.Closer) <-chan gqlmodel.MemberEvent {
	out := make(chan gqlmodel.MemberEvent)
	go func() {
		defer close(out)
		defer sub.Close()
		if c != nil {
			defer c.Drop()
		}
		for ev := range sub.Events() {
			e, err := r.memberEvent(ctx, ev)
			if err != nil {
				r.Log.ErrorContext(ctx, "mapping member event", "err", err)
				continue
			}
			select {
			case out <- e:
			case <-ctx.Done():
				return
			}
		}
		closeFor(c, sub.Err())
	}()
	return out
}

// closeFor closes the websocket of a subscription the bus ended, with a
// code that tells the app to resume by cursor (slow consumer, restart).
func closeFor(c *wsgorilla.Closer, err error) {
	switch {
	case c == nil || err == nil:
	case errors.Is(err, eventbus.ErrSlowConsumer):
		c.Close(wsgorilla.CloseSlowConsumer, "too slow: reconnect and resume by cursor")
	case errors.Is(err, eventbus.ErrStopped):
		c.Close(websocket.CloseServiceRestart, "server restarting: reconnect and resume by cursor")
	}
}

// memberFeed is a member's bus subscription as a wsgorilla.Source: the
// websocket server takes its events when the bus says they are waiting,
// with no goroutine of its own.
type memberFeed struct {
	r      *Resolver
	sub    *eventbus.Subscription
	closer *wsgorilla.Closer
}

// Next maps the next waiting event; one that cannot be mapped is logged
// and skipped, as streamMemberEvents does.
func (f *memberFeed) Next(ctx context.Context) (any, bool) {
	for {
		ev, ok := f.sub.Next()
		if !ok {
			return nil, false
		}
		e, err := f.r.memberEvent(ctx, ev)
		if err != nil {
			f.r.Log.ErrorContext(ctx, "mapping member event", "err", err)
			continue
		}
		return e, true
	}
}

func (f *memberFeed) Ended() bool { return f.sub.Ended() }

func (f *memberFeed) Close() {
	f.sub.Close()
	if f.closer != nil {
		f.closer.Drop()
	}
	closeFor(f.closer, f.sub.Err())
}
