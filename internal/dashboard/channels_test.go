package dashboard_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/audience"
	"github.com/onemember/onemember/internal/dashboard"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/fault"
)

// withMembers gives the world an audience index and a dashboard keyed
// by it.
func (w *world) withMembers(t *testing.T) *audience.Index {
	t.Helper()
	ix := audience.NewIndex(w.sql, w.zone, w.clock.Now, audience.IndexOptions{})
	svc := audience.New(audience.Deps{DB: w.db, SQL: w.sql, Index: ix, Zone: w.zone, Now: w.clock.Now})
	w.dash = dashboard.New(w.db, w.sql, w.zone, w.clock.Now, dashboard.WithMembers(svc))
	return ix
}

// memberOf creates a member registered through channel at registered.
func (w *world) memberOf(t *testing.T, channel enum.Channel, registered time.Time) int {
	t.Helper()
	w.mu.Lock()
	w.seq++
	n := w.seq
	w.mu.Unlock()
	m, err := w.db.Member.Create().SetMemberNo(fmt.Sprintf("C%06d", n)).SetSourceChannel(channel).
		SetRegisteredAt(registered).Save(w.ctx)
	if err != nil {
		t.Fatalf("creating member: %v", err)
	}
	w.members = append(w.members, m.ID)
	return m.ID
}

// expectChannels is ChannelStats in plain SQL over members and raw
// orders: the churned are the live members whose last order that counts
// paid before the end of `to` lies in [start of from − 181, start of
// to − 180).
func (w *world) expectChannels(t *testing.T, from, to calendar.Date) []dashboard.ChannelStat {
	t.Helper()
	rows, err := w.sql.QueryContext(w.ctx, `WITH c AS (SELECT member_id, paid_at FROM orders WHERE refunded_amount < amount),
x AS (SELECT m.source_channel AS ch, m.registered_at,
        EXISTS (SELECT 1 FROM c WHERE c.member_id = m.id AND c.paid_at >= $1 AND c.paid_at < $2) AS active,
        (SELECT min(paid_at) FROM c WHERE c.member_id = m.id) AS first,
        (SELECT max(paid_at) FROM c WHERE c.member_id = m.id AND c.paid_at < $2) AS last
      FROM members m WHERE m.status = 'ACTIVE')
SELECT k.ch, count(x.ch) FILTER (WHERE x.registered_at >= $1 AND x.registered_at < $2), count(x.ch) FILTER (WHERE x.active),
  count(x.ch) FILTER (WHERE x.first >= $1 AND x.first < $2), count(x.ch) FILTER (WHERE x.last >= $3 AND x.last < $4)
FROM unnest($5::text[]) WITH ORDINALITY AS k(ch, i) LEFT JOIN x ON x.ch = k.ch GROUP BY k.ch, k.i ORDER BY k.i`,
		from.Start(w.zone), to.AddDays(1).Start(w.zone), from.AddDays(-181).Start(w.zone), to.AddDays(-180).Start(w.zone),
		"{POS,MINI_PROGRAM,APP,ECOMMERCE,OFFICIAL_ACCOUNT}")
	if err != nil {
		t.Fatalf("expected channels: %v", err)
	}
	defer rows.Close()
	var out []dashboard.ChannelStat
	for rows.Next() {
		var s dashboard.ChannelStat
		if err := rows.Scan(&s.Channel, &s.NewMembers, &s.ActiveMembers, &s.ConvertedMembers, &s.ChurnedMembers); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	if len(out) != len(enum.Channel("").Values()) {
		t.Fatalf("the expectation lists %d channels, the enum has %d", len(out), len(enum.Channel("").Values()))
	}
	return out
}

var channelRanges = [][2]string{
	{"2026-03-01", "2026-03-20"},
	{"2026-02-10", "2026-03-05"},
	{"2026-03-09", "2026-03-09"},
	{"2025-06-01", "2026-03-20"},
	{"2025-11-01", "2025-12-31"},
}

func (w *world) checkChannels(t *testing.T, ix *audience.Index) (nonZero [4]int) {
	t.Helper()
	if err := ix.Build(w.ctx); err != nil {
		t.Fatal(err)
	}
	for _, rg := range channelRanges {
		from, to := day(rg[0]), day(rg[1])
		got, err := w.dash.ChannelStats(w.ctx, from, to)
		if err != nil {
			t.Fatalf("ChannelStats: %v", err)
		}
		want := w.expectChannels(t, from, to)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ChannelStats(%s..%s):\n got %+v\nwant %+v", rg[0], rg[1], got, want)
		}
		for _, s := range want {
			for i, n := range []int{s.NewMembers, s.ActiveMembers, s.ConvertedMembers, s.ChurnedMembers} {
				nonZero[i] += n
			}
		}
	}
	return nonZero
}

