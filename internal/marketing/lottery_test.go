package marketing_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/lotterydraw"
	"github.com/onemember/onemember/ent/pointsentry"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/marketing"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/testkit"
)

// lottery creates a lottery open from a day ago for a week.
func (e *env) lottery(t testing.TB, cost, daily int, prizes ...marketing.PrizeInput) *ent.Lottery {
	t.Helper()
	now := e.clock.Now()
	l, err := e.svc.CreateLottery(context.Background(), marketing.LotteryInput{
		Title: "幸运转盘", CostPoints: cost, DailyDrawLimit: daily,
		StartsAt: now.Add(-24 * time.Hour), EndsAt: now.Add(7 * 24 * time.Hour), Prizes: prizes,
	})
	if err != nil {
		t.Fatalf("CreateLottery: %v", err)
	}
	return l
}

func nothing(weight int) marketing.PrizeInput {
	return marketing.PrizeInput{Name: "谢谢参与", Kind: enum.PrizeNothing, Weight: weight}
}

func (e *env) prizeStock(t testing.TB, prizeID int) *int {
	t.Helper()
	p, err := e.db.LotteryPrize.Get(context.Background(), prizeID)
	if err != nil {
		t.Fatalf("reading prize: %v", err)
	}
	return p.Stock
}

func TestCreateLotteryValidates(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	tests := []struct {
		name   string
		in     marketing.LotteryInput
		fields []string
	}{
		{"no prizes", marketing.LotteryInput{Title: "x", DailyDrawLimit: 1, StartsAt: now, EndsAt: now.Add(time.Hour)}, []string{"prizes"}},
		{"window and limits", marketing.LotteryInput{Title: "", CostPoints: -1, DailyDrawLimit: 0, StartsAt: now, EndsAt: now,
			Prizes: []marketing.PrizeInput{nothing(1)}}, []string{"title", "costPoints", "dailyDrawLimit", "endsAt"}},
		{"prizes", marketing.LotteryInput{Title: "x", DailyDrawLimit: 1, StartsAt: now, EndsAt: now.Add(time.Hour),
			Prizes: []marketing.PrizeInput{
				nothing(0),
				{Name: "券", Kind: enum.PrizeCoupon, Weight: -1},
				{Name: "积分", Kind: enum.PrizePoints, Weight: 1, Points: testkit.Ptr(0)},
				{Name: "杯", Kind: enum.PrizePhysical, Weight: 1, Stock: testkit.Ptr(-1)},
				{Name: "券", Kind: enum.PrizeCoupon, Weight: 1, CouponTemplateID: testkit.Ptr(987654)},
				{Name: "?", Kind: "JACKPOT", Weight: 1},
			}},
			[]string{"prizes[0].weight", "prizes[1].weight", "prizes[1].couponTemplateId", "prizes[2].points",
				"prizes[3].stock", "prizes[4].couponTemplateId", "prizes[5].kind"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.svc.CreateLottery(t.Context(), tt.in)
			wantCode(t, err, fault.BadUserInput, tt.fields...)
		})
	}
	if n := e.db.Lottery.Query().CountX(t.Context()); n != 0 {
		t.Errorf("%d lotteries created, want 0", n)
	}
}

