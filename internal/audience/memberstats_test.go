package audience_test

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/analytics"
	"github.com/onemember/onemember/internal/audience"
	"github.com/onemember/onemember/internal/jobqueue"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/testkit"
)

// statsWorld is members and orders written directly, every order
// consistent (REFUNDED exactly when refunded in full), around the
// business-zone midnights that bound "the last 30 days".
type statsWorld struct {
	sql   *sql.DB
	svc   *audience.Service
	ix    *audience.Index
	clock *testkit.Clock
	zone  *time.Location
	store int
	bu    int
	tiers []int
	seq   int
}

func newStatsWorld(t *testing.T) *statsWorld {
	t.Helper()
	ctx := context.Background()
	client, sqlDB := testkit.EntClient(t, 8)
	zone := testkit.Shanghai(t)
	w := &statsWorld{sql: sqlDB, zone: zone, clock: testkit.NewClock(time.Date(2026, 3, 20, 10, 0, 0, 0, zone))}
	w.ix = audience.NewIndex(sqlDB, zone, w.clock.Now, audience.IndexOptions{})
	w.svc = audience.New(audience.Deps{DB: client, SQL: sqlDB, Index: w.ix, Aipl: analytics.New(client, sqlDB, zone, w.clock.Now),
		Jobs: jobqueue.New(client, slog.New(slog.NewTextHandler(io.Discard, nil)), jobqueue.Options{Now: w.clock.Now}), Zone: zone, Now: w.clock.Now})
	// Tiers created out of rank order: the distribution follows rank.
	for _, tr := range []struct {
		code string
		rank int
	}{{"GOLD", 2}, {"SILVER", 1}} {
		w.tiers = append(w.tiers, client.Tier.Create().SetCode(tr.code).SetName(tr.code).SetRank(tr.rank).SetThreshold(int64(tr.rank*1000)).SaveX(ctx).ID)
	}
	w.bu = client.BusinessUnit.Create().SetCode("BU").SetName("bu").SetKind("MALL").SaveX(ctx).ID
	w.store = client.Store.Create().SetCode("S").SetName("s").SetBusinessUnitID(w.bu).SaveX(ctx).ID
	return w
}

// memberSpec is a member to write; zero fields get defaults.
type memberSpec struct {
	status, gender, region string
	channel                enum.Channel
	birthYear, birthMonth  int
	tier                   int
	registered             time.Time
}

func (w *statsWorld) member(t *testing.T, m memberSpec) int {
	t.Helper()
	w.seq++
	if m.status == "" {
		m.status = "ACTIVE"
	}
	if m.gender == "" {
		m.gender = "UNKNOWN"
	}
	if m.channel == "" {
		m.channel = enum.ChannelPOS
	}
	null := func(v int) any {
		if v == 0 {
			return nil
		}
		return v
	}
	var id int
	if err := w.sql.QueryRow(`INSERT INTO members (created_at, updated_at, member_no, status, gender, birth_year, birth_month,
  region_code, source_channel, registered_at, tier_id)
VALUES ($1, $1, $2, $3, $4, $5, $6, $7, $8, $1, $9) RETURNING id`,
		m.registered, fmt.Sprintf("M%05d", w.seq), m.status, m.gender, null(m.birthYear), null(m.birthMonth), m.region,
		m.channel, null(m.tier)).Scan(&id); err != nil {
		t.Fatalf("writing member: %v", err)
	}
	return id
}

// order writes an order of amount fen paid at paid, refunded by refunded.
func (w *statsWorld) order(t *testing.T, member int, paid time.Time, amount, refunded int64) {
	t.Helper()
	w.seq++
	status := "PAID"
	switch {
	case refunded == amount:
		status = "REFUNDED"
	case refunded > 0:
		status = "PARTIALLY_REFUNDED"
	}
	mustExec(t, w.sql, `INSERT INTO orders (external_id, channel, member_id, status, amount, refunded_amount, paid_at, created_at, store_id, business_unit_id)
VALUES ($1, 'POS', $2, $3, $4, $5, $6, $6, $7, $8)`, fmt.Sprintf("O%05d", w.seq), member, status, amount, refunded, paid, w.store, w.bu)
}