// TestChannelStatsMatchRawOrders seeds members of four channels over a
// year, orders over nine months with refunds and orders on business-day
// boundaries, and members placed on every edge of the definitions, then
// compares ChannelStats with plain SQL after a Rebuild and after
// refreshes that move first orders and last purchases.
func TestChannelStatsMatchRawOrders(t *testing.T) {
	w := newWorld(t)
	ix := w.withMembers(t)
	for _, code := range []string{"MALL", "MART"} {
		w.unit(t, code, 2)
	}
	rng := rand.New(rand.NewPCG(8, 180))
	channels := []enum.Channel{enum.ChannelPOS, enum.ChannelMiniProgram, enum.ChannelApp, enum.ChannelEcommerce}
	regFrom, regTo := time.Date(2025, 3, 1, 0, 0, 0, 0, w.zone), time.Date(2026, 3, 20, 17, 0, 0, 0, w.zone)
	for range 50 {
		w.memberOf(t, channels[rng.IntN(len(channels))], regFrom.Add(time.Duration(rng.Int64N(int64(regTo.Sub(regFrom))))))
	}
	// Registrations on the edges of the first range, 1 to 20 March.
	from, to := day("2026-03-01"), day("2026-03-20")
	for _, at := range []time.Time{from.Start(w.zone), from.Start(w.zone).Add(-time.Second),
		to.AddDays(1).Start(w.zone).Add(-time.Second), to.AddDays(1).Start(w.zone)} {
		w.memberOf(t, enum.ChannelMiniProgram, at)
	}
	for range 220 {
		o := w.ingest(t, w.randomSale(rng, time.Date(2025, 6, 1, 0, 0, 0, 0, w.zone), time.Date(2026, 3, 20, 17, 0, 0, 0, w.zone)))
		w.maybeRefund(t, rng, o)
	}
	// Last purchases on the churn line of the first range: the start of
	// from − 181 (churned), a second before it (churned the day before
	// from), the last second of to − 181 (churned) and the start of
	// to − 180 (not yet).
	line := func(at time.Time) int {
		m := w.memberOf(t, enum.ChannelApp, time.Date(2025, 1, 1, 0, 0, 0, 0, w.zone))
		w.ingest(t, sale{member: m, store: w.stores[0], channel: enum.ChannelPOS, paid: at, lines: []orderItem{{SKU: "SKU-E", Name: "E", Quantity: 1, UnitPrice: 700, Amount: 700}}})
		return m
	}
	line(from.AddDays(-181).Start(w.zone))
	line(from.AddDays(-181).Start(w.zone).Add(-time.Second))
	line(to.AddDays(-180).Start(w.zone).Add(-time.Second))
	line(to.AddDays(-180).Start(w.zone))
	// Churned although an order in the range exists: it was refunded in
	// full.
	back := line(from.AddDays(-170).Start(w.zone))
	gone := w.ingest(t, sale{member: back, store: w.stores[1], channel: enum.ChannelApp, paid: from.AddDays(3).Start(w.zone),
		lines: []orderItem{{SKU: "SKU-F", Name: "F", Quantity: 1, UnitPrice: 900, Amount: 900}}})
	w.refund(t, gone, 900)
	// A first order a second before from (not converted), whose refund
	// later makes the member's next order, in the range, the first.
	early := w.memberOf(t, enum.ChannelEcommerce, time.Date(2025, 12, 1, 0, 0, 0, 0, w.zone))
	before := w.ingest(t, sale{member: early, store: w.stores[2], channel: enum.ChannelEcommerce, paid: from.Start(w.zone).Add(-time.Second),
		lines: []orderItem{{SKU: "SKU-G", Name: "G", Quantity: 1, UnitPrice: 300, Amount: 300}}})
	w.ingest(t, sale{member: early, store: w.stores[2], channel: enum.ChannelEcommerce, paid: from.AddDays(2).Start(w.zone),
		lines: []orderItem{{SKU: "SKU-G", Name: "G", Quantity: 1, UnitPrice: 300, Amount: 300}}})
	// Members that are not live are left out, whatever they bought.
	for i, status := range []string{"FROZEN", "MERGED", "ERASED"} {
		if _, err := w.sql.ExecContext(w.ctx, `UPDATE members SET status = $1 WHERE id = $2`, status, w.members[i]); err != nil {
			t.Fatal(err)
		}
	}

	if err := w.dash.Rebuild(w.ctx); err != nil {
		t.Fatal(err)
	}
	nonZero := w.checkChannels(t, ix)
	for i, name := range []string{"new", "active", "converted", "churned"} {
		if nonZero[i] == 0 {
			t.Errorf("no %s members in any range: the comparison proves nothing", name)
		}
	}
	before1, err := w.dash.ChannelStats(w.ctx, from, to)
	if err != nil {
		t.Fatal(err)
	}

	// Refreshes follow: the early member's first order goes, a member who
	// never bought buys in the range, the churned come back.
	w.refund(t, before, 300)
	never := w.memberOf(t, enum.ChannelPOS, time.Date(2025, 2, 1, 0, 0, 0, 0, w.zone))
	w.ingest(t, sale{member: never, store: w.stores[3], channel: enum.ChannelMiniProgram, paid: from.AddDays(5).Start(w.zone).Add(-time.Second),
		lines: []orderItem{{SKU: "SKU-A", Name: "A", Quantity: 1, UnitPrice: 1290, Amount: 1290}}})
	for range 40 {
		o := w.ingest(t, w.randomSale(rng, from.Start(w.zone), time.Date(2026, 3, 20, 17, 0, 0, 0, w.zone)))
		w.maybeRefund(t, rng, o)
	}
	if _, err := w.dash.Refresh(w.ctx); err != nil {
		t.Fatal(err)
	}
	w.checkChannels(t, ix)
	after, err := w.dash.ChannelStats(w.ctx, from, to)
	if err != nil {
		t.Fatal(err)
	}
	var convBefore, convAfter int
	for i := range after {
		convBefore += before1[i].ConvertedMembers
		convAfter += after[i].ConvertedMembers
	}
	if convAfter < convBefore+2 {
		t.Errorf("converted members %d after the refresh, %d before: the moved first orders are missing", convAfter, convBefore)
	}
	// A Rebuild agrees with the refreshes.
	if err := w.dash.Rebuild(w.ctx); err != nil {
		t.Fatal(err)
	}
	w.checkChannels(t, ix)
}