func TestDraw(t *testing.T) {
	e := newEnv(t)
	m := e.member(t)
	e.fund(t, m, 100)
	l := e.lottery(t, 10, 2, marketing.PrizeInput{Name: "50积分", Kind: enum.PrizePoints, Weight: 1, Points: testkit.Ptr(50)})

	res, err := e.svc.Draw(t.Context(), m, l.ID, "d1")
	if err != nil {
		t.Fatalf("Draw: %v", err)
	}
	if !res.Draw.Won || res.Prize == nil || res.Prize.Kind != enum.PrizePoints || res.PointsAwarded != 50 || res.PointsBalance != 140 {
		t.Errorf("got %+v, want a POINTS win of 50, balance 140", res)
	}

	t.Run("same key is a duplicate", func(t *testing.T) {
		again, err := e.svc.Draw(t.Context(), m, l.ID, "d1")
		if err != nil {
			t.Fatalf("Draw: %v", err)
		}
		if !again.Duplicate || again.Draw.ID != res.Draw.ID || again.PointsBalance != 140 || again.Prize.ID != res.Prize.ID {
			t.Errorf("got %+v, want the first draw, balance 140", again)
		}
	})
	t.Run("same key in another lottery conflicts", func(t *testing.T) {
		other := e.lottery(t, 0, 1, nothing(1))
		_, err := e.svc.Draw(t.Context(), m, other.ID, "d1")
		wantCode(t, err, fault.Conflict)
	})
	t.Run("daily limit, per business day", func(t *testing.T) {
		if _, err := e.svc.Draw(t.Context(), m, l.ID, "d2"); err != nil {
			t.Fatalf("second draw: %v", err)
		}
		left, err := e.svc.DrawsLeftToday(t.Context(), m, l.ID)
		if err != nil || left != 0 {
			t.Fatalf("DrawsLeftToday = %d, %v; want 0", left, err)
		}
		before := e.balance(t, m)
		_, err = e.svc.Draw(t.Context(), m, l.ID, "d3")
		wantCode(t, err, fault.LimitExceeded)
		if got := e.balance(t, m); got != before {
			t.Errorf("balance %d, want %d", got, before)
		}
		// 12:00 + 12h = 00:00 the next day in Shanghai.
		e.clock.Advance(12 * time.Hour)
		defer e.clock.Advance(-12 * time.Hour)
		if left, _ := e.svc.DrawsLeftToday(t.Context(), m, l.ID); left != 2 {
			t.Errorf("DrawsLeftToday next day = %d, want 2", left)
		}
		if _, err := e.svc.Draw(t.Context(), m, l.ID, "d3"); err != nil {
			t.Errorf("draw next day: %v", err)
		}
	})
	e.verifyLedgers(t)
}

