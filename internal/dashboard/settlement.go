package dashboard

import (
	"cmp"
	"context"
	"fmt"
	"slices"
)

// PointValueFen is what one point is worth when burned: 100 points pay 1
// yuan. Order ingestion enforces it (a POINTS tender's points equal its
// amount in fen), and the ledger records no other rate.
const PointValueFen = 1

// BusinessUnitRef names a business unit; ID 0 (Code "") is the group
// itself: points earned outside any BU (activities, promo codes, staff
// adjustments) or burned outside one.
type BusinessUnitRef struct {
	ID   int
	Code string
}

// Settlement is what one business unit owes another for a month: points
// earned in EarnedIn and burned in BurnedIn, and their value in fen.
type Settlement struct {
	EarnedIn, BurnedIn BusinessUnitRef
	Points             int64
	Value              int64
}

// PointsSettlement returns the cross-BU settlement of a month ('YYYY-MM'
// in the business zone), from the ledger trail in one grouped query: every
// BURN entry of the month takes points from lots (points_allocations), and
// each lot records the BU it was earned in; the entry records the BU it
// was burned in. A refund that gives burned points back (a REVERSAL entry
// with a positive amount, whose negative allocations name the lots
// refilled) counts against the month of the refund, so that a settled
// month never changes. Only pairs of different units are listed, those
// with the most points first; a pair whose restores outweigh its burns in
// the month shows negative points.
func (s *Service) PointsSettlement(ctx context.Context, month string) ([]Settlement, error) {
	from, to, err := parseMonth("month", month)
	if err != nil {
		return nil, err
	}
	rows, err := s.sql.QueryContext(ctx, `SELECT x.earned, coalesce(eb.code, ''), x.burned, coalesce(bb.code, ''), x.points
FROM (SELECT coalesce(l.business_unit_id, 0) AS earned, coalesce(e.business_unit_id, 0) AS burned, sum(a.amount)::bigint AS points
      FROM points_entries e
      JOIN points_allocations a ON a.entry_id = e.id
      JOIN points_lots l ON l.id = a.lot_id
      WHERE e.occurred_at >= $1 AND e.occurred_at < $2
        AND e.kind IN ('BURN', 'REVERSAL') AND (e.kind = 'BURN' OR e.amount > 0)
      GROUP BY 1, 2) x
LEFT JOIN business_units eb ON eb.id = x.earned
LEFT JOIN business_units bb ON bb.id = x.burned
WHERE x.earned <> x.burned AND x.points <> 0`,
		from.Start(s.zone), to.AddDays(1).Start(s.zone))
	if err != nil {
		return nil, fmt.Errorf("reading points settlement: %w", err)
	}
	defer rows.Close()
	var out []Settlement
	for rows.Next() {
		var st Settlement
		if err := rows.Scan(&st.EarnedIn.ID, &st.EarnedIn.Code, &st.BurnedIn.ID, &st.BurnedIn.Code, &st.Points); err != nil {
			return nil, err
		}
		st.Value = st.Points * PointValueFen
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Settlement) int {
		return cmp.Or(cmp.Compare(b.Points, a.Points), cmp.Compare(a.EarnedIn.Code, b.EarnedIn.Code), cmp.Compare(a.BurnedIn.Code, b.BurnedIn.Code))
	})
	return out, nil
}
