package analytics_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/businessunit"
	"github.com/onemember/onemember/ent/member"
	entorder "github.com/onemember/onemember/ent/order"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/analytics"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/testkit"
)

// world is a small seeded data centre: two business units with a store
// each, members of every status, orders over two channels (some refunded,
// some outside the windows) and behaviour events of every kind.
type world struct {
	db    *ent.Client
	sql   *sql.DB
	svc   *analytics.Service
	clock *testkit.Clock
	zone  *time.Location
	rng   *rand.Rand
	seq   int
	bus   [2]*ent.BusinessUnit
	store [2]*ent.Store
}

// event is a behaviour event row as read back.
type event struct {
	member  int
	kind    enum.BehaviorKind
	at      time.Time
	channel enum.Channel
}

func newWorld(t *testing.T) *world {
	t.Helper()
	client, sqlDB := testkit.EntClient(t, 16)
	zone := testkit.Shanghai(t)
	// Mid-afternoon, so that "today" in the zone and in UTC are the same
	// day but the window's edges fall mid-day in UTC.
	clock := testkit.NewClock(time.Date(2026, 3, 10, 15, 30, 0, 0, zone))
	w := &world{db: client, sql: sqlDB, clock: clock, zone: zone, rng: rand.New(rand.NewPCG(20260310, 7))}
	w.svc = analytics.New(client, sqlDB, zone, clock.Now)
	// The migration partitions behavior_events around the real date; a
	// default partition takes the test's fixed dates wherever they fall.
	if _, err := sqlDB.ExecContext(t.Context(),
		`CREATE TABLE IF NOT EXISTS behavior_events_test_default PARTITION OF behavior_events DEFAULT`); err != nil {
		t.Fatalf("creating default partition: %v", err)
	}
	for i := range w.bus {
		u, err := client.BusinessUnit.Create().SetCode(fmt.Sprintf("BU%d", i)).SetName("超市").
			SetKind(businessunit.KindSUPERMARKET).Save(t.Context())
		if err != nil {
			t.Fatalf("creating business unit: %v", err)
		}
		st, err := client.Store.Create().SetCode(fmt.Sprintf("S%d", i)).SetName("门店").
			SetBusinessUnitID(u.ID).Save(t.Context())
		if err != nil {
			t.Fatalf("creating store: %v", err)
		}
		w.bus[i], w.store[i] = u, st
	}
	return w
}

// seed creates the members, orders and events of the tests.
func (w *world) seed(t *testing.T) {
	t.Helper()
	now := w.clock.Now()
	const nMembers, nOrders, nEvents = 300, 2000, 3000
	ids := make([]int, 0, nMembers)
	for i := range nMembers {
		status := member.StatusACTIVE
		switch r := w.rng.IntN(100); {
		case r < 8:
			status = member.StatusFROZEN
		case r < 13:
			status = member.StatusMERGED
		case r < 15:
			status = member.StatusERASED
		}
		// Most registered long ago; some in the last weeks, so that the
		// population differs between the AIPL dates.
		reg := now.Add(-time.Duration(w.rng.Int64N(int64(500 * 24 * time.Hour))))
		if i%10 == 0 {
			reg = now.Add(-time.Duration(w.rng.Int64N(int64(80 * 24 * time.Hour))))
		}
		ids = append(ids, w.member(t, status, reg))
	}
	var orders []*ent.OrderCreate
	for range nOrders {
		m := ids[w.rng.IntN(len(ids))]
		// Orders over 450 days: some outside a year's window; a few on
		// the very edge of the window and of days.
		var paid time.Time
		switch r := w.rng.IntN(100); {
		case r < 2:
			paid = now.AddDate(0, 0, -365)
		case r < 4:
			paid = now.AddDate(0, 0, -365).Add(time.Second)
		case r < 7:
			d := now.AddDate(0, 0, -w.rng.IntN(120))
			paid = time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, w.zone)
		case r < 10:
			d := now.AddDate(0, 0, -w.rng.IntN(120))
			paid = time.Date(d.Year(), d.Month(), d.Day(), 23, 59, 59, 0, w.zone)
			if paid.After(now) {
				paid = now
			}
		default:
			paid = now.Add(-time.Duration(w.rng.Int64N(int64(450 * 24 * time.Hour))))
		}
		amount := 100 + w.rng.Int64N(100000)
		status, refunded := entorder.StatusPAID, int64(0)
		switch r := w.rng.IntN(100); {
		case r < 10:
			status, refunded = entorder.StatusREFUNDED, amount
		case r < 20:
			status, refunded = entorder.StatusPARTIALLY_REFUNDED, 1+w.rng.Int64N(amount-1)
		}
		orders = append(orders, w.orderCreate(m, w.rng.IntN(2), []enum.Channel{enum.ChannelPOS, enum.ChannelMiniProgram}[w.rng.IntN(2)],
			amount, refunded, status, paid))
	}
	w.saveOrders(t, orders)

	kinds := enum.BehaviorKind("").Values()
	channels := []enum.Channel{enum.ChannelPOS, enum.ChannelMiniProgram, enum.ChannelApp}
	evs := make([]event, 0, nEvents)
	for range nEvents {
		evs = append(evs, event{
			member:  ids[w.rng.IntN(len(ids))],
			kind:    enum.BehaviorKind(kinds[w.rng.IntN(len(kinds))]),
			at:      now.Add(-time.Duration(w.rng.Int64N(int64(200 * 24 * time.Hour)))),
			channel: channels[w.rng.IntN(len(channels))],
		})
	}
	// Members whose only activity is on the very edge of an AIPL window
	// (the dates of the tests are 20 January and 10 March, the windows 90
	// and 30 days): a window's end, the start of the next day, is in; its
	// start is out.
	edges := []time.Time{
		time.Date(2026, 1, 21, 0, 0, 0, 0, w.zone),
		time.Date(2026, 1, 21-90, 0, 0, 0, 0, w.zone),
		time.Date(2026, 1, 21-30, 0, 0, 0, 0, w.zone),
		time.Date(2026, 3, 11-90, 0, 0, 0, 0, w.zone),
		time.Date(2026, 3, 11-30, 0, 0, 0, 0, w.zone),
	}
	orders = orders[:0]
	for i := range 3 * len(edges) {
		at := edges[i%len(edges)]
		m := w.member(t, member.StatusACTIVE, at.AddDate(-1, 0, 0))
		ch := []enum.Channel{enum.ChannelMiniProgram, enum.ChannelPOS}[i/len(edges)%2]
		for _, k := range []enum.BehaviorKind{enum.BehaviorView, enum.BehaviorFavorite, enum.BehaviorShare, enum.BehaviorReview} {
			evs = append(evs, event{member: m, kind: k, at: at, channel: ch})
		}
		for range 1 + i%4 {
			orders = append(orders, w.orderCreate(m, 0, ch, 500, 0, entorder.StatusPAID, at))
		}
	}
	w.saveOrders(t, orders)
	w.events(t, evs...)
}

