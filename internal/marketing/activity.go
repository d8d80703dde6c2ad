package marketing

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"entgo.io/ent/dialect/sql"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/activity"
	"github.com/onemember/onemember/ent/activityregistration"
	"github.com/onemember/onemember/ent/businessunit"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/ent/predicate"
	"github.com/onemember/onemember/ent/schema/enum"
	enttier "github.com/onemember/onemember/ent/tier"
	"github.com/onemember/onemember/internal/auth/signedcode"
	"github.com/onemember/onemember/internal/behavior"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

// TicketPurpose is the signedcode purpose of activity tickets; the signer
// given to New must be made for it.
const TicketPurpose = "activity-ticket"

// ticketGrace is how long after an activity ends its tickets still verify.
const ticketGrace = 24 * time.Hour

// Errors of activities.
var (
	ErrActivityNotFound     = fault.New(fault.NotFound, "activity not found")
	ErrActivityEnded        = fault.Invalidf("activityId", "the activity has ended")
	ErrNotEligible          = fault.New(fault.Forbidden, "this activity is for members of a higher tier")
	ErrRegistrationNotFound = fault.New(fault.NotFound, "registration not found")
	ErrCheckedInNoCancel    = fault.New(fault.Conflict, "a checked-in registration cannot be cancelled")
	ErrInvalidTicket        = fault.Invalidf("ticketCode", "is not a valid ticket")
	ErrTicketExpired        = fault.Invalidf("ticketCode", "has expired")
	// ErrTicketNotAdmitted is the ticket of a registration that is
	// waitlisted or cancelled: authentic, but it grants no seat.
	ErrTicketNotAdmitted = fault.New(fault.Conflict, "this registration has no seat (waitlisted or cancelled)")
	ErrAlreadyCheckedIn  = fault.New(fault.Conflict, "already checked in")
)

// ActivityInput describes a new activity.
type ActivityInput struct {
	Title                 string
	Description, Location *string
	StartsAt, EndsAt      time.Time
	Capacity              int
	MinTierCode           *string // members of this tier or higher; nil: everyone
	BusinessUnitCode      *string // the organising business unit; nil: the group
}

// Validate reports every problem of in at once (codes are resolved by
// CreateActivity).
func (in ActivityInput) Validate() error {
	var errs []error
	if strings.TrimSpace(in.Title) == "" {
		errs = append(errs, fault.Invalidf("title", "is required"))
	}
	if in.StartsAt.IsZero() || in.EndsAt.IsZero() {
		errs = append(errs, fault.Invalidf("endsAt", "an activity needs a start and an end"))
	} else if !in.EndsAt.After(in.StartsAt) {
		errs = append(errs, fault.Invalidf("endsAt", "must be after startsAt"))
	}
	if in.Capacity < 1 {
		errs = append(errs, fault.Invalidf("capacity", "must be at least 1, got %d", in.Capacity))
	}
	return errors.Join(errs...)
}

