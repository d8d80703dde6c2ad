package campaign

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"entgo.io/contrib/entgql"

	"github.com/onemember/onemember/ent"
	entaudience "github.com/onemember/onemember/ent/audience"
	entcampaign "github.com/onemember/onemember/ent/campaign"
	"github.com/onemember/onemember/ent/coupontemplate"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/ent/tier"
	"github.com/onemember/onemember/internal/campaign/spec"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Limits of a campaign's guards.
const (
	MaxName            = 100
	MaxHoldoutPercent  = 50
	MaxFrequencyCap    = 365
	MaxAttributionDays = 90
)

// validate checks a campaign's definition and reports every problem at
// once, naming the fields of CreateCampaignInput.
func (s *Service) validate(ctx context.Context, in CreateInput) error {
	var errs []error
	bad := func(field, format string, args ...any) { errs = append(errs, fault.Invalidf(field, format, args...)) }
	if name := strings.TrimSpace(in.Name); name == "" || len([]rune(name)) > MaxName {
		bad("name", "must be 1 to %d characters", MaxName)
	}
	if err := in.Trigger.Validate(); err != nil {
		errs = append(errs, err)
	} else {
		errs = append(errs, s.validateTrigger(ctx, in))
	}
	if err := spec.ValidateActions(in.Actions); err != nil {
		errs = append(errs, err)
	} else {
		coupons := 0
		for i, a := range in.Actions {
			if a.Kind != enum.ActionIssueCoupon {
				continue
			}
			if coupons++; coupons > 1 {
				bad(fmt.Sprintf("actions[%d].kind", i), "a campaign issues at most one coupon")
				continue
			}
			ok, err := s.db.CouponTemplate.Query().Where(coupontemplate.ID(*a.CouponTemplateID)).Exist(ctx)
			switch {
			case err != nil:
				return fmt.Errorf("checking coupon template: %w", err)
			case !ok:
				bad(fmt.Sprintf("actions[%d].couponTemplateId", i), "no such coupon template")
			}
		}
	}
	if in.AudienceID != nil {
		ok, err := s.db.Audience.Query().Where(entaudience.ID(*in.AudienceID)).Exist(ctx)
		switch {
		case err != nil:
			return fmt.Errorf("checking audience: %w", err)
		case !ok:
			bad("audienceId", "no such audience")
		}
	}
	switch {
	case in.StartsAt.IsZero():
		bad("startsAt", "is required")
	case in.EndsAt != nil && !in.EndsAt.After(in.StartsAt):
		bad("endsAt", "must be after startsAt")
	}
	if v := in.HoldoutPercent; v != nil && (*v < 0 || *v > MaxHoldoutPercent) {
		bad("holdoutPercent", "must be 0 to %d", MaxHoldoutPercent)
	}
	if v := in.MaxPerMember; v != nil && *v < 1 {
		bad("maxPerMember", "must be at least 1")
	}
	if v := in.FrequencyCapDays; v != nil && (*v < 1 || *v > MaxFrequencyCap) {
		bad("frequencyCapDays", "must be 1 to %d", MaxFrequencyCap)
	}
	if v := in.Budget; v != nil && *v < 0 {
		bad("budget", "must not be negative")
	}
	if v := in.AttributionDays; v != nil && (*v < 1 || *v > MaxAttributionDays) {
		bad("attributionDays", "must be 1 to %d", MaxAttributionDays)
	}
	return errors.Join(errs...)
}

// validateTrigger checks what spec.Trigger.Validate cannot: the cron
// expression, the tier, ONE_OFF's time in the window.
func (s *Service) validateTrigger(ctx context.Context, in CreateInput) error {
	tr := in.Trigger
	switch tr.Kind {
	case enum.TriggerScheduled:
		if _, err := parseCron(*tr.Cron); err != nil {
			return fault.Invalidf("trigger.cron", "%v", err)
		}
	case enum.TriggerTierChanged:
		ok, err := s.db.Tier.Query().Where(tier.Code(strings.TrimSpace(*tr.TierCode))).Exist(ctx)
		if err != nil {
			return fmt.Errorf("checking tier: %w", err)
		}
		if !ok {
			return fault.Invalidf("trigger.tierCode", "no tier %q", *tr.TierCode)
		}
	case enum.TriggerOneOff:
		if tr.At.Before(in.StartsAt) || (in.EndsAt != nil && !tr.At.Before(*in.EndsAt)) {
			return fault.Invalidf("trigger.at", "must be within startsAt and endsAt")
		}
	}
	return nil
}

