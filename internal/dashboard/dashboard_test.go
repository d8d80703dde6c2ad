package dashboard_test

import (
	"database/sql"
	"errors"
	"math/rand/v2"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/dashboard"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/fault"
)

// The expectations below are computed independently from the raw orders
// and order_items with plain SQL: instants for the range edges are cut in
// Go (calendar.Date.Start in the zone), an order "counts" unless refunded
// in full, and a paid member's order is one whose paid_at lies in one of
// the member's purchased periods.

const paidMemberSQL = `(o.member_id IN (SELECT m.member_id FROM paid_memberships m
  JOIN paid_membership_purchases p ON p.membership_id = m.id WHERE o.paid_at >= p.period_start AND o.paid_at < p.period_end))`

func nullInt(p *int) sql.NullInt64 {
	if p == nil {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: int64(*p), Valid: true}
}

func (w *world) expectOverview(t *testing.T, from, to calendar.Date, bu *int) *dashboard.Overview {
	t.Helper()
	lo, hi := from.Start(w.zone), to.AddDays(1).Start(w.zone)
	const where = `FROM orders o JOIN business_units b ON b.id = o.business_unit_id
WHERE o.paid_at >= $1 AND o.paid_at < $2 AND ($3::bigint IS NULL OR o.business_unit_id = $3)`
	out := &dashboard.Overview{}
	var member int64
	if err := w.sql.QueryRowContext(w.ctx, `SELECT coalesce(sum(o.amount - o.refunded_amount), 0)::bigint,
  count(*) FILTER (WHERE o.refunded_amount < o.amount), count(DISTINCT o.member_id) FILTER (WHERE o.refunded_amount < o.amount),
  coalesce(sum(o.amount - o.refunded_amount) FILTER (WHERE `+paidMemberSQL+`), 0)::bigint `+where, lo, hi, nullInt(bu)).
		Scan(&out.Revenue, &out.Orders, &out.Buyers, &member); err != nil {
		t.Fatalf("expected totals: %v", err)
	}
	if out.Orders > 0 {
		out.AverageOrderValue = (out.Revenue*2 + int64(out.Orders)) / (2 * int64(out.Orders))
	}
	if out.Revenue > 0 {
		out.MemberRevenueShare = float64(member) / float64(out.Revenue)
	}
	group := func(col string) []dashboard.Breakdown {
		rows, err := w.sql.QueryContext(w.ctx, `SELECT `+col+`, sum(o.amount - o.refunded_amount)::bigint,
  count(*) FILTER (WHERE o.refunded_amount < o.amount) `+where+` GROUP BY 1
ORDER BY 2 DESC, `+col+` COLLATE "C"`, lo, hi, nullInt(bu))
		if err != nil {
			t.Fatalf("expected breakdown: %v", err)
		}
		defer rows.Close()
		out := []dashboard.Breakdown{}
		for rows.Next() {
			var b dashboard.Breakdown
			if err := rows.Scan(&b.Key, &b.Revenue, &b.Orders); err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
		}
		return out
	}
	out.ByChannel, out.ByBusinessUnit = group("o.channel"), group("b.code")
	rows, err := w.sql.QueryContext(w.ctx, `SELECT to_char(o.paid_at AT TIME ZONE 'Asia/Shanghai', 'YYYY-MM-DD'),
  sum(o.amount - o.refunded_amount)::bigint, count(*) FILTER (WHERE o.refunded_amount < o.amount),
  count(DISTINCT o.member_id) FILTER (WHERE o.refunded_amount < o.amount) `+where+` GROUP BY 1`, lo, hi, nullInt(bu))
	if err != nil {
		t.Fatalf("expected days: %v", err)
	}
	defer rows.Close()
	days := map[string]dashboard.Day{}
	for rows.Next() {
		var d string
		var x dashboard.Day
		if err := rows.Scan(&d, &x.Revenue, &x.Orders, &x.Buyers); err != nil {
			t.Fatal(err)
		}
		days[d] = x
	}
	for d := from; !to.Before(d); d = d.AddDays(1) {
		x := days[d.String()]
		x.Date = d
		out.ByDay = append(out.ByDay, x)
	}
	return out
}