func TestDrawRefusalsChangeNothing(t *testing.T) {
	e := newEnv(t)
	m := e.member(t)
	e.fund(t, m, 5)
	l := e.lottery(t, 10, 5, nothing(1))
	now := e.clock.Now()
	future, err := e.svc.CreateLottery(t.Context(), marketing.LotteryInput{Title: "later", CostPoints: 1, DailyDrawLimit: 1,
		StartsAt: now.Add(time.Hour), EndsAt: now.Add(2 * time.Hour), Prizes: []marketing.PrizeInput{nothing(1)}})
	if err != nil {
		t.Fatal(err)
	}
	past, err := e.svc.CreateLottery(t.Context(), marketing.LotteryInput{Title: "earlier", CostPoints: 1, DailyDrawLimit: 1,
		StartsAt: now.Add(-2 * time.Hour), EndsAt: now, Prizes: []marketing.PrizeInput{nothing(1)}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		lottery int
		key     string
		code    fault.Code
		field   []string
	}{
		{"not enough points", l.ID, "k", fault.InsufficientBalance, nil},
		{"not started", future.ID, "k", fault.BadUserInput, []string{"lotteryId"}},
		{"ended", past.ID, "k", fault.BadUserInput, []string{"lotteryId"}},
		{"unknown", 123456, "k", fault.NotFound, nil},
		{"no key", l.ID, "", fault.BadUserInput, []string{"idempotencyKey"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.svc.Draw(t.Context(), m, tt.lottery, tt.key)
			wantCode(t, err, tt.code, tt.field...)
			if got := e.balance(t, m); got != 5 {
				t.Errorf("balance %d, want 5", got)
			}
			if n := e.db.LotteryDraw.Query().CountX(t.Context()); n != 0 {
				t.Errorf("%d draws recorded, want 0", n)
			}
		})
	}
}

// A prize without stock is never won, whatever its weight.
func TestDrawNeverWinsPrizeWithoutStock(t *testing.T) {
	e := newEnv(t)
	m := e.member(t)
	l := e.lottery(t, 0, 50,
		marketing.PrizeInput{Name: "大奖", Kind: enum.PrizePhysical, Weight: 1_000_000, Stock: testkit.Ptr(0)},
		nothing(1))
	for i := range 20 {
		res, err := e.svc.Draw(t.Context(), m, l.ID, fmt.Sprint("k", i))
		if err != nil {
			t.Fatalf("Draw: %v", err)
		}
		if res.Draw.Won || res.Prize.Kind != enum.PrizeNothing {
			t.Fatalf("draw %d won %q", i, res.Prize.Name)
		}
	}
}

// A COUPON prize whose template is out of stock is dropped and the draw
// picks among the rest; the prize's own stock is given back.
func TestDrawCouponTemplateOutOfStock(t *testing.T) {
	e := newEnv(t)
	tpl := e.template(t, 1, 1)
	winner, m := e.member(t), e.member(t)
	l := e.lottery(t, 0, 5,
		marketing.PrizeInput{Name: "券", Kind: enum.PrizeCoupon, Weight: 1_000_000, Stock: testkit.Ptr(5), CouponTemplateID: &tpl.ID},
		nothing(1))
	first, err := e.svc.Draw(t.Context(), winner, l.ID, "a")
	if err != nil {
		t.Fatalf("Draw: %v", err)
	}
	if !first.Draw.Won || first.Coupon == nil || first.Draw.CouponID == nil {
		t.Fatalf("first draw %+v, want the coupon", first)
	}
	res, err := e.svc.Draw(t.Context(), m, l.ID, "b")
	if err != nil {
		t.Fatalf("Draw: %v", err)
	}
	if res.Draw.Won || res.Prize.Kind != enum.PrizeNothing || res.Coupon != nil {
		t.Errorf("second draw %+v, want NOTHING", res)
	}
	if got := e.prizeStock(t, first.Prize.ID); got == nil || *got != 4 {
		t.Errorf("prize stock %v, want 4", got)
	}
	if e.couponsOf(t, m) != 0 {
		t.Errorf("member got a coupon")
	}
	e.verifyLedgers(t)
}

// 200 members draw at once for a prize with stock 3 that is all but
// certain to be picked while it lasts: exactly 3 win, the stock ends at
// 0, and all 200 draws are recorded.
func TestDrawRace(t *testing.T) {
	e := newEnv(t)
	ms := e.members(t, 200, 10)
	l := e.lottery(t, 10, 1,
		marketing.PrizeInput{Name: "iPhone", Kind: enum.PrizePhysical, Weight: 10_000_000, Stock: testkit.Ptr(3)},
		nothing(1))
	prizeID := l.Edges.Prizes[0].ID

	errs := parallel(len(ms), func(i int) error {
		_, err := e.svc.Draw(context.Background(), ms[i], l.ID, "spin")
		return err
	})
	unexpected(t, errs)
	won := e.db.LotteryDraw.Query().Where(lotterydraw.LotteryID(l.ID), lotterydraw.Won(true)).CountX(t.Context())
	if won != 3 {
		t.Errorf("%d draws won, want 3", won)
	}
	if n := e.db.LotteryDraw.Query().Where(lotterydraw.LotteryID(l.ID)).CountX(t.Context()); n != 200 {
		t.Errorf("%d draws recorded, want 200", n)
	}
	if got := e.prizeStock(t, prizeID); got == nil || *got != 0 {
		t.Errorf("prize stock %v, want 0", got)
	}
	if n, sum := e.pointsSum(t, pointsentry.SourceLOTTERY, pointsentry.KindBURN); n != 200 || sum != -2000 {
		t.Errorf("%d burns for %d points, want 200 for -2000", n, sum)
	}
	e.verifyLedgers(t)
}
