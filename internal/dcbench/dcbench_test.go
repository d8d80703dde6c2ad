package dcbench_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/lib/pq"

	"github.com/onemember/onemember/internal/audience"
	"github.com/onemember/onemember/internal/dcbench"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/pgtest"
)

func TestSummarize(t *testing.T) {
	var d []time.Duration
	for i := 200; i >= 1; i-- {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	got := dcbench.Summarize(d)
	want := dcbench.Timings{N: 200, Min: time.Millisecond, P50: 100 * time.Millisecond, P99: 198 * time.Millisecond,
		Max: 200 * time.Millisecond, Mean: 100500 * time.Microsecond}
	if got != want {
		t.Errorf("Summarize = %+v, want %+v", got, want)
	}
	if d[0] != 200*time.Millisecond {
		t.Error("Summarize sorted its input")
	}
	if z := dcbench.Summarize(nil); z != (dcbench.Timings{}) {
		t.Errorf("empty: %+v", z)
	}
}

func TestSameMembers(t *testing.T) {
	bm := roaring.BitmapOf(0, 7, 9)
	ids := []int64{int64(audience.MemberID(0)), int64(audience.MemberID(7)), int64(audience.MemberID(9))}
	if err := dcbench.SameMembers(bm, ids); err != nil {
		t.Errorf("same members: %v", err)
	}
	for _, bad := range [][]int64{ids[:2], {ids[0], ids[1], ids[2] + 1}, {ids[0], ids[2], ids[1]}, nil} {
		if err := dcbench.SameMembers(bm, bad); !errors.Is(err, dcbench.ErrMismatch) {
			t.Errorf("%v: %v, want ErrMismatch", bad, err)
		}
	}
}

func TestScaleValidate(t *testing.T) {
	for _, bad := range []dcbench.Scale{{Members: 10, Orders: 100}, {Members: 5000, Orders: -1}, {Members: dcbench.MaxMembers + 1}} {
		if err := bad.Validate(); err == nil {
			t.Errorf("%+v: no error", bad)
		}
	}
	if err := (dcbench.Scale{Members: 1000, Orders: 0}).Validate(); err != nil {
		t.Errorf("1000 members, no orders: %v", err)
	}
}

// TestRun runs the whole benchmark at a tiny scale: the data has the
// promised shape, the engine and SQL agree, a second run reuses the data
// and another scale or Fresh regenerates it.
func TestRun(t *testing.T) {
	ctx := context.Background()
	admin := pgtest.AdminDSN(t)
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "onemember_dcbench_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		db, err := database.Open(context.Background(), admin, database.Options{MaxOpenConns: 1})
		if err != nil {
			t.Errorf("dropping %s: %v", name, err)
			return
		}
		defer db.Close()
		if _, err := db.Exec(`DROP DATABASE IF EXISTS ` + pq.QuoteIdentifier(name) + ` WITH (FORCE)`); err != nil {
			t.Errorf("dropping %s: %v", name, err)
		}
	})
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	opts := dcbench.Options{
		Log: log, AdminURL: admin, Database: name, Scale: dcbench.Scale{Members: 3000, Orders: 20000},
		Evaluations: 30, Warmups: 2, SQLRuns: 2, SQLWarmups: 1, IndexBuilds: 1, DashboardRuns: 12, DashboardSQLRuns: 3,
	}
	ds, err := dcbench.Prepare(ctx, dcbench.PrepareOptions{Log: log, AdminURL: admin, Database: name, Scale: opts.Scale})
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	if !ds.Generated {
		t.Error("prepare: the data was not generated")
	}
	checkData(t, ds.DSN, opts.Scale)

	res, err := dcbench.Run(ctx, opts)
	if err != nil {
		t.Fatalf("first run: %v", err)
	}
	if res.Dataset.Generated || !res.Dataset.GeneratedAt.Equal(ds.GeneratedAt) {
		t.Errorf("first run regenerated the data (generated at %v, then %v)", ds.GeneratedAt, res.Dataset.GeneratedAt)
	}
	if res.Size == 0 {
		t.Fatal("the rule selects nobody: the benchmark measures nothing")
	}
	if res.Engine.N != 30 || res.SQLCount.N != 2 || res.SQLIDs.N != 2 || len(res.Index.Builds) != 1 {
		t.Errorf("runs: engine %d, SQL %d+%d, builds %d", res.Engine.N, res.SQLCount.N, res.SQLIDs.N, len(res.Index.Builds))
	}
	if res.Rfm.Members == 0 || res.Rfm.Compute.Wall <= 0 || res.Rfm.Recompute.Wall <= 0 {
		t.Errorf("RFM: %+v", res.Rfm)
	}
	d := res.Dashboards
	if d.Overview.N != 12 || d.OverviewSQL.N != 3 || d.StoreReport.N != 12 || d.MemberStats.N != 3 || d.ChannelStats.N != 3 {
		t.Errorf("dashboard runs: overview %d, SQL %d, store %d, members %d, channels %d",
			d.Overview.N, d.OverviewSQL.N, d.StoreReport.N, d.MemberStats.N, d.ChannelStats.N)
	}
	// Every SQL overview, three store reports, the member and the channel
	// stats were compared with the raw data.
	if d.Checks != 3+3+1+1 {
		t.Errorf("%d dashboard answers checked, want 8", d.Checks)
	}
	if d.SalesDailyRows == 0 || d.ProductDailyRows == 0 || d.FirstOrders == 0 || d.FitSummary.Members == 0 || d.Fit.Wall <= 0 {
		t.Errorf("dashboards phase: %+v", d)
	}

	var report bytes.Buffer
	if err := res.WriteReport(&report, "test"); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"| previewAudience, engine p50 / p99 |", "| RFM compute / recompute, 3,000 members, 20,000 orders |",
		"| SalesOverview, 90 days, p50 / p99 |", "| StoreMonthlyReport + TopProducts(5), p50 / p99 |", "| prediction fit and scoring",
		"matched the engine on every one of their 6 runs", "EXPLAIN (ANALYZE, BUFFERS)", "Execution Time", "load average"} {
		if !strings.Contains(report.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, report.String())
		}
	}

	// Same scale again: reused, and the earlier run's model and audience
	// are gone.
	again, err := dcbench.Run(ctx, opts)
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	if again.Dataset.Generated {
		t.Error("second run regenerated the data")
	}
	if again.Size != res.Size {
		t.Errorf("the same data selects %d members, then %d", res.Size, again.Size)
	}
	db := open(t, res.Dataset.DSN)
	if n := count(t, db, `SELECT count(*) FROM rfm_models`) + count(t, db, `SELECT count(*) FROM audiences`); n != 2 {
		t.Errorf("%d RFM models and audiences after two runs, want one of each", n)
	}
	db.Close()

	// Another scale under the same name, then Fresh: regenerated, and
	// the same both times (setseed).
	popts := dcbench.PrepareOptions{Log: log, AdminURL: admin, Database: name, Scale: dcbench.Scale{Members: 3000, Orders: 8000}}
	other, err := dcbench.Prepare(ctx, popts)
	if err != nil {
		t.Fatalf("prepare at another scale: %v", err)
	}
	if !other.Generated {
		t.Error("another scale reused the data")
	}
	first := fingerprint(t, other.DSN)
	popts.Fresh = true
	fresh, err := dcbench.Prepare(ctx, popts)
	if err != nil {
		t.Fatalf("fresh prepare: %v", err)
	}
	if !fresh.Generated {
		t.Error("Fresh reused the data")
	}
	if again := fingerprint(t, fresh.DSN); again != first {
		t.Errorf("regenerating the same scale gave other data: %s, then %s", first, again)
	}
}