func TestChannelStatsValidation(t *testing.T) {
	w := newWorld(t)
	if _, err := w.dash.ChannelStats(w.ctx, day("2026-03-01"), day("2026-03-02")); !errors.Is(err, dashboard.ErrNoMembers) {
		t.Errorf("without a membership: err = %v, want ErrNoMembers", err)
	}
	w.withMembers(t)
	for _, rg := range [][2]string{{"2026-03-02", "2026-03-01"}, {"2024-01-01", "2026-03-01"}} {
		if _, err := w.dash.ChannelStats(w.ctx, day(rg[0]), day(rg[1])); !errors.Is(err, fault.ErrBadUserInput) {
			t.Errorf("ChannelStats(%s..%s): err = %v, want BAD_USER_INPUT", rg[0], rg[1], err)
		}
	}
	// No orders and no members: every channel, all zeros.
	ix := audience.NewIndex(w.sql, w.zone, w.clock.Now, audience.IndexOptions{})
	if err := ix.Build(w.ctx); err != nil {
		t.Fatal(err)
	}
	w.dash = dashboard.New(w.db, w.sql, w.zone, w.clock.Now, dashboard.WithMembers(
		audience.New(audience.Deps{DB: w.db, SQL: w.sql, Index: ix, Zone: w.zone, Now: w.clock.Now})))
	got, err := w.dash.ChannelStats(w.ctx, day("2026-03-01"), day("2026-03-02"))
	if err != nil {
		t.Fatal(err)
	}
	var want []dashboard.ChannelStat
	for _, c := range enum.Channel("").Values() {
		want = append(want, dashboard.ChannelStat{Channel: enum.Channel(c)})
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("empty: %+v", got)
	}
}