func (w *world) expectProducts(t *testing.T, from, to calendar.Date, first int, store *int) []dashboard.Product {
	t.Helper()
	rows, err := w.sql.QueryContext(w.ctx, `WITH l AS (
  SELECT o.member_id, o.amount, o.refunded_amount, i.sku, i.name, i.category, i.quantity, i.amount AS line,
         (SELECT sum(j.amount) FROM order_items j WHERE j.order_id = o.id)::bigint AS lines, `+paidMemberSQL+` AS paid
  FROM orders o JOIN order_items i ON i.order_id = o.id
  WHERE o.paid_at >= $1 AND o.paid_at < $2 AND ($3::bigint IS NULL OR o.store_id = $3))
SELECT sku, max(name), max(category), sum(line * (amount - refunded_amount) / lines)::bigint,
  coalesce(sum(quantity) FILTER (WHERE refunded_amount < amount), 0)::bigint,
  count(DISTINCT member_id) FILTER (WHERE refunded_amount < amount),
  coalesce(sum(line * (amount - refunded_amount) / lines) FILTER (WHERE paid), 0)::bigint
FROM l GROUP BY sku ORDER BY 4 DESC, sku COLLATE "C" LIMIT $4`, from.Start(w.zone), to.AddDays(1).Start(w.zone), nullInt(store), first)
	if err != nil {
		t.Fatalf("expected products: %v", err)
	}
	defer rows.Close()
	out := []dashboard.Product{}
	for rows.Next() {
		var p dashboard.Product
		var member int64
		if err := rows.Scan(&p.SKU, &p.Name, &p.Category, &p.Revenue, &p.Quantity, &p.Buyers, &member); err != nil {
			t.Fatal(err)
		}
		if p.Revenue > 0 {
			p.MemberShare = float64(member) / float64(p.Revenue)
		}
		out = append(out, p)
	}
	return out
}

func (w *world) expectStoreReport(t *testing.T, st *ent.Store, month string, target int64) *dashboard.StoreReport {
	t.Helper()
	first := day(month + "-01")
	next := calendar.Date{Year: first.Year, Month: first.Month + 1, Day: 1}.AddDays(0)
	lo, hi := first.Start(w.zone), next.Start(w.zone)
	r := &dashboard.StoreReport{Store: st, Month: month, From: first, To: next.AddDays(-1), Target: target}
	var repeat int
	if err := w.sql.QueryRowContext(w.ctx, `WITH c AS (SELECT * FROM orders WHERE store_id = $1 AND refunded_amount < amount)
SELECT (SELECT coalesce(sum(amount - refunded_amount), 0)::bigint FROM orders WHERE store_id = $1 AND paid_at >= $2 AND paid_at < $3),
  (SELECT count(*) FROM c WHERE paid_at >= $2 AND paid_at < $3),
  (SELECT count(DISTINCT member_id) FROM c WHERE paid_at >= $2 AND paid_at < $3),
  (SELECT count(DISTINCT member_id) FROM c WHERE paid_at >= $2 AND paid_at < $3
     AND NOT EXISTS (SELECT 1 FROM c AS e WHERE e.member_id = c.member_id AND e.paid_at < $2)),
  (SELECT count(*) FROM (SELECT member_id FROM c WHERE paid_at >= $2 AND paid_at < $3 GROUP BY member_id HAVING count(*) >= 2) x)`,
		st.ID, lo, hi).Scan(&r.Revenue, &r.Orders, &r.Buyers, &r.NewMembers, &repeat); err != nil {
		t.Fatalf("expected store report: %v", err)
	}
	if r.Orders > 0 {
		r.AverageOrderValue = (r.Revenue*2 + int64(r.Orders)) / (2 * int64(r.Orders))
	}
	if target > 0 {
		r.Progress = float64(r.Revenue) / float64(target)
	}
	if r.Buyers > 0 {
		r.RepurchaseRate = float64(repeat) / float64(r.Buyers)
	}
	return r
}

