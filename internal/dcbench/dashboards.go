package dcbench

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/audience"
	"github.com/onemember/onemember/internal/dashboard"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/prediction"
)

// Targets of the dashboards phase (issue 8).
const (
	TargetOverviewP99    = 50 * time.Millisecond
	TargetStoreReportP99 = 50 * time.Millisecond
	TargetFit            = 10 * time.Minute
)

// Defaults of the dashboards phase's Options.
const (
	DefaultDashboardRuns    = 200
	DefaultDashboardSQLRuns = 10
)

// OverviewDays is the span of the measured SalesOverview windows.
const OverviewDays = 90

// coldOverviews is how many SalesOverview calls are timed on a replica
// that has read no day yet.
const coldOverviews = 5

// TopProducts is how many products a measured store report lists.
const TopProducts = 5

// Dashboards is the dashboards phase: the sales aggregates rebuilt over
// every order, the dashboards answered from them, each checked against
// plain SQL over the raw orders, and the prediction fit.
type Dashboards struct {
	// Rebuild is dashboard.Rebuild over every order.
	Rebuild CPU
	// Rows of the aggregates after it.
	SalesDailyRows, ProductDailyRows, StoreMemberMonthRows, FirstOrders int64
	// FirstDay and LastDay are the business days of the first and last
	// order; the measured windows end on or before LastDay.
	FirstDay, LastDay calendar.Date
	// Overview is SalesOverview of OverviewDays-day windows (every third
	// of one business unit); OverviewSQL the same overview computed by
	// one SQL statement over the raw orders, every answer of which was
	// compared with the aggregates'.
	Overview, OverviewSQL       Timings
	OverviewCPU, OverviewSQLCPU CPU
	// OverviewCold is SalesOverview on a replica that has read none of
	// the days yet (a new Service each time): the days' rows come from
	// PostgreSQL instead of the replica's memory.
	OverviewCold Timings
	// StoreReport is StoreMonthlyReport plus TopProducts(TopProducts) of
	// the month and store, over every store and the last twelve months.
	StoreReport Timings
	// MemberStats is audience.Service.MemberStats; ChannelStats is
	// ChannelStats of 30- and 90-day windows.
	MemberStats, ChannelStats Timings
	// ChannelSQL is the one run of ChannelStats as SQL over the raw orders
	// and members (90 days ending LastDay).
	ChannelSQL time.Duration
	// Checks is how many answers were compared with SQL over the raw
	// data; all agreed (the run fails otherwise).
	Checks int
	// Fit is prediction.Service.FitAndScore over every member.
	Fit        CPU
	FitSummary prediction.Summary
}

// RatioP50 is the SQL overview's p50 over the aggregates'.
func (d *Dashboards) RatioP50() float64 { return ratio(d.OverviewSQL.P50, d.Overview.P50) }

// RatioP99 is the SQL overview's p99 over the aggregates'.
func (d *Dashboards) RatioP99() float64 { return ratio(d.OverviewSQL.P99, d.Overview.P99) }

type window struct {
	from, to calendar.Date
	bu       *int
}

