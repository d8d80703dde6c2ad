package coupon_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/coupon"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/testkit"
)

func lockIn(st *ent.Store, ref string, basket int64, cs ...*ent.Coupon) coupon.LockInput {
	codes := make([]string, len(cs))
	for i, c := range cs {
		codes[i] = c.Code
	}
	return coupon.LockInput{OrderRef: ref, Codes: codes, BasketAmount: basket, StoreCode: st.Code}
}

func TestLockRefusalsChangeNothing(t *testing.T) {
	e := newEnv(t)
	bu, st := e.store(t)
	otherBU, otherStore := e.store(t)
	m, other := e.member(t), e.member(t)

	fixed := e.template(t)
	threshold := e.template(t, func(in *coupon.TemplateInput) {
		in.Kind, in.FaceValue, in.MinSpend = coupon.KindThreshold, testkit.Ptr[int64](2000), testkit.Ptr[int64](10000)
	})
	percent := e.template(t, func(in *coupon.TemplateInput) {
		in.Kind, in.FaceValue, in.DiscountPercent = coupon.KindPercentOff, nil, testkit.Ptr(80)
	})
	gift := e.template(t, func(in *coupon.TemplateInput) { in.Kind, in.FaceValue = coupon.KindGift, nil })
	onlyOtherBU := e.template(t, func(in *coupon.TemplateInput) { in.BusinessUnitCodes = []string{otherBU.Code} })
	onlyOtherStore := e.template(t, func(in *coupon.TemplateInput) { in.StoreCodes = []string{otherStore.Code} })
	short := e.template(t, func(in *coupon.TemplateInput) { in.DaysAfterIssue = testkit.Ptr(1) })
	later, muchLater := e.clock.Now().Add(72*time.Hour), e.clock.Now().Add(96*time.Hour)
	upcoming := e.template(t, func(in *coupon.TemplateInput) {
		in.DaysAfterIssue, in.ValidFrom, in.ValidTo = nil, &later, &muchLater
	})

	cFixed, cFixed2 := e.issue(t, m, fixed), e.issue(t, m, fixed)
	cThreshold, cPercent := e.issue(t, m, threshold), e.issue(t, m, percent)
	cGift, cOtherBU, cOtherStore := e.issue(t, m, gift), e.issue(t, m, onlyOtherBU), e.issue(t, m, onlyOtherStore)
	cShort, cUpcoming := e.issue(t, m, short), e.issue(t, m, upcoming)
	cOfOther := e.issue(t, other, gift)
	cVoid := e.issue(t, m, gift)
	if err := e.db.Coupon.UpdateOneID(cVoid.ID).SetStatus(enum.CouponVoid).Exec(t.Context()); err != nil {
		t.Fatal(err)
	}
	cLocked := e.issue(t, m, fixed)
	if _, err := e.svc.Lock(t.Context(), lockIn(st, "OTHER-TILL", 5000, cLocked)); err != nil {
		t.Fatalf("locking for the other till: %v", err)
	}
	e.clock.Advance(36 * time.Hour) // cShort (1 day after issue) is now past its expiry
	cExpired := e.issue(t, m, gift)
	if err := e.db.Coupon.UpdateOneID(cExpired.ID).SetStatus(enum.CouponExpired).Exec(t.Context()); err != nil {
		t.Fatal(err)
	}
	cLockedRefreshed := e.issue(t, m, threshold)
	if _, err := e.svc.Lock(t.Context(), lockIn(st, "OTHER-TILL-2", 50000, cLockedRefreshed)); err != nil {
		t.Fatalf("locking for the other till: %v", err)
	}
	all := []*ent.Coupon{cFixed, cFixed2, cThreshold, cPercent, cGift, cOtherBU, cOtherStore, cShort, cUpcoming, cOfOther, cVoid, cLocked, cExpired, cLockedRefreshed}
	before := e.snapshot(t, all...)

	unknown := &ent.Coupon{Code: "ZZZZZZZZZZZZ"}
	tests := []struct {
		name  string
		in    coupon.LockInput
		code  fault.Code
		field string
		is    error
	}{
		{"unknown code", lockIn(st, "R", 50000, cGift, unknown), fault.NotFound, "", coupon.ErrCouponNotFound},
		{"coupons of two members", lockIn(st, "R", 50000, cGift, cOfOther), fault.BadUserInput, "codes", coupon.ErrMixedMembers},
		{"below min spend", lockIn(st, "R", 9999, cThreshold), fault.BadUserInput, "basketAmount", coupon.ErrBelowMinSpend},
		{"other business unit", lockIn(st, "R", 50000, cGift, cOtherBU), fault.BadUserInput, "storeCode", coupon.ErrNotApplicable},
		{"other store", lockIn(st, "R", 50000, cOtherStore), fault.BadUserInput, "storeCode", coupon.ErrNotApplicable},
		{"past expires_at", lockIn(st, "R", 50000, cGift, cShort), fault.BadUserInput, "codes", coupon.ErrCouponExpired},
		{"status expired", lockIn(st, "R", 50000, cExpired), fault.BadUserInput, "codes", coupon.ErrCouponExpired},
		{"window not started", lockIn(st, "R", 50000, cUpcoming), fault.BadUserInput, "codes", coupon.ErrNotStarted},
		{"void", lockIn(st, "R", 50000, cVoid), fault.Conflict, "", coupon.ErrCouponConflict},
		{"locked by another till", lockIn(st, "R", 50000, cGift, cLockedRefreshed), fault.Conflict, "", coupon.ErrCouponConflict},
		{"two discount coupons", lockIn(st, "R", 50000, cFixed, cPercent), fault.BadUserInput, "codes", coupon.ErrStacking},
		{"fixed and threshold", lockIn(st, "R", 50000, cThreshold, cGift, cFixed), fault.BadUserInput, "codes", coupon.ErrStacking},
		{"same template twice", lockIn(st, "R", 50000, cFixed, cFixed2), fault.BadUserInput, "codes", coupon.ErrStacking},
		{"unknown store", coupon.LockInput{OrderRef: "R", Codes: []string{cGift.Code}, BasketAmount: 1, StoreCode: "NOPE"}, fault.BadUserInput, "storeCode", coupon.ErrUnknownStore},
		{"store not of this till", func() coupon.LockInput {
			in := lockIn(st, "R", 50000, cGift)
			in.ClientStoreOK = func(s *ent.Store) bool { return s.ID == otherStore.ID }
			return in
		}(), fault.Forbidden, "", coupon.ErrStoreForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.svc.Lock(t.Context(), tt.in)
			wantCode(t, err, tt.code)
			if tt.field != "" {
				wantField(t, err, tt.field)
			}
			wantIs(t, err, tt.is)
			if after := e.snapshot(t, all...); !slices.Equal(before, after) {
				t.Fatalf("coupons changed:\nbefore %q\nafter  %q", before, after)
			}
		})
	}
	// The messages name the coupons.
	_, err := e.svc.Lock(t.Context(), lockIn(st, "R", 50000, cGift, unknown))
	if want := fmt.Sprintf("coupon %s: no such coupon", unknown.Code); fault.Message(err) != want {
		t.Fatalf("message = %q, want %q", fault.Message(err), want)
	}
	_, err = e.svc.Lock(t.Context(), lockIn(st, "R", 50000, cShort))
	if want := fmt.Sprintf("invalid input: codes: coupon %s has expired", cShort.Code); fault.Message(err) != want {
		t.Fatalf("message = %q, want %q", fault.Message(err), want)
	}
	_ = bu
}

