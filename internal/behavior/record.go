package behavior

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
)

// Event is an event the server observed itself.
type Event struct {
	MemberID       int
	Kind           enum.BehaviorKind
	OccurredAt     time.Time
	Channel        enum.Channel
	BusinessUnitID *int
	// TargetID is what the event is about (a coupon template, an
	// activity); "" stores none.
	TargetID string
	// Key identifies the event among the server's, "<KIND>:<id of the
	// row that records it>" (e.g. "REGISTER:<member id>"); it is stored
	// as the event_id of source "s".
	Key string
}

// recordOne writes one server event; a repeat (same key and time) is
// skipped.
const recordOne = `INSERT INTO behavior_events
  (member_id, kind, occurred_at, channel, business_unit_id, target_id, source, event_id)
VALUES ($1, $2, $3, $4, $5, NULLIF($6, ''), 's', $7)
ON CONFLICT DO NOTHING`

// Record stores an event the server itself observed, inside the caller's
// transaction (so it exists exactly when what it records does), under
// source "s" with event_id = e.Key; a repeat is ignored (ON CONFLICT DO
// NOTHING). A month without partition is ErrNoPartition: the server keeps
// the current month's through MaintainPartitions, and the caller's
// transaction is then aborted.
func Record(ctx context.Context, tx *ent.Tx, e Event) error {
	if err := e.validate(); err != nil {
		return err
	}
	var unit any
	if e.BusinessUnitID != nil {
		unit = int64(*e.BusinessUnitID)
	}
	_, err := tx.ExecContext(ctx, recordOne, int64(e.MemberID), string(e.Kind), e.OccurredAt.UTC(),
		string(e.Channel), unit, e.TargetID, e.Key)
	if isNoPartition(err) {
		return fmt.Errorf("recording %s of member %d at %s: %w", e.Key, e.MemberID, e.OccurredAt.UTC().Format(time.RFC3339), ErrNoPartition)
	}
	if err != nil {
		return fmt.Errorf("recording %s of member %d: %w", e.Key, e.MemberID, err)
	}
	return nil
}

// RecordMany is Record for many events at once, in one statement (batches
// of coupon claims): each is stored under source "s" with event_id = its
// Key, a repeat of a stored event or of an earlier one of es is ignored,
// and a month without partition is ErrNoPartition (the whole statement
// fails, and the caller's transaction is aborted). An empty es writes
// nothing.
func RecordMany(ctx context.Context, tx *ent.Tx, es []Event) error {
	if len(es) == 0 {
		return nil
	}
	var b batch
	for _, e := range es {
		if err := e.validate(); err != nil {
			return err
		}
		var target *string
		if e.TargetID != "" {
			target = &e.TargetID
		}
		b.add(e.MemberID, e.Kind, e.OccurredAt, e.Channel, e.BusinessUnitID, target, e.Key)
	}
	_, err := tx.ExecContext(ctx, insertRows, serverSource, pq.Array(b.members), pq.Array(b.kinds),
		pq.Array(b.occurred), pq.Array(b.channels), pq.Array(b.units), pq.Array(b.targets), pq.Array(b.eventIDs))
	if isNoPartition(err) {
		return fmt.Errorf("recording %d server events from %s: %w", len(es), es[0].Key, ErrNoPartition)
	}
	if err != nil {
		return fmt.Errorf("recording %d server events from %s: %w", len(es), es[0].Key, err)
	}
	return nil
}

// validate catches a server event built wrong (a bug of the caller).
func (e Event) validate() error {
	var errs []error
	if e.MemberID == 0 {
		errs = append(errs, errors.New("no member"))
	}
	if !validKind(e.Kind) {
		errs = append(errs, fmt.Errorf("unknown kind %q", e.Kind))
	}
	if !validChannel(e.Channel) {
		errs = append(errs, fmt.Errorf("unknown channel %q", e.Channel))
	}
	if e.OccurredAt.IsZero() {
		errs = append(errs, errors.New("no time"))
	}
	if e.Key == "" {
		errs = append(errs, errors.New("no key"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("behaviour event %q: %w", e.Key, err)
	}
	return nil
}
