package dashboard

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/lib/pq"

	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/fault"
)

// SalesOverview returns the sales of the days from to to (inclusive, in
// the business zone), of one business unit when businessUnitID is set. It
// sums the days' sales as this replica holds them in memory (see
// dayCache: one small query for the days' versions, and the sales_daily
// rows of the days that changed since they were read), and ORs the days'
// buyer bitmaps for the distinct buyers of the range.
func (s *Service) SalesOverview(ctx context.Context, from, to calendar.Date, businessUnitID *int) (*Overview, error) {
	if err := validateRange(from, to); err != nil {
		return nil, err
	}
	days, err := s.days.get(ctx, s.sql, from, to)
	if err != nil {
		return nil, err
	}
	codes, err := s.unitCodes(ctx)
	if err != nil {
		return nil, err
	}
	byChannel, byBU := map[string]*Breakdown{}, map[string]*Breakdown{}
	out := &Overview{}
	var memberRevenue int64
	buyers := make([]*roaring.Bitmap, 0, len(days))
	for d := from; !to.Before(d); d = d.AddDays(1) {
		x := days[d.String()]
		day := Day{Date: d}
		for bu, u := range x.units {
			if businessUnitID != nil && int64(*businessUnitID) != bu {
				continue
			}
			day.Revenue += u.revenue
			day.Orders += u.orders
			memberRevenue += u.memberRevenue
			addTo(byBU, codes[bu], u.revenue, u.orders)
			for c, b := range u.channels {
				addTo(byChannel, c, b.Revenue, b.Orders)
			}
			if businessUnitID != nil {
				day.Buyers = int(u.buyers.GetCardinality())
				buyers = append(buyers, u.buyers)
			}
		}
		if businessUnitID == nil {
			day.Buyers = int(x.buyers.GetCardinality())
			buyers = append(buyers, x.buyers)
		}
		out.Revenue += day.Revenue
		out.Orders += day.Orders
		out.ByDay = append(out.ByDay, day)
	}
	out.Buyers = int(roaring.FastOr(buyers...).GetCardinality())
	out.AverageOrderValue = averageOrderValue(out.Revenue, out.Orders)
	out.MemberRevenueShare = share(memberRevenue, out.Revenue)
	out.ByChannel, out.ByBusinessUnit = ranked(byChannel), ranked(byBU)
	return out, nil
}

// unitCodes maps business unit ids to codes.
func (s *Service) unitCodes(ctx context.Context) (map[int64]string, error) {
	rows, err := s.sql.QueryContext(ctx, `SELECT id, code FROM business_units`)
	if err != nil {
		return nil, fmt.Errorf("reading business units: %w", err)
	}
	defer rows.Close()
	out := map[int64]string{}
	for rows.Next() {
		var id int64
		var code string
		if err := rows.Scan(&id, &code); err != nil {
			return nil, err
		}
		out[id] = code
	}
	return out, rows.Err()
}

func addTo(m map[string]*Breakdown, k string, revenue int64, orders int) {
	b := m[k]
	if b == nil {
		b = &Breakdown{Key: k}
		m[k] = b
	}
	b.Revenue += revenue
	b.Orders += orders
}

// ranked lists breakdowns by revenue, highest first, then by key.
func ranked(m map[string]*Breakdown) []Breakdown {
	out := make([]Breakdown, 0, len(m))
	for _, b := range m {
		out = append(out, *b)
	}
	slices.SortFunc(out, func(a, b Breakdown) int {
		return cmp.Or(cmp.Compare(b.Revenue, a.Revenue), cmp.Compare(a.Key, b.Key))
	})
	return out
}