// Create saves a DRAFT campaign; activate it to start. Every problem of
// the input is reported at once (BAD_USER_INPUT naming the fields).
func (s *Service) Create(ctx context.Context, staffID *int, in CreateInput) (*ent.Campaign, error) {
	if err := s.validate(ctx, in); err != nil {
		return nil, err
	}
	in = normalize(in)
	cur := cursor{AudienceID: in.AudienceID}
	return s.db.Campaign.Create().
		SetName(in.Name).SetTriggerKind(in.Trigger.Kind).SetTrigger(*in.Trigger).SetActions(in.Actions).
		SetNillableAudienceID(in.AudienceID).SetStartsAt(in.StartsAt).SetNillableEndsAt(in.EndsAt).
		SetNillableMaxPerMember(in.MaxPerMember).SetNillableFrequencyCapDays(in.FrequencyCapDays).
		SetNillableBudget(in.Budget).SetNillableHoldoutPercent(in.HoldoutPercent).
		SetNillableAttributionDays(in.AttributionDays).SetNillablePriority(in.Priority).
		SetCursor(cur.asMap()).SetNillableCreatedByStaffID(staffID).
		Save(ctx)
}

// normalize is the input as stored: trimmed name and tier code, times in
// UTC to the microsecond (what PostgreSQL keeps).
func normalize(in CreateInput) CreateInput {
	in.Name = strings.TrimSpace(in.Name)
	tr := *in.Trigger
	if tr.TierCode != nil {
		code := strings.TrimSpace(*tr.TierCode)
		tr.TierCode = &code
	}
	if tr.At != nil {
		at := tr.At.UTC().Truncate(time.Microsecond)
		tr.At = &at
	}
	in.Trigger = &tr
	in.StartsAt = in.StartsAt.UTC().Truncate(time.Microsecond)
	if in.EndsAt != nil {
		end := in.EndsAt.UTC().Truncate(time.Microsecond)
		in.EndsAt = &end
	}
	return in
}

// transition locks campaign id and applies change to it in one
// transaction.
func (s *Service) transition(ctx context.Context, id int, change func(tx *ent.Tx, c *ent.Campaign, cur cursor, now time.Time) (*ent.Campaign, error)) (*ent.Campaign, error) {
	c, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (*ent.Campaign, error) {
		c, err := tx.Campaign.Query().Where(entcampaign.ID(id)).ForUpdate().Only(ctx)
		if ent.IsNotFound(err) {
			return nil, ErrNotFound
		}
		if err != nil {
			return nil, fmt.Errorf("reading campaign %d: %w", id, err)
		}
		cur, err := readCursor(c)
		if err != nil {
			return nil, err
		}
		return change(tx, c, cur, s.now().UTC())
	})
	if err != nil {
		return nil, err
	}
	return database.Detach(c), nil
}

func illegal(c *ent.Campaign, what string) error {
	return fmt.Errorf("campaign %d is %s and cannot be %s: %w", c.ID, c.Status, what, ErrTransition)
}

