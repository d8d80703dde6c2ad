package coupon_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/businessunit"
	entcoupon "github.com/onemember/onemember/ent/coupon"
	"github.com/onemember/onemember/ent/memberevent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/behavior"
	"github.com/onemember/onemember/internal/coupon"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/testkit"
)

type env struct {
	db    *ent.Client
	svc   *coupon.Service
	clock *testkit.Clock
	zone  *time.Location
	seq   atomic.Int64
}

func newEnv(t testing.TB) *env {
	t.Helper()
	client, sqlDB := testkit.EntClient(t, 64)
	zone := testkit.Shanghai(t)
	c := testkit.NewClock(time.Date(2025, 3, 10, 12, 0, 0, 0, zone))
	// Claims record behaviour: the test clock's month (and the next three)
	// need partitions.
	parts := behavior.New(client, sqlDB, zone, c.Now, behavior.Options{RetentionMonths: 1})
	if _, err := parts.MaintainPartitions(t.Context()); err != nil {
		t.Fatalf("behaviour partitions: %v", err)
	}
	return &env{db: client, svc: coupon.New(client, zone, c.Now), clock: c, zone: zone}
}

func (e *env) member(t testing.TB) int {
	t.Helper()
	m, err := e.db.Member.Create().
		SetMemberNo(fmt.Sprintf("T%06d", e.seq.Add(1))).
		SetSourceChannel(enum.ChannelPOS).
		Save(context.Background())
	if err != nil {
		t.Fatalf("creating member: %v", err)
	}
	return m.ID
}

// members creates n members at once.
func (e *env) members(t testing.TB, n int) []int {
	t.Helper()
	bulk := make([]*ent.MemberCreate, n)
	for i := range bulk {
		bulk[i] = e.db.Member.Create().SetMemberNo(fmt.Sprintf("T%06d", e.seq.Add(1))).SetSourceChannel(enum.ChannelPOS)
	}
	ms, err := e.db.Member.CreateBulk(bulk...).Save(context.Background())
	if err != nil {
		t.Fatalf("creating members: %v", err)
	}
	ids := make([]int, n)
	for i, m := range ms {
		ids[i] = m.ID
	}
	return ids
}

// store creates a business unit with one store.
func (e *env) store(t testing.TB) (*ent.BusinessUnit, *ent.Store) {
	t.Helper()
	n := e.seq.Add(1)
	u, err := e.db.BusinessUnit.Create().SetCode(fmt.Sprintf("BU%d", n)).SetName("超市").
		SetKind(businessunit.KindSUPERMARKET).Save(context.Background())
	if err != nil {
		t.Fatalf("creating business unit: %v", err)
	}
	return u, e.storeIn(t, u)
}

func (e *env) storeIn(t testing.TB, u *ent.BusinessUnit) *ent.Store {
	t.Helper()
	s, err := e.db.Store.Create().SetCode(fmt.Sprintf("S%d", e.seq.Add(1))).SetName("门店").
		SetBusinessUnitID(u.ID).Save(context.Background())
	if err != nil {
		t.Fatalf("creating store: %v", err)
	}
	return s
}

// input is a valid FIXED_AMOUNT template of 10 yuan for 30 days after issue.
func input(mod ...func(*coupon.TemplateInput)) coupon.TemplateInput {
	in := coupon.TemplateInput{
		Title:          "满100减10",
		Kind:           coupon.KindFixedAmount,
		FaceValue:      testkit.Ptr[int64](1000),
		DaysAfterIssue: testkit.Ptr(30),
		TotalStock:     1000,
		PerMemberLimit: 5,
		Claimable:      true,
	}
	for _, m := range mod {
		m(&in)
	}
	return in
}

func (e *env) template(t testing.TB, mod ...func(*coupon.TemplateInput)) *ent.CouponTemplate {
	t.Helper()
	tpl, err := e.svc.CreateTemplate(context.Background(), input(mod...))
	if err != nil {
		t.Fatalf("creating template: %v", err)
	}
	return tpl
}

// issue gives memberID one coupon of tpl through IssueInTx.
func (e *env) issue(t testing.TB, memberID int, tpl *ent.CouponTemplate) *ent.Coupon {
	t.Helper()
	c, err := database.WithTx(context.Background(), e.db, func(tx *ent.Tx) (*ent.Coupon, error) {
		acct, err := account.Lock(context.Background(), tx, memberID)
		if err != nil {
			return nil, err
		}
		return e.svc.IssueInTx(context.Background(), tx, acct, tpl.ID, "TEST")
	})
	if err != nil {
		t.Fatalf("issuing coupon: %v", err)
	}
	return database.Detach(c)
}

func (e *env) coupon(t testing.TB, id int) *ent.Coupon {
	t.Helper()
	c, err := e.db.Coupon.Get(context.Background(), id)
	if err != nil {
		t.Fatalf("reading coupon: %v", err)
	}
	return c
}

// snapshot reads the mutable state of coupons, to compare before and after
// a refused call.
func (e *env) snapshot(t testing.TB, cs ...*ent.Coupon) []string {
	t.Helper()
	out := make([]string, len(cs))
	for i, c := range cs {
		r := e.coupon(t, c.ID)
		out[i] = fmt.Sprintf("%s %v %v %v %d", r.Status, deref(r.LockedOrderRef), r.LockedAt, r.OrderID, r.Discount)
	}
	return out
}

func (e *env) events(t testing.TB, memberID int, typ memberevent.Type) []*ent.MemberEvent {
	t.Helper()
	evs, err := e.db.MemberEvent.Query().
		Where(memberevent.MemberID(memberID), memberevent.TypeEQ(typ)).
		Order(memberevent.ByID()).All(context.Background())
	if err != nil {
		t.Fatalf("reading events: %v", err)
	}
	return evs
}

func (e *env) countCoupons(t testing.TB, tplID int) int {
	t.Helper()
	n, err := e.db.Coupon.Query().Where(entcoupon.TemplateID(tplID)).Count(context.Background())
	if err != nil {
		t.Fatalf("counting coupons: %v", err)
	}
	return n
}

// behaviorRows counts the behaviour events matching where (SQL on
// behavior_events).
func (e *env) behaviorRows(t testing.TB, where string, args ...any) int {
	t.Helper()
	rows, err := e.db.QueryContext(context.Background(), "SELECT count(*) FROM behavior_events WHERE "+where, args...)
	if err != nil {
		t.Fatalf("counting behaviour events: %v", err)
	}
	defer rows.Close()
	var n int
	if !rows.Next() || rows.Scan(&n) != nil {
		t.Fatalf("counting behaviour events: %v", rows.Err())
	}
	return n
}

// order records a paid order of memberID at st.
func (e *env) order(t testing.TB, tx *ent.Tx, memberID int, st *ent.Store, amount int64, ref string) *ent.Order {
	t.Helper()
	o, err := tx.Order.Create().
		SetExternalID(fmt.Sprintf("O%d", e.seq.Add(1))).SetChannel(enum.ChannelPOS).
		SetMemberID(memberID).SetStoreID(st.ID).SetBusinessUnitID(st.BusinessUnitID).
		SetAmount(amount).SetPaidAt(e.clock.Now()).SetCouponOrderRef(ref).
		SetCreatedAt(e.clock.Now()).
		Save(context.Background())
	if err != nil {
		t.Fatalf("creating order: %v", err)
	}
	return o
}

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

func wantIs(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("want %v, got %v", target, err)
	}
}

func deref[T any](p *T) any {
	if p == nil {
		return nil
	}
	return *p
}