// CreateActivity creates an activity.
func (s *Service) CreateActivity(ctx context.Context, in ActivityInput) (*ent.Activity, error) {
	errs := []error{in.Validate()}
	var tierID, buID *int
	if in.MinTierCode != nil {
		t, err := s.db.Tier.Query().Where(enttier.Code(strings.TrimSpace(*in.MinTierCode))).Only(ctx)
		switch {
		case ent.IsNotFound(err):
			errs = append(errs, fault.Invalidf("minTierCode", "%q is not a tier", *in.MinTierCode))
		case err != nil:
			return nil, fmt.Errorf("looking up tier: %w", err)
		default:
			tierID = &t.ID
		}
	}
	if in.BusinessUnitCode != nil {
		bu, err := s.db.BusinessUnit.Query().Where(businessunit.Code(strings.TrimSpace(*in.BusinessUnitCode))).Only(ctx)
		switch {
		case ent.IsNotFound(err):
			errs = append(errs, fault.Invalidf("businessUnitCode", "%q is not a business unit", *in.BusinessUnitCode))
		case err != nil:
			return nil, fmt.Errorf("looking up business unit: %w", err)
		default:
			buID = &bu.ID
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	a, err := s.db.Activity.Create().
		SetTitle(strings.TrimSpace(in.Title)).
		SetNillableDescription(in.Description).
		SetNillableLocation(in.Location).
		SetStartsAt(in.StartsAt).
		SetEndsAt(in.EndsAt).
		SetCapacity(in.Capacity).
		SetNillableMinTierID(tierID).
		SetNillableBusinessUnitID(buID).
		Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("creating activity: %w", err)
	}
	return a, nil
}

// Activity returns an activity.
func (s *Service) Activity(ctx context.Context, id int) (*ent.Activity, error) {
	a, err := s.db.Activity.Get(ctx, id)
	if ent.IsNotFound(err) {
		return nil, ErrActivityNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("loading activity %d: %w", id, err)
	}
	return a, nil
}

// Upcoming is the predicate of activities that have not ended, for
// resolvers that paginate with entgql.
func (s *Service) Upcoming() predicate.Activity { return activity.EndsAtGT(s.now()) }

// UpcomingActivities lists up to limit activities that have not ended,
// earliest start first (limit ≤ 0: all).
func (s *Service) UpcomingActivities(ctx context.Context, limit int) ([]*ent.Activity, error) {
	q := s.db.Activity.Query().Where(s.Upcoming()).Order(activity.ByStartsAt(), activity.ByID())
	if limit > 0 {
		q.Limit(limit)
	}
	as, err := q.All(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing upcoming activities: %w", err)
	}
	return as, nil
}

// MemberRegistration returns the member's live (not cancelled)
// registration for the activity, or nil.
func (s *Service) MemberRegistration(ctx context.Context, memberID, activityID int) (*ent.ActivityRegistration, error) {
	r, err := liveRegistration(ctx, s.db, memberID, activityID)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// MemberRegistrations lists the member's registrations, newest first.
func (s *Service) MemberRegistrations(ctx context.Context, memberID int) ([]*ent.ActivityRegistration, error) {
	rs, err := s.db.ActivityRegistration.Query().Where(activityregistration.MemberID(memberID)).
		Order(activityregistration.ByID(sql.OrderDesc())).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing registrations of member %d: %w", memberID, err)
	}
	return rs, nil
}

func liveRegistration(ctx context.Context, db *ent.Client, memberID, activityID int) (*ent.ActivityRegistration, error) {
	r, err := db.ActivityRegistration.Query().
		Where(activityregistration.ActivityID(activityID), activityregistration.MemberID(memberID),
			activityregistration.StatusNEQ(enum.RegistrationCancelled)).
		Only(ctx)
	if ent.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up registration: %w", err)
	}
	return r, nil
}

// Eligible reports whether the member may register for a: always when a
// has no minimum tier, else when the member's tier ranks at least as high
// as it. A member without a tier is below every tier.
func (s *Service) Eligible(ctx context.Context, memberID int, a *ent.Activity) (bool, error) {
	m, err := s.db.Member.Query().Where(member.ID(memberID)).Select(member.FieldTierID, member.FieldStatus).Only(ctx)
	if ent.IsNotFound(err) {
		return false, ErrMemberNotFound
	}
	if err != nil {
		return false, fmt.Errorf("reading member %d: %w", memberID, err)
	}
	if m.Status == member.StatusMERGED || m.Status == member.StatusERASED {
		return false, ErrMemberNotFound
	}
	if a.MinTierID == nil {
		return true, nil
	}
	if m.TierID == nil {
		return false, nil
	}
	ranks, err := s.db.Tier.Query().Where(enttier.IDIn(*a.MinTierID, *m.TierID)).All(ctx)
	if err != nil {
		return false, fmt.Errorf("loading tiers: %w", err)
	}
	rank := make(map[int]int, len(ranks))
	for _, t := range ranks {
		rank[t.ID] = t.Rank
	}
	need, ok1 := rank[*a.MinTierID]
	have, ok2 := rank[*m.TierID]
	return ok1 && ok2 && have >= need, nil
}

