package behavior

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"

	"github.com/onemember/onemember/ent/businessunit"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/platform/fault"
)

// TrackInput is one event a member's client tracked.
type TrackInput struct {
	Kind       enum.BehaviorKind
	OccurredAt time.Time
	// EventID is the client's key of the event (1 to 64 characters); a
	// retry resends it with the same OccurredAt.
	EventID  string
	TargetID *string
}

// Result counts a Track call's events: Accepted were stored now,
// Duplicates had been stored before (or repeat an eventId of the call).
type Result struct {
	Accepted, Duplicates int
}

// Track stores a member's events (trackEvents from the mini-program and the
// app), all or nothing:
//
//   - 1 to MaxTrack events, else BAD_USER_INPUT naming "events";
//   - kinds the server records itself (PURCHASE, REPURCHASE, REGISTER,
//     CLAIM_COUPON, CHECK_IN) are refused, naming "events[i].kind";
//   - occurredAt within [now − 7 days, now + 5 minutes]; eventId of 1 to
//     64 characters; targetId of at most 128;
//   - every problem of every event is reported at once (fault.Invalid,
//     field "events[i].<field>") and then nothing is stored;
//   - a member may send MemberRate events per second with bursts of
//     MemberBurst, one token per event: beyond that ErrRateLimited and
//     nothing is stored.
//
// The events are written with one INSERT … SELECT FROM unnest(…) ON
// CONFLICT DO NOTHING statement.
func (s *Service) Track(ctx context.Context, memberID int, channel enum.Channel, in []TrackInput) (Result, error) {
	now := s.now()
	if err := s.validateTrack(now, channel, in); err != nil {
		return Result{}, err
	}
	if !s.limits.allow(memberID, len(in), now) {
		return Result{}, ErrRateLimited
	}
	var b batch
	seen := make(map[string]bool, len(in))
	for _, e := range in {
		if seen[e.EventID] {
			continue
		}
		seen[e.EventID] = true
		b.add(memberID, e.Kind, e.OccurredAt, channel, nil, e.TargetID, e.EventID)
	}
	accepted, err := s.store(ctx, memberSource(memberID), &b)
	if err != nil {
		return Result{}, err
	}
	return Result{Accepted: accepted, Duplicates: len(in) - accepted}, nil
}

func (s *Service) validateTrack(now time.Time, channel enum.Channel, in []TrackInput) error {
	if len(in) == 0 || len(in) > MaxTrack {
		return fault.Invalidf("events", "send 1 to %d events (got %d)", MaxTrack, len(in))
	}
	var errs []error
	if !validChannel(channel) {
		errs = append(errs, fault.Invalidf("channel", "unknown channel %q", channel))
	}
	from, to := now.Add(-TrackMaxAge), now.Add(MaxClockSkew)
	for i, e := range in {
		field := func(name string) string { return fmt.Sprintf("events[%d].%s", i, name) }
		switch {
		case !validKind(e.Kind):
			errs = append(errs, fault.Invalidf(field("kind"), "unknown kind %q", e.Kind))
		case serverOnly[e.Kind]:
			errs = append(errs, fault.Invalidf(field("kind"), "%s events are recorded by the server", e.Kind))
		}
		if e.OccurredAt.Before(from) || e.OccurredAt.After(to) {
			errs = append(errs, fault.Invalidf(field("occurredAt"), "must be within the last 7 days (and not more than 5 minutes ahead)"))
		}
		errs = append(errs, checkIDs(field, e.EventID, e.TargetID)...)
	}
	return errors.Join(errs...)
}

// checkIDs checks an event's eventId and targetId.
func checkIDs(field func(string) string, eventID string, targetID *string) []error {
	var errs []error
	if n := utf8.RuneCountInString(eventID); n == 0 || n > MaxEventIDLen {
		errs = append(errs, fault.Invalidf(field("eventId"), "must have 1 to %d characters", MaxEventIDLen))
	}
	if targetID != nil && utf8.RuneCountInString(*targetID) > MaxTargetIDLen {
		errs = append(errs, fault.Invalidf(field("targetId"), "must have at most %d characters", MaxTargetIDLen))
	}
	return errs
}

// IngestInput is one event an integration sent.
type IngestInput struct {
	// MemberID is the member the event's reference resolved to (the
	// caller resolves references); 0 is a member not found.
	MemberID int
	// MemberErr is why the reference did not resolve; its code is the
	// event's (NOT_FOUND, BAD_USER_INPUT, ...).
	MemberErr        error
	Kind             enum.BehaviorKind
	OccurredAt       time.Time
	Channel          enum.Channel
	EventID          string
	TargetID         *string
	BusinessUnitCode *string
}

