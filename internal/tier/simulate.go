package tier

import (
	"cmp"
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"entgo.io/ent/dialect/sql"
	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Move is a number of members whose tier would change from From (their
// current tier: the proposed tier of the same code when there is one, else
// the tier as it stands; nil for members without a tier) to To (a proposed
// tier).
type Move struct {
	From, To *ent.Tier
	Members  int
}

// TierCount is how many members a proposed tier would hold.
type TierCount struct {
	Tier    *ent.Tier
	Members int
}

// Simulation is the outcome of a proposed ladder.
type Simulation struct {
	// Moves lists only actual changes (From's code differs from To's), by
	// From then To rank.
	Moves []Move
	// MembersByTier has every proposed tier, lowest rank first.
	MembersByTier []TierCount
}

// Simulate places every live member (ACTIVE or FROZEN) on the proposed
// ladder as the promotion rule (Eligible) would on asOf's business day, and
// counts the result. It changes nothing: everything runs in one read-only
// transaction, which also gives every query the same snapshot.
//
// A member's figures are: growth value at the end of asOf's day (the sum
// of growth entries before the next midnight; the account's running total
// when that is still today or later), spend in asOf's calendar month up to
// the end of that day net of refunds made by then, and the current number
// of successful referrals (referrals are not dated). The zero asOf means
// today. Proposed tiers are built in memory (ID 0, no benefits edge);
// optional fields left nil take the values of the current tier of the same
// code, as Upsert would.
//
// The work is set-based: SQL sorts members into buckets between the
// proposed thresholds and counts them, and Go applies Eligible once per
// bucket, so a million members cost a few aggregate scans and a result of
// at most a few hundred rows.
func (s *Service) Simulate(ctx context.Context, proposed []TierInput, asOf time.Time) (Simulation, error) {
	var errs []error
	for i, in := range proposed {
		for _, f := range fault.Fields(in.Validate()) {
			errs = append(errs, fault.Invalidf(listField(i, f.Field), "%s", f.Reason))
		}
	}
	if len(errs) > 0 {
		return Simulation{}, errors.Join(errs...)
	}

	now := s.now()
	if asOf.IsZero() {
		asOf = now
	}
	day := calendar.In(asOf, s.zone)
	cutoff := day.AddDays(1).Start(s.zone)
	monthStart := time.Date(day.Year, day.Month, 1, 0, 0, 0, 0, s.zone)

	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: stdsql.LevelRepeatableRead})
	if err != nil {
		return Simulation{}, fmt.Errorf("beginning read-only transaction: %w", err)
	}
	defer func() { _ = tx.Rollback() }() // read-only: nothing to commit

	current, err := loadLadder(ctx, tx.Tier)
	if err != nil {
		return Simulation{}, err
	}
	currentByCode := make(map[string]*ent.Tier, len(current))
	for _, t := range current {
		currentByCode[t.Code] = t
	}
	ladder := make([]*ent.Tier, len(proposed))
	for i, in := range proposed {
		ladder[i] = in.tier(currentByCode[in.Code])
		ladder[i].ID = 0
	}
	errs = append(errs, checkLadder(ladder, -1, listField))
	for i, in := range proposed {
		_, err := benefitIDs(ctx, tx.Client(), in.BenefitCodes, listField(i, "benefitCodes"))
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return Simulation{}, err
	}
	slices.SortFunc(ladder, func(a, b *ent.Tier) int { return cmp.Compare(a.Rank, b.Rank) })

	growthB := bounds(ladder, func(t *ent.Tier) int64 { return t.Threshold })
	spendB := bounds(ladder, func(t *ent.Tier) int64 { return t.MonthlySpendRequired })
	referralB := bounds(ladder, func(t *ent.Tier) int64 { return int64(t.ReferralsRequired) })
	rows, err := tx.QueryContext(ctx, bucketQuery(cutoff.After(now)),
		cutoff, monthStart, pq.Array(growthB), pq.Array(spendB), pq.Array(referralB))
	if err != nil {
		return Simulation{}, fmt.Errorf("counting members by tier: %w", err)
	}
	defer rows.Close()

	proposedByCode := make(map[string]*ent.Tier, len(ladder))
	for _, t := range ladder {
		proposedByCode[t.Code] = t
	}
	type move struct{ from, to string }
	counts := make(map[string]int, len(ladder))
	moves := make(map[move]int)
	for rows.Next() {
		var (
			from          stdsql.NullString
			gb, sb, rb, n int
		)
		if err := rows.Scan(&from, &gb, &sb, &rb, &n); err != nil {
			return Simulation{}, fmt.Errorf("reading member counts: %w", err)
		}
		to := Eligible(ladder, lowerBound(growthB, gb), lowerBound(spendB, sb), int(lowerBound(referralB, rb)))
		if to == nil {
			// Only a negative net growth falls below the entry tier's
			// threshold of 0; such a member still holds the entry tier.
			to = ladder[0]
		}
		counts[to.Code] += n
		if from.String != to.Code {
			moves[move{from.String, to.Code}] += n
		}
	}
	if err := rows.Err(); err != nil {
		return Simulation{}, fmt.Errorf("reading member counts: %w", err)
	}

	sim := Simulation{Moves: make([]Move, 0, len(moves)), MembersByTier: make([]TierCount, 0, len(ladder))}
	for _, t := range ladder {
		sim.MembersByTier = append(sim.MembersByTier, TierCount{Tier: t, Members: counts[t.Code]})
	}
	for m, n := range moves {
		from := proposedByCode[m.from]
		if from == nil {
			from = currentByCode[m.from] // a tier the proposal drops; nil for no tier
		}
		sim.Moves = append(sim.Moves, Move{From: from, To: proposedByCode[m.to], Members: n})
	}
	slices.SortFunc(sim.Moves, func(a, b Move) int {
		return cmp.Or(cmp.Compare(rankOf(a.From), rankOf(b.From)), cmp.Compare(a.To.Rank, b.To.Rank),
			cmp.Compare(codeOf(a.From), codeOf(b.From)))
	})
	return sim, nil
}

