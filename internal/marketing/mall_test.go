package marketing_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/mallitem"
	"github.com/onemember/onemember/ent/mallredemption"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/ent/pointsentry"
	"github.com/onemember/onemember/internal/marketing"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/testkit"
)

func (e *env) item(t testing.TB, in marketing.MallItemInput) *ent.MallItem {
	t.Helper()
	if in.Title == "" {
		in.Title = "保温杯"
	}
	it, err := e.svc.CreateMallItem(context.Background(), in)
	if err != nil {
		t.Fatalf("CreateMallItem: %v", err)
	}
	return it
}

func (e *env) stock(t testing.TB, itemID int) int {
	t.Helper()
	it, err := e.db.MallItem.Get(context.Background(), itemID)
	if err != nil {
		t.Fatalf("reading item: %v", err)
	}
	return it.Stock
}

func TestCreateMallItemValidates(t *testing.T) {
	e := newEnv(t)
	_, err := e.svc.CreateMallItem(t.Context(), marketing.MallItemInput{
		Title: " ", PointsPrice: 0, Stock: -1, PerMemberLimit: testkit.Ptr(0), CouponTemplateID: testkit.Ptr(424242),
	})
	wantCode(t, err, fault.BadUserInput, "title", "pointsPrice", "stock", "perMemberLimit", "couponTemplateId")
	if n := e.db.MallItem.Query().CountX(t.Context()); n != 0 {
		t.Errorf("%d items created, want 0", n)
	}
}

func TestRedeemMallItem(t *testing.T) {
	e := newEnv(t)
	m := e.member(t)
	e.fund(t, m, 1000)
	it := e.item(t, marketing.MallItemInput{PointsPrice: 100, Stock: 5, PerMemberLimit: testkit.Ptr(3)})

	res, err := e.svc.RedeemMallItem(t.Context(), m, it.ID, 2, "k1")
	if err != nil {
		t.Fatalf("RedeemMallItem: %v", err)
	}
	if res.Duplicate || res.PointsBalance != 800 || res.Redemption.PointsSpent != 200 || res.Redemption.Quantity != 2 {
		t.Errorf("got %+v / %+v, want 2 for 200 points, balance 800", res, res.Redemption)
	}
	if got := e.stock(t, it.ID); got != 3 {
		t.Errorf("stock %d, want 3", got)
	}

	t.Run("same key again is a duplicate", func(t *testing.T) {
		again, err := e.svc.RedeemMallItem(t.Context(), m, it.ID, 2, "k1")
		if err != nil {
			t.Fatalf("RedeemMallItem: %v", err)
		}
		if !again.Duplicate || again.Redemption.ID != res.Redemption.ID || again.PointsBalance != 800 {
			t.Errorf("got %+v, want the first redemption, balance 800", again)
		}
	})
	t.Run("same key for another request conflicts", func(t *testing.T) {
		_, err := e.svc.RedeemMallItem(t.Context(), m, it.ID, 1, "k1")
		wantCode(t, err, fault.Conflict)
	})
	t.Run("per-member limit", func(t *testing.T) {
		_, err := e.svc.RedeemMallItem(t.Context(), m, it.ID, 2, "k2") // 2 + 2 > 3
		wantCode(t, err, fault.LimitExceeded)
		if _, err := e.svc.RedeemMallItem(t.Context(), m, it.ID, 1, "k3"); err != nil {
			t.Fatalf("RedeemMallItem within the limit: %v", err)
		}
		_, err = e.svc.RedeemMallItem(t.Context(), m, it.ID, 1, "k4")
		wantCode(t, err, fault.LimitExceeded)
	})
	if got := e.balance(t, m); got != 700 {
		t.Errorf("balance %d, want 700", got)
	}
	if got := e.stock(t, it.ID); got != 2 {
		t.Errorf("stock %d, want 2", got)
	}
	e.verifyLedgers(t)
}

func TestRedeemMallItemRefusalsChangeNothing(t *testing.T) {
	e := newEnv(t)
	m := e.member(t)
	e.fund(t, m, 250)
	it := e.item(t, marketing.MallItemInput{PointsPrice: 100, Stock: 5})
	tpl := e.template(t, 1, 5)
	couponItem := e.item(t, marketing.MallItemInput{PointsPrice: 10, Stock: 5, CouponTemplateID: &tpl.ID})

	check := func(t *testing.T) {
		t.Helper()
		if got := e.balance(t, m); got != 250 {
			t.Errorf("balance %d, want 250", got)
		}
		if got := e.stock(t, it.ID); got != 5 {
			t.Errorf("stock %d, want 5", got)
		}
		if got := e.stock(t, couponItem.ID); got != 5 {
			t.Errorf("coupon item stock %d, want 5", got)
		}
		if n := e.db.MallRedemption.Query().CountX(context.Background()); n != 0 {
			t.Errorf("%d redemptions, want 0", n)
		}
		if n := e.couponsOf(t, m); n != 0 {
			t.Errorf("%d coupons, want 0", n)
		}
	}
	for _, q := range []int{0, -1, 100} {
		t.Run(fmt.Sprintf("quantity %d", q), func(t *testing.T) {
			_, err := e.svc.RedeemMallItem(t.Context(), m, it.ID, q, "k")
			wantCode(t, err, fault.BadUserInput, "quantity")
			check(t)
		})
	}
	t.Run("empty key", func(t *testing.T) {
		_, err := e.svc.RedeemMallItem(t.Context(), m, it.ID, 1, " ")
		wantCode(t, err, fault.BadUserInput, "idempotencyKey")
		check(t)
	})
	t.Run("unknown item", func(t *testing.T) {
		_, err := e.svc.RedeemMallItem(t.Context(), m, 999_999, 1, "k")
		wantCode(t, err, fault.NotFound)
		check(t)
	})
	t.Run("not enough points", func(t *testing.T) {
		_, err := e.svc.RedeemMallItem(t.Context(), m, it.ID, 3, "k")
		wantCode(t, err, fault.InsufficientBalance)
		check(t)
	})
	t.Run("not enough stock", func(t *testing.T) {
		_, err := e.svc.RedeemMallItem(t.Context(), m, it.ID, 6, "k")
		wantCode(t, err, fault.OutOfStock)
		check(t)
	})
	t.Run("coupon template out of stock rolls back", func(t *testing.T) {
		_, err := e.svc.RedeemMallItem(t.Context(), m, couponItem.ID, 2, "k")
		wantCode(t, err, fault.OutOfStock)
		check(t)
	})
	t.Run("inactive item", func(t *testing.T) {
		e.db.MallItem.UpdateOneID(it.ID).SetActive(false).ExecX(t.Context())
		defer e.db.MallItem.UpdateOneID(it.ID).SetActive(true).ExecX(t.Context())
		_, err := e.svc.RedeemMallItem(t.Context(), m, it.ID, 1, "k")
		wantCode(t, err, fault.NotFound)
		check(t)
	})
	t.Run("frozen member", func(t *testing.T) {
		e.db.Member.UpdateOneID(m).SetStatus(member.StatusFROZEN).ExecX(t.Context())
		defer e.db.Member.UpdateOneID(m).SetStatus(member.StatusACTIVE).ExecX(t.Context())
		_, err := e.svc.RedeemMallItem(t.Context(), m, it.ID, 1, "k")
		wantCode(t, err, fault.Forbidden)
		check(t)
	})
}

