package tier_test

import (
	"maps"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/onemember/onemember/ent"
	enttier "github.com/onemember/onemember/ent/tier"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/testkit"
	"github.com/onemember/onemember/internal/tier"
)

func TestTierInputValidate(t *testing.T) {
	t.Parallel()
	ok := tier.TierInput{Code: "PLATINUM", Name: "铂金会员", Rank: 4, Threshold: 6000}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid input: %v", err)
	}
	tests := []struct {
		name   string
		change func(*tier.TierInput)
		fields []string
	}{
		{"lower-case code", func(in *tier.TierInput) { in.Code = "gold" }, []string{"code"}},
		{"empty code", func(in *tier.TierInput) { in.Code = "" }, []string{"code"}},
		{"blank name", func(in *tier.TierInput) { in.Name = "  " }, []string{"name"}},
		{"long name", func(in *tier.TierInput) { in.Name = strings.Repeat("金", 33) }, []string{"name"}},
		{"negative rank", func(in *tier.TierInput) { in.Rank = -1 }, []string{"rank"}},
		{"negative threshold", func(in *tier.TierInput) { in.Threshold = -5 }, []string{"threshold"}},
		{"negative spend", func(in *tier.TierInput) { in.MonthlySpendRequired = testkit.Ptr[int64](-1) }, []string{"monthlySpendRequired"}},
		{"negative referrals", func(in *tier.TierInput) { in.ReferralsRequired = testkit.Ptr(-1) }, []string{"referralsRequired"}},
		{"no retention", func(in *tier.TierInput) { in.RetentionMonths = testkit.Ptr(0) }, []string{"retentionMonths"}},
		{"zero multiplier", func(in *tier.TierInput) { in.PointsMultiplier = testkit.Ptr(0.0) }, []string{"pointsMultiplier"}},
		{"multiplier rounding to zero", func(in *tier.TierInput) { in.PointsMultiplier = testkit.Ptr(0.0004) }, []string{"pointsMultiplier"}},
		{"huge multiplier", func(in *tier.TierInput) { in.PointsMultiplier = testkit.Ptr(10.5) }, []string{"pointsMultiplier"}},
		{"NaN multiplier", func(in *tier.TierInput) { in.PointsMultiplier = testkit.Ptr(math.NaN()) }, []string{"pointsMultiplier"}},
		{"duplicate benefit", func(in *tier.TierInput) { in.BenefitCodes = []string{"A", "A"} }, []string{"benefitCodes"}},
		{"everything at once", func(in *tier.TierInput) {
			in.Code, in.Name, in.Threshold, in.RetentionMonths = "", "", -1, testkit.Ptr(500)
		}, []string{"code", "name", "threshold", "retentionMonths"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := ok
			tt.change(&in)
			err := in.Validate()
			if got := fields(err); !slices.Equal(got, tt.fields) {
				t.Errorf("fields %v (%v), want %v", got, err, tt.fields)
			}
			if fault.CodeOf(err) != fault.BadUserInput {
				t.Errorf("code %s, want BAD_USER_INPUT", fault.CodeOf(err))
			}
		})
	}
}