// checkAll compares every query with its expectation over several ranges,
// business units, stores and months.
func (w *world) checkAll(t *testing.T, targets map[string]int64) {
	t.Helper()
	ranges := [][2]string{
		{"2026-01-20", "2026-03-20"}, // starts before the first order: zero days
		{"2026-02-01", "2026-02-28"},
		{"2026-03-05", "2026-03-05"},
		{"2026-03-19", "2026-03-20"},
		{"2026-02-01", "2026-03-31"}, // two whole months (product_months only)
		{"2026-02-10", "2026-03-31"}, // days, then a whole month
	}
	bus := []*int{nil}
	for _, u := range w.bus {
		bus = append(bus, &u.ID)
	}
	for _, rg := range ranges {
		from, to := day(rg[0]), day(rg[1])
		for _, bu := range bus {
			got, err := w.dash.SalesOverview(w.ctx, from, to, bu)
			if err != nil {
				t.Fatalf("SalesOverview: %v", err)
			}
			want := w.expectOverview(t, from, to, bu)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("SalesOverview(%s..%s, bu %v):\n got %+v\nwant %+v", rg[0], rg[1], deref(bu), got, want)
			}
		}
		stores := []*int{nil}
		for _, st := range w.stores[:min(2, len(w.stores))] {
			stores = append(stores, &st.ID)
		}
		for _, st := range stores {
			for _, first := range []int{3, dashboard.MaxFirst} {
				got, err := w.dash.TopProducts(w.ctx, from, to, first, st)
				if err != nil {
					t.Fatalf("TopProducts: %v", err)
				}
				want := w.expectProducts(t, from, to, first, st)
				if !reflect.DeepEqual(got, want) {
					t.Errorf("TopProducts(%s..%s, %d, store %v):\n got %+v\nwant %+v", rg[0], rg[1], first, deref(st), got, want)
				}
			}
		}
	}
	for _, st := range w.stores {
		for _, month := range []string{"2026-02", "2026-03"} {
			got, err := w.dash.StoreMonthlyReport(w.ctx, st.Code, month)
			if err != nil {
				t.Fatalf("StoreMonthlyReport: %v", err)
			}
			want := w.expectStoreReport(t, st, month, targets[st.Code+"/"+month])
			got.Store, want.Store = nil, nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("StoreMonthlyReport(%s, %s):\n got %+v\nwant %+v", st.Code, month, got, want)
			}
		}
	}
}

func deref(p *int) any {
	if p == nil {
		return "all"
	}
	return *p
}

// seedWorld builds three business units (two stores each), 40 members of
// whom 10 hold paid memberships for part of the period, and n orders from
// 1 February to 20 March (Asia/Shanghai) with refunds.
func seedWorld(t *testing.T, w *world, n int) {
	t.Helper()
	for _, code := range []string{"MALL", "MART", "BOOK"} {
		w.unit(t, code, 2)
	}
	for i := range 40 {
		m := w.member(t)
		if i%4 == 0 {
			w.paidMember(t, m, time.Date(2026, 2, 15, 10, 0, 0, 0, w.zone), time.Date(2026, 3, 15, 10, 0, 0, 0, w.zone))
		}
	}
	from, to := time.Date(2026, 2, 1, 0, 0, 0, 0, w.zone), time.Date(2026, 3, 20, 17, 0, 0, 0, w.zone)
	for range n {
		s := w.randomSale(w.rng, from, to)
		// Some orders pay partly with points, in whichever BU the store is
		// in, so that the ledgers hold cross-BU burns.
		if b := w.balance(t, s.member); b >= 100 && w.rng.IntN(6) == 0 {
			var sum int64
			for _, l := range s.lines {
				sum += l.Amount
			}
			s.points = min(b, sum-s.discount)
		}
		o := w.ingest(t, s)
		w.maybeRefund(t, w.rng, o)
	}
}