// Register signs the member up for an activity: REGISTERED while seats
// are left, WAITLISTED after. Registering again while holding a live
// registration returns that registration unchanged (idempotent: a double
// tap must not queue the member twice). An activity that has ended takes
// no registrations; an ineligible member gets ErrNotEligible.
//
// Seats are decided under the activity's row lock (SELECT ... FOR
// UPDATE), which every change of its registrations takes, so the counters
// always equal the rows: registered_count counts REGISTERED and
// CHECKED_IN (the seats taken), waitlisted_count WAITLISTED,
// checked_in_count CHECKED_IN.
func (s *Service) Register(ctx context.Context, memberID, activityID int) (*ent.ActivityRegistration, error) {
	a, err := s.Activity(ctx, activityID)
	if err != nil {
		return nil, err
	}
	if !s.now().Before(a.EndsAt) {
		return nil, ErrActivityEnded
	}
	ok, err := s.Eligible(ctx, memberID, a)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrNotEligible
	}
	r, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (*ent.ActivityRegistration, error) {
		a, err := lockActivity(ctx, tx, activityID)
		if err != nil {
			return nil, err
		}
		if r, err := liveRegistration(ctx, tx.Client(), memberID, activityID); r != nil || err != nil {
			return r, err
		}
		status := enum.RegistrationWaitlisted
		upd := tx.Activity.UpdateOneID(a.ID).AddWaitlistedCount(1)
		if a.RegisteredCount < a.Capacity {
			status = enum.RegistrationRegistered
			upd = tx.Activity.UpdateOneID(a.ID).AddRegisteredCount(1)
		}
		r, err := tx.ActivityRegistration.Create().SetActivityID(a.ID).SetMemberID(memberID).
			SetStatus(status).SetCreatedAt(s.now()).Save(ctx)
		if err != nil {
			return nil, fmt.Errorf("recording registration: %w", err)
		}
		if err := upd.Exec(ctx); err != nil {
			return nil, fmt.Errorf("counting registration: %w", err)
		}
		return r, nil
	})
	if err != nil {
		return nil, err
	}
	return database.Detach(r), nil
}

func lockActivity(ctx context.Context, tx *ent.Tx, id int) (*ent.Activity, error) {
	a, err := tx.Activity.Query().Where(activity.ID(id)).ForUpdate().Only(ctx)
	if ent.IsNotFound(err) {
		return nil, ErrActivityNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("locking activity %d: %w", id, err)
	}
	return a, nil
}

// Cancel cancels the member's registration. Another member's
// registration is ErrRegistrationNotFound; an already cancelled one is
// returned as it is; a checked-in one cannot be cancelled. Cancelling a
// seat (REGISTERED) gives it, in the same transaction, to the earliest
// waitlisted registration (lowest id).
func (s *Service) Cancel(ctx context.Context, memberID, registrationID int) (*ent.ActivityRegistration, error) {
	r, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (*ent.ActivityRegistration, error) {
		r, err := tx.ActivityRegistration.Get(ctx, registrationID)
		if ent.IsNotFound(err) || (err == nil && r.MemberID != memberID) {
			return nil, ErrRegistrationNotFound
		}
		if err != nil {
			return nil, fmt.Errorf("loading registration %d: %w", registrationID, err)
		}
		if _, err := lockActivity(ctx, tx, r.ActivityID); err != nil {
			return nil, err
		}
		// Re-read under the lock: a check-in or cancel may have
		// committed meanwhile.
		if r, err = tx.ActivityRegistration.Get(ctx, registrationID); err != nil {
			return nil, fmt.Errorf("reloading registration %d: %w", registrationID, err)
		}
		switch r.Status {
		case enum.RegistrationCancelled:
			return r, nil
		case enum.RegistrationCheckedIn:
			return nil, ErrCheckedInNoCancel
		}
		now := s.now()
		was := r.Status
		if r, err = tx.ActivityRegistration.UpdateOne(r).SetStatus(enum.RegistrationCancelled).
			SetCancelledAt(now).Save(ctx); err != nil {
			return nil, fmt.Errorf("cancelling registration %d: %w", registrationID, err)
		}
		upd := tx.Activity.UpdateOneID(r.ActivityID)
		if was == enum.RegistrationWaitlisted {
			upd.AddWaitlistedCount(-1)
		} else {
			next, err := tx.ActivityRegistration.Query().
				Where(activityregistration.ActivityID(r.ActivityID), activityregistration.StatusEQ(enum.RegistrationWaitlisted)).
				Order(activityregistration.ByID()).First(ctx)
			switch {
			case ent.IsNotFound(err):
				upd.AddRegisteredCount(-1)
			case err != nil:
				return nil, fmt.Errorf("finding the waitlist head: %w", err)
			default:
				if err := tx.ActivityRegistration.UpdateOne(next).SetStatus(enum.RegistrationRegistered).Exec(ctx); err != nil {
					return nil, fmt.Errorf("promoting registration %d: %w", next.ID, err)
				}
				upd.AddWaitlistedCount(-1) // the seat changes hands: registered_count stays
			}
		}
		if err := upd.Exec(ctx); err != nil {
			return nil, fmt.Errorf("counting cancellation: %w", err)
		}
		return r, nil
	})
	if err != nil {
		return nil, err
	}
	return database.Detach(r), nil
}

