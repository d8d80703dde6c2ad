package analytics_test

import (
	"context"
	"database/sql"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/analytics"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/testkit"
)

// TestScale times ComputeRfm and an AIPL snapshot on generated data: by
// default 200,000 members, ten orders each on average over 400 days and
// five behaviour events each over 90 days. It runs only with
// ANALYTICS_SCALE=1 (ANALYTICS_SCALE_MEMBERS changes the size):
//
//	ANALYTICS_SCALE=1 go test -run TestScale -v -timeout 1h ./internal/analytics/
//
// ANALYTICS_SCALE_DSN=<url> times a database generated before instead.
func TestScale(t *testing.T) {
	if os.Getenv("ANALYTICS_SCALE") != "1" {
		t.Skip("set ANALYTICS_SCALE=1 to time the models on generated data")
	}
	members := 200_000
	if v := os.Getenv("ANALYTICS_SCALE_MEMBERS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("ANALYTICS_SCALE_MEMBERS: %v", err)
		}
		members = n
	}
	ctx := context.Background()
	// ANALYTICS_SCALE_DSN names a database generated before (by an
	// earlier run, or by hand with the same statements) to time again.
	dsn := os.Getenv("ANALYTICS_SCALE_DSN")
	var client *ent.Client
	var sqlDB *sql.DB
	if dsn != "" {
		client, sqlDB = testkit.OpenEntClient(t, dsn, 4)
	} else {
		client, sqlDB = testkit.EntClient(t, 4)
	}
	zone := testkit.Shanghai(t)
	// The real clock: behavior_events has partitions around today.
	now := time.Now()
	svc := analytics.New(client, sqlDB, zone, func() time.Time { return now })
	step := func(what, query string, args ...any) {
		t.Helper()
		start := time.Now()
		if _, err := sqlDB.ExecContext(ctx, query, args...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		t.Logf("%s: %v", what, time.Since(start).Round(time.Millisecond))
	}
	if dsn == "" {
		generate(t, client, step, members, now)
	}
	t.Logf("%s members, %s orders, %s events", count(t, sqlDB, "members"), count(t, sqlDB, "orders"), count(t, sqlDB, "behavior_events"))
	for _, mode := range []enum.RfmSplitMode{enum.RfmSplitMean, enum.RfmSplitMedian} {
		m, err := svc.CreateRfmModel(ctx, analytics.CreateRfmInput{Name: string(mode), WindowDays: 365,
			Split: analytics.RfmSplit{Mode: mode}})
		if err != nil {
			t.Fatalf("creating model: %v", err)
		}
		for _, run := range []string{"first", "again"} {
			start := time.Now()
			n, err := svc.ComputeRfm(ctx, m.ID)
			if err != nil {
				t.Fatalf("computing: %v", err)
			}
			t.Logf("ComputeRfm %s (%s run): %d members in %v", mode, run, n, time.Since(start).Round(time.Millisecond))
		}
	}

	am, err := svc.CreateAiplModel(ctx, defaultAipl("scale"))
	if err != nil {
		t.Fatalf("creating AIPL model: %v", err)
	}
	start := time.Now()
	sn, err := svc.AiplSnapshot(ctx, am.ID, calendar.In(now, zone))
	if err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	t.Logf("AiplSnapshot: %+v in %v", sn, time.Since(start).Round(time.Millisecond))
	start = time.Now()
	if _, err := svc.AiplFlow(ctx, am.ID, calendar.In(now, zone).AddDays(-30), calendar.In(now, zone)); err != nil {
		t.Fatalf("flow: %v", err)
	}
	t.Logf("AiplFlow: %v", time.Since(start).Round(time.Millisecond))
}

// generate fills a fresh database with members, orders and events.
func generate(t *testing.T, client *ent.Client, step func(what, query string, args ...any), members int, now time.Time) {
	ctx := context.Background()
	bu, err := client.BusinessUnit.Create().SetCode("BU").SetName("超市").SetKind("SUPERMARKET").Save(ctx)
	if err != nil {
		t.Fatalf("creating business unit: %v", err)
	}
	st, err := client.Store.Create().SetCode("S").SetName("门店").SetBusinessUnitID(bu.ID).Save(ctx)
	if err != nil {
		t.Fatalf("creating store: %v", err)
	}
	step("members", `INSERT INTO members (created_at, updated_at, member_no, status, source_channel, registered_at)
SELECT $2::timestamptz, $2::timestamptz, 'S' || g,
  CASE WHEN g % 50 = 0 THEN 'FROZEN' WHEN g % 97 = 0 THEN 'MERGED' ELSE 'ACTIVE' END,
  'POS', $2::timestamptz - (g % 1000) * interval '1 day'
FROM generate_series(1, $1::bigint) g`, members, now)
	step("orders", `INSERT INTO orders (external_id, channel, member_id, status, amount, refunded_amount, paid_at,
  created_at, store_id, business_unit_id)
SELECT 'X' || g, CASE WHEN g % 3 = 0 THEN 'MINI_PROGRAM' ELSE 'POS' END,
  (SELECT min(id) FROM members) + (random() * ($1::bigint - 1))::bigint,
  CASE WHEN g % 20 = 0 THEN 'REFUNDED' ELSE 'PAID' END,
  100 + (g * 7919) % 100000, CASE WHEN g % 20 = 0 THEN 100 + (g * 7919) % 100000 ELSE 0 END,
  $2::timestamptz - random() * interval '400 days', $2, $3, $4
FROM generate_series(1, 10 * $1::bigint) g`, members, now, st.ID, bu.ID)
	step("events", `INSERT INTO behavior_events (member_id, kind, occurred_at, channel, source, event_id)
SELECT (SELECT min(id) FROM members) + (random() * ($1::bigint - 1))::bigint,
  (ARRAY['VIEW','CLICK','WATCH','FAVORITE','ADD_TO_CART','SHARE','REVIEW'])[1 + g % 7],
  $2::timestamptz - random() * interval '90 days', 'APP', 's', 'E' || g
FROM generate_series(1, 5 * $1::bigint) g`, members, now)
	step("analyze", `ANALYZE members, orders, behavior_events`)

}

func count(t *testing.T, db *sql.DB, table string) string {
	var n int64
	if err := db.QueryRowContext(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatalf("counting %s: %v", table, err)
	}
	return strconv.FormatInt(n, 10)
}