// dashboards runs the phase on the prepared data; svc is the audience
// service over the built index.
func (res *Result) dashboards(ctx context.Context, client *ent.Client, db *sql.DB, svc *audience.Service) error {
	o := res.Options
	d := &res.Dashboards
	dash := dashboard.New(client, db, o.Zone, time.Now, dashboard.WithMembers(svc))

	c0 := readCPU()
	if err := dash.Rebuild(ctx); err != nil {
		return fmt.Errorf("rebuilding the sales aggregates: %w", err)
	}
	d.Rebuild = since(c0)
	o.Log.Info("sales aggregates rebuilt", "took", d.Rebuild.Wall.Round(time.Millisecond))
	// Production would have autovacuum's statistics (not timed).
	if _, err := db.ExecContext(ctx, `VACUUM ANALYZE sales_daily, product_daily, product_months, store_member_months, store_months, member_first_orders, first_order_days, sales_days`); err != nil {
		return fmt.Errorf("analyzing the aggregates: %w", err)
	}
	for _, c := range []struct {
		n     *int64
		table string
	}{{&d.SalesDailyRows, "sales_daily"}, {&d.ProductDailyRows, "product_daily"},
		{&d.StoreMemberMonthRows, "store_member_months"}, {&d.FirstOrders, "member_first_orders"}} {
		n, err := queryInt(ctx, db, `SELECT count(*) FROM `+c.table)
		if err != nil {
			return fmt.Errorf("counting %s: %w", c.table, err)
		}
		*c.n = n
	}
	var first, last sql.NullString
	if err := db.QueryRowContext(ctx, `SELECT (min(paid_at) AT TIME ZONE $1)::date::text, (max(paid_at) AT TIME ZONE $1)::date::text FROM orders`,
		o.Zone.String()).Scan(&first, &last); err != nil {
		return fmt.Errorf("reading the orders' span: %w", err)
	}
	if !last.Valid {
		return fmt.Errorf("no orders: the dashboards phase needs some")
	}
	var err error
	if d.FirstDay, err = calendar.Parse(first.String); err != nil {
		return err
	}
	if d.LastDay, err = calendar.Parse(last.String); err != nil {
		return err
	}
	bus, err := queryIDs(ctx, db, `SELECT id FROM business_units ORDER BY id`)
	if err != nil {
		return fmt.Errorf("reading business units: %w", err)
	}

	if err := res.overview(ctx, client, dash, db, bus); err != nil {
		return err
	}
	if err := res.storeReports(ctx, dash, db); err != nil {
		return err
	}
	if err := res.memberStats(ctx, svc, db); err != nil {
		return err
	}
	if err := res.channelStats(ctx, dash, db); err != nil {
		return err
	}

	c0 = readCPU()
	sum, err := prediction.New(client, db, o.Zone, time.Now, o.Log).FitAndScore(ctx)
	if err != nil {
		return fmt.Errorf("fitting the predictions: %w", err)
	}
	d.Fit, d.FitSummary = since(c0), sum
	o.Log.Info("predictions fitted", "members", sum.Members, "took", d.Fit.Wall.Round(time.Millisecond))
	return nil
}

// overviewWindow is run i's window: OverviewDays days ending up to 540
// days before the last day, every third of one business unit.
func (d *Dashboards) overviewWindow(i int, bus []int64) window {
	to := d.LastDay.AddDays(-(i * 11 % 541))
	w := window{from: to.AddDays(-(OverviewDays - 1)), to: to}
	if i%3 == 1 && len(bus) > 0 {
		bu := int(bus[(i/3)%len(bus)])
		w.bu = &bu
	}
	return w
}

// overview measures SalesOverview and, taking turns with it, the same
// overview as one SQL statement over the raw orders, each SQL answer
// compared with the aggregates'.
func (res *Result) overview(ctx context.Context, client *ent.Client, dash *dashboard.Service, db *sql.DB, bus []int64) error {
	o, d := res.Options, &res.Dashboards
	var cold []time.Duration
	for i := range coldOverviews {
		w := d.overviewWindow(i*37, bus)
		fresh := dashboard.New(client, db, o.Zone, time.Now)
		start := time.Now()
		if _, err := fresh.SalesOverview(ctx, w.from, w.to, w.bu); err != nil {
			return fmt.Errorf("SalesOverview: %w", err)
		}
		cold = append(cold, time.Since(start))
	}
	d.OverviewCold = Summarize(cold)
	// A serving replica has read the days before: one pass over the whole
	// span, then the warm-ups.
	for to := d.LastDay; !to.Before(d.FirstDay); to = to.AddDays(-dashboard.MaxRangeDays) {
		if _, err := dash.SalesOverview(ctx, to.AddDays(-(dashboard.MaxRangeDays - 1)), to, nil); err != nil {
			return fmt.Errorf("SalesOverview: %w", err)
		}
	}
	for i := range max(o.Warmups, 1) {
		w := d.overviewWindow(i, bus)
		if _, err := dash.SalesOverview(ctx, w.from, w.to, w.bu); err != nil {
			return fmt.Errorf("SalesOverview: %w", err)
		}
	}
	per := (o.DashboardRuns + o.DashboardSQLRuns - 1) / o.DashboardSQLRuns
	var agg, raw []time.Duration
	var aggCPU, rawCPU meter
	snap := readCPU()
	lap := func(m *meter) {
		next := readCPU()
		m.add(between(snap, next))
		snap = next
	}
	n := 0
	for j := range o.DashboardSQLRuns {
		var checked window
		var got *dashboard.Overview
		for k := range per {
			w := d.overviewWindow(n, bus)
			n++
			start := time.Now()
			ov, err := dash.SalesOverview(ctx, w.from, w.to, w.bu)
			took := time.Since(start)
			if err != nil {
				return fmt.Errorf("SalesOverview: %w", err)
			}
			agg = append(agg, took)
			if k == 0 {
				checked, got = w, ov
			}
		}
		lap(&aggCPU)
		start := time.Now()
		want, err := overviewSQL(ctx, db, res.Options.Zone, checked)
		took := time.Since(start)
		if err != nil {
			return fmt.Errorf("the overview in SQL: %w", err)
		}
		raw = append(raw, took)
		lap(&rawCPU)
		if !reflect.DeepEqual(got, want) {
			return fmt.Errorf("%w: SalesOverview(%s..%s, business unit %v) (SQL run %d):\n aggregates %+v\n SQL        %+v",
				ErrMismatch, checked.from, checked.to, deref(checked.bu), j+1, got, want)
		}
		d.Checks++
	}
	d.Overview, d.OverviewSQL = Summarize(agg), Summarize(raw)
	d.OverviewCPU, d.OverviewSQLCPU = aggCPU.total(), rawCPU.total()
	o.Log.Info("sales overview measured", "p50", d.Overview.P50, "p99", d.Overview.P99, "sql_p50", d.OverviewSQL.P50)
	return nil
}