func (w *world) member(t *testing.T, status member.Status, registered time.Time) int {
	t.Helper()
	w.seq++
	m, err := w.db.Member.Create().SetMemberNo(fmt.Sprintf("T%06d", w.seq)).SetSourceChannel(enum.ChannelPOS).
		SetStatus(status).SetRegisteredAt(registered).Save(context.Background())
	if err != nil {
		t.Fatalf("creating member: %v", err)
	}
	return m.ID
}

func (w *world) orderCreate(memberID, bu int, ch enum.Channel, amount, refunded int64, status entorder.Status, paid time.Time) *ent.OrderCreate {
	w.seq++
	return w.db.Order.Create().SetExternalID(fmt.Sprintf("O%d", w.seq)).SetChannel(ch).
		SetMemberID(memberID).SetStoreID(w.store[bu].ID).SetBusinessUnitID(w.bus[bu].ID).
		SetAmount(amount).SetRefundedAmount(refunded).SetStatus(status).
		SetPaidAt(paid).SetCreatedAt(paid)
}

func (w *world) saveOrders(t *testing.T, orders []*ent.OrderCreate) {
	t.Helper()
	for len(orders) > 0 {
		n := min(len(orders), 500)
		if _, err := w.db.Order.CreateBulk(orders[:n]...).Save(context.Background()); err != nil {
			t.Fatalf("creating orders: %v", err)
		}
		orders = orders[n:]
	}
}

// events inserts behaviour events as the server would, in one statement.
func (w *world) events(t *testing.T, evs ...event) {
	t.Helper()
	var members []int64
	var kinds, ats, chs, ids []string
	for _, e := range evs {
		w.seq++
		members = append(members, int64(e.member))
		kinds = append(kinds, string(e.kind))
		ats = append(ats, e.at.UTC().Format(time.RFC3339Nano))
		chs = append(chs, string(e.channel))
		ids = append(ids, fmt.Sprintf("E%d", w.seq))
	}
	_, err := w.sql.ExecContext(context.Background(), `INSERT INTO behavior_events (member_id, kind, occurred_at, channel, source, event_id)
SELECT m, k, a::timestamptz, c, 's', e FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[]) AS t(m, k, a, c, e)`,
		pq.Array(members), pq.Array(kinds), pq.Array(ats), pq.Array(chs), pq.Array(ids))
	if err != nil {
		t.Fatalf("inserting events: %v", err)
	}
}

// snapshot reads back everything the models look at.
type snapshot struct {
	members map[int]*ent.Member
	orders  []*ent.Order
	events  []event
}

func (w *world) read(t *testing.T) snapshot {
	t.Helper()
	ms, err := w.db.Member.Query().All(context.Background())
	if err != nil {
		t.Fatalf("reading members: %v", err)
	}
	os, err := w.db.Order.Query().All(context.Background())
	if err != nil {
		t.Fatalf("reading orders: %v", err)
	}
	rows, err := w.sql.QueryContext(context.Background(), `SELECT member_id, kind, occurred_at, channel FROM behavior_events`)
	if err != nil {
		t.Fatalf("reading events: %v", err)
	}
	defer rows.Close()
	snap := snapshot{members: map[int]*ent.Member{}, orders: os}
	for _, m := range ms {
		snap.members[m.ID] = m
	}
	for rows.Next() {
		var e event
		if err := rows.Scan(&e.member, &e.kind, &e.at, &e.channel); err != nil {
			t.Fatalf("reading events: %v", err)
		}
		snap.events = append(snap.events, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("reading events: %v", err)
	}
	return snap
}

// counted reports whether a member of status st is in the models'
// population.
func counted(st member.Status) bool { return st == member.StatusACTIVE || st == member.StatusFROZEN }

func wantCode(t testing.TB, err error, code fault.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("want %s, got no error", code)
	}
	if got := fault.CodeOf(err); got != code {
		t.Fatalf("want %s, got %s: %v", code, got, err)
	}
}

// wantField checks err is BAD_USER_INPUT naming field.
func wantField(t testing.TB, err error, field string) {
	t.Helper()
	wantCode(t, err, fault.BadUserInput)
	for _, f := range fault.Fields(err) {
		if f.Field == field {
			return
		}
	}
	t.Fatalf("want a problem on %s, got %v", field, err)
}

func ptr[T any](v T) *T { return &v }
