package tier_test

import (
	"slices"
	"testing"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/internal/tier"
)

// defaultLadder is DOMAIN.md's ladder, in memory.
func defaultLadder() []*ent.Tier {
	return []*ent.Tier{
		{ID: 1, Code: "NORMAL", Rank: 0, Threshold: 0},
		{ID: 2, Code: "SILVER", Rank: 1, Threshold: 500},
		{ID: 3, Code: "GOLD", Rank: 2, Threshold: 1500, MonthlySpendRequired: 20000},
		{ID: 4, Code: "DIAMOND", Rank: 3, Threshold: 3000, ReferralsRequired: 1},
	}
}

func TestEligible(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		growth    int64
		spend     int64 // fen
		referrals int
		want      string // "" for none
	}{
		{name: "new member", want: "NORMAL"},
		{name: "just below silver", growth: 499, want: "NORMAL"},
		{name: "silver at its threshold", growth: 500, want: "SILVER"},
		{name: "skips silver straight to gold", growth: 1600, spend: 25000, want: "GOLD"},
		{name: "gold at exactly 200 yuan", growth: 1500, spend: 20000, want: "GOLD"},
		{name: "gold blocked one fen short of month spend", growth: 1600, spend: 19999, want: "SILVER"},
		{name: "gold blocked without month spend", growth: 1600, want: "SILVER"},
		{name: "skips to diamond from nothing", growth: 3000, referrals: 1, want: "DIAMOND"},
		{name: "diamond needs no month spend", growth: 5000, referrals: 2, want: "DIAMOND"},
		{name: "diamond blocked without referral falls back to gold", growth: 3200, spend: 25000, want: "GOLD"},
		{name: "diamond and gold blocked fall back to silver", growth: 3200, want: "SILVER"},
		{name: "referral without growth changes nothing", growth: 100, spend: 99999, referrals: 5, want: "NORMAL"},
		{name: "negative growth qualifies for nothing", growth: -1, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ladder := defaultLadder()
			check := func(ladder []*ent.Tier) {
				t.Helper()
				got := tier.Eligible(ladder, tt.growth, tt.spend, tt.referrals)
				if code := codeOf(got); code != tt.want {
					t.Errorf("Eligible(growth %d, spend %d, referrals %d) = %q, want %q",
						tt.growth, tt.spend, tt.referrals, code, tt.want)
				}
			}
			check(ladder)
			slices.Reverse(ladder) // the rule does not depend on order
			check(ladder)
		})
	}
	if got := tier.Eligible(nil, 1000, 0, 0); got != nil {
		t.Errorf("Eligible on an empty ladder = %v, want nil", got)
	}
}

func codeOf(t *ent.Tier) string {
	if t == nil {
		return ""
	}
	return t.Code
}