func deref(p *int) any {
	if p == nil {
		return "all"
	}
	return *p
}

// paidMemberSQL says whether order o's member held a paid membership
// whose purchased period covers its paid_at.
const paidMemberSQL = `EXISTS (SELECT 1 FROM paid_memberships pm JOIN paid_membership_purchases pp ON pp.membership_id = pm.id
  WHERE pm.member_id = o.member_id AND pp.period_start <= o.paid_at AND o.paid_at < pp.period_end)`

// overviewSQL computes SalesOverview over the raw orders in one
// statement (grouping sets: the total, by channel, by business unit, by
// day), with the package dashboard's definitions.
func overviewSQL(ctx context.Context, db *sql.DB, zone *time.Location, w window) (*dashboard.Overview, error) {
	var bu sql.NullInt64
	if w.bu != nil {
		bu = sql.NullInt64{Int64: int64(*w.bu), Valid: true}
	}
	rows, err := db.QueryContext(ctx, `SELECT grouping(o.channel, b.code, x.d), o.channel, b.code, x.d::text,
  coalesce(sum(o.amount - o.refunded_amount), 0)::bigint, count(*) FILTER (WHERE o.refunded_amount < o.amount),
  count(DISTINCT o.member_id) FILTER (WHERE o.refunded_amount < o.amount),
  coalesce(sum(o.amount - o.refunded_amount) FILTER (WHERE x.paid), 0)::bigint
FROM orders o JOIN business_units b ON b.id = o.business_unit_id
CROSS JOIN LATERAL (SELECT (o.paid_at AT TIME ZONE $4)::date AS d, `+paidMemberSQL+` AS paid) x
WHERE o.paid_at >= $1 AND o.paid_at < $2 AND ($3::bigint IS NULL OR o.business_unit_id = $3)
GROUP BY GROUPING SETS ((), (o.channel), (b.code), (x.d))`,
		w.from.Start(zone), w.to.AddDays(1).Start(zone), bu, zone.String())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := &dashboard.Overview{ByChannel: []dashboard.Breakdown{}, ByBusinessUnit: []dashboard.Breakdown{}}
	days := map[string]dashboard.Day{}
	var member int64
	for rows.Next() {
		var g int
		var channel, code, day sql.NullString
		var revenue, paid int64
		var orders, buyers int
		if err := rows.Scan(&g, &channel, &code, &day, &revenue, &orders, &buyers, &paid); err != nil {
			return nil, err
		}
		switch g {
		case 7:
			out.Revenue, out.Orders, out.Buyers, member = revenue, orders, buyers, paid
		case 3:
			out.ByChannel = append(out.ByChannel, dashboard.Breakdown{Key: channel.String, Revenue: revenue, Orders: orders})
		case 5:
			out.ByBusinessUnit = append(out.ByBusinessUnit, dashboard.Breakdown{Key: code.String, Revenue: revenue, Orders: orders})
		case 6:
			days[day.String] = dashboard.Day{Revenue: revenue, Orders: orders, Buyers: buyers}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if out.Orders > 0 {
		out.AverageOrderValue = (out.Revenue*2 + int64(out.Orders)) / (2 * int64(out.Orders))
	}
	if out.Revenue > 0 {
		out.MemberRevenueShare = float64(member) / float64(out.Revenue)
	}
	for _, b := range [][]dashboard.Breakdown{out.ByChannel, out.ByBusinessUnit} {
		slices.SortFunc(b, func(x, y dashboard.Breakdown) int {
			return cmp.Or(cmp.Compare(y.Revenue, x.Revenue), cmp.Compare(x.Key, y.Key))
		})
	}
	for day := w.from; !w.to.Before(day); day = day.AddDays(1) {
		x := days[day.String()]
		x.Date = day
		out.ByDay = append(out.ByDay, x)
	}
	return out, nil
}

// storeReports measures StoreMonthlyReport with its top products over
// every store and the last twelve months, the first answers compared
// with SQL over the raw orders and lines.
func (res *Result) storeReports(ctx context.Context, dash *dashboard.Service, db *sql.DB) error {
	o, d := res.Options, &res.Dashboards
	rows, err := db.QueryContext(ctx, `SELECT id, code FROM stores ORDER BY id`)
	if err != nil {
		return fmt.Errorf("reading stores: %w", err)
	}
	type store struct {
		id   int
		code string
	}
	var stores []store
	for rows.Next() {
		var s store
		if err := rows.Scan(&s.id, &s.code); err != nil {
			rows.Close()
			return err
		}
		stores = append(stores, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	if len(stores) == 0 {
		return fmt.Errorf("no stores")
	}
	var months []string
	for k := range 12 {
		m := time.Date(d.LastDay.Year, d.LastDay.Month-time.Month(k), 1, 0, 0, 0, 0, time.UTC)
		months = append(months, m.Format("2006-01"))
	}
	report := func(i int) (*dashboard.StoreReport, []dashboard.Product, time.Duration, error) {
		st, month := stores[i%len(stores)], months[(i*7)%len(months)]
		start := time.Now()
		r, err := dash.StoreMonthlyReport(ctx, st.code, month)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("StoreMonthlyReport: %w", err)
		}
		top, err := dash.TopProducts(ctx, r.From, r.To, TopProducts, &r.Store.ID)
		if err != nil {
			return nil, nil, 0, fmt.Errorf("TopProducts: %w", err)
		}
		return r, top, time.Since(start), nil
	}
	for i := range max(o.Warmups, 1) {
		if _, _, _, err := report(i); err != nil {
			return err
		}
	}
	var took []time.Duration
	for i := range o.DashboardRuns {
		r, top, t, err := report(i)
		if err != nil {
			return err
		}
		took = append(took, t)
		if i < 3 {
			if err := checkStoreReport(ctx, db, o.Zone, r, top); err != nil {
				return err
			}
			d.Checks++
		}
	}
	d.StoreReport = Summarize(took)
	o.Log.Info("store reports measured", "p50", d.StoreReport.P50, "p99", d.StoreReport.P99)
	return nil
}

// checkStoreReport compares a store month and its top products with SQL
// over the raw orders and lines.
func checkStoreReport(ctx context.Context, db *sql.DB, zone *time.Location, got *dashboard.StoreReport, top []dashboard.Product) error {
	lo, hi := got.From.Start(zone), got.To.AddDays(1).Start(zone)
	want := &dashboard.StoreReport{Month: got.Month, From: got.From, To: got.To, Target: got.Target}
	var repeat int
	if err := db.QueryRowContext(ctx, `WITH c AS (SELECT * FROM orders WHERE store_id = $1 AND refunded_amount < amount)
SELECT (SELECT coalesce(sum(amount - refunded_amount), 0)::bigint FROM orders WHERE store_id = $1 AND paid_at >= $2 AND paid_at < $3),
  (SELECT count(*) FROM c WHERE paid_at >= $2 AND paid_at < $3),
  (SELECT count(DISTINCT member_id) FROM c WHERE paid_at >= $2 AND paid_at < $3),
  (SELECT count(DISTINCT member_id) FROM c WHERE paid_at >= $2 AND paid_at < $3
     AND NOT EXISTS (SELECT 1 FROM c AS e WHERE e.member_id = c.member_id AND e.paid_at < $2)),
  (SELECT count(*) FROM (SELECT member_id FROM c WHERE paid_at >= $2 AND paid_at < $3 GROUP BY member_id HAVING count(*) >= 2) x)`,
		got.Store.ID, lo, hi).Scan(&want.Revenue, &want.Orders, &want.Buyers, &want.NewMembers, &repeat); err != nil {
		return fmt.Errorf("the store report in SQL: %w", err)
	}
	if want.Orders > 0 {
		want.AverageOrderValue = (want.Revenue*2 + int64(want.Orders)) / (2 * int64(want.Orders))
	}
	if want.Target > 0 {
		want.Progress = float64(want.Revenue) / float64(want.Target)
	}
	if want.Buyers > 0 {
		want.RepurchaseRate = float64(repeat) / float64(want.Buyers)
	}
	g := *got
	g.Store = nil
	if !reflect.DeepEqual(&g, want) {
		return fmt.Errorf("%w: StoreMonthlyReport(%s, %s):\n aggregates %+v\n SQL        %+v", ErrMismatch, got.Store.Code, got.Month, &g, want)
	}
	rows, err := db.QueryContext(ctx, `WITH l AS (
  SELECT o.member_id, o.amount, o.refunded_amount, i.sku, i.name, i.category, i.quantity, i.amount AS line,
         (SELECT sum(j.amount) FROM order_items j WHERE j.order_id = o.id)::bigint AS lines, `+paidMemberSQL+` AS paid
  FROM orders o JOIN order_items i ON i.order_id = o.id
  WHERE o.paid_at >= $1 AND o.paid_at < $2 AND o.store_id = $3)
SELECT sku, max(name), max(category), sum(line * (amount - refunded_amount) / lines)::bigint,
  coalesce(sum(quantity) FILTER (WHERE refunded_amount < amount), 0)::bigint,
  count(DISTINCT member_id) FILTER (WHERE refunded_amount < amount),
  coalesce(sum(line * (amount - refunded_amount) / lines) FILTER (WHERE paid), 0)::bigint
FROM l GROUP BY sku ORDER BY 4 DESC, sku COLLATE "C" LIMIT $4`, lo, hi, got.Store.ID, TopProducts)
	if err != nil {
		return fmt.Errorf("top products in SQL: %w", err)
	}
	defer rows.Close()
	wantTop := []dashboard.Product{}
	for rows.Next() {
		var p dashboard.Product
		var member int64
		if err := rows.Scan(&p.SKU, &p.Name, &p.Category, &p.Revenue, &p.Quantity, &p.Buyers, &member); err != nil {
			return err
		}
		if p.Revenue > 0 {
			p.MemberShare = float64(member) / float64(p.Revenue)
		}
		wantTop = append(wantTop, p)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if !reflect.DeepEqual(top, wantTop) {
		return fmt.Errorf("%w: TopProducts(%s, %s, %d):\n aggregates %+v\n SQL        %+v", ErrMismatch, got.Store.Code, got.Month, TopProducts, top, wantTop)
	}
	return nil
}

// memberStats measures MemberStats and compares its totals and
// distributions by gender and channel with SQL over the members and
// orders.
func (res *Result) memberStats(ctx context.Context, svc *audience.Service, db *sql.DB) error {
	o, d := res.Options, &res.Dashboards
	runs := max(o.DashboardRuns/4, 1)
	var took []time.Duration
	var last *audience.MemberStats
	for i := range runs + max(o.Warmups, 1) {
		start := time.Now()
		st, err := svc.MemberStats(ctx)
		t := time.Since(start)
		if err != nil {
			return fmt.Errorf("MemberStats: %w", err)
		}
		if i >= max(o.Warmups, 1) {
			took = append(took, t)
		}
		last = st
	}
	d.MemberStats = Summarize(took)
	line := calendar.In(time.Now(), o.Zone).AddDays(-29).Start(o.Zone)
	var total, fresh, active int64
	if err := db.QueryRowContext(ctx, `SELECT count(*), count(*) FILTER (WHERE registered_at >= $1),
  count(*) FILTER (WHERE EXISTS (SELECT 1 FROM orders o WHERE o.member_id = m.id AND o.refunded_amount < o.amount AND o.paid_at >= $1))
FROM members m WHERE m.status = 'ACTIVE'`, line).Scan(&total, &fresh, &active); err != nil {
		return fmt.Errorf("member stats in SQL: %w", err)
	}
	if total != last.Total || fresh != last.NewLast30Days || active != last.ActiveLast30Days {
		return fmt.Errorf("%w: MemberStats total / new / active %d / %d / %d, SQL %d / %d / %d",
			ErrMismatch, last.Total, last.NewLast30Days, last.ActiveLast30Days, total, fresh, active)
	}
	for _, c := range []struct {
		name, col string
		got       []audience.Distribution
	}{{"gender", "gender", last.ByGender}, {"channel", "source_channel", last.ByChannel}} {
		counts := map[string]int64{}
		rows, err := db.QueryContext(ctx, `SELECT `+c.col+`, count(*) FROM members WHERE status = 'ACTIVE' GROUP BY 1`)
		if err != nil {
			return fmt.Errorf("member stats by %s in SQL: %w", c.name, err)
		}
		for rows.Next() {
			var k string
			var n int64
			if err := rows.Scan(&k, &n); err != nil {
				rows.Close()
				return err
			}
			counts[k] = n
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		var listed int64
		for _, x := range c.got {
			if x.Count != counts[x.Key] {
				return fmt.Errorf("%w: MemberStats by %s, %s: %d, SQL %d", ErrMismatch, c.name, x.Key, x.Count, counts[x.Key])
			}
			listed += x.Count
		}
		if listed != total {
			return fmt.Errorf("%w: MemberStats by %s lists %d members of %d", ErrMismatch, c.name, listed, total)
		}
	}
	d.Checks++
	o.Log.Info("member stats measured", "p50", d.MemberStats.P50, "p99", d.MemberStats.P99)
	return nil
}

// channelStats measures ChannelStats over 30- and 90-day windows and
// compares the 90 days ending on the last day with one SQL statement over
// the raw orders and members.
func (res *Result) channelStats(ctx context.Context, dash *dashboard.Service, db *sql.DB) error {
	o, d := res.Options, &res.Dashboards
	runs := max(o.DashboardRuns/4, 1)
	win := func(i int) (calendar.Date, calendar.Date) {
		to := d.LastDay.AddDays(-(i * 13 % 361))
		if i%2 == 0 {
			return to.AddDays(-29), to
		}
		return to.AddDays(-89), to
	}
	var took []time.Duration
	for i := range runs + max(o.Warmups, 1) {
		from, to := win(i)
		start := time.Now()
		if _, err := dash.ChannelStats(ctx, from, to); err != nil {
			return fmt.Errorf("ChannelStats: %w", err)
		}
		if t := time.Since(start); i >= max(o.Warmups, 1) {
			took = append(took, t)
		}
	}
	d.ChannelStats = Summarize(took)
	from, to := d.LastDay.AddDays(-89), d.LastDay
	got, err := dash.ChannelStats(ctx, from, to)
	if err != nil {
		return fmt.Errorf("ChannelStats: %w", err)
	}
	start := time.Now()
	rows, err := db.QueryContext(ctx, `WITH c AS (
  SELECT member_id, min(paid_at) AS first, max(paid_at) FILTER (WHERE paid_at < $2) AS last,
         bool_or(paid_at >= $1 AND paid_at < $2) AS active
  FROM orders WHERE refunded_amount < amount GROUP BY member_id)
SELECT k.ch, count(m.id) FILTER (WHERE m.registered_at >= $1 AND m.registered_at < $2), count(m.id) FILTER (WHERE c.active),
  count(m.id) FILTER (WHERE c.first >= $1 AND c.first < $2), count(m.id) FILTER (WHERE c.last >= $3 AND c.last < $4)
FROM unnest($5::text[]) WITH ORDINALITY AS k(ch, i)
LEFT JOIN members m ON m.source_channel = k.ch AND m.status = 'ACTIVE'
LEFT JOIN c ON c.member_id = m.id
GROUP BY k.ch, k.i ORDER BY k.i`,
		from.Start(o.Zone), to.AddDays(1).Start(o.Zone), from.AddDays(-(dashboard.ChurnDays + 1)).Start(o.Zone),
		to.AddDays(-dashboard.ChurnDays).Start(o.Zone), channelArray())
	if err != nil {
		return fmt.Errorf("channel stats in SQL: %w", err)
	}
	var want []dashboard.ChannelStat
	for rows.Next() {
		var s dashboard.ChannelStat
		if err := rows.Scan(&s.Channel, &s.NewMembers, &s.ActiveMembers, &s.ConvertedMembers, &s.ChurnedMembers); err != nil {
			rows.Close()
			return err
		}
		want = append(want, s)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	d.ChannelSQL = time.Since(start)
	if !reflect.DeepEqual(got, want) {
		return fmt.Errorf("%w: ChannelStats(%s..%s):\n aggregates %+v\n SQL        %+v", ErrMismatch, from, to, got, want)
	}
	d.Checks++
	o.Log.Info("channel stats measured", "p50", d.ChannelStats.P50, "p99", d.ChannelStats.P99, "sql", d.ChannelSQL)
	return nil
}

// channelArray is every Channel value as a PostgreSQL text[] literal.
func channelArray() string {
	s := "{"
	for i, c := range enum.Channel("").Values() {
		if i > 0 {
			s += ","
		}
		s += c
	}
	return s + "}"
}