// TicketCode returns the signed ticket of a registration that holds a
// seat (REGISTERED or CHECKED_IN), nil otherwise. It is derived from the
// registration id and the activity's end (it verifies until a day after
// the activity ends), so the same registration always gets the same code.
// The activity is taken from reg.Edges.Activity when loaded.
func (s *Service) TicketCode(ctx context.Context, reg *ent.ActivityRegistration) (*string, error) {
	if reg.Status != enum.RegistrationRegistered && reg.Status != enum.RegistrationCheckedIn {
		return nil, nil
	}
	a := reg.Edges.Activity
	if a == nil {
		var err error
		if a, err = s.Activity(ctx, reg.ActivityID); err != nil {
			return nil, err
		}
	}
	ttl := a.EndsAt.Add(ticketGrace).Sub(s.now())
	if ttl == 0 {
		ttl = -time.Second // 0 would mean "never expires"
	}
	code, _ := s.tickets.Sign(int64(reg.ID), ttl)
	return &code, nil
}

// CheckInTicket admits the holder of a ticket, once: staffID and the time
// are recorded. A malformed or forged code is ErrInvalidTicket, an
// expired one ErrTicketExpired; a waitlisted or cancelled registration
// ErrTicketNotAdmitted; a second scan ErrAlreadyCheckedIn, saying when
// the first was.
func (s *Service) CheckInTicket(ctx context.Context, staffID int, code string) (*ent.ActivityRegistration, error) {
	id, err := s.tickets.Verify(code)
	switch {
	case errors.Is(err, signedcode.ErrExpiredCode):
		return nil, ErrTicketExpired
	case err != nil:
		return nil, ErrInvalidTicket
	}
	r, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (*ent.ActivityRegistration, error) {
		r, err := tx.ActivityRegistration.Get(ctx, int(id))
		if ent.IsNotFound(err) {
			return nil, ErrInvalidTicket
		}
		if err != nil {
			return nil, fmt.Errorf("loading registration %d: %w", id, err)
		}
		if _, err := lockActivity(ctx, tx, r.ActivityID); err != nil {
			return nil, err
		}
		if r, err = tx.ActivityRegistration.Get(ctx, int(id)); err != nil {
			return nil, fmt.Errorf("reloading registration %d: %w", id, err)
		}
		switch r.Status {
		case enum.RegistrationCheckedIn:
			at := "an earlier scan"
			if r.CheckedInAt != nil {
				at = r.CheckedInAt.In(s.zone).Format(time.DateTime)
			}
			return nil, fmt.Errorf("%w at %s", ErrAlreadyCheckedIn, at)
		case enum.RegistrationWaitlisted, enum.RegistrationCancelled:
			return nil, fmt.Errorf("%w: %s", ErrTicketNotAdmitted, r.Status)
		}
		if r, err = tx.ActivityRegistration.UpdateOne(r).SetStatus(enum.RegistrationCheckedIn).
			SetCheckedInAt(s.now()).SetCheckedInBy(staffID).Save(ctx); err != nil {
			return nil, fmt.Errorf("checking in registration %d: %w", id, err)
		}
		if err := tx.Activity.UpdateOneID(r.ActivityID).AddCheckedInCount(1).Exec(ctx); err != nil {
			return nil, fmt.Errorf("counting check-in: %w", err)
		}
		// Staff scan tickets at the door: the behaviour's channel is POS.
		err = behavior.Record(ctx, tx, behavior.Event{MemberID: r.MemberID, Kind: enum.BehaviorCheckIn,
			OccurredAt: *r.CheckedInAt, Channel: enum.ChannelPOS, TargetID: strconv.Itoa(r.ActivityID),
			Key: fmt.Sprintf("CHECK_IN:%d", r.ID)})
		if err != nil {
			return nil, err
		}
		return r, nil
	})
	if err != nil {
		return nil, err
	}
	return database.Detach(r), nil
}
