package graph_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/internal/apptest"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/gqlws"
	"github.com/onemember/onemember/internal/seed"
)

// The dashboards through the admin operations, each figure against plain
// SQL over the raw orders: a seeded history plus orders on both sides of
// a business-zone midnight and refunds in part and in full; the live
// sales subscription follows an order within a second.
func TestDashboardOperations(t *testing.T) {
	s := apptest.Start(t)
	if err := seed.Run(context.Background(), s.App, seed.Options{Seed: 4, Members: 80, AdminPassword: "admin password 1"}); err != nil {
		t.Fatal(err)
	}
	members, err := s.DB.Member.Query().Where(member.StatusEQ(member.StatusACTIVE)).Order(ent.Asc(member.FieldID)).All(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	admin := s.AdminToken()
	till := s.Till(admin)
	ctx := context.Background()
	zone := s.Zone

	// Yesterday's business-zone midnight: one order a minute before it, one
	// a minute after (UTC 16:00 is Shanghai's midnight).
	midnight := calendar.In(time.Now(), zone).Start(zone)
	s.Do(till, apptest.Op(t, "IngestOrder"), order("dash-before", gid(members[0].ID), 12_000, midnight.Add(-time.Minute))).Decode(t, &struct{}{})
	s.Do(till, apptest.Op(t, "IngestOrder"), order("dash-after", gid(members[1].ID), 8_000, midnight.Add(time.Minute))).Decode(t, &struct{}{})
	s.Do(till, apptest.Op(t, "IngestOrder"), order("dash-full", gid(members[2].ID), 5_000, midnight.Add(2*time.Minute))).Decode(t, &struct{}{})
	refund := func(ext, id string, amount int64) {
		s.Do(till, apptest.Op(t, "RefundOrder"), map[string]any{"input": map[string]any{
			"externalId": ext, "channel": "POS", "refundId": id, "amount": amount}}).Decode(t, &struct{}{})
	}
	refund("dash-before", "r1", 2_000)
	refund("dash-full", "r2", 5_000)
	if _, err := s.Dashboard.Refresh(ctx); err != nil {
		t.Fatalf("refreshing aggregates: %v", err)
	}

	today := calendar.In(time.Now(), zone)
	from := today.AddDays(-89)
	var sales struct {
		SalesOverview struct {
			Revenue, Orders, Buyers, AverageOrderValue int64
			MemberRevenueShare                         float64
			ByChannel, ByBusinessUnit                  []struct {
				Key             string
				Revenue, Orders int64
			}
			ByDay []struct {
				Date                    string
				Revenue, Orders, Buyers int64
			}
		}
	}
	s.Do(admin, apptest.Op(t, "SalesOverview"), map[string]any{"from": from.String(), "to": today.String()}).Decode(t, &sales)
	var want struct{ revenue, orders, buyers int64 }
	if err := s.SQL.QueryRowContext(ctx, `SELECT coalesce(sum(amount - refunded_amount), 0),
  count(*) FILTER (WHERE refunded_amount < amount), count(DISTINCT member_id) FILTER (WHERE refunded_amount < amount)
FROM orders WHERE paid_at >= $1 AND paid_at < $2`, from.Start(zone), today.AddDays(1).Start(zone)).
		Scan(&want.revenue, &want.orders, &want.buyers); err != nil {
		t.Fatal(err)
	}
	got := sales.SalesOverview
	if got.Revenue != want.revenue || got.Orders != want.orders || got.Buyers != want.buyers || got.Orders == 0 {
		t.Fatalf("sales overview %d/%d/%d, SQL %+v", got.Revenue, got.Orders, got.Buyers, want)
	}
	if len(got.ByDay) != 90 || got.AverageOrderValue != (got.Revenue+got.Orders/2)/got.Orders {
		t.Fatalf("days %d, average %d", len(got.ByDay), got.AverageOrderValue)
	}
	var channels, units int64
	for _, b := range got.ByChannel {
		channels += b.Revenue
	}
	for _, b := range got.ByBusinessUnit {
		units += b.Revenue
	}
	if channels != got.Revenue || units != got.Revenue {
		t.Fatalf("breakdowns add up to %d and %d, not %d", channels, units, got.Revenue)
	}
	// The two days around midnight, each against SQL cut at that midnight.
	for _, d := range got.ByDay[len(got.ByDay)-2:] {
		day, _ := calendar.Parse(d.Date)
		var rev, n int64
		if err := s.SQL.QueryRowContext(ctx, `SELECT coalesce(sum(amount - refunded_amount), 0), count(*) FILTER (WHERE refunded_amount < amount)
FROM orders WHERE paid_at >= $1 AND paid_at < $2`, day.Start(zone), day.AddDays(1).Start(zone)).Scan(&rev, &n); err != nil {
			t.Fatal(err)
		}
		if d.Revenue != rev || d.Orders != n {
			t.Fatalf("day %s: %d/%d, SQL %d/%d", d.Date, d.Revenue, d.Orders, rev, n)
		}
	}
	if code := s.Do(admin, apptest.Op(t, "SalesOverview"), map[string]any{"from": today.String(), "to": from.String()}).Codes(); !slices.Equal(code, []string{"BAD_USER_INPUT"}) {
		t.Fatalf("reversed range: %v", code)
	}

	// Top products: quantities of orders that count, by SQL.
	var top struct {
		TopProducts []struct {
			Sku, Name, Category string
			Revenue             int64
			Quantity, Buyers    int64
			MemberShare         float64
		}
	}
	s.Do(admin, apptest.Op(t, "TopProducts"), map[string]any{"from": from.String(), "to": today.String(), "first": 3}).Decode(t, &top)
	if len(top.TopProducts) == 0 || len(top.TopProducts) > 3 {
		t.Fatalf("top products: %+v", top)
	}
	for i, p := range top.TopProducts {
		if i > 0 && p.Revenue > top.TopProducts[i-1].Revenue {
			t.Fatalf("not by revenue: %+v", top.TopProducts)
		}
		var qty, buyers int64
		if err := s.SQL.QueryRowContext(ctx, `SELECT coalesce(sum(l.quantity), 0), count(DISTINCT o.member_id)
FROM order_items l JOIN orders o ON o.id = l.order_id
WHERE l.sku = $1 AND o.refunded_amount < o.amount AND o.paid_at >= $2 AND o.paid_at < $3`,
			p.Sku, from.Start(zone), today.AddDays(1).Start(zone)).Scan(&qty, &buyers); err != nil {
			t.Fatal(err)
		}
		if p.Quantity != qty || p.Buyers != buyers {
			t.Fatalf("product %s: quantity %d buyers %d, SQL %d %d", p.Sku, p.Quantity, p.Buyers, qty, buyers)
		}
	}

	// A store's month against its target.
	month := fmt.Sprintf("%04d-%02d", today.Year, today.Month)
	var ok struct{ SetStoreTarget struct{ Ok bool } }
	s.Do(admin, apptest.Op(t, "SetStoreTarget"), map[string]any{"storeCode": "SUPER-SH-01", "month": month, "revenue": 1_000_000}).Decode(t, &ok)
	if code := s.Do(admin, apptest.Op(t, "SetStoreTarget"), map[string]any{"storeCode": "SUPER-SH-01", "month": "2026-13", "revenue": 1}).Codes(); !slices.Equal(code, []string{"BAD_USER_INPUT"}) {
		t.Fatalf("bad month: %v", code)
	}
	var report struct {
		StoreMonthlyReport struct {
			Store                   struct{ Code, Name string }
			Month                   string
			Revenue, Target, Orders int64
			Buyers, NewMembers      int64
			Progress                float64
			AverageOrderValue       int64
			RepurchaseRate          float64
			TopProducts             []struct {
				Sku     string
				Revenue int64
			}
		}
	}
	s.Do(admin, apptest.Op(t, "StoreMonthlyReport"), map[string]any{"storeCode": "SUPER-SH-01", "month": month}).Decode(t, &report)
	r := report.StoreMonthlyReport
	monthStart := calendar.Date{Year: today.Year, Month: today.Month, Day: 1}
	var mrev, morders, mbuyers int64
	if err := s.SQL.QueryRowContext(ctx, `SELECT coalesce(sum(o.amount - o.refunded_amount), 0),
  count(*) FILTER (WHERE o.refunded_amount < o.amount), count(DISTINCT o.member_id) FILTER (WHERE o.refunded_amount < o.amount)
FROM orders o JOIN stores st ON st.id = o.store_id
WHERE st.code = 'SUPER-SH-01' AND o.paid_at >= $1 AND o.paid_at < $2`,
		monthStart.Start(zone), calendar.Date{Year: today.Year, Month: today.Month + 1, Day: 1}.Start(zone)).Scan(&mrev, &morders, &mbuyers); err != nil {
		t.Fatal(err)
	}
	if r.Store.Code != "SUPER-SH-01" || r.Month != month || r.Revenue != mrev || r.Orders != morders || r.Buyers != mbuyers ||
		r.Target != 1_000_000 || r.Progress != float64(mrev)/1_000_000 || len(r.TopProducts) > 5 {
		t.Fatalf("store report %+v, SQL revenue %d orders %d buyers %d", r, mrev, morders, mbuyers)
	}
	if code := s.Do(admin, apptest.Op(t, "StoreMonthlyReport"), map[string]any{"storeCode": "NOPE", "month": month}).Codes(); !slices.Equal(code, []string{"NOT_FOUND"}) {
		t.Fatalf("unknown store: %v", code)
	}

	// Members and channels from the index, against SQL.
	var total int64
	if err := s.SQL.QueryRowContext(ctx, `SELECT count(*) FROM members WHERE status = 'ACTIVE'`).Scan(&total); err != nil {
		t.Fatal(err)
	}
	var stats struct {
		MemberStats struct {
			Total, NewLast30Days, ActiveLast30Days int64
			ByGender, ByAgeBand, ByChannel, ByTier []struct {
				Key   string
				Count int64
				Share float64
			}
		}
	}
	var active int64
	if err := s.SQL.QueryRowContext(ctx, `SELECT count(DISTINCT o.member_id) FROM orders o JOIN members m ON m.id = o.member_id
WHERE m.status = 'ACTIVE' AND o.refunded_amount < o.amount AND o.paid_at >= $1`, today.AddDays(-29).Start(zone)).Scan(&active); err != nil {
		t.Fatal(err)
	}
	// The index replays changes every second; give it a few.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		s.Do(admin, apptest.Op(t, "MemberStats"), nil).Decode(t, &stats)
		if (stats.MemberStats.Total == total && stats.MemberStats.ActiveLast30Days == active) || time.Now().After(deadline) {
			break
		}
	}
	ms := stats.MemberStats
	sum := func(ds []struct {
		Key   string
		Count int64
		Share float64
	}) (n int64) {
		for _, d := range ds {
			n += d.Count
		}
		return n
	}
	if ms.Total != total || sum(ms.ByGender) != total || sum(ms.ByChannel) != total || sum(ms.ByTier) != total || sum(ms.ByAgeBand) != total {
		t.Fatalf("member stats %+v, SQL total %d", ms, total)
	}
	if ms.ActiveLast30Days != active {
		t.Fatalf("active in 30 days %d, SQL %d", ms.ActiveLast30Days, active)
	}
	var cs struct {
		ChannelStats []struct {
			Channel                                                     string
			NewMembers, ActiveMembers, ConvertedMembers, ChurnedMembers int64
		}
	}
	s.Do(admin, apptest.Op(t, "ChannelStats"), map[string]any{"from": from.String(), "to": today.String()}).Decode(t, &cs)
	var newMembers, activeMembers int64
	for _, c := range cs.ChannelStats {
		newMembers += c.NewMembers
		activeMembers += c.ActiveMembers
	}
	var wantNew, wantActive int64
	if err := s.SQL.QueryRowContext(ctx, `SELECT
  (SELECT count(*) FROM members WHERE status = 'ACTIVE' AND registered_at >= $1 AND registered_at < $2),
  (SELECT count(DISTINCT o.member_id) FROM orders o JOIN members m ON m.id = o.member_id
   WHERE m.status = 'ACTIVE' AND o.refunded_amount < o.amount AND o.paid_at >= $1 AND o.paid_at < $2)`,
		from.Start(zone), today.AddDays(1).Start(zone)).Scan(&wantNew, &wantActive); err != nil {
		t.Fatal(err)
	}
	if len(cs.ChannelStats) != 5 || newMembers != wantNew || activeMembers != wantActive {
		t.Fatalf("channel stats %+v, SQL new %d active %d", cs.ChannelStats, wantNew, wantActive)
	}

	// Cross-BU settlement of this month: every row pairs two units.
	var settle struct {
		PointsSettlement []struct {
			EarnedIn, BurnedIn *struct{ Code string }
			Points, Value      int64
		}
	}
	s.Do(admin, apptest.Op(t, "PointsSettlement"), map[string]any{"month": month}).Decode(t, &settle)
	for _, p := range settle.PointsSettlement {
		if p.EarnedIn != nil && p.BurnedIn != nil && p.EarnedIn.Code == p.BurnedIn.Code {
			t.Fatalf("settlement within one unit: %+v", p)
		}
	}

	// Predictions after a fit: churnRisk = 1 − probabilityAlive.
	if _, err := s.Predictions.FitAndScore(ctx); err != nil {
		t.Fatalf("fitting predictions: %v", err)
	}
	var pred struct {
		Node struct {
			ID         string
			Prediction *struct {
				ProbabilityAlive, ExpectedPurchases90Days, ChurnRisk float64
				PredictedValue12Months                               int64
			}
		}
	}
	s.Do(admin, apptest.Op(t, "MemberPrediction"), map[string]any{"id": gid(members[1].ID)}).Decode(t, &pred)
	p := pred.Node.Prediction
	if p == nil || p.ProbabilityAlive <= 0 || p.ProbabilityAlive > 1 || p.ChurnRisk != 1-p.ProbabilityAlive || p.ExpectedPurchases90Days <= 0 {
		t.Fatalf("prediction of a buyer: %+v", p)
	}

	// Live sales: today's totals at once, then an order within a second.
	var c *gqlws.Client
	c, err = gqlws.Dial(t.Context(), s.WSURL(), gqlws.SubprotocolGraphQLTransportWS, map[string]any{"authorization": "Bearer " + admin})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	sub, err := c.Subscribe(t.Context(), apptest.Op(t, "LiveSales"), nil)
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	type liveSales struct {
		TodayRevenue, TodayOrders, TodayBuyers int64
		LastOrder                              *struct {
			Amount int64
			Store  struct{ Name string }
		}
	}
	next := func(within time.Duration) liveSales {
		ctx, cancel := context.WithTimeout(t.Context(), within)
		defer cancel()
		raw, err := sub.Next(ctx)
		if err != nil {
			t.Fatalf("live sales: %v", err)
		}
		var v struct{ Data struct{ LiveSales liveSales } }
		if err := json.Unmarshal(raw, &v); err != nil {
			t.Fatal(err)
		}
		return v.Data.LiveSales
	}
	first := next(5 * time.Second)
	s.Do(till, apptest.Op(t, "IngestOrder"), order("dash-live", gid(members[3].ID), 3_300, time.Now())).Decode(t, &struct{}{})
	start := time.Now()
	upd := next(3 * time.Second)
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("live update took %v", took)
	}
	if upd.TodayOrders != first.TodayOrders+1 || upd.TodayRevenue != first.TodayRevenue+3_300 ||
		upd.LastOrder == nil || upd.LastOrder.Amount != 3_300 || upd.LastOrder.Store.Name == "" {
		t.Fatalf("live sales before %+v, after %+v", first, upd)
	}
}
