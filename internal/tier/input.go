package tier

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/onemember/onemember/ent"
	enttier "github.com/onemember/onemember/ent/tier"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Limits on tier settings. They keep obvious typos (a multiplier of 100, a
// review every 50 years) out of the ladder.
const (
	maxNameLength      = 32
	maxRetentionMonths = 120
	maxMultiplier      = 10.0
)

// codePattern is the shape of a tier code: codes are stable identifiers
// used in audience rules and client code, like the benefit codes.
var codePattern = regexp.MustCompile(`^[A-Z][A-Z0-9_]{0,31}$`)

// TierInput creates or changes one tier of the ladder, identified by Code.
//
// Optional fields left nil keep the tier's current value when it exists,
// and take the schema default for a new tier (no monthly spend, no
// referrals, 12 months retention, multiplier 1.0). BenefitCodes nil keeps
// the current benefits; an empty slice removes them all.
type TierInput struct {
	Code, Name string
	Rank       int
	Threshold  int64
	// MonthlySpendRequired is in fen.
	MonthlySpendRequired *int64
	ReferralsRequired    *int
	RetentionMonths      *int
	// PointsMultiplier is stored in permille, rounded: 1.25 → 1250.
	PointsMultiplier *float64
	BenefitCodes     []string
}

// Validate reports every problem of the input on its own, each naming the
// field (as the GraphQL TierInput spells it). The ladder as a whole is
// checked by Upsert and Simulate.
func (in TierInput) Validate() error {
	var errs []error
	if !codePattern.MatchString(in.Code) {
		errs = append(errs, fault.Invalidf("code", "must be 1 to 32 upper-case letters, digits or underscores, starting with a letter"))
	}
	if name := strings.TrimSpace(in.Name); name == "" {
		errs = append(errs, fault.Invalidf("name", "is required"))
	} else if utf8.RuneCountInString(name) > maxNameLength {
		errs = append(errs, fault.Invalidf("name", "must be at most %d characters", maxNameLength))
	}
	if in.Rank < 0 {
		errs = append(errs, fault.Invalidf("rank", "must not be negative"))
	}
	if in.Threshold < 0 {
		errs = append(errs, fault.Invalidf("threshold", "must not be negative"))
	}
	if p := in.MonthlySpendRequired; p != nil && *p < 0 {
		errs = append(errs, fault.Invalidf("monthlySpendRequired", "must not be negative"))
	}
	if p := in.ReferralsRequired; p != nil && *p < 0 {
		errs = append(errs, fault.Invalidf("referralsRequired", "must not be negative"))
	}
	if p := in.RetentionMonths; p != nil && (*p < 1 || *p > maxRetentionMonths) {
		errs = append(errs, fault.Invalidf("retentionMonths", "must be between 1 and %d", maxRetentionMonths))
	}
	if p := in.PointsMultiplier; p != nil {
		if m := *p; math.IsNaN(m) || m <= 0 || m > maxMultiplier || permille(m) < 1 {
			errs = append(errs, fault.Invalidf("pointsMultiplier", "must be greater than 0 and at most %g", maxMultiplier))
		}
	}
	seen := make(map[string]bool, len(in.BenefitCodes))
	for _, c := range in.BenefitCodes {
		switch {
		case strings.TrimSpace(c) == "":
			errs = append(errs, fault.Invalidf("benefitCodes", "must not contain an empty code"))
		case seen[c]:
			errs = append(errs, fault.Invalidf("benefitCodes", "lists %s twice", c))
		}
		seen[c] = true
	}
	return errors.Join(errs...)
}

// permille converts a multiplier to the stored integer, rounding half away
// from zero.
func permille(m float64) int { return int(math.Round(m * 1000)) }

// tier returns the tier the input describes, over existing (nil for a new
// tier): the values to save, or to simulate with.
func (in TierInput) tier(existing *ent.Tier) *ent.Tier {
	t := &ent.Tier{
		MonthlySpendRequired:     enttier.DefaultMonthlySpendRequired,
		ReferralsRequired:        enttier.DefaultReferralsRequired,
		RetentionMonths:          enttier.DefaultRetentionMonths,
		PointsMultiplierPermille: enttier.DefaultPointsMultiplierPermille,
	}
	if existing != nil {
		*t = ent.Tier{
			ID:                       existing.ID,
			MonthlySpendRequired:     existing.MonthlySpendRequired,
			ReferralsRequired:        existing.ReferralsRequired,
			RetentionMonths:          existing.RetentionMonths,
			PointsMultiplierPermille: existing.PointsMultiplierPermille,
		}
	}
	t.Code, t.Name, t.Rank, t.Threshold = in.Code, strings.TrimSpace(in.Name), in.Rank, in.Threshold
	if in.MonthlySpendRequired != nil {
		t.MonthlySpendRequired = *in.MonthlySpendRequired
	}
	if in.ReferralsRequired != nil {
		t.ReferralsRequired = *in.ReferralsRequired
	}
	if in.RetentionMonths != nil {
		t.RetentionMonths = *in.RetentionMonths
	}
	if in.PointsMultiplier != nil {
		t.PointsMultiplierPermille = permille(*in.PointsMultiplier)
	}
	return t
}

// checkLadder reports why ladder is not a consistent ladder: codes and
// ranks unique, thresholds strictly increasing with rank, and the lowest
// tier an entry tier everyone qualifies for (threshold 0, no monthly spend,
// no referrals), which makes it the only tier with threshold 0 and means
// Eligible always places a member.
//
// field names the field of ladder[i] for an error. A problem between two
// tiers is blamed on blame when it is one of them (the tier being edited),
// else on the higher-ranked one.
func checkLadder(ladder []*ent.Tier, blame int, field func(i int, name string) string) error {
	if len(ladder) == 0 {
		return fault.Invalidf(field(-1, ""), "the ladder needs at least one tier")
	}
	order := make([]int, len(ladder))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return ladder[a].Rank - ladder[b].Rank })
	pick := func(lower, higher int) int {
		if lower == blame {
			return lower
		}
		return higher
	}

	var errs []error
	codes := make(map[string]int, len(ladder))
	for i, t := range ladder {
		if j, ok := codes[t.Code]; ok {
			errs = append(errs, fault.Invalidf(field(pick(j, i), "code"), "code %s is used twice", t.Code))
		}
		codes[t.Code] = i
	}
	lowest := ladder[order[0]]
	if lowest.Threshold != 0 {
		errs = append(errs, fault.Invalidf(field(order[0], "threshold"), "the lowest tier (%s) must have threshold 0", lowest.Code))
	}
	if lowest.MonthlySpendRequired != 0 {
		errs = append(errs, fault.Invalidf(field(order[0], "monthlySpendRequired"), "the lowest tier (%s) cannot require monthly spend", lowest.Code))
	}
	if lowest.ReferralsRequired != 0 {
		errs = append(errs, fault.Invalidf(field(order[0], "referralsRequired"), "the lowest tier (%s) cannot require referrals", lowest.Code))
	}
	for k := 1; k < len(order); k++ {
		lo, hi := order[k-1], order[k]
		a, b := ladder[lo], ladder[hi]
		i := pick(lo, hi)
		switch {
		case a.Rank == b.Rank:
			other := a
			if i == lo {
				other = b
			}
			errs = append(errs, fault.Invalidf(field(i, "rank"), "rank %d is also used by %s", b.Rank, other.Code))
		case a.Threshold >= b.Threshold && i == lo:
			errs = append(errs, fault.Invalidf(field(i, "threshold"),
				"must be below %d, the threshold of %s (rank %d)", b.Threshold, b.Code, b.Rank))
		case a.Threshold >= b.Threshold:
			errs = append(errs, fault.Invalidf(field(i, "threshold"),
				"must be above %d, the threshold of %s (rank %d)", a.Threshold, a.Code, a.Rank))
		}
	}
	return errors.Join(errs...)
}

// plainField names fields as Upsert's single input spells them.
func plainField(_ int, name string) string {
	if name == "" {
		return "rank"
	}
	return name
}

// listField names fields of Simulate's list input: tiers[2].threshold.
func listField(i int, name string) string {
	if i < 0 {
		return "tiers"
	}
	return fmt.Sprintf("tiers[%d].%s", i, name)
}
