package campaign

import (
	"time"

	"github.com/onemember/onemember/internal/campaign/spec"
)

// CreateInput defines a campaign (CreateCampaignInput in the API); it is
// also what DryRun evaluates.
type CreateInput struct {
	Name    string
	Trigger *spec.Trigger
	// AudienceID limits the campaign to a saved audience; nil: every member.
	AudienceID *int
	Actions    []*spec.Action
	StartsAt   time.Time
	EndsAt     *time.Time
	// MaxPerMember bounds the touches per member over the campaign.
	MaxPerMember *int
	// FrequencyCapDays: no member is touched by any campaign more often
	// than once in this many days.
	FrequencyCapDays *int
	// Budget bounds the cost committed (fen).
	Budget *int64
	// HoldoutPercent (0..50) of the members are held out by a stable hash.
	HoldoutPercent *int
	// AttributionDays: orders within this many days after a touch are
	// attributed (default DefaultAttributionDays).
	AttributionDays *int
	// Priority: the highest wins when several campaigns match a member at
	// once.
	Priority *int
}

// Report is a campaign's effect (营销复盘).
type Report struct {
	Targeted            int
	Reached             int
	SuppressedByConsent int
	SuppressedByCap     int
	Holdout             int
	CouponsIssued       int
	CouponsRedeemed     int
	RedemptionRate      float64
	AttributedOrders    int
	AttributedRevenue   int64
	Cost                int64
	// Roi is (AttributedRevenue − Cost) / Cost; nil without cost.
	Roi                   *float64
	TreatedConversionRate float64
	HoldoutConversionRate float64
	// Lift is TreatedConversionRate / HoldoutConversionRate − 1; nil
	// without holdout conversions.
	Lift *float64
}

// DryRun is what a campaign would do now, changing nothing.
type DryRun struct {
	Targeted      int
	AfterConsent  int
	AfterCaps     int
	Holdout       int
	EstimatedCost int64
}