func TestRedeemMallCouponItem(t *testing.T) {
	e := newEnv(t)
	m := e.member(t)
	e.fund(t, m, 100)
	tpl := e.template(t, 10, 5)
	it := e.item(t, marketing.MallItemInput{PointsPrice: 10, Stock: 5, CouponTemplateID: &tpl.ID})
	res, err := e.svc.RedeemMallItem(t.Context(), m, it.ID, 2, "k")
	if err != nil {
		t.Fatalf("RedeemMallItem: %v", err)
	}
	if len(res.Redemption.CouponIds) != 2 || e.couponsOf(t, m) != 2 {
		t.Errorf("coupon ids %v, member holds %d; want 2 and 2", res.Redemption.CouponIds, e.couponsOf(t, m))
	}
	if res.PointsBalance != 80 {
		t.Errorf("balance %d, want 80", res.PointsBalance)
	}
}

// 50 members race for 10 items: exactly 10 win, the stock ends at 0 and
// exactly 10×price points are burned.
func TestRedeemMallItemRace(t *testing.T) {
	e := newEnv(t)
	const price = 30
	it := e.item(t, marketing.MallItemInput{PointsPrice: price, Stock: 10})
	ms := e.members(t, 50, 100)

	errs := parallel(len(ms), func(i int) error {
		_, err := e.svc.RedeemMallItem(context.Background(), ms[i], it.ID, 1, "buy")
		return err
	})
	unexpected(t, errs, fault.OutOfStock)
	if got := tally(errs); got[""] != 10 || got[fault.OutOfStock] != 40 {
		t.Errorf("outcomes %v, want 10 successes and 40 OUT_OF_STOCK", got)
	}
	if got := e.stock(t, it.ID); got != 0 {
		t.Errorf("stock %d, want 0", got)
	}
	done := e.db.MallRedemption.Query().Where(mallredemption.ItemID(it.ID), mallredemption.StatusEQ(mallredemption.StatusCOMPLETED)).CountX(t.Context())
	if done != 10 {
		t.Errorf("%d completed redemptions, want 10", done)
	}
	n, sum := e.pointsSum(t, pointsentry.SourceMALL, pointsentry.KindBURN)
	if n != 10 || sum != -10*price {
		t.Errorf("%d burn entries for %d points, want 10 for %d", n, sum, -10*price)
	}
	e.verifyLedgers(t)
}

// One member sends the same key 20 times at once: one redemption, points
// burned once, every answer names it.
func TestRedeemMallItemSameKeyRace(t *testing.T) {
	e := newEnv(t)
	it := e.item(t, marketing.MallItemInput{PointsPrice: 10, Stock: 100})
	m := e.member(t)
	e.fund(t, m, 1000)

	ids := make([]int, 20)
	dups := make([]bool, 20)
	errs := parallel(20, func(i int) error {
		res, err := e.svc.RedeemMallItem(context.Background(), m, it.ID, 2, "same-key")
		if err == nil {
			ids[i], dups[i] = res.Redemption.ID, res.Duplicate
		}
		return err
	})
	unexpected(t, errs)
	first := 0
	for i := range ids {
		if ids[i] != ids[0] {
			t.Errorf("answer %d names redemption %d, answer 0 %d", i, ids[i], ids[0])
		}
		if !dups[i] {
			first++
		}
	}
	if first != 1 {
		t.Errorf("%d answers not marked duplicate, want 1", first)
	}
	if n := e.db.MallRedemption.Query().CountX(t.Context()); n != 1 {
		t.Errorf("%d redemptions, want 1", n)
	}
	if got := e.balance(t, m); got != 980 {
		t.Errorf("balance %d, want 980", got)
	}
	if got := e.db.MallItem.Query().Where(mallitem.ID(it.ID)).OnlyX(t.Context()).Stock; got != 98 {
		t.Errorf("stock %d, want 98", got)
	}
	e.verifyLedgers(t)
}