func TestFiguresMatchRawOrders(t *testing.T) {
	w := newWorld(t)
	seedWorld(t, w, 300)
	// The first Refresh finds no cursor and rebuilds.
	if _, err := w.dash.Refresh(w.ctx); err != nil {
		t.Fatalf("first Refresh: %v", err)
	}
	targets := map[string]int64{}
	for i, st := range w.stores[:3] {
		target := int64(100_000 * (i + 1))
		if err := w.dash.SetStoreTarget(w.ctx, st.Code, "2026-03", target); err != nil {
			t.Fatalf("SetStoreTarget: %v", err)
		}
		targets[st.Code+"/2026-03"] = target
	}
	// Setting it again replaces it.
	if err := w.dash.SetStoreTarget(w.ctx, w.stores[0].Code, "2026-03", 250_000); err != nil {
		t.Fatalf("SetStoreTarget: %v", err)
	}
	targets[w.stores[0].Code+"/2026-03"] = 250_000
	w.checkAll(t, targets)

	// More orders (some on days already aggregated), refunds of old
	// orders, then one Refresh: the figures follow.
	before, err := w.dash.SalesOverview(w.ctx, day("2026-02-01"), day("2026-03-20"), nil)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 60 {
		o := w.ingest(t, w.randomSale(rng, time.Date(2026, 2, 1, 0, 0, 0, 0, w.zone), time.Date(2026, 3, 20, 17, 0, 0, 0, w.zone)))
		w.maybeRefund(t, rng, o)
	}
	for _, o := range w.placed[:40] {
		if fresh, err := w.db.Order.Get(w.ctx, o.ID); err == nil && fresh.RefundedAmount < fresh.Amount {
			w.refund(t, fresh, fresh.Amount-fresh.RefundedAmount)
		}
	}
	n, err := w.dash.Refresh(w.ctx)
	if err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	if n == 0 {
		t.Fatalf("Refresh recomputed no keys after 60 orders and refunds")
	}
	after, err := w.dash.SalesOverview(w.ctx, day("2026-02-01"), day("2026-03-20"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if after.Orders == before.Orders && after.Revenue == before.Revenue {
		t.Fatalf("the overview did not change after a Refresh: %+v", after)
	}
	w.checkAll(t, targets)
	// An idle Refresh may recompute keys again: changes above the horizon
	// are re-read until every older transaction of the cluster has ended
	// (other packages' tests hold some), which must change nothing.
	if _, err := w.dash.Refresh(w.ctx); err != nil {
		t.Fatalf("an idle Refresh: %v", err)
	}
	w.checkAll(t, targets)
	// A Rebuild gives the same figures as the refreshes did.
	if err := w.dash.Rebuild(w.ctx); err != nil {
		t.Fatalf("Rebuild: %v", err)
	}
	w.checkAll(t, targets)
}

// TestDayBoundary checks the business day of orders on either side of
// midnight in Asia/Shanghai (16:00:00Z), refunds attributed to the paid
// day, a fully refunded order dropping out of orders and buyers, and the
// paid members' share.
func TestDayBoundary(t *testing.T) {
	w := newWorld(t)
	u := w.unit(t, "EDGE", 1)
	st := w.stores[0]
	a, b := w.member(t), w.member(t)
	w.paidMember(t, b, time.Date(2026, 3, 1, 0, 0, 0, 0, w.zone), time.Date(2026, 4, 1, 0, 0, 0, 0, w.zone))
	line := func(amount int64) []orderItem {
		return []orderItem{{SKU: "SKU-X", Name: "X", Quantity: 1, UnitPrice: amount, Amount: amount}}
	}
	late := w.ingest(t, sale{member: a, store: st, channel: enum.ChannelPOS, paid: time.Date(2026, 3, 9, 15, 59, 59, 0, time.UTC), lines: line(10_000)})
	early := w.ingest(t, sale{member: b, store: st, channel: enum.ChannelPOS, paid: time.Date(2026, 3, 9, 16, 0, 0, 0, time.UTC), lines: line(3_000)})
	gone := w.ingest(t, sale{member: a, store: st, channel: enum.ChannelApp, paid: time.Date(2026, 3, 10, 2, 0, 0, 0, time.UTC), lines: line(700)})
	if err := w.dash.Rebuild(w.ctx); err != nil {
		t.Fatal(err)
	}
	// Refunds a week later count against the day the orders were paid.
	w.clock.Advance(7 * 24 * time.Hour)
	w.refund(t, late, 2_500)
	w.refund(t, gone, 700)
	if _, err := w.dash.Refresh(w.ctx); err != nil {
		t.Fatal(err)
	}
	_ = early
	ov, err := w.dash.SalesOverview(w.ctx, day("2026-03-09"), day("2026-03-10"), &u.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := []dashboard.Day{
		{Date: day("2026-03-09"), Revenue: 7_500, Orders: 1, Buyers: 1},
		{Date: day("2026-03-10"), Revenue: 3_000, Orders: 1, Buyers: 1},
	}
	if !reflect.DeepEqual(ov.ByDay, want) {
		t.Errorf("ByDay = %+v, want %+v", ov.ByDay, want)
	}
	if ov.Revenue != 10_500 || ov.Orders != 2 || ov.Buyers != 2 || ov.AverageOrderValue != 5_250 {
		t.Errorf("totals = %+v", ov)
	}
	if got, want := ov.MemberRevenueShare, 3_000.0/10_500; got != want {
		t.Errorf("MemberRevenueShare = %v, want %v", got, want)
	}
	// The app channel has only the fully refunded order: no revenue, no
	// orders, still listed.
	wantCh := []dashboard.Breakdown{{Key: "POS", Revenue: 10_500, Orders: 2}, {Key: "APP", Revenue: 0, Orders: 0}}
	if !reflect.DeepEqual(ov.ByChannel, wantCh) {
		t.Errorf("ByChannel = %+v, want %+v", ov.ByChannel, wantCh)
	}
	day9, err := w.dash.SalesOverview(w.ctx, day("2026-03-09"), day("2026-03-09"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if day9.Revenue != 7_500 || day9.Orders != 1 {
		t.Errorf("9 March = %+v, want only the order paid at 23:59:59 local", day9)
	}
	w.checkAll(t, nil)
}

func TestRefreshPicksUpALateCommit(t *testing.T) {
	w := newWorld(t)
	u := w.unit(t, "LATE", 1)
	st := w.stores[0]
	m := w.member(t)
	w.ingest(t, sale{member: m, store: st, channel: enum.ChannelPOS, paid: time.Date(2026, 3, 18, 12, 0, 0, 0, w.zone),
		lines: []orderItem{{SKU: "SKU-A", Name: "A", Quantity: 1, UnitPrice: 1_000, Amount: 1_000}}})
	if err := w.dash.Rebuild(w.ctx); err != nil {
		t.Fatal(err)
	}
	// A transaction writes an order and stays open while another order
	// commits and a Refresh passes.
	late, err := w.sql.BeginTx(w.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Rollback() //nolint:errcheck // committed below
	var lateID int
	if err := late.QueryRowContext(w.ctx, `INSERT INTO orders (external_id, channel, member_id, status, amount, paid_at, created_at, store_id, business_unit_id)
VALUES ('LATE-1', 'APP', $1, 'PAID', 4000, $2, now(), $3, $4) RETURNING id`, m, time.Date(2026, 3, 18, 13, 0, 0, 0, w.zone), st.ID, u.ID).Scan(&lateID); err != nil {
		t.Fatal(err)
	}
	if _, err := late.ExecContext(w.ctx, `INSERT INTO order_items (sku, name, quantity, unit_price, amount, order_id) VALUES ('SKU-L', 'L', 2, 2000, 4000, $1)`, lateID); err != nil {
		t.Fatal(err)
	}
	w.ingest(t, sale{member: m, store: st, channel: enum.ChannelPOS, paid: time.Date(2026, 3, 18, 14, 0, 0, 0, w.zone),
		lines: []orderItem{{SKU: "SKU-A", Name: "A", Quantity: 1, UnitPrice: 500, Amount: 500}}})
	if _, err := w.dash.Refresh(w.ctx); err != nil {
		t.Fatal(err)
	}
	d := day("2026-03-18")
	got, err := w.dash.SalesOverview(w.ctx, d, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Revenue != 1_500 || got.Orders != 2 {
		t.Fatalf("before the late commit: %+v, want 1500 fen in 2 orders", got)
	}
	if err := late.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.dash.Refresh(w.ctx); err != nil {
		t.Fatal(err)
	}
	got, err = w.dash.SalesOverview(w.ctx, d, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Revenue != 5_500 || got.Orders != 3 {
		t.Fatalf("after the late commit: %+v, want 5500 fen in 3 orders", got)
	}
	w.checkAll(t, nil)
}

// TestConcurrentIngestAndRefresh ingests and refunds from several
// goroutines while others refresh without pause; after a last Refresh the
// figures match the raw orders.
func TestConcurrentIngestAndRefresh(t *testing.T) {
	w := newWorld(t)
	for _, code := range []string{"MALL", "MART"} {
		w.unit(t, code, 2)
	}
	for range 20 {
		w.member(t)
	}
	if err := w.dash.Rebuild(w.ctx); err != nil {
		t.Fatal(err)
	}
	start := make(chan struct{})
	done := make(chan struct{})
	var writers, refreshers sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 4 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 99))
			<-start
			for range 25 {
				o, err := w.ingestE(w.randomSale(rng, time.Date(2026, 3, 1, 0, 0, 0, 0, w.zone), time.Date(2026, 3, 20, 17, 0, 0, 0, w.zone)))
				if err == nil {
					err = w.maybeRefundE(rng, o)
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range 2 {
		refreshers.Add(1)
		go func() {
			defer refreshers.Done()
			<-start
			for {
				select {
				case <-done:
					return
				default:
				}
				if _, err := w.dash.Refresh(w.ctx); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	close(start)
	writers.Wait()
	close(done)
	refreshers.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("during ingestion: %v", err)
	}
	if _, err := w.dash.Refresh(w.ctx); err != nil {
		t.Fatal(err)
	}
	w.checkAll(t, nil)
}

// TestPointsSettlement follows points earned in one BU and burned in
// another through the ledger: lots are taken earliest expiry first and a
// refund gives back the latest-expiring ones, in the refund's month.
func TestPointsSettlement(t *testing.T) {
	w := newWorld(t)
	mall, mart := w.unit(t, "MALL", 1), w.unit(t, "MART", 1)
	sMall, sMart := w.stores[0], w.stores[1]
	m := w.member(t)
	item := func(amount int64) []orderItem {
		return []orderItem{{SKU: "SKU-P", Name: "P", Quantity: 1, UnitPrice: amount, Amount: amount}}
	}
	// 500 points earned at the mall in January, 300 at the mart in
	// February (1 point a yuan): the January lot expires first.
	w.clock.Set(time.Date(2026, 1, 10, 12, 0, 0, 0, w.zone))
	w.ingest(t, sale{member: m, store: sMall, channel: enum.ChannelPOS, paid: w.clock.Now(), lines: item(50_000)})
	w.clock.Set(time.Date(2026, 2, 10, 12, 0, 0, 0, w.zone))
	w.ingest(t, sale{member: m, store: sMart, channel: enum.ChannelPOS, paid: w.clock.Now(), lines: item(30_000)})
	// In March 600 points pay at the mall: 500 from the mall's own lot
	// (not cross-BU), 100 from the mart's.
	w.clock.Set(time.Date(2026, 3, 5, 12, 0, 0, 0, w.zone))
	burn := w.ingest(t, sale{member: m, store: sMall, channel: enum.ChannelPOS, paid: w.clock.Now(), lines: item(600), points: 600})
	// Then 200 points pay at the mart, from the mart's lot (300 − 100):
	// not cross-BU either. Then 50 at the mart once the mall's lot was
	// refilled below.
	w.ingest(t, sale{member: m, store: sMart, channel: enum.ChannelPOS, paid: w.clock.Now(), lines: item(200), points: 200})
	// In April half the mall order is refunded: 300 points go back to the
	// lots that burn took from, latest expiry first: the mart's 100, then
	// 200 to the mall's.
	w.clock.Set(time.Date(2026, 4, 2, 12, 0, 0, 0, w.zone))
	w.refund(t, burn, 300)
	// And 150 points pay at the mart, from the mall's refilled lot (the
	// earliest expiry with points; the March mall order's own earning
	// expires later).
	w.ingest(t, sale{member: m, store: sMart, channel: enum.ChannelPOS, paid: w.clock.Now(), lines: item(150), points: 150})

	ref := func(u *ent.BusinessUnit) dashboard.BusinessUnitRef {
		return dashboard.BusinessUnitRef{ID: u.ID, Code: u.Code}
	}
	cases := map[string][]dashboard.Settlement{
		"2026-02": nil,
		"2026-03": {{EarnedIn: ref(mart), BurnedIn: ref(mall), Points: 100, Value: 100}},
		"2026-04": {
			{EarnedIn: ref(mall), BurnedIn: ref(mart), Points: 150, Value: 150},
			{EarnedIn: ref(mart), BurnedIn: ref(mall), Points: -100, Value: -100},
		},
	}
	for month, want := range cases {
		got, err := w.dash.PointsSettlement(w.ctx, month)
		if err != nil {
			t.Fatalf("PointsSettlement(%s): %v", month, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("PointsSettlement(%s) = %+v, want %+v", month, got, want)
		}
	}
}

func TestValidation(t *testing.T) {
	w := newWorld(t)
	w.unit(t, "MALL", 1)
	st := w.stores[0]
	badInput := func(name string, err error, fields ...string) {
		t.Helper()
		if !errors.Is(err, fault.ErrBadUserInput) {
			t.Errorf("%s: err = %v, want BAD_USER_INPUT", name, err)
			return
		}
		var got []string
		for _, f := range fault.Fields(err) {
			got = append(got, f.Field)
		}
		if !reflect.DeepEqual(got, fields) {
			t.Errorf("%s: fields %v, want %v", name, got, fields)
		}
	}
	badInput("target", w.dash.SetStoreTarget(w.ctx, "", "2026-13", -1), "storeCode", "month", "revenue")
	badInput("target month", w.dash.SetStoreTarget(w.ctx, st.Code, "2026-3", 100), "month")
	if err := w.dash.SetStoreTarget(w.ctx, "NOPE", "2026-03", 100); !errors.Is(err, fault.ErrNotFound) {
		t.Errorf("unknown store: err = %v, want NOT_FOUND", err)
	}
	_, err := w.dash.StoreMonthlyReport(w.ctx, "NOPE", "2026-03")
	if !errors.Is(err, fault.ErrNotFound) {
		t.Errorf("report of an unknown store: err = %v, want NOT_FOUND", err)
	}
	_, err = w.dash.StoreMonthlyReport(w.ctx, st.Code, "March")
	badInput("report month", err, "month")
	_, err = w.dash.SalesOverview(w.ctx, day("2026-03-02"), day("2026-03-01"), nil)
	badInput("reversed range", err, "to")
	_, err = w.dash.SalesOverview(w.ctx, day("2024-01-01"), day("2026-03-01"), nil)
	badInput("long range", err, "to")
	_, err = w.dash.TopProducts(w.ctx, day("2026-03-01"), day("2026-03-02"), 0, nil)
	badInput("first", err, "first")
	_, err = w.dash.PointsSettlement(w.ctx, "2026")
	badInput("settlement month", err, "month")
	// An empty store month is all zeros, not an error.
	r, err := w.dash.StoreMonthlyReport(w.ctx, st.Code, "2026-03")
	if err != nil {
		t.Fatal(err)
	}
	if r.Revenue != 0 || r.Target != 0 || r.Progress != 0 || r.Buyers != 0 || r.RepurchaseRate != 0 || r.AverageOrderValue != 0 {
		t.Errorf("empty month = %+v", r)
	}
	if r.From != day("2026-03-01") || r.To != day("2026-03-31") {
		t.Errorf("month days = %v..%v", r.From, r.To)
	}
}
