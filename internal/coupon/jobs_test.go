package coupon_test

import (
	"context"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/memberevent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/coupon"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/testkit"
)

func TestExpire(t *testing.T) {
	e := newEnv(t)
	_, st := e.store(t)
	m := e.member(t)
	short := e.template(t, func(in *coupon.TemplateInput) { in.DaysAfterIssue, in.PerMemberLimit = testkit.Ptr(1), 10 })
	long := e.template(t)
	// Issued 10 March 12:00: expire at 12 March 00:00 Shanghai.
	a, b, locked := e.issue(t, m, short), e.issue(t, m, short), e.issue(t, m, short)
	keep := e.issue(t, m, long)
	if _, err := e.svc.Lock(t.Context(), lockIn(st, "R", 5000, locked)); err != nil {
		t.Fatal(err)
	}
	e.clock.Set(time.Date(2025, 3, 11, 23, 59, 59, 0, e.zone))
	if n, err := e.svc.Expire(t.Context()); err != nil || n != 0 {
		t.Fatalf("Expire before midnight = %d, %v; want 0", n, err)
	}
	e.clock.Set(time.Date(2025, 3, 12, 0, 0, 0, 0, e.zone))
	if n, err := e.svc.Expire(t.Context()); err != nil || n != 2 {
		t.Fatalf("Expire = %d, %v; want 2", n, err)
	}
	for c, want := range map[*ent.Coupon]enum.CouponStatus{
		a: enum.CouponExpired, b: enum.CouponExpired, locked: enum.CouponLocked, keep: enum.CouponAvailable,
	} {
		if got := e.coupon(t, c.ID).Status; got != want {
			t.Fatalf("coupon %s is %s, want %s", c.Code, got, want)
		}
	}
	if n, err := e.svc.Expire(t.Context()); err != nil || n != 0 {
		t.Fatalf("second Expire = %d, %v; want 0", n, err)
	}
	// The stale lock is released, then expires.
	if n, err := e.svc.ReleaseExpiredLocks(t.Context()); err != nil || n != 1 {
		t.Fatalf("ReleaseExpiredLocks = %d, %v", n, err)
	}
	if n, err := e.svc.Expire(t.Context()); err != nil || n != 1 {
		t.Fatalf("Expire after release = %d, %v; want 1", n, err)
	}
}