// Activate makes a DRAFT or PAUSED campaign ACTIVE (an ACTIVE one is
// answered as it is; an ENDED one is ErrTransition, CONFLICT; one past
// its endsAt is ErrWindowOver, CONFLICT).
//
// It picks up from now. Event triggers react to what happens from now on.
// Time triggers run their next slot at or after now: a DRAFT's ONE_OFF,
// HOLIDAY or daily run whose time has passed runs at once (a HOLIDAY
// only until the holiday is over); a reactivated campaign skips the
// slots that fell due while it was paused (today's daily run still
// happens if it did not before the pause), and the rest of a run the
// pause stopped is not done.
//
// With replaySkipped, a reactivated campaign catches up instead: event
// triggers also react to what was recorded while it was paused (from a
// minute before the pause), time triggers plan the slots that fell due
// and run again the runs the pause stopped, for the members they had not
// served.
func (s *Service) Activate(ctx context.Context, id int, replaySkipped bool) (*ent.Campaign, error) {
	return s.transition(ctx, id, func(tx *ent.Tx, c *ent.Campaign, cur cursor, now time.Time) (*ent.Campaign, error) {
		switch c.Status {
		case enum.CampaignActive:
			return c, nil
		case enum.CampaignEnded:
			return nil, illegal(c, "activated")
		}
		if c.EndsAt != nil && !now.Before(*c.EndsAt) {
			return nil, fmt.Errorf("campaign %d ended at %s: %w", c.ID, c.EndsAt.Format(time.RFC3339), ErrWindowOver)
		}
		paused := c.Status == enum.CampaignPaused
		replay := replaySkipped && paused
		cur.Activation++
		up := tx.Campaign.UpdateOneID(c.ID).SetStatus(enum.CampaignActive).SetUpdatedAt(now)
		if c.ActivatedAt == nil {
			up.SetActivatedAt(now)
		}
		if isEvent(c.TriggerKind) {
			h, err := currentHorizon(ctx, tx)
			if err != nil {
				return nil, err
			}
			cur.Since, cur.SeenAt, cur.Horizon, cur.ReplayFrom, cur.ReplayTo = &now, &now, h, nil, nil
			if replay && cur.PausedAt != nil {
				from := cur.PausedAt.Add(-replayOverlap)
				cur.ReplayFrom, cur.ReplayTo = &from, &now
			}
		} else {
			if replay {
				// next_run_at stays where the pause left it: Plan catches up.
				for _, at := range cur.Interrupted {
					slot, err := time.Parse(time.RFC3339Nano, at)
					if err != nil {
						continue
					}
					if _, err := s.enqueue(ctx, tx, c, slot, fmt.Sprintf(":a%d", cur.Activation)); err != nil {
						return nil, err
					}
				}
			} else if next := s.firstSlot(c, now, !paused || isDaily(c.TriggerKind)); next != nil {
				up.SetNextRunAt(*next)
			} else {
				up.ClearNextRunAt()
			}
			cur.Interrupted = nil
		}
		cur.PausedAt = nil
		return up.SetCursor(cur.asMap()).Save(ctx)
	})
}

// currentHorizon is the oldest transaction still running: a cursor set to
// it reads every change not yet committed.
func currentHorizon(ctx context.Context, tx *ent.Tx) (string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text`)
	if err != nil {
		return "", fmt.Errorf("reading the transaction horizon: %w", err)
	}
	defer rows.Close()
	var h string
	if rows.Next() {
		if err := rows.Scan(&h); err != nil {
			return "", fmt.Errorf("reading the transaction horizon: %w", err)
		}
	}
	return h, rows.Err()
}

// Pause makes an ACTIVE campaign PAUSED: nothing runs until it is
// activated again (a running job stops at its next batch). A PAUSED one
// is answered as it is; DRAFT and ENDED are ErrTransition (CONFLICT).
func (s *Service) Pause(ctx context.Context, id int) (*ent.Campaign, error) {
	return s.transition(ctx, id, func(tx *ent.Tx, c *ent.Campaign, cur cursor, now time.Time) (*ent.Campaign, error) {
		switch c.Status {
		case enum.CampaignPaused:
			return c, nil
		case enum.CampaignDraft, enum.CampaignEnded:
			return nil, illegal(c, "paused")
		}
		cur.PausedAt = &now
		return tx.Campaign.UpdateOneID(c.ID).SetStatus(enum.CampaignPaused).SetCursor(cur.asMap()).
			SetUpdatedAt(now).Save(ctx)
	})
}

// End makes a campaign ENDED, for good, from any status (an ENDED one is
// answered as it is). Its report stays: attribution windows of its last
// executions keep counting orders.
func (s *Service) End(ctx context.Context, id int) (*ent.Campaign, error) {
	return s.transition(ctx, id, func(tx *ent.Tx, c *ent.Campaign, _ cursor, now time.Time) (*ent.Campaign, error) {
		if c.Status == enum.CampaignEnded {
			return c, nil
		}
		return tx.Campaign.UpdateOneID(c.ID).SetStatus(enum.CampaignEnded).ClearNextRunAt().
			SetUpdatedAt(now).Save(ctx)
	})
}

// List pages through the campaigns, newest first, optionally of one
// status.
func (s *Service) List(ctx context.Context, first *int, after *entgql.Cursor[int], status *enum.CampaignStatus) (*ent.CampaignConnection, error) {
	q := s.db.Campaign.Query()
	if status != nil {
		q.Where(entcampaign.StatusEQ(*status))
	}
	return q.Paginate(ctx, after, first, nil, nil, ent.WithCampaignOrder(&ent.CampaignOrder{
		Direction: entgql.OrderDirectionDesc, Field: ent.DefaultCampaignOrder.Field,
	}))
}