// TopProducts returns the first products by revenue (then SKU) over the
// days from to to, of one store when storeID is set. A product's name and
// category are the greatest seen in the range (a SKU normally keeps one).
//
// The ranking is summed in SQL: the whole months of the range from
// product_months, the days before and after them from product_daily (a
// store's month is a thousand rows, not twenty thousand). The buyers of
// the few ranked SKUs are ORed here from their daily bitmaps: of one
// store, looked up by key (day, store, SKU).
func (s *Service) TopProducts(ctx context.Context, from, to calendar.Date, first int, storeID *int) ([]Product, error) {
	if err := validateRange(from, to); err != nil {
		return nil, err
	}
	if first < 1 || first > MaxFirst {
		return nil, fault.Invalidf("first", "must be 1 to %d", MaxFirst)
	}
	var store sql.NullInt64
	if storeID != nil {
		store = sql.NullInt64{Int64: int64(*storeID), Valid: true}
	}
	months := wholeMonths(from, to)
	args := []any{from.String(), to.String(), store, first, months.first.String(), months.last.String(),
		months.headEnd.String(), months.tailStart.String()}
	// (The days come as an array rather than generate_series, whose
	// estimate of 1,000 rows would make the plan look worth compiling.)
	buyers := `JOIN product_daily p ON p.sku = r.sku AND p.day BETWEEN $1::date AND $2::date`
	if storeID != nil {
		var days []string
		for d := from; !to.Before(d); d = d.AddDays(1) {
			days = append(days, d.String())
		}
		buyers = `CROSS JOIN unnest($9::date[]) AS d (day)
JOIN product_daily p ON p.day = d.day AND p.store_id = $3 AND p.sku = r.sku`
		args = append(args, pq.Array(days))
	}
	rows, err := s.sql.QueryContext(ctx, `WITH x AS (
  SELECT sku, name, category, revenue, quantity, member_revenue FROM product_months
  WHERE month BETWEEN $5::date AND $6::date AND ($3::bigint IS NULL OR store_id = $3)
  UNION ALL
  SELECT sku, name, category, revenue, quantity, member_revenue FROM product_daily
  WHERE (day BETWEEN $1::date AND $7::date OR day BETWEEN $8::date AND $2::date) AND ($3::bigint IS NULL OR store_id = $3)),
r AS (
  SELECT sku, max(name) AS name, max(category) AS category, sum(revenue)::bigint AS revenue,
         sum(quantity)::bigint AS quantity, sum(member_revenue)::bigint AS member_revenue
  FROM x GROUP BY sku ORDER BY revenue DESC, sku COLLATE "C" LIMIT $4)
SELECT r.sku, r.name, r.category, r.revenue, r.quantity, r.member_revenue, p.buyers
FROM r `+buyers, args...)
	if err != nil {
		return nil, fmt.Errorf("reading top products: %w", err)
	}
	defer rows.Close()
	type acc struct {
		p      Product
		member int64
		buyers *roaring.Bitmap
	}
	bySKU := map[string]*acc{}
	for rows.Next() {
		var p Product
		var member int64
		var buyers []byte
		if err := rows.Scan(&p.SKU, &p.Name, &p.Category, &p.Revenue, &p.Quantity, &member, &buyers); err != nil {
			return nil, err
		}
		a := bySKU[p.SKU]
		if a == nil {
			a = &acc{p: p, member: member, buyers: roaring.New()}
			bySKU[p.SKU] = a
		}
		if err := orBitmap(a.buyers, buyers); err != nil {
			return nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]Product, 0, len(bySKU))
	for _, a := range bySKU {
		a.p.Buyers = int(a.buyers.GetCardinality())
		a.p.MemberShare = share(a.member, a.p.Revenue)
		out = append(out, a.p)
	}
	slices.SortFunc(out, func(a, b Product) int {
		return cmp.Or(cmp.Compare(b.Revenue, a.Revenue), cmp.Compare(a.SKU, b.SKU))
	})
	return out, nil
}

// monthSplit cuts a range into the whole months it holds (first to last,
// by their first days; none when last is before first) and the days
// before (from to headEnd) and after them (tailStart to to), either of
// which may be empty (its end before its start).
type monthSplit struct {
	first, last, headEnd, tailStart calendar.Date
}

func wholeMonths(from, to calendar.Date) monthSplit {
	start := calendar.Date{Year: from.Year, Month: from.Month, Day: 1}
	if start != from {
		start = calendar.Date{Year: from.Year, Month: from.Month + 1, Day: 1}.AddDays(0)
	}
	next := to.AddDays(1)
	end := calendar.Date{Year: next.Year, Month: next.Month, Day: 1} // the first day after the last whole month
	if end.Before(start) || end == start {
		// No whole month: every day from product_daily.
		return monthSplit{first: start, last: start.AddDays(-1), headEnd: to, tailStart: to.AddDays(1)}
	}
	lastEnd := end.AddDays(-1)
	return monthSplit{
		first: start, last: calendar.Date{Year: lastEnd.Year, Month: lastEnd.Month, Day: 1},
		headEnd: start.AddDays(-1), tailStart: end,
	}
}