func TestExpireManyBatches(t *testing.T) {
	e := newEnv(t)
	tpl := e.template(t, func(in *coupon.TemplateInput) { in.DaysAfterIssue, in.TotalStock = testkit.Ptr(1), 5000 })
	m := e.member(t)
	// 2,500 coupons written directly: more than two batches.
	const n = 2500
	bulk := make([]*ent.CouponCreate, n)
	exp := e.clock.Now().Add(time.Hour)
	for i := range bulk {
		bulk[i] = e.db.Coupon.Create().SetCode(codeOf(i)).SetTemplateID(tpl.ID).SetMemberID(m).
			SetIssuedAt(e.clock.Now()).SetExpiresAt(exp)
	}
	for i := 0; i < n; i += 500 {
		if err := e.db.Coupon.CreateBulk(bulk[i : i+500]...).Exec(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	e.clock.Advance(time.Hour)
	if got, err := e.svc.Expire(t.Context()); err != nil || got != n {
		t.Fatalf("Expire = %d, %v; want %d", got, err, n)
	}
}

func codeOf(i int) string {
	const digits = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	b := []byte("TEST00000000")
	for j := len(b) - 1; i > 0; j-- {
		b[j] = digits[i%32]
		i /= 32
	}
	return string(b)
}

// TestNotifyExpiringOnce: two replicas run the job at once; each coupon is
// announced exactly once.
func TestNotifyExpiringOnce(t *testing.T) {
	e := newEnv(t)
	soon := e.template(t, func(in *coupon.TemplateInput) { in.DaysAfterIssue = testkit.Ptr(2) })
	later := e.template(t, func(in *coupon.TemplateInput) { in.DaysAfterIssue = testkit.Ptr(10) })
	const members = 30
	var ids []int
	expiring := 0
	for range members {
		m := e.member(t)
		ids = append(ids, m)
		e.issue(t, m, soon)
		e.issue(t, m, soon)
		e.issue(t, m, later)
		expiring += 2
	}
	// One expiring coupon already used: no reminder.
	used := e.issue(t, ids[0], soon)
	if err := e.db.Coupon.UpdateOneID(used.ID).SetStatus(enum.CouponRedeemed).Exec(t.Context()); err != nil {
		t.Fatal(err)
	}

	var counts [2]int64
	errs := race(2, func(i int) error {
		n, err := e.svc.NotifyExpiring(context.Background())
		counts[i] = n
		return err
	})
	for _, err := range errs {
		if err != nil {
			t.Fatalf("NotifyExpiring: %v", err)
		}
	}
	if counts[0]+counts[1] != int64(expiring) {
		t.Fatalf("runs announced %v, want %d in all", counts, expiring)
	}
	total, err := e.db.MemberEvent.Query().Where(memberevent.TypeEQ(memberevent.TypeCOUPON_EXPIRING)).Count(t.Context())
	if err != nil || total != expiring {
		t.Fatalf("%d COUPON_EXPIRING events, %v; want %d", total, err, expiring)
	}
	evs := e.events(t, ids[1], memberevent.TypeCOUPON_EXPIRING)
	if len(evs) != 2 || evs[0].Payload["templateId"] != float64(soon.ID) || evs[0].Payload["expiresAt"] != "2025-03-13T00:00:00+08:00" {
		t.Fatalf("events = %+v", evs)
	}
	if n, err := e.svc.NotifyExpiring(t.Context()); err != nil || n != 0 {
		t.Fatalf("third run = %d, %v; want 0", n, err)
	}
	// A week on, the 10-day coupons are due.
	e.clock.Advance(8 * 24 * time.Hour)
	if n, err := e.svc.NotifyExpiring(t.Context()); err != nil || n != members {
		t.Fatalf("run a week later = %d, %v; want %d", n, err, members)
	}
}

func TestStats(t *testing.T) {
	e := newEnv(t)
	_, st := e.store(t)
	tpl := e.template(t, func(in *coupon.TemplateInput) { in.DaysAfterIssue = testkit.Ptr(1) })
	other := e.template(t)
	empty := e.template(t)
	m1, m2, m3 := e.member(t), e.member(t), e.member(t)

	// m1 redeems on an order of 90 yuan, partly refunded 20 yuan.
	// m2 redeems on an order of 50 yuan, fully refunded: its coupon comes back.
	// m3's coupon expires; m1 holds one more unused.
	redeem := func(m int, c *ent.Coupon, amount, refunded int64, ref string) *ent.Order {
		t.Helper()
		if _, err := e.svc.Lock(t.Context(), lockIn(st, ref, amount+1000, c)); err != nil {
			t.Fatal(err)
		}
		o, err := database.WithTx(t.Context(), e.db, func(tx *ent.Tx) (*ent.Order, error) {
			o := e.order(t, tx, m, st, amount, ref)
			if _, err := e.svc.RedeemLocked(t.Context(), tx, m, ref, o); err != nil {
				return nil, err
			}
			return o, tx.Order.UpdateOneID(o.ID).SetRefundedAmount(refunded).Exec(t.Context())
		})
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	redeem(m1, e.issue(t, m1, tpl), 9000, 2000, "A")
	o2 := redeem(m2, e.issue(t, m2, tpl), 5000, 5000, "B")
	if _, err := database.WithTx(t.Context(), e.db, func(tx *ent.Tx) (int, error) {
		return e.svc.ReturnForRefund(t.Context(), tx, o2)
	}); err != nil {
		t.Fatal(err)
	}
	e.issue(t, m3, tpl)
	e.issue(t, m1, tpl)
	redeem(m3, e.issue(t, m3, other), 7000, 0, "C") // another template
	e.clock.Advance(48 * time.Hour)
	if _, err := e.svc.Expire(t.Context()); err != nil {
		t.Fatal(err)
	}

	got, err := e.svc.Stats(t.Context(), tpl.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := coupon.Stats{Issued: 4, Redeemed: 1, Expired: 3, RedemptionRate: 0.25, DiscountTotal: 1000, AttributedRevenue: 7000}
	if got != want {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
	if got, err := e.svc.Stats(t.Context(), empty.ID); err != nil || got != (coupon.Stats{}) {
		t.Fatalf("Stats of an unused template = %+v, %v", got, err)
	}
	_, err = e.svc.Stats(t.Context(), 1)
	wantIs(t, err, coupon.ErrTemplateNotFound)
}
