package tier_test

import (
	"maps"
	"slices"
	"testing"

	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/testkit"
	"github.com/onemember/onemember/internal/tier"
)

// snapshot fingerprints every table Simulate reads or could touch.
func (e *env) snapshot() map[string]string {
	e.t.Helper()
	out := map[string]string{}
	for _, table := range []string{"tiers", "tier_benefits", "benefits", "members", "accounts", "tier_changes",
		"member_events", "notifications", "growth_entries", "orders", "refunds"} {
		rows, err := e.db.QueryContext(e.t.Context(),
			`SELECT count(*) || ':' || md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM `+table+` t`)
		if err != nil {
			e.t.Fatal(err)
		}
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				e.t.Fatal(err)
			}
			out[table] = s
		}
		rows.Close()
	}
	return out
}

func TestSimulate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	march := e.at(2026, 3, 1, 12, 0)

	m1 := e.member(memberSpec{tier: "NORMAL"})
	e.growth(m1.ID, 600, march)
	m2 := e.member(memberSpec{tier: "SILVER"})
	e.growth(m2.ID, 600, march)
	m3 := e.member(memberSpec{tier: "SILVER"})
	e.growth(m3.ID, 1600, march)
	e.order(m3.ID, 12000, e.at(2026, 6, 10, 12, 0), 0, march)
	m4 := e.member(memberSpec{tier: "GOLD"})
	e.growth(m4.ID, 1600, march)
	e.order(m4.ID, 50000, e.at(2026, 5, 20, 12, 0), 0, march) // last month
	m5 := e.member(memberSpec{tier: "DIAMOND", referrals: 1})
	e.growth(m5.ID, 3500, march)
	m6 := e.member(memberSpec{tier: "NORMAL"})
	e.growth(m6.ID, 3000, march)
	e.growth(m6.ID, 500, e.at(2026, 6, 8, 12, 0))
	e.order(m6.ID, 15000, e.at(2026, 6, 2, 12, 0), 0, march)
	m7 := e.member(memberSpec{tier: "GOLD", status: member.StatusMERGED}) // not counted
	e.growth(m7.ID, 5000, march)
	m8 := e.member(memberSpec{tier: "NORMAL", status: member.StatusFROZEN}) // counted
	e.growth(m8.ID, 900, e.at(2026, 6, 8, 12, 0))
	e.member(memberSpec{}) // no tier yet
	m10 := e.member(memberSpec{tier: "SILVER"})
	e.growth(m10.ID, 1600, march)
	e.order(m10.ID, 12000, e.at(2026, 6, 3, 12, 0), 3000, e.at(2026, 6, 12, 12, 0))

	// SILVER harder to reach, GOLD's spend halved; DIAMOND's referral
	// requirement and every multiplier left as they are.
	proposed := []tier.TierInput{
		{Code: "NORMAL", Name: "普通会员", Rank: 0, Threshold: 0},
		{Code: "SILVER", Name: "银卡会员", Rank: 1, Threshold: 800},
		{Code: "GOLD", Name: "金卡会员", Rank: 2, Threshold: 1500, MonthlySpendRequired: testkit.Ptr[int64](10000)},
		{Code: "DIAMOND", Name: "钻石会员", Rank: 3, Threshold: 3000},
	}
	before := e.snapshot()

	tests := []struct {
		name   string
		asOf   string
		counts map[string]int
		moves  map[string]int
	}{
		{
			// m1 N, m2 S→N, m3 S→G (120 yuan this month), m4 G→S (May's
			// spend does not count), m5 D, m6 N→G, m8 N→S, m9 →N, m10 S
			// (120 - 30 refunded = 90 yuan).
			name:   "today",
			counts: map[string]int{"NORMAL": 3, "SILVER": 3, "GOLD": 2, "DIAMOND": 1},
			moves:  map[string]int{"SILVER→NORMAL": 1, "SILVER→GOLD": 1, "GOLD→SILVER": 1, "NORMAL→GOLD": 1, "NORMAL→SILVER": 1, "→NORMAL": 1},
		},
		{
			// On 5 June: m3's order (10 June) and m8's growth (8 June) had
			// not happened, m10's refund (12 June) neither: m3 S, m8 N,
			// m10 S→G; m6 had 3000 growth and 150 yuan.
			name:   "5 June",
			asOf:   "2026-06-05",
			counts: map[string]int{"NORMAL": 4, "SILVER": 2, "GOLD": 2, "DIAMOND": 1},
			moves:  map[string]int{"SILVER→NORMAL": 1, "GOLD→SILVER": 1, "NORMAL→GOLD": 1, "→NORMAL": 1, "SILVER→GOLD": 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			asOf := e.clock.Now()
			if tt.asOf != "" {
				asOf = must(calendar.Parse(tt.asOf)).Start(e.zone)
			}
			sim, err := e.svc.Simulate(ctx, proposed, asOf)
			if err != nil {
				t.Fatalf("Simulate: %v", err)
			}
			counts := map[string]int{}
			var codes []string
			for _, c := range sim.MembersByTier {
				counts[c.Tier.Code] = c.Members
				codes = append(codes, c.Tier.Code)
				if c.Tier.ID != 0 {
					t.Errorf("proposed tier %s has id %d, want 0 (not saved)", c.Tier.Code, c.Tier.ID)
				}
			}
			if !maps.Equal(counts, tt.counts) || !slices.Equal(codes, []string{"NORMAL", "SILVER", "GOLD", "DIAMOND"}) {
				t.Errorf("members by tier %v (order %v), want %v by rank", counts, codes, tt.counts)
			}
			moves := map[string]int{}
			for _, m := range sim.Moves {
				moves[codeOf(m.From)+"→"+codeOf(m.To)] = m.Members
			}
			if !maps.Equal(moves, tt.moves) {
				t.Errorf("moves %v, want %v", moves, tt.moves)
			}
		})
	}

	t.Run("proposed values", func(t *testing.T) {
		sim, err := e.svc.Simulate(ctx, proposed, e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		silver, gold, diamond := sim.MembersByTier[1].Tier, sim.MembersByTier[2].Tier, sim.MembersByTier[3].Tier
		if silver.Threshold != 800 || gold.MonthlySpendRequired != 10000 || gold.PointsMultiplierPermille != 1500 ||
			diamond.ReferralsRequired != 1 {
			t.Errorf("proposed SILVER %+v, GOLD %+v, DIAMOND %+v: want the input over the current values", silver, gold, diamond)
		}
	})

	t.Run("a dropped tier moves its members", func(t *testing.T) {
		sim, err := e.svc.Simulate(ctx, proposed[:3], e.clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range sim.Moves {
			if codeOf(m.From) == "DIAMOND" {
				if m.From.ID != e.tiers["DIAMOND"].ID || codeOf(m.To) != "SILVER" || m.Members != 1 {
					t.Errorf("move %s(%d) → %s ×%d, want the current DIAMOND → SILVER ×1", m.From.Code, m.From.ID, codeOf(m.To), m.Members)
				}
				return
			}
		}
		t.Errorf("no move from DIAMOND in %v", sim.Moves)
	})

	t.Run("invalid proposals", func(t *testing.T) {
		bad := slices.Clone(proposed)
		bad[1].Threshold = 0
		bad[2].PointsMultiplier = testkit.Ptr(0.0)
		bad[3].Rank = 2
		_, err := e.svc.Simulate(ctx, bad, e.clock.Now())
		if want := []string{"tiers[2].pointsMultiplier"}; !slices.Equal(fields(err), want) {
			t.Errorf("fields %v, want %v (input problems first)", fields(err), want)
		}
		bad[2].PointsMultiplier = nil
		bad[0].BenefitCodes = []string{"NO_SUCH_BENEFIT"}
		_, err = e.svc.Simulate(ctx, bad, e.clock.Now())
		want := []string{"tiers[1].threshold", "tiers[3].rank", "tiers[0].benefitCodes"}
		if got := fields(err); !sameSet(got, want) {
			t.Errorf("fields %v, want %v", got, want)
		}
		if _, err := e.svc.Simulate(ctx, nil, e.clock.Now()); !slices.Equal(fields(err), []string{"tiers"}) {
			t.Errorf("empty ladder: %v", err)
		}
		if fault.CodeOf(err) != fault.BadUserInput {
			t.Errorf("code %s, want BAD_USER_INPUT", fault.CodeOf(err))
		}
	})

	if after := e.snapshot(); !maps.Equal(before, after) {
		for table := range before {
			if before[table] != after[table] {
				t.Errorf("Simulate changed %s: %s → %s", table, before[table], after[table])
			}
		}
	}
}

// fields lists the fields an error names, in order.
func fields(err error) []string {
	var out []string
	for _, f := range fault.Fields(err) {
		out = append(out, f.Field)
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
