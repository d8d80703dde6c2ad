package dashboard_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/businessunit"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/auth"
	"github.com/onemember/onemember/internal/auth/password"
	"github.com/onemember/onemember/internal/auth/token"
	"github.com/onemember/onemember/internal/dashboard"
	"github.com/onemember/onemember/internal/identity"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/order"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/testkit"
	"github.com/onemember/onemember/internal/tier"
)

// cheapHash keeps argon2 fast in tests.
var cheapHash = password.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// byID resolves members by id, which is all these tests use.
type byID struct{}

func (byID) Resolve(ctx context.Context, db *ent.Client, ref identity.MemberRef, _ string) (*ent.Member, error) {
	return db.Member.Get(ctx, *ref.MemberID)
}

// world is a group with business units, stores and members, whose orders
// and refunds go through the real order service (items, points and
// growth ledgers included).
type world struct {
	db     *ent.Client
	sql    *sql.DB
	zone   *time.Location
	clock  *testkit.Clock
	orders *order.Service
	dash   *dashboard.Service
	ctx    context.Context

	mu      sync.Mutex
	rng     *rand.Rand
	seq     int
	bus     []*ent.BusinessUnit
	stores  []*ent.Store
	members []int
	placed  []*ent.Order
}

func newWorld(t *testing.T) *world {
	t.Helper()
	client, sqlDB := testkit.EntClient(t, 16)
	zone := testkit.Shanghai(t)
	clock := testkit.NewClock(time.Date(2026, 3, 20, 18, 0, 0, 0, zone))
	w := &world{
		db: client, sql: sqlDB, zone: zone, clock: clock,
		orders: order.New(client, ledger.New(client, ledger.DefaultPolicy(zone), cheapHash, clock.Now),
			tier.New(client, zone, clock.Now), byID{}, order.Hooks{}, order.Limits{MaxAmount: 100_000_000, MaxItems: 50}, clock.Now),
		dash: dashboard.New(client, sqlDB, zone, clock.Now),
		ctx: auth.WithViewer(t.Context(), auth.Viewer{Kind: token.KindStaff,
			Staff: &ent.Staff{Roles: []enum.StaffRole{enum.RoleAdmin}}}),
		rng: rand.New(rand.NewPCG(20260320, 8)),
	}
	return w
}

// unit creates a business unit with n stores.
func (w *world) unit(t *testing.T, code string, n int) *ent.BusinessUnit {
	t.Helper()
	u, err := w.db.BusinessUnit.Create().SetCode(code).SetName("业态 " + code).
		SetKind(businessunit.KindSUPERMARKET).Save(w.ctx)
	if err != nil {
		t.Fatalf("creating business unit: %v", err)
	}
	w.bus = append(w.bus, u)
	for i := range n {
		st, err := w.db.Store.Create().SetCode(fmt.Sprintf("%s-S%d", code, i)).SetName("门店").
			SetBusinessUnitID(u.ID).Save(w.ctx)
		if err != nil {
			t.Fatalf("creating store: %v", err)
		}
		w.stores = append(w.stores, st)
	}
	return u
}

func (w *world) member(t *testing.T) int {
	t.Helper()
	w.mu.Lock()
	w.seq++
	n := w.seq
	w.mu.Unlock()
	m, err := w.db.Member.Create().SetMemberNo(fmt.Sprintf("T%06d", n)).SetSourceChannel(enum.ChannelPOS).
		SetRegisteredAt(time.Date(2025, 1, 1, 0, 0, 0, 0, w.zone)).Save(w.ctx)
	if err != nil {
		t.Fatalf("creating member: %v", err)
	}
	w.members = append(w.members, m.ID)
	return m.ID
}

// paidMember gives memberID a paid membership purchased for [start, end).
func (w *world) paidMember(t *testing.T, memberID int, start, end time.Time) {
	t.Helper()
	plan, err := w.db.PaidMembershipPlan.Query().First(w.ctx)
	if ent.IsNotFound(err) {
		plan, err = w.db.PaidMembershipPlan.Create().SetCode("PLUS").SetName("PLUS 会员").
			SetPeriod(enum.PlanPeriod(enum.PlanPeriod("").Values()[0])).SetPrice(9900).Save(w.ctx)
	}
	if err != nil {
		t.Fatalf("paid plan: %v", err)
	}
	pm, err := w.db.PaidMembership.Create().SetMemberID(memberID).SetPlanID(plan.ID).
		SetStartedAt(start).SetExpiresAt(end).Save(w.ctx)
	if err != nil {
		t.Fatalf("paid membership: %v", err)
	}
	if err := w.db.PaidMembershipPurchase.Create().SetPaymentRef(fmt.Sprintf("PAY%d", memberID)).
		SetMembershipID(pm.ID).SetAmount(9900).SetPeriodStart(start).SetPeriodEnd(end).Exec(w.ctx); err != nil {
		t.Fatalf("paid membership purchase: %v", err)
	}
}

var catalogue = []order.Item{
	{SKU: "SKU-A", Name: "牛奶", Category: "乳品", UnitPrice: 1290},
	{SKU: "SKU-B", Name: "面包", Category: "烘焙", UnitPrice: 850},
	{SKU: "SKU-C", Name: "苹果", Category: "生鲜", UnitPrice: 599},
	{SKU: "SKU-D", Name: "大米", Category: "粮油", UnitPrice: 5990},
	{SKU: "SKU-E", Name: "纸巾", Category: "日用", UnitPrice: 1990},
	{SKU: "SKU-F", Name: "咖啡", Category: "饮料", UnitPrice: 3500},
	{SKU: "SKU-G", Name: "鸡蛋", Category: "生鲜", UnitPrice: 1500},
}