// EventError is why one event of an Ingest call was rejected.
type EventError struct {
	// Index is the event's position in the call.
	Index   int
	Code    fault.Code
	Message string
}

// IngestResult counts an Ingest call's events: Accepted were stored now,
// Duplicates had been stored before (or repeat an eventId of the call),
// Rejected are explained one by one in Errors.
type IngestResult struct {
	Accepted, Duplicates, Rejected int
	Errors                         []EventError
}

// purchaseRefusal refuses purchases sent as behaviour: they come with the
// order (ingestOrder), which records them.
const purchaseRefusal = "send orders with ingestOrder: purchases are recorded with them"

// Ingest stores integrations' events (ingestEvents). The call takes 1 to
// MaxIngest events (else BAD_USER_INPUT naming "events"); each invalid
// event is rejected on its own, with an EventError:
//
//   - a member reference that did not resolve (MemberErr, or MemberID 0:
//     NOT_FOUND); a MemberErr of code INTERNAL (the lookup itself failed)
//     fails the whole call instead;
//   - an unknown kind, or PURCHASE and REPURCHASE (orders go through
//     ingestOrder); an unknown channel;
//   - occurredAt before the retention (the start of the month
//     RetentionMonths-1 months back) or more than 5 minutes ahead;
//   - an eventId not of 1 to 64 characters, a targetId over 128;
//   - an unknown businessUnitCode (codes resolved with one query).
//
// The valid events are stored with one statement, deduplicated per API
// client (eventId and occurredAt).
func (s *Service) Ingest(ctx context.Context, clientID int, in []IngestInput) (IngestResult, error) {
	if len(in) == 0 || len(in) > MaxIngest {
		return IngestResult{}, fault.Invalidf("events", "send 1 to %d events (got %d)", MaxIngest, len(in))
	}
	for i, e := range in {
		if e.MemberErr != nil && fault.CodeOf(e.MemberErr) == fault.Internal {
			return IngestResult{}, fmt.Errorf("resolving the member of event %d: %w", i, e.MemberErr)
		}
	}
	units, err := s.businessUnits(ctx, in)
	if err != nil {
		return IngestResult{}, err
	}
	now := s.now()
	from, to := s.retentionStart(now), now.Add(MaxClockSkew)
	var (
		out  IngestResult
		b    batch
		seen = make(map[string]bool, len(in))
	)
	for i, e := range in {
		code, problems := checkIngest(i, e, from, to, units)
		if len(problems) > 0 {
			out.Rejected++
			out.Errors = append(out.Errors, EventError{Index: i, Code: code, Message: strings.Join(problems, "; ")})
			continue
		}
		if seen[e.EventID] {
			out.Duplicates++
			continue
		}
		seen[e.EventID] = true
		var unit *int
		if e.BusinessUnitCode != nil {
			id := units[*e.BusinessUnitCode]
			unit = &id
		}
		b.add(e.MemberID, e.Kind, e.OccurredAt, e.Channel, unit, e.TargetID, e.EventID)
	}
	if b.len() == 0 {
		return out, nil
	}
	accepted, err := s.store(ctx, clientSource(clientID), &b)
	if err != nil {
		return IngestResult{}, err
	}
	out.Accepted = accepted
	out.Duplicates += b.len() - accepted
	return out, nil
}

// checkIngest returns an event's problems (empty when valid) and the code
// of the first.
func checkIngest(i int, e IngestInput, from, to time.Time, units map[string]int) (fault.Code, []string) {
	field := func(name string) string { return fmt.Sprintf("events[%d].%s", i, name) }
	var (
		code     fault.Code
		problems []string
	)
	add := func(c fault.Code, msg string) {
		if code == "" {
			code = c
		}
		problems = append(problems, msg)
	}
	switch {
	case e.MemberErr != nil:
		add(fault.CodeOf(e.MemberErr), field("member")+": "+fault.Message(e.MemberErr))
	case e.MemberID == 0:
		add(fault.NotFound, field("member")+": member not found")
	}
	bad := func(err error) { add(fault.BadUserInput, err.Error()) }
	switch {
	case !validKind(e.Kind):
		bad(fault.Invalidf(field("kind"), "unknown kind %q", e.Kind))
	case e.Kind == enum.BehaviorPurchase || e.Kind == enum.BehaviorRepurchase:
		bad(fault.Invalidf(field("kind"), "%s", purchaseRefusal))
	}
	if !validChannel(e.Channel) {
		bad(fault.Invalidf(field("channel"), "unknown channel %q", e.Channel))
	}
	switch {
	case e.OccurredAt.Before(from):
		bad(fault.Invalidf(field("occurredAt"), "is older than the retention (events from %s are kept)", from.Format(time.RFC3339)))
	case e.OccurredAt.After(to):
		bad(fault.Invalidf(field("occurredAt"), "is more than 5 minutes in the future"))
	}
	for _, err := range checkIDs(field, e.EventID, e.TargetID) {
		bad(err)
	}
	if e.BusinessUnitCode != nil {
		if _, ok := units[*e.BusinessUnitCode]; !ok {
			bad(fault.Invalidf(field("businessUnitCode"), "unknown business unit %q", *e.BusinessUnitCode))
		}
	}
	return code, problems
}