func TestUpsert(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()

	t.Run("new tier", func(t *testing.T) {
		pt, err := e.svc.Upsert(ctx, tier.TierInput{
			Code: "PLATINUM", Name: "铂金会员", Rank: 4, Threshold: 6000,
			RetentionMonths: testkit.Ptr(24), PointsMultiplier: testkit.Ptr(2.5), BenefitCodes: []string{"PERSONAL_SHOPPER", "DISCOUNT_80"},
		})
		if err != nil {
			t.Fatalf("Upsert: %v", err)
		}
		if pt.ID == 0 || pt.RetentionMonths != 24 || pt.PointsMultiplierPermille != 2500 ||
			pt.MonthlySpendRequired != 0 || pt.ReferralsRequired != 0 || len(pt.Edges.Benefits) != 2 {
			t.Errorf("created %+v with %d benefits", pt, len(pt.Edges.Benefits))
		}
		ladder, err := e.svc.Ladder(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var codes []string
		for _, l := range ladder {
			codes = append(codes, l.Code)
		}
		if want := []string{"NORMAL", "SILVER", "GOLD", "DIAMOND", "PLATINUM"}; !slices.Equal(codes, want) {
			t.Errorf("Ladder = %v, want %v", codes, want)
		}
	})

	t.Run("change keeps what is not given", func(t *testing.T) {
		g, err := e.svc.Upsert(ctx, tier.TierInput{Code: "GOLD", Name: "金卡", Rank: 2, Threshold: 1800})
		if err != nil {
			t.Fatalf("Upsert: %v", err)
		}
		if g.ID != e.tiers["GOLD"].ID || g.Name != "金卡" || g.Threshold != 1800 || g.MonthlySpendRequired != 20000 ||
			g.PointsMultiplierPermille != 1500 || g.RetentionMonths != 12 || len(g.Edges.Benefits) != 1 {
			t.Errorf("updated %+v with %d benefits; want threshold and name changed, the rest kept", g, len(g.Edges.Benefits))
		}
		g, err = e.svc.Upsert(ctx, tier.TierInput{Code: "GOLD", Name: "金卡", Rank: 2, Threshold: 1800,
			MonthlySpendRequired: testkit.Ptr[int64](0), BenefitCodes: []string{}})
		if err != nil {
			t.Fatalf("Upsert: %v", err)
		}
		if g.MonthlySpendRequired != 0 || len(g.Edges.Benefits) != 0 {
			t.Errorf("updated %+v with %d benefits; want no spend and no benefits", g, len(g.Edges.Benefits))
		}
	})

	t.Run("inconsistent ladders", func(t *testing.T) {
		tiers := func() map[string]string {
			out := map[string]string{}
			for _, t := range e.db.Tier.Query().Order(enttier.ByRank()).WithBenefits().AllX(ctx) {
				out[t.Code] = tierString(t)
			}
			return out
		}
		before := tiers()
		tests := []struct {
			name   string
			in     tier.TierInput
			fields []string
		}{
			{"threshold below the tier under it",
				tier.TierInput{Code: "GOLD", Name: "金卡", Rank: 2, Threshold: 400}, []string{"threshold"}},
			{"threshold equal to the tier above",
				tier.TierInput{Code: "SILVER", Name: "银卡", Rank: 1, Threshold: 1800}, []string{"threshold"}},
			{"rank taken",
				tier.TierInput{Code: "BRONZE", Name: "铜卡", Rank: 2, Threshold: 1000}, []string{"rank"}},
			{"a second threshold 0",
				tier.TierInput{Code: "BASIC", Name: "基础", Rank: 9, Threshold: 0}, []string{"threshold"}},
			{"lowest tier above 0",
				tier.TierInput{Code: "NORMAL", Name: "普通", Rank: 0, Threshold: 100}, []string{"threshold"}},
			{"lowest tier with conditions",
				tier.TierInput{Code: "NORMAL", Name: "普通", Rank: 0, Threshold: 0,
					MonthlySpendRequired: testkit.Ptr[int64](100), ReferralsRequired: testkit.Ptr(1)},
				[]string{"monthlySpendRequired", "referralsRequired"}},
			{"unknown benefits",
				tier.TierInput{Code: "GOLD", Name: "金卡", Rank: 2, Threshold: 1800, BenefitCodes: []string{"DISCOUNT_85", "NOPE", "NADA"}},
				[]string{"benefitCodes"}},
			{"ladder and benefits at once",
				tier.TierInput{Code: "GOLD", Name: "金卡", Rank: 2, Threshold: 9000, BenefitCodes: []string{"NOPE"}},
				[]string{"threshold", "benefitCodes"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				_, err := e.svc.Upsert(ctx, tt.in)
				if got := fields(err); !slices.Equal(got, tt.fields) {
					t.Errorf("fields %v (%v), want %v", got, err, tt.fields)
				}
				if fault.CodeOf(err) != fault.BadUserInput {
					t.Errorf("code %s, want BAD_USER_INPUT", fault.CodeOf(err))
				}
			})
		}
		_, err := e.svc.Upsert(ctx, tier.TierInput{Code: "GOLD", Name: "金卡", Rank: 2, Threshold: 1800, BenefitCodes: []string{"NOPE", "NADA"}})
		if err == nil || !strings.Contains(err.Error(), "NOPE, NADA") {
			t.Errorf("unknown benefits error %q does not name them", err)
		}
		if after := tiers(); !maps.Equal(before, after) {
			t.Errorf("rejected upserts changed the ladder:\n%v\n%v", before, after)
		}
	})
}

func tierString(t *ent.Tier) string {
	var b []string
	for _, x := range t.Edges.Benefits {
		b = append(b, x.Code)
	}
	slices.Sort(b)
	t2 := *t
	t2.Edges = ent.TierEdges{}
	t2.UpdatedAt = t.UpdatedAt.UTC()
	t2.CreatedAt = t.CreatedAt.UTC()
	return t2.String() + strings.Join(b, ",")
}