func TestLockStackingAndDiscounts(t *testing.T) {
	e := newEnv(t)
	bu, st := e.store(t)
	m := e.member(t)
	fixed := e.template(t, func(in *coupon.TemplateInput) { in.BusinessUnitCodes = []string{bu.Code} })
	percent := e.template(t, func(in *coupon.TemplateInput) {
		in.Kind, in.FaceValue, in.DiscountPercent, in.StoreCodes = coupon.KindPercentOff, nil, testkit.Ptr(85), []string{st.Code}
	})
	giftA := e.template(t, func(in *coupon.TemplateInput) { in.Kind, in.FaceValue = coupon.KindGift, nil })
	giftB := e.template(t, func(in *coupon.TemplateInput) {
		in.Kind, in.FaceValue, in.MinSpend = coupon.KindGift, nil, testkit.Ptr[int64](5000)
	})
	cFixed, cPercent := e.issue(t, m, fixed), e.issue(t, m, percent)
	cGiftA, cGiftB := e.issue(t, m, giftA), e.issue(t, m, giftB)

	// One discount coupon plus two gift coupons, codes typed loosely.
	in := lockIn(st, "T1-0001", 12345, cPercent, cGiftA, cGiftB)
	in.Codes[1] = " " + toLower(in.Codes[1]) + " "
	res, err := e.svc.Lock(t.Context(), in)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	if res.Discount != 1851 || len(res.Coupons) != 3 { // floor(12345 × 15 / 100)
		t.Fatalf("discount = %d over %d coupons, want 1851 over 3", res.Discount, len(res.Coupons))
	}
	for i, want := range []int64{1851, 0, 0} {
		c := res.Coupons[i]
		if c.Discount != want || c.Status != enum.CouponLocked || deref(c.LockedOrderRef) != "T1-0001" {
			t.Fatalf("coupon %d = %+v", i, c)
		}
	}

	// The same codes and ref again: the same answer.
	e.clock.Advance(time.Minute)
	again, err := e.svc.Lock(t.Context(), in)
	if err != nil || again.Discount != res.Discount {
		t.Fatalf("relock = %+v, %v; want discount %d", again, err, res.Discount)
	}

	// The basket changed: the fixed coupon replaces the percent one, which
	// is released; gift A stays.
	res, err = e.svc.Lock(t.Context(), lockIn(st, "T1-0001", 600, cFixed, cGiftA))
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	if res.Discount != 600 { // 10 yuan capped at a 6-yuan basket
		t.Fatalf("discount = %d, want 600", res.Discount)
	}
	for c, want := range map[*ent.Coupon]enum.CouponStatus{
		cFixed: enum.CouponLocked, cGiftA: enum.CouponLocked, cPercent: enum.CouponAvailable, cGiftB: enum.CouponAvailable,
	} {
		if got := e.coupon(t, c.ID); got.Status != want || (want == enum.CouponAvailable && (got.LockedOrderRef != nil || got.Discount != 0)) {
			t.Fatalf("coupon %s = %+v, want %s", c.Code, got, want)
		}
	}

	// Release frees what the ref holds; an unknown ref frees nothing.
	n, err := e.svc.Release(t.Context(), "T1-0001")
	if err != nil || n != 2 {
		t.Fatalf("Release = %d, %v; want 2", n, err)
	}
	if n, err := e.svc.Release(t.Context(), "T1-0001"); err != nil || n != 0 {
		t.Fatalf("second Release = %d, %v; want 0", n, err)
	}
	for _, c := range []*ent.Coupon{cFixed, cGiftA} {
		if got := e.coupon(t, c.ID); got.Status != enum.CouponAvailable || got.LockedAt != nil || got.LockedOrderRef != nil {
			t.Fatalf("released coupon = %+v", got)
		}
	}
	wantField(t, func() error { _, err := e.svc.Release(t.Context(), " "); return err }(), "orderRef")
}

