package dcbench_test

import (
	"context"
	"os"
	"runtime/pprof"
	"testing"
	"time"

	entdialect "entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/internal/dashboard"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/database"
)

func TestZZProf2(t *testing.T) {
	dsn := os.Getenv("ZZEXP")
	if dsn == "" {
		t.Skip()
	}
	ctx := context.Background()
	db, err := database.Open(ctx, dsn, database.Options{MaxOpenConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	client := ent.NewClient(ent.Driver(entsql.OpenDB(entdialect.Postgres, db)))
	zone, _ := time.LoadLocation("Asia/Shanghai")
	dash := dashboard.New(client, db, zone, time.Now)
	last, _ := calendar.Parse("2026-11-22")
	// raw scan only
	start := time.Now()
	for range 20 {
		rows, err := db.QueryContext(ctx, `SELECT s.day::text, s.channel, b.code, s.revenue, s.member_revenue, s.orders, s.buyers
FROM sales_daily s JOIN business_units b ON b.id = s.business_unit_id WHERE s.day BETWEEN $1::date AND $2::date`, last.AddDays(-89).String(), last.String())
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var a, b, c string
			var x, y, z int64
			var buf []byte
			rows.Scan(&a, &b, &c, &x, &y, &z, &buf)
		}
		rows.Close()
	}
	t.Logf("scan only: %v per call", time.Since(start)/20)
	for i := range 40 {
		to := last.AddDays(-(i * 11 % 541))
		dash.SalesOverview(ctx, to.AddDays(-89), to, nil)
	}
	f, _ := os.Create("/tmp/overview.prof")
	pprof.StartCPUProfile(f)
	start = time.Now()
	for i := range 20 {
		to := last.AddDays(-(i * 11 % 541))
		if _, err := dash.SalesOverview(ctx, to.AddDays(-89), to, nil); err != nil {
			t.Fatal(err)
		}
	}
	pprof.StopCPUProfile()
	f.Close()
	t.Logf("overview: %v per call", time.Since(start)/20)
}