// seed writes n random members with orders, and members and orders on
// either side of the start of today − 29 (the 30-day line).
func (w *statsWorld) seed(t *testing.T, n int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(30, 3))
	now := w.clock.Now()
	line := calendar.In(now, w.zone).AddDays(-29).Start(w.zone)
	statuses := []string{"ACTIVE", "ACTIVE", "ACTIVE", "ACTIVE", "ACTIVE", "ACTIVE", "FROZEN", "MERGED", "ERASED"}
	genders := []string{"MALE", "FEMALE", "UNKNOWN"}
	regions := []string{"310101", "310115", "110105", "440305", "", "3"}
	tiers := append([]int{0}, w.tiers...)
	for range n {
		m := memberSpec{
			status: statuses[rng.IntN(len(statuses))], gender: genders[rng.IntN(3)], region: regions[rng.IntN(len(regions))],
			channel:    enum.Channel(enum.Channel("").Values()[rng.IntN(4)]),
			tier:       tiers[rng.IntN(len(tiers))],
			registered: now.Add(-time.Duration(rng.Int64N(int64(70 * 24 * time.Hour)))),
		}
		if rng.IntN(5) > 0 {
			m.birthYear, m.birthMonth = 1950+rng.IntN(60), 1+rng.IntN(12)
		}
		if rng.IntN(10) == 0 {
			m.birthMonth = 3 // this month: the birthday decides the age band
		}
		if rng.IntN(8) == 0 {
			m.registered = line.Add(time.Duration(rng.IntN(3)-1) * time.Second) // on the line, or a second either side
		}
		id := w.member(t, m)
		for range rng.IntN(4) {
			paid := now.Add(-time.Duration(rng.Int64N(int64(50 * 24 * time.Hour))))
			if rng.IntN(6) == 0 {
				paid = line.Add(time.Duration(rng.IntN(3)-1) * time.Second)
			}
			amount := 100 + rng.Int64N(10_000)
			var refunded int64
			switch rng.IntN(6) {
			case 0:
				refunded = amount
			case 1:
				refunded = 1 + rng.Int64N(amount-1)
			}
			w.order(t, id, paid, amount, refunded)
		}
	}
	// Edges that must not depend on chance: a member registered a second
	// before the line with a single order on it, one whose only recent
	// order was refunded in full, one partly refunded a second after it.
	a := w.member(t, memberSpec{registered: line.Add(-time.Second)})
	w.order(t, a, line, 500, 0)
	b := w.member(t, memberSpec{registered: line.Add(-40 * 24 * time.Hour)})
	w.order(t, b, line.Add(time.Hour), 800, 800)
	w.order(t, b, line.Add(-time.Second), 800, 0)
	c := w.member(t, memberSpec{registered: line})
	w.order(t, c, line.Add(time.Second), 900, 899)
}

// expectStats is MemberStats in plain SQL over members and orders.
func (w *statsWorld) expectStats(t *testing.T) *audience.MemberStats {
	t.Helper()
	today := calendar.In(w.clock.Now(), w.zone)
	line := today.AddDays(-29).Start(w.zone)
	out := &audience.MemberStats{}
	if err := w.sql.QueryRow(`SELECT count(*), count(*) FILTER (WHERE registered_at >= $1),
  count(*) FILTER (WHERE EXISTS (SELECT 1 FROM orders o WHERE o.member_id = m.id AND o.refunded_amount < o.amount AND o.paid_at >= $1))
FROM members m WHERE m.status = 'ACTIVE'`, line).Scan(&out.Total, &out.NewLast30Days, &out.ActiveLast30Days); err != nil {
		t.Fatal(err)
	}
	dist := func(query string, args ...any) []audience.Distribution {
		rows, err := w.sql.Query(query, args...)
		if err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		defer rows.Close()
		var d []audience.Distribution
		for rows.Next() {
			var x audience.Distribution
			if err := rows.Scan(&x.Key, &x.Count); err != nil {
				t.Fatal(err)
			}
			if out.Total > 0 {
				x.Share = float64(x.Count) / float64(out.Total)
			}
			d = append(d, x)
		}
		return d
	}
	const live = `(SELECT * FROM members WHERE status = 'ACTIVE')`
	out.ByGender = dist(`SELECT g, count(m.id) FROM unnest(ARRAY['MALE', 'FEMALE', 'UNKNOWN']) WITH ORDINALITY AS k(g, i)
LEFT JOIN ` + live + ` m ON m.gender = k.g GROUP BY g, i ORDER BY i`)
	out.ByChannel = dist(`SELECT c, count(m.id) FROM unnest($1::text[]) WITH ORDINALITY AS k(c, i)
LEFT JOIN `+live+` m ON m.source_channel = k.c GROUP BY c, i ORDER BY i`, "{"+strings.Join(enum.Channel("").Values(), ",")+"}")
	out.ByTier = dist(`SELECT code, n FROM (
  SELECT t.code, t.rank, count(m.id) AS n FROM tiers t LEFT JOIN ` + live + ` m ON m.tier_id = t.id GROUP BY t.code, t.rank
  UNION ALL SELECT 'NONE', 1000000, count(*) FROM ` + live + ` m WHERE m.tier_id IS NULL) x ORDER BY rank`)
	out.ByRegion = dist(`SELECT CASE WHEN length(region_code) >= 2 THEN left(region_code, 2) || '0000' ELSE 'UNKNOWN' END AS k, count(*)
FROM ` + live + ` m GROUP BY 1 ORDER BY 2 DESC, 1`)
	out.ByAgeBand = dist(`WITH a AS (
  SELECT CASE WHEN birth_year IS NULL THEN NULL
    ELSE $1::int - birth_year - CASE WHEN coalesce(birth_month, 0) > $2::int THEN 1 ELSE 0 END END AS age FROM `+live+` m),
b AS (SELECT CASE WHEN age IS NULL THEN 'UNKNOWN' WHEN age < 18 THEN '<18' WHEN age < 25 THEN '18-24' WHEN age < 35 THEN '25-34'
  WHEN age < 45 THEN '35-44' WHEN age < 55 THEN '45-54' ELSE '55+' END AS band FROM a)
SELECT k, count(b.band) FROM unnest(ARRAY['<18', '18-24', '25-34', '35-44', '45-54', '55+', 'UNKNOWN']) WITH ORDINALITY AS x(k, i)
LEFT JOIN b ON b.band = x.k GROUP BY k, i ORDER BY i`, today.Year, int(today.Month))
	return out
}

