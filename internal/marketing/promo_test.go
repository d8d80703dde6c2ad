package marketing_test

import (
	"context"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/promocode"
	"github.com/onemember/onemember/internal/marketing"
	"github.com/onemember/onemember/internal/platform/fault"
)

func (e *env) promo(t testing.TB, in marketing.PromoInput) *ent.PromoCode {
	t.Helper()
	pc, err := e.svc.CreatePromoCode(context.Background(), in)
	if err != nil {
		t.Fatalf("CreatePromoCode: %v", err)
	}
	return pc
}

func (e *env) usedCount(t testing.TB, id int) int {
	t.Helper()
	return e.db.PromoCode.Query().Where(promocode.ID(id)).OnlyX(context.Background()).UsedCount
}

func TestCreatePromoCode(t *testing.T) {
	e := newEnv(t)
	pc := e.promo(t, marketing.PromoInput{Code: "  spring-2025 ", Points: 10, UsageLimit: 5, PerMemberLimit: 1})
	if pc.Code != "SPRING-2025" {
		t.Errorf("stored code %q, want SPRING-2025", pc.Code)
	}
	t.Run("duplicate in another case", func(t *testing.T) {
		_, err := e.svc.CreatePromoCode(t.Context(), marketing.PromoInput{Code: "Spring-2025", Points: 1, UsageLimit: 1, PerMemberLimit: 1})
		wantCode(t, err, fault.Conflict)
	})
	t.Run("validation", func(t *testing.T) {
		now := e.clock.Now()
		for _, tt := range []struct {
			name   string
			in     marketing.PromoInput
			fields []string
		}{
			{"short", marketing.PromoInput{Code: "abc", Points: 1, UsageLimit: 1, PerMemberLimit: 1}, []string{"code"}},
			{"long", marketing.PromoInput{Code: "A234567890123456789012345678901234", Points: 1, UsageLimit: 1, PerMemberLimit: 1}, []string{"code"}},
			{"characters", marketing.PromoInput{Code: "春天快乐", Points: 1, UsageLimit: 1, PerMemberLimit: 1}, []string{"code"}},
			{"space inside", marketing.PromoInput{Code: "AB CD", Points: 1, UsageLimit: 1, PerMemberLimit: 1}, []string{"code"}},
			{"grants nothing", marketing.PromoInput{Code: "EMPTY", UsageLimit: 1, PerMemberLimit: 1}, []string{"couponTemplateIds"}},
			{"limits", marketing.PromoInput{Code: "LIMITS", Points: -1, UsageLimit: 0, PerMemberLimit: 0},
				[]string{"points", "usageLimit", "perMemberLimit"}},
			{"window", marketing.PromoInput{Code: "WINDOW", Points: 1, UsageLimit: 1, PerMemberLimit: 1, ValidFrom: &now, ValidTo: &now},
				[]string{"validTo"}},
			{"unknown template", marketing.PromoInput{Code: "TPL1", CouponTemplateIDs: []int{777777}, UsageLimit: 1, PerMemberLimit: 1},
				[]string{"couponTemplateIds"}},
		} {
			t.Run(tt.name, func(t *testing.T) {
				_, err := e.svc.CreatePromoCode(t.Context(), tt.in)
				wantCode(t, err, fault.BadUserInput, tt.fields...)
			})
		}
		if n := e.db.PromoCode.Query().CountX(t.Context()); n != 1 {
			t.Errorf("%d promo codes, want 1", n)
		}
	})
}

func TestRedeemPromoCode(t *testing.T) {
	e := newEnv(t)
	a, b := e.template(t, 100, 5), e.template(t, 100, 5)
	pc := e.promo(t, marketing.PromoInput{Code: "WELCOME_1", CouponTemplateIDs: []int{b.ID, a.ID}, Points: 88, UsageLimit: 10, PerMemberLimit: 2})
	m := e.member(t)

	res, err := e.svc.RedeemPromoCode(t.Context(), m, "  welcome_1 ")
	if err != nil {
		t.Fatalf("RedeemPromoCode: %v", err)
	}
	if len(res.Coupons) != 2 || res.PointsAwarded != 88 || res.PointsBalance != 88 {
		t.Errorf("got %d coupons, %d points, balance %d; want 2, 88, 88", len(res.Coupons), res.PointsAwarded, res.PointsBalance)
	}
	if _, err := e.svc.RedeemPromoCode(t.Context(), m, "WELCOME_1"); err != nil {
		t.Fatalf("second use: %v", err)
	}
	_, err = e.svc.RedeemPromoCode(t.Context(), m, "WELCOME_1")
	wantCode(t, err, fault.LimitExceeded)
	if got := e.balance(t, m); got != 176 {
		t.Errorf("balance %d, want 176", got)
	}
	if got := e.usedCount(t, pc.ID); got != 2 {
		t.Errorf("used_count %d, want 2", got)
	}
	e.verifyLedgers(t)
}