// sale describes one order to ingest.
type sale struct {
	member   int
	store    *ent.Store
	channel  enum.Channel
	paid     time.Time
	lines    []order.Item
	discount int64 // an order-level discount (the lines add up to more)
	points   int64 // paid with points
}

// orderItem is an order line.
type orderItem = order.Item

func (w *world) ingest(t *testing.T, s sale) *ent.Order {
	t.Helper()
	o, err := w.ingestE(s)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func (w *world) ingestE(s sale) (*ent.Order, error) {
	w.mu.Lock()
	w.seq++
	ext := fmt.Sprintf("O%06d", w.seq)
	w.mu.Unlock()
	var sum int64
	for _, l := range s.lines {
		sum += l.Amount
	}
	in := order.IngestInput{
		ExternalID: ext, Channel: s.channel, StoreCode: s.store.Code,
		Member: identity.MemberRef{MemberID: &s.member}, PaidAt: s.paid, Amount: sum - s.discount, Items: s.lines,
	}
	if s.discount > 0 {
		in.CouponOrderRef = "C" + ext
	}
	if s.points > 0 {
		in.Payments = append(in.Payments, order.Payment{Method: enum.PayPoints, Amount: s.points, Points: s.points})
	}
	if rest := in.Amount - s.points; rest > 0 {
		in.Payments = append(in.Payments, order.Payment{Method: enum.PayWeChat, Amount: rest})
	}
	res, err := w.orders.Ingest(w.ctx, in)
	if err != nil {
		return nil, fmt.Errorf("ingesting %s: %w", ext, err)
	}
	w.mu.Lock()
	w.placed = append(w.placed, res.Order)
	w.mu.Unlock()
	return res.Order, nil
}

func (w *world) refund(t *testing.T, o *ent.Order, amount int64) {
	t.Helper()
	if err := w.refundE(o, amount); err != nil {
		t.Fatal(err)
	}
}

func (w *world) refundE(o *ent.Order, amount int64) error {
	w.mu.Lock()
	w.seq++
	id := fmt.Sprintf("R%06d", w.seq)
	w.mu.Unlock()
	if _, err := w.orders.Refund(w.ctx, order.RefundInput{ExternalID: o.ExternalID, Channel: o.Channel,
		RefundID: id, Amount: amount}); err != nil {
		return fmt.Errorf("refunding %s: %w", o.ExternalID, err)
	}
	return nil
}

// randomSale is an order of a random member at a random store, paid in
// [from, to); one in eight lands on a business-day boundary (16:00:00Z or
// the second before it).
func (w *world) randomSale(rng *rand.Rand, from, to time.Time) sale {
	paid := from.Add(time.Duration(rng.Int64N(int64(to.Sub(from)))))
	if rng.IntN(8) == 0 {
		d := paid.UTC()
		paid = time.Date(d.Year(), d.Month(), d.Day(), 16, 0, 0, 0, time.UTC)
		if rng.IntN(2) == 0 {
			paid = paid.Add(-time.Second)
		}
		if !paid.Before(to) {
			paid = paid.AddDate(0, 0, -1)
		}
	}
	channels := []enum.Channel{enum.ChannelPOS, enum.ChannelMiniProgram, enum.ChannelApp}
	var lines []order.Item
	for _, k := range rng.Perm(len(catalogue))[:1+rng.IntN(3)] {
		it := catalogue[k]
		it.Quantity = 1 + rng.IntN(4)
		it.Amount = it.UnitPrice * int64(it.Quantity)
		lines = append(lines, it)
	}
	s := sale{
		member: w.members[rng.IntN(len(w.members))], store: w.stores[rng.IntN(len(w.stores))],
		channel: channels[rng.IntN(len(channels))], paid: paid, lines: lines,
	}
	if rng.IntN(5) == 0 {
		s.discount = 1 + rng.Int64N(lines[0].Amount/2)
	}
	return s
}

// maybeRefund refunds o in part (one in six), in full (one in eight), or
// in two steps to the full amount (one in twenty).
func (w *world) maybeRefund(t *testing.T, rng *rand.Rand, o *ent.Order) {
	t.Helper()
	if err := w.maybeRefundE(rng, o); err != nil {
		t.Fatal(err)
	}
}

func (w *world) maybeRefundE(rng *rand.Rand, o *ent.Order) error {
	switch r := rng.IntN(120); {
	case r < 20:
		return w.refundE(o, 1+rng.Int64N(o.Amount-1))
	case r < 35:
		return w.refundE(o, o.Amount)
	case r < 41:
		part := 1 + rng.Int64N(o.Amount-1)
		if err := w.refundE(o, part); err != nil {
			return err
		}
		return w.refundE(o, o.Amount-part)
	}
	return nil
}

func (w *world) balance(t *testing.T, memberID int) int64 {
	t.Helper()
	a, err := account.Get(w.ctx, w.db, memberID)
	if err != nil {
		t.Fatalf("reading account: %v", err)
	}
	return a.PointsBalance
}

func day(s string) calendar.Date {
	d, err := calendar.Parse(s)
	if err != nil {
		panic(err)
	}
	return d
}