func TestLockExpiresAfter15Minutes(t *testing.T) {
	e := newEnv(t)
	_, st := e.store(t)
	m := e.member(t)
	tpl := e.template(t)
	c, c2 := e.issue(t, m, tpl), e.issue(t, m, tpl)
	if _, err := e.svc.Lock(t.Context(), lockIn(st, "A", 5000, c)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Lock(t.Context(), lockIn(st, "B", 5000, c2)); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(14*time.Minute + 59*time.Second)
	_, err := e.svc.Lock(t.Context(), lockIn(st, "C", 5000, c))
	wantIs(t, err, coupon.ErrCouponConflict)
	if n, err := e.svc.ReleaseExpiredLocks(t.Context()); err != nil || n != 0 {
		t.Fatalf("ReleaseExpiredLocks = %d, %v; want 0", n, err)
	}

	e.clock.Advance(time.Second)
	// Lazily: the stale lock is taken over by another till.
	res, err := e.svc.Lock(t.Context(), lockIn(st, "C", 5000, c))
	if err != nil || res.Discount != 1000 {
		t.Fatalf("Lock over a stale lock = %+v, %v", res, err)
	}
	// By the job: c2's lock is freed, c's fresh one kept.
	if n, err := e.svc.ReleaseExpiredLocks(t.Context()); err != nil || n != 1 {
		t.Fatalf("ReleaseExpiredLocks = %d, %v; want 1", n, err)
	}
	if got := e.coupon(t, c2.ID); got.Status != enum.CouponAvailable || got.LockedOrderRef != nil {
		t.Fatalf("c2 = %+v", got)
	}
	if got := e.coupon(t, c.ID); got.Status != enum.CouponLocked || deref(got.LockedOrderRef) != "C" {
		t.Fatalf("c = %+v", got)
	}
}

// TestLockRace: two tills lock the same coupon at once, 50 times over.
func TestLockRace(t *testing.T) {
	e := newEnv(t)
	_, st := e.store(t)
	m := e.member(t)
	tpl := e.template(t, func(in *coupon.TemplateInput) { in.PerMemberLimit = 100 })
	for round := range 50 {
		c := e.issue(t, m, tpl)
		errs := race(2, func(i int) error {
			_, err := e.svc.Lock(context.Background(), lockIn(st, fmt.Sprintf("R%d-till%d", round, i), 5000, c))
			return err
		})
		won, conflicts := 0, 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case fault.CodeOf(err) == fault.Conflict:
				conflicts++
			default:
				t.Fatalf("round %d: unexpected error %v", round, err)
			}
		}
		if won != 1 || conflicts != 1 {
			t.Fatalf("round %d: %d won, %d CONFLICT", round, won, conflicts)
		}
		if got := e.coupon(t, c.ID); got.Status != enum.CouponLocked {
			t.Fatalf("round %d: coupon %+v", round, got)
		}
	}
}