// businessUnits maps the business unit codes of in to ids, with one query.
func (s *Service) businessUnits(ctx context.Context, in []IngestInput) (map[string]int, error) {
	var codes []string
	seen := map[string]bool{}
	for _, e := range in {
		if c := e.BusinessUnitCode; c != nil && !seen[*c] {
			seen[*c] = true
			codes = append(codes, *c)
		}
	}
	out := make(map[string]int, len(codes))
	if len(codes) == 0 {
		return out, nil
	}
	units, err := s.db.BusinessUnit.Query().Where(businessunit.CodeIn(codes...)).
		Select(businessunit.FieldID, businessunit.FieldCode).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("resolving business unit codes: %w", err)
	}
	for _, u := range units {
		out[u.Code] = u.ID
	}
	return out, nil
}

// batch holds events column by column, the shape unnest takes.
type batch struct {
	members  []int64
	kinds    []string
	occurred []string
	channels []string
	units    []sql.NullInt64
	targets  []sql.NullString
	eventIDs []string
	times    []time.Time // occurred, for the months of the batch
}

func (b *batch) add(member int, kind enum.BehaviorKind, at time.Time, channel enum.Channel, unit *int, target *string, eventID string) {
	b.members = append(b.members, int64(member))
	b.kinds = append(b.kinds, string(kind))
	b.occurred = append(b.occurred, at.UTC().Format(time.RFC3339Nano))
	b.times = append(b.times, at)
	b.channels = append(b.channels, string(channel))
	u := sql.NullInt64{}
	if unit != nil {
		u = sql.NullInt64{Int64: int64(*unit), Valid: true}
	}
	b.units = append(b.units, u)
	t := sql.NullString{}
	if target != nil {
		t = sql.NullString{String: *target, Valid: true}
	}
	b.targets = append(b.targets, t)
	b.eventIDs = append(b.eventIDs, eventID)
}

func (b *batch) len() int { return len(b.eventIDs) }

// insertRows writes a batch under source $1; a row whose (source,
// event_id, occurred_at) is taken is skipped (also one repeated inside the
// batch: ON CONFLICT DO NOTHING sees the rows of its own statement).
const insertRows = `INSERT INTO behavior_events
  (member_id, kind, occurred_at, channel, business_unit_id, target_id, source, event_id)
SELECT u.member_id, u.kind, u.occurred_at, u.channel, u.business_unit_id, u.target_id, $1, u.event_id
FROM unnest($2::bigint[], $3::text[], $4::timestamptz[], $5::text[], $6::bigint[], $7::text[], $8::text[])
  AS u(member_id, kind, occurred_at, channel, business_unit_id, target_id, event_id)
ON CONFLICT DO NOTHING`

// insertBatch is insertRows answering the rows written.
const insertBatch = insertRows + `
RETURNING event_id`

// store writes b under source and returns how many rows were new. When a
// month of b has no partition the statement fails as a whole; the missing
// months are created and it runs once more.
func (s *Service) store(ctx context.Context, source string, b *batch) (int, error) {
	n, err := s.insert(ctx, source, b)
	if isNoPartition(err) {
		months := map[time.Time]bool{}
		for _, t := range b.times {
			months[monthStart(t, s.zone)] = true
		}
		if _, err := s.ensure(ctx, months); err != nil {
			return 0, err
		}
		n, err = s.insert(ctx, source, b)
	}
	if err != nil {
		return 0, fmt.Errorf("storing behaviour events: %w", err)
	}
	return n, nil
}

func (s *Service) insert(ctx context.Context, source string, b *batch) (int, error) {
	rows, err := s.sql.QueryContext(ctx, insertBatch, source, pq.Array(b.members), pq.Array(b.kinds),
		pq.Array(b.occurred), pq.Array(b.channels), pq.Array(b.units), pq.Array(b.targets), pq.Array(b.eventIDs))
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	return n, rows.Close()
}

// isNoPartition reports whether err is PostgreSQL refusing a row no
// partition of behavior_events takes (23514, check_violation: the table has
// no CHECK constraint, so that is the only one this insert can meet).
func isNoPartition(err error) bool {
	var pqErr *pq.Error
	return errors.As(err, &pqErr) && pqErr.Code == pqerror.CheckViolation &&
		strings.Contains(pqErr.Message, "no partition")
}