// fingerprint sums up the generated data.
func fingerprint(t *testing.T, dsn string) string {
	t.Helper()
	db := open(t, dsn)
	defer db.Close()
	var fp string
	if err := db.QueryRow(`SELECT concat_ws(' ', (SELECT count(*) FROM orders), (SELECT sum(amount) FROM orders),
  (SELECT sum(member_id) FROM orders), (SELECT count(*) FROM member_tags), (SELECT count(*) FROM members WHERE status = 'ACTIVE'),
  (SELECT sum(coalesce(tier_id, 0)) FROM members))`).Scan(&fp); err != nil {
		t.Fatal(err)
	}
	return fp
}

// checkData checks the generated data's shape.
func checkData(t *testing.T, dsn string, sc dcbench.Scale) {
	t.Helper()
	db := open(t, dsn)
	defer db.Close()
	members := count(t, db, `SELECT count(*) FROM members`)
	if members != int64(sc.Members) {
		t.Errorf("%d members, want %d", members, sc.Members)
	}
	if n := count(t, db, `SELECT count(*) FROM orders`); n != int64(sc.Orders) {
		t.Errorf("%d orders, want exactly %d", n, sc.Orders)
	}
	near := func(what string, got int64, share, tol float64) {
		t.Helper()
		if g := float64(got) / float64(members); math.Abs(g-share) > tol {
			t.Errorf("%s: %.3f of the members, want %.2f ± %.2f", what, g, share, tol)
		}
	}
	near("buyers", count(t, db, `SELECT count(DISTINCT member_id) FROM orders`), 0.70, 0.04)
	near("ACTIVE", count(t, db, `SELECT count(*) FROM members WHERE status = 'ACTIVE'`), 0.96, 0.02)
	near("paid members", count(t, db, `SELECT count(*) FROM paid_memberships`), 0.08*0.96, 0.02)
	near("GOLD", count(t, db, `SELECT count(*) FROM members m JOIN tiers t ON t.id = m.tier_id WHERE t.code = 'GOLD'`), 0.20, 0.03)
	near("untiered", count(t, db, `SELECT count(*) FROM members WHERE tier_id IS NULL`), 0.40, 0.03)
	for i, share := range dcbench.TagShares {
		near("tag", count(t, db, `SELECT count(*) FROM member_tags mt JOIN tags t ON t.id = mt.tag_id WHERE t.name = $1`,
			"dcbench tag "+string(rune('1'+i))), share, 0.03)
	}
	for what, q := range map[string]string{
		"orders of unknown members":           `SELECT count(*) FROM orders o WHERE NOT EXISTS (SELECT 1 FROM members m WHERE m.id = o.member_id)`,
		"orders whose store is in another BU": `SELECT count(*) FROM orders o JOIN stores s ON s.id = o.store_id WHERE s.business_unit_id <> o.business_unit_id`,
		"orders older than two years":         `SELECT count(*) FROM orders WHERE paid_at < now() - interval '731 days'`,
		"refunds larger than the order":       `SELECT count(*) FROM orders WHERE refunded_amount > amount OR amount <= 0`,
		"orders whose lines miss the amount": `SELECT count(*) FROM orders o WHERE o.amount IS DISTINCT FROM (SELECT sum(amount) FROM order_items i WHERE i.order_id = o.id)
  OR (SELECT count(*) FROM order_items i WHERE i.order_id = o.id) NOT BETWEEN 1 AND 3`,
		"lines without a quantity or product": `SELECT count(*) FROM order_items WHERE quantity NOT BETWEEN 1 AND 3 OR sku NOT LIKE 'DCB-SKU-%' OR amount <= 0`,
		"paid memberships without purchases": `SELECT count(*) FROM paid_memberships pm WHERE (SELECT count(*) FROM paid_membership_purchases p WHERE p.membership_id = pm.id)
  NOT BETWEEN 1 AND 3 OR pm.expires_at <> (SELECT max(period_end) FROM paid_membership_purchases p WHERE p.membership_id = pm.id)`,
		"member changes (triggers fired)": `SELECT count(*) FROM member_changes`,
		"dropped indexes not rebuilt":     `SELECT 4 - count(*) FROM pg_indexes WHERE tablename = 'orders' AND indexname IN ('orders_pkey', 'order_channel_external_id', 'order_member_id_paid_at', 'order_paid_at')`,
	} {
		if n := count(t, db, q); n != 0 {
			t.Errorf("%s: %d", what, n)
		}
	}
	if n := count(t, db, `SELECT count(*) FROM orders WHERE status = 'REFUNDED'`); n == 0 || float64(n)/float64(sc.Orders) > 0.05 {
		t.Errorf("%d REFUNDED orders of %d, want about 3 %%", n, sc.Orders)
	}
	// Some members buy much more than others.
	if top := count(t, db, `SELECT max(c) FROM (SELECT count(*) AS c FROM orders GROUP BY member_id) x`); float64(top) < 8*float64(sc.Orders)/float64(sc.Members) {
		t.Errorf("the busiest buyer has %d orders: no skew", top)
	}
}

func open(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := database.Open(context.Background(), dsn, database.Options{MaxOpenConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func count(t *testing.T, db *sql.DB, query string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}