func TestRedeemLockedThenRefund(t *testing.T) {
	e := newEnv(t)
	_, st := e.store(t)
	m, other := e.member(t), e.member(t)
	fixed := e.template(t)
	gift := e.template(t, func(in *coupon.TemplateInput) {
		in.Kind, in.FaceValue, in.DaysAfterIssue = coupon.KindGift, nil, testkit.Ptr(2)
	})
	cFixed, cGift := e.issue(t, m, fixed), e.issue(t, m, gift)
	cOther := e.issue(t, other, fixed)
	if _, err := e.svc.Lock(t.Context(), lockIn(st, "POS1-42", 8000, cFixed, cGift)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Lock(t.Context(), lockIn(st, "POS1-43", 8000, cOther)); err != nil {
		t.Fatal(err)
	}
	// The ref of another member's coupons: CONFLICT, nothing redeemed.
	_, err := database.WithTx(t.Context(), e.db, func(tx *ent.Tx) ([]*ent.Coupon, error) {
		o := e.order(t, tx, m, st, 7000, "POS1-43")
		return e.svc.RedeemLocked(t.Context(), tx, m, "POS1-43", o)
	})
	wantIs(t, err, coupon.ErrOrderRefInUse)
	wantCode(t, err, fault.Conflict)
	if got := e.coupon(t, cOther.ID); got.Status != enum.CouponLocked {
		t.Fatalf("other member's coupon = %+v", got)
	}

	e.clock.Advance(20 * time.Minute) // a stale lock nobody took is still redeemed

	var o *ent.Order
	redeemed, err := database.WithTx(t.Context(), e.db, func(tx *ent.Tx) ([]*ent.Coupon, error) {
		o = e.order(t, tx, m, st, 7000, "POS1-42")
		return e.svc.RedeemLocked(t.Context(), tx, m, "POS1-42", o)
	})
	if err != nil || len(redeemed) != 2 {
		t.Fatalf("RedeemLocked = %d coupons, %v", len(redeemed), err)
	}
	got := e.coupon(t, cFixed.ID)
	if got.Status != enum.CouponRedeemed || deref(got.OrderID) != o.ID || got.Discount != 1000 || got.RedeemedAt == nil {
		t.Fatalf("redeemed coupon = %+v", got)
	}
	// A redeemed coupon can be locked by nobody, the ref is spent.
	_, err = e.svc.Lock(t.Context(), lockIn(st, "POS1-44", 8000, cFixed))
	wantIs(t, err, coupon.ErrCouponConflict)
	if n, err := e.svc.Release(t.Context(), "POS1-42"); n != 0 || err != nil {
		t.Fatalf("Release after redeem = %d, %v", n, err)
	}

	// Full refund three days later: the fixed coupon (30 days) comes back,
	// the gift coupon (2 days) has expired meanwhile.
	e.clock.Advance(72 * time.Hour)
	n, err := database.WithTx(t.Context(), e.db, func(tx *ent.Tx) (int, error) {
		return e.svc.ReturnForRefund(t.Context(), tx, o)
	})
	if err != nil || n != 1 {
		t.Fatalf("ReturnForRefund = %d, %v; want 1", n, err)
	}
	back := e.coupon(t, cFixed.ID)
	if back.Status != enum.CouponAvailable || back.OrderID != nil || back.RedeemedAt != nil || back.Discount != 0 || back.LockedOrderRef != nil {
		t.Fatalf("returned coupon = %+v", back)
	}
	if g := e.coupon(t, cGift.ID); g.Status != enum.CouponExpired || g.OrderID != nil {
		t.Fatalf("expired gift coupon = %+v", g)
	}
	// Usable again.
	if _, err := e.svc.Lock(t.Context(), lockIn(st, "POS1-45", 8000, cFixed)); err != nil {
		t.Fatalf("locking the returned coupon: %v", err)
	}
}

func toLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