func (w *statsWorld) check(t *testing.T) *audience.MemberStats {
	t.Helper()
	got, err := w.svc.MemberStats(context.Background())
	if err != nil {
		t.Fatalf("MemberStats: %v", err)
	}
	want := w.expectStats(t)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("MemberStats:\n got %+v\nwant %+v", got, want)
	}
	return got
}

func TestMemberStatsMatchSQL(t *testing.T) {
	w := newStatsWorld(t)
	ctx := context.Background()
	w.seed(t, 300)
	if err := w.ix.Build(ctx); err != nil {
		t.Fatal(err)
	}
	first := w.check(t)
	if first.NewLast30Days == 0 || first.ActiveLast30Days == 0 || first.NewLast30Days == first.Total || first.ActiveLast30Days == first.Total {
		t.Fatalf("the seed does not separate the figures: %+v", first)
	}

	// A registration and a purchase show after the index's next replay.
	now := w.clock.Now()
	m := w.member(t, memberSpec{gender: "FEMALE", channel: enum.ChannelOfficialAccount, region: "510107", registered: now})
	w.order(t, m, now, 1200, 0)
	if _, err := w.ix.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	second := w.check(t)
	if second.Total != first.Total+1 || second.NewLast30Days != first.NewLast30Days+1 || second.ActiveLast30Days != first.ActiveLast30Days+1 {
		t.Errorf("after a registration and a purchase: %+v, before %+v", second, first)
	}

	// The next business day moves the line by a day: the seeded edges
	// leave the window.
	w.clock.Set(calendar.In(now, w.zone).AddDays(1).Start(w.zone).Add(time.Second))
	third := w.check(t)
	if third.NewLast30Days >= second.NewLast30Days || third.ActiveLast30Days >= second.ActiveLast30Days {
		t.Errorf("a day later: %+v, before %+v", third, second)
	}
}

func TestByRegistrationChannel(t *testing.T) {
	w := newStatsWorld(t)
	ctx := context.Background()
	w.seed(t, 200)
	if err := w.ix.Build(ctx); err != nil {
		t.Fatal(err)
	}
	from, to := calendar.In(w.clock.Now(), w.zone).AddDays(-29), calendar.In(w.clock.Now(), w.zone).AddDays(-3)
	got, err := w.svc.ByRegistrationChannel(ctx, from, to)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(enum.Channel("").Values()) {
		t.Fatalf("%d channels, want every one", len(got))
	}
	var registered int
	for c, m := range got {
		same(t, "live "+string(c), idsOf(m.Live),
			sqlSet(t, w.sql, `SELECT id FROM members WHERE status = 'ACTIVE' AND source_channel = $1`, c))
		want := sqlSet(t, w.sql, `SELECT id FROM members WHERE status = 'ACTIVE' AND source_channel = $1 AND registered_at >= $2 AND registered_at < $3`,
			c, from.Start(w.zone), to.AddDays(1).Start(w.zone))
		same(t, "registered "+string(c), idsOf(m.Registered), want)
		registered += len(want)
	}
	if registered == 0 {
		t.Fatal("nobody registered in the range: the comparison proves nothing")
	}
	if _, err := w.svc.ByRegistrationChannel(ctx, to, from); err == nil {
		t.Error("a reversed range was accepted")
	}
}
