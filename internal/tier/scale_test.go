//go:build scale

package tier_test

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/onemember/onemember/internal/platform/testkit"
	"github.com/onemember/onemember/internal/tier"
)

// TestScale times Simulate and a Review scan over a large population
// (SCALE_MEMBERS, default one million). Run with
//
//	go test -tags scale -run TestScale -v ./internal/tier/
func TestScale(t *testing.T) {
	n := 1_000_000
	if s := os.Getenv("SCALE_MEMBERS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	e := newEnv(t)
	ctx := t.Context()
	now := e.clock.Now()
	start := time.Now()
	for _, q := range []string{
		`INSERT INTO members (created_at, updated_at, member_no, source_channel, registered_at, status, tier_id)
		 SELECT $1, $1, 'S' || g, 'POS', $1::timestamptz - (g % 1500) * interval '1 day',
		        CASE WHEN g % 50 = 0 THEN 'MERGED' ELSE 'ACTIVE' END,
		        (SELECT id FROM tiers WHERE rank = g % 4)
		 FROM generate_series(1, $2::int) g`,
		`INSERT INTO accounts (created_at, updated_at, member_id, growth_value, successful_referrals, tier_since)
		 SELECT $1, $1, id, id % 5000, (id % 3 = 0)::int,
		        CASE WHEN id % 7 = 0 THEN NULL ELSE $1::timestamptz - (id % 900) * interval '1 day' END
		 FROM members WHERE $2::int > 0`,
		`INSERT INTO growth_entries (member_id, source, kind, amount, balance_after, occurred_at)
		 SELECT m.id, 'ORDER', 'EARN', m.id % 2000, 0, $1::timestamptz - (k * 120 + m.id % 90) * interval '1 day'
		 FROM members m, generate_series(1, 3) k WHERE $2::int > 0`,
		`INSERT INTO orders (external_id, channel, member_id, store_id, business_unit_id, status, amount, refunded_amount, paid_at, created_at)
		 SELECT 'E' || m.id, 'POS', m.id, s.id, s.business_unit_id, 'PAID', (m.id % 400) * 100, 0,
		        $1::timestamptz - (m.id % 40) * interval '1 day', $1
		 FROM members m, stores s WHERE $2::int > 0`,
	} {
		if _, err := e.db.ExecContext(ctx, q, now, n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if _, err := e.db.ExecContext(ctx, `ANALYZE`); err != nil {
		t.Fatal(err)
	}
	t.Logf("loaded %d members in %v", n, time.Since(start))

	proposed := []tier.TierInput{
		{Code: "NORMAL", Name: "普通会员", Rank: 0},
		{Code: "SILVER", Name: "银卡会员", Rank: 1, Threshold: 800},
		{Code: "GOLD", Name: "金卡会员", Rank: 2, Threshold: 2000, MonthlySpendRequired: testkit.Ptr[int64](10000)},
		{Code: "DIAMOND", Name: "钻石会员", Rank: 3, Threshold: 4000},
	}
	for _, asOf := range []time.Time{now, now.AddDate(0, -1, 0)} {
		start = time.Now()
		sim, err := e.svc.Simulate(ctx, proposed, asOf)
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, c := range sim.MembersByTier {
			total += c.Members
		}
		t.Logf("Simulate as of %s: %d members, %d moves, %v", asOf.Format(time.DateOnly), total, len(sim.Moves), time.Since(start))
	}
	start = time.Now()
	demoted, err := e.svc.Review(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Review: %d demoted in %v", demoted, time.Since(start))
	start = time.Now()
	if demoted, err = e.svc.Review(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("Review again (scan only): %d demoted in %v", demoted, time.Since(start))
}