// bucketQuery counts live members by current tier code and by the buckets
// their growth, month spend and referrals fall in between the proposed
// bounds (width_bucket: 0 below the first bound, i when at least the i-th).
// $1 is the end of asOf's day, $2 the start of its month. fromAccount reads
// growth from the accounts' running totals instead of summing the ledger,
// valid when the day has not ended yet.
func bucketQuery(fromAccount bool) string {
	growth, growthCTE, growthJoin := "COALESCE(a.growth_value, 0)", "", ""
	if !fromAccount {
		growth = "COALESCE(g.growth, 0)"
		growthCTE = `,
g AS (
  SELECT member_id, SUM(amount)::bigint AS growth
  FROM growth_entries
  WHERE occurred_at < $1
  GROUP BY member_id
)`
		growthJoin = "\nLEFT JOIN g ON g.member_id = m.id"
	}
	return fmt.Sprintf(`
WITH s AS (
  SELECT o.member_id,
         SUM(o.amount - COALESCE((SELECT SUM(r.amount) FROM refunds r WHERE r.order_id = o.id AND r.created_at < $1), 0))::bigint AS spend
  FROM orders o
  WHERE o.paid_at >= $2 AND o.paid_at < $1
  GROUP BY o.member_id
)%s
SELECT t.code,
       width_bucket(%s, $3::bigint[]),
       width_bucket(COALESCE(s.spend, 0), $4::bigint[]),
       width_bucket(COALESCE(a.successful_referrals, 0)::bigint, $5::bigint[]),
       count(*)
FROM members m
LEFT JOIN tiers t ON t.id = m.tier_id
LEFT JOIN accounts a ON a.member_id = m.id
LEFT JOIN s ON s.member_id = m.id%s
WHERE m.status IN ('ACTIVE', 'FROZEN')
GROUP BY 1, 2, 3, 4`, growthCTE, growth, growthJoin)
}

// bounds returns the distinct values of f over ladder and 0, ascending:
// the lower bounds of the buckets width_bucket sorts members into.
// Between two consecutive bounds Eligible cannot tell values apart, so the
// bucket's lower bound stands for every member in it.
func bounds(ladder []*ent.Tier, f func(*ent.Tier) int64) []int64 {
	b := []int64{0}
	for _, t := range ladder {
		b = append(b, f(t))
	}
	slices.Sort(b)
	return slices.Compact(b)
}

// lowerBound is the value standing for bucket i of width_bucket over b.
func lowerBound(b []int64, i int) int64 {
	if i <= 0 {
		return math.MinInt64 // below every bound
	}
	return b[i-1]
}

func rankOf(t *ent.Tier) int {
	if t == nil {
		return math.MinInt
	}
	return t.Rank
}

func codeOf(t *ent.Tier) string {
	if t == nil {
		return ""
	}
	return t.Code
}
