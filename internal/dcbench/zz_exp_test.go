package dcbench_test

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	entdialect "entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/internal/audience"
	"github.com/onemember/onemember/internal/dashboard"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/database"
)

func TestZZExp(t *testing.T) {
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
	ix := audience.NewIndex(db, zone, time.Now, audience.IndexOptions{})
	if err := ix.Build(ctx); err != nil {
		t.Fatal(err)
	}
	svc := audience.New(audience.Deps{DB: client, SQL: db, Index: ix, Zone: zone, Now: time.Now})
	dash := dashboard.New(client, db, zone, time.Now, dashboard.WithMembers(svc))
	if os.Getenv("ZZREBUILD") != "" {
		start := time.Now()
		if err := dash.Rebuild(ctx); err != nil {
			t.Fatal(err)
		}
		t.Logf("rebuild %v", time.Since(start))
		db.ExecContext(ctx, `VACUUM ANALYZE sales_daily, product_daily, store_member_months, member_first_orders, first_order_days`)
	}
	last, _ := calendar.Parse("2026-11-23")
	stat := func(name string, n int, f func(i int)) {
		var d []time.Duration
		for i := range n {
			s := time.Now()
			f(i)
			d = append(d, time.Since(s))
		}
		slices.Sort(d)
		t.Logf("%s: p50 %v p99 %v max %v", name, d[len(d)/2], d[len(d)*99/100], d[len(d)-1])
	}
	stat("overview", 60, func(i int) {
		to := last.AddDays(-(i * 11 % 541))
		if _, err := dash.SalesOverview(ctx, to.AddDays(-89), to, nil); err != nil {
			t.Fatal(err)
		}
	})
	stat("channels90", 20, func(i int) {
		to := last.AddDays(-(i * 13 % 361))
		if _, err := dash.ChannelStats(ctx, to.AddDays(-89), to); err != nil {
			t.Fatal(err)
		}
	})
	stat("memberstats", 20, func(i int) {
		if _, err := svc.MemberStats(ctx); err != nil {
			t.Fatal(err)
		}
	})
	stat("store", 60, func(i int) {
		r, err := dash.StoreMonthlyReport(ctx, []string{"DCB-MALL-01", "DCB-SUPER-05", "DCB-REST-10"}[i%3], []string{"2026-10", "2026-05", "2025-12"}[i%3])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dash.TopProducts(ctx, r.From, r.To, 5, &r.Store.ID); err != nil {
			t.Fatal(err)
		}
	})
}
