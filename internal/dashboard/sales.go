package dashboard

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/fault"
)

// SalesOverview returns the sales of the days from to to (inclusive, in
// the business zone), of one business unit when businessUnitID is set. It
// reads the range's sales_daily rows in one query (a few hundred rows a
// day at most: stores × channels) and adds them up here, ORing the buyer
// bitmaps for the distinct buyers of each day and of the range.
func (s *Service) SalesOverview(ctx context.Context, from, to calendar.Date, businessUnitID *int) (*Overview, error) {
	if err := validateRange(from, to); err != nil {
		return nil, err
	}
	var bu sql.NullInt64
	if businessUnitID != nil {
		bu = sql.NullInt64{Int64: int64(*businessUnitID), Valid: true}
	}
	rows, err := s.sql.QueryContext(ctx, `SELECT s.day::text, s.channel, b.code, s.revenue, s.member_revenue, s.orders, s.buyers
FROM sales_daily s JOIN business_units b ON b.id = s.business_unit_id
WHERE s.day BETWEEN $1::date AND $2::date AND ($3::bigint IS NULL OR s.business_unit_id = $3)`,
		from.String(), to.String(), bu)
	if err != nil {
		return nil, fmt.Errorf("reading daily sales: %w", err)
	}
	defer rows.Close()
	type sum struct {
		revenue int64
		orders  int
		buyers  *roaring.Bitmap
	}
	byDay := map[string]*sum{}
	byChannel, byBU := map[string]*Breakdown{}, map[string]*Breakdown{}
	all := roaring.New()
	out := &Overview{}
	var memberRevenue int64
	for rows.Next() {
		var day, channel, code string
		var revenue, memberRev int64
		var orders int
		var buyers []byte
		if err := rows.Scan(&day, &channel, &code, &revenue, &memberRev, &orders, &buyers); err != nil {
			return nil, err
		}
		out.Revenue += revenue
		out.Orders += orders
		memberRevenue += memberRev
		d := byDay[day]
		if d == nil {
			d = &sum{buyers: roaring.New()}
			byDay[day] = d
		}
		d.revenue += revenue
		d.orders += orders
		if err := orBitmap(d.buyers, buyers); err != nil {
			return nil, err
		}
		addTo(byChannel, channel, revenue, orders)
		addTo(byBU, code, revenue, orders)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for d := from; !to.Before(d); d = d.AddDays(1) {
		day := Day{Date: d}
		if x := byDay[d.String()]; x != nil {
			day.Revenue, day.Orders, day.Buyers = x.revenue, x.orders, int(x.buyers.GetCardinality())
			all.Or(x.buyers)
		}
		out.ByDay = append(out.ByDay, day)
	}
	out.Buyers = int(all.GetCardinality())
	out.AverageOrderValue = averageOrderValue(out.Revenue, out.Orders)
	out.MemberRevenueShare = share(memberRevenue, out.Revenue)
	out.ByChannel, out.ByBusinessUnit = ranked(byChannel), ranked(byBU)
	return out, nil
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
	// The ranking is summed in SQL; the buyers of the few ranked SKUs are
	// ORed here from their daily bitmaps.
	rows, err := s.sql.QueryContext(ctx, `WITH r AS (
  SELECT sku, max(name) AS name, max(category) AS category, sum(revenue)::bigint AS revenue,
         sum(quantity)::bigint AS quantity, sum(member_revenue)::bigint AS member_revenue
  FROM product_daily
  WHERE day BETWEEN $1::date AND $2::date AND ($3::bigint IS NULL OR store_id = $3)
  GROUP BY sku ORDER BY revenue DESC, sku COLLATE "C" LIMIT $4)
SELECT r.sku, r.name, r.category, r.revenue, r.quantity, r.member_revenue, p.buyers
FROM r JOIN product_daily p ON p.sku = r.sku AND p.day BETWEEN $1::date AND $2::date AND ($3::bigint IS NULL OR p.store_id = $3)`,
		from.String(), to.String(), store, first)
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
