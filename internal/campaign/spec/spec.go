// Package spec describes a campaign's trigger and actions
// (CampaignTriggerInput and CampaignActionInput in the API). They are
// stored as JSON with the campaign and returned as they were given. This
// package only describes and checks them; internal/campaign runs them.
package spec

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Limits of a campaign's definition.
const (
	MaxActions    = 5
	MaxDaysBefore = 90
	MaxPoints     = 100_000
	MaxTitle      = 64
	MaxBody       = 500
)

// Trigger is when a campaign acts for a member. Which fields apply
// depends on Kind (see Validate).
type Trigger struct {
	Kind enum.CampaignTriggerKind `json:"kind"`
	// At is when a ONE_OFF campaign runs.
	At *time.Time `json:"at,omitempty"`
	// Cron is a SCHEDULED campaign's schedule (five fields, business zone).
	Cron *string `json:"cron,omitempty"`
	// DaysBefore is how many days ahead BIRTHDAY, HOLIDAY and
	// POINTS_EXPIRING act (0: on the day).
	DaysBefore *int `json:"daysBefore,omitempty"`
	// Date is a HOLIDAY's date.
	Date *calendar.Date `json:"date,omitempty"`
	// InactiveDays is INACTIVITY's days without a purchase.
	InactiveDays *int `json:"inactiveDays,omitempty"`
	// MinAmount is the least order amount (fen) a PURCHASE reacts to.
	MinAmount *int64 `json:"minAmount,omitempty"`
	// TierCode is the tier TIER_CHANGED reacts to members entering.
	TierCode *string `json:"tierCode,omitempty"`
	// MinChurnRisk is CHURN_RISK's threshold, 0 to 1.
	MinChurnRisk *float64 `json:"minChurnRisk,omitempty"`
}

// Action is one thing a campaign does to a member it reaches.
type Action struct {
	Kind enum.CampaignActionKind `json:"kind"`
	// CouponTemplateID is ISSUE_COUPON's template.
	CouponTemplateID *int `json:"couponTemplateId,omitempty"`
	// Points is AWARD_POINTS' amount.
	Points *int `json:"points,omitempty"`
	// Channel, Title and Body are SEND_MESSAGE's; Body may use
	// {{displayName}}, {{tierName}} and {{couponTitle}}.
	Channel *enum.MessageChannel `json:"channel,omitempty"`
	Title   *string              `json:"title,omitempty"`
	Body    *string              `json:"body,omitempty"`
}

// Validate checks that t carries what its kind needs; field names in the
// errors are relative to the trigger input.
func (t *Trigger) Validate() error {
	if t == nil || !enum.Valid(t.Kind) {
		return fault.Invalidf("trigger.kind", "is required")
	}
	var errs []error
	need := func(ok bool, field, msg string) {
		if !ok {
			errs = append(errs, fault.Invalidf("trigger."+field, "%s", msg))
		}
	}
	daysBefore := func() {
		need(t.DaysBefore == nil || (*t.DaysBefore >= 0 && *t.DaysBefore <= MaxDaysBefore),
			"daysBefore", fmt.Sprintf("must be 0 to %d", MaxDaysBefore))
	}
	switch t.Kind {
	case enum.TriggerOneOff:
		need(t.At != nil, "at", "is required for ONE_OFF")
	case enum.TriggerScheduled:
		need(t.Cron != nil && strings.TrimSpace(*t.Cron) != "", "cron", "is required for SCHEDULED")
	case enum.TriggerBirthday, enum.TriggerPointsExpiring:
		daysBefore()
	case enum.TriggerHoliday:
		need(t.Date != nil, "date", "is required for HOLIDAY")
		daysBefore()
	case enum.TriggerInactivity:
		need(t.InactiveDays != nil && *t.InactiveDays >= 1 && *t.InactiveDays <= 3650,
			"inactiveDays", "must be 1 to 3650 for INACTIVITY")
	case enum.TriggerPurchase:
		need(t.MinAmount == nil || *t.MinAmount >= 0, "minAmount", "must not be negative")
	case enum.TriggerTierChanged:
		need(t.TierCode != nil && strings.TrimSpace(*t.TierCode) != "", "tierCode", "is required for TIER_CHANGED")
	case enum.TriggerChurnRisk:
		need(t.MinChurnRisk != nil && *t.MinChurnRisk >= 0 && *t.MinChurnRisk <= 1,
			"minChurnRisk", "must be 0 to 1 for CHURN_RISK")
	}
	return errors.Join(errs...)
}

// Validate checks one action; i is its position, for the error's field.
func (a *Action) Validate(i int) error {
	field := func(f string) string { return fmt.Sprintf("actions[%d].%s", i, f) }
	if a == nil || !enum.Valid(a.Kind) {
		return fault.Invalidf(field("kind"), "is required")
	}
	switch a.Kind {
	case enum.ActionIssueCoupon:
		if a.CouponTemplateID == nil {
			return fault.Invalidf(field("couponTemplateId"), "is required for ISSUE_COUPON")
		}
	case enum.ActionAwardPoints:
		if a.Points == nil || *a.Points < 1 || *a.Points > MaxPoints {
			return fault.Invalidf(field("points"), "must be 1 to %d for AWARD_POINTS", MaxPoints)
		}
	case enum.ActionSendMessage:
		var errs []error
		if a.Channel == nil || !enum.Valid(*a.Channel) {
			errs = append(errs, fault.Invalidf(field("channel"), "is required for SEND_MESSAGE"))
		}
		if a.Title == nil || strings.TrimSpace(*a.Title) == "" || len([]rune(*a.Title)) > MaxTitle {
			errs = append(errs, fault.Invalidf(field("title"), "must be 1 to %d characters", MaxTitle))
		}
		if a.Body == nil || strings.TrimSpace(*a.Body) == "" || len([]rune(*a.Body)) > MaxBody {
			errs = append(errs, fault.Invalidf(field("body"), "must be 1 to %d characters", MaxBody))
		}
		return errors.Join(errs...)
	}
	return nil
}

// ValidateActions checks a campaign's actions: one to MaxActions.
func ValidateActions(as []*Action) error {
	if len(as) == 0 || len(as) > MaxActions {
		return fault.Invalidf("actions", "must hold 1 to %d actions", MaxActions)
	}
	var errs []error
	for i, a := range as {
		errs = append(errs, a.Validate(i))
	}
	return errors.Join(errs...)
}