func TestRedeemPromoCodeRefusalsChangeNothing(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	later, earlier := now.Add(time.Hour), now.Add(-time.Hour)
	notYet := e.promo(t, marketing.PromoInput{Code: "NOTYET", Points: 5, UsageLimit: 5, PerMemberLimit: 1, ValidFrom: &later})
	expired := e.promo(t, marketing.PromoInput{Code: "EXPIRED", Points: 5, UsageLimit: 5, PerMemberLimit: 1, ValidTo: &earlier})
	tpl := e.template(t, 1, 1)
	soldOut := e.promo(t, marketing.PromoInput{Code: "SOLDOUT", CouponTemplateIDs: []int{tpl.ID}, Points: 5, UsageLimit: 5, PerMemberLimit: 1})
	// Someone else takes the template's only coupon.
	if _, err := e.svc.RedeemPromoCode(t.Context(), e.member(t), "SOLDOUT"); err != nil {
		t.Fatalf("first use: %v", err)
	}
	m := e.member(t)
	for _, tt := range []struct {
		name, code string
		want       fault.Code
		field      []string
		id         int
		used       int
	}{
		{"unknown", "NOSUCHCODE", fault.NotFound, nil, 0, 0},
		{"malformed", "no such code!", fault.NotFound, nil, 0, 0},
		{"not yet valid", "notyet", fault.BadUserInput, []string{"code"}, notYet.ID, 0},
		{"expired", "expired", fault.BadUserInput, []string{"code"}, expired.ID, 0},
		{"coupon out of stock", "soldout", fault.OutOfStock, nil, soldOut.ID, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.svc.RedeemPromoCode(t.Context(), m, tt.code)
			wantCode(t, err, tt.want, tt.field...)
			if got := e.balance(t, m); got != 0 {
				t.Errorf("balance %d, want 0", got)
			}
			if got := e.couponsOf(t, m); got != 0 {
				t.Errorf("%d coupons, want 0", got)
			}
			if tt.id != 0 {
				if got := e.usedCount(t, tt.id); got != tt.used {
					t.Errorf("used_count %d, want %d", got, tt.used)
				}
			}
		})
	}
	if n := e.db.PromoRedemption.Query().CountX(t.Context()); n != 1 {
		t.Errorf("%d redemptions, want 1", n)
	}
}

// 30 members race for a code usable 5 times: exactly 5 succeed.
func TestRedeemPromoCodeUsageLimitRace(t *testing.T) {
	e := newEnv(t)
	tpl := e.template(t, 100, 1)
	pc := e.promo(t, marketing.PromoInput{Code: "FIRST5", CouponTemplateIDs: []int{tpl.ID}, Points: 20, UsageLimit: 5, PerMemberLimit: 1})
	ms := e.members(t, 30, 0)
	errs := parallel(len(ms), func(i int) error {
		_, err := e.svc.RedeemPromoCode(context.Background(), ms[i], "first5")
		return err
	})
	unexpected(t, errs, fault.OutOfStock)
	if got := tally(errs); got[""] != 5 || got[fault.OutOfStock] != 25 {
		t.Errorf("outcomes %v, want 5 successes and 25 OUT_OF_STOCK", got)
	}
	if got := e.usedCount(t, pc.ID); got != 5 {
		t.Errorf("used_count %d, want 5", got)
	}
	if n := e.db.PromoRedemption.Query().CountX(t.Context()); n != 5 {
		t.Errorf("%d redemptions, want 5", n)
	}
	if n := e.db.Coupon.Query().CountX(t.Context()); n != 5 {
		t.Errorf("%d coupons, want 5", n)
	}
	e.verifyLedgers(t)
}

// One member tries a once-per-member code 10 times at once: one use.
func TestRedeemPromoCodePerMemberRace(t *testing.T) {
	e := newEnv(t)
	pc := e.promo(t, marketing.PromoInput{Code: "ONCE", Points: 20, UsageLimit: 100, PerMemberLimit: 1})
	m := e.member(t)
	errs := parallel(10, func(int) error {
		_, err := e.svc.RedeemPromoCode(context.Background(), m, "ONCE")
		return err
	})
	unexpected(t, errs, fault.LimitExceeded)
	if got := tally(errs); got[""] != 1 || got[fault.LimitExceeded] != 9 {
		t.Errorf("outcomes %v, want 1 success and 9 LIMIT_EXCEEDED", got)
	}
	if got := e.usedCount(t, pc.ID); got != 1 {
		t.Errorf("used_count %d, want 1", got)
	}
	if got := e.balance(t, m); got != 20 {
		t.Errorf("balance %d, want 20", got)
	}
}
