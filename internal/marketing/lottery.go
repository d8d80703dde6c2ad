package marketing

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/coupon"
	"github.com/onemember/onemember/ent/lottery"
	"github.com/onemember/onemember/ent/lotterydraw"
	"github.com/onemember/onemember/ent/lotteryprize"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

// maxPrizes bounds the slots of one wheel.
const maxPrizes = 32

// Errors of lotteries.
var (
	ErrLotteryNotFound   = fault.New(fault.NotFound, "lottery not found")
	ErrLotteryNotStarted = fault.Invalidf("lotteryId", "the lottery has not started yet")
	ErrLotteryEnded      = fault.Invalidf("lotteryId", "the lottery has ended")
	ErrDailyDrawLimit    = fault.New(fault.LimitExceeded, "no draws left today")
)

// PrizeInput describes one slot of a new lottery.
type PrizeInput struct {
	Name             string
	Kind             enum.LotteryPrizeKind
	Weight           int
	Stock            *int // nil: unlimited
	CouponTemplateID *int // COUPON only, required
	Points           *int // POINTS only, required
}

// LotteryInput describes a new lottery.
type LotteryInput struct {
	Title            string
	CostPoints       int
	DailyDrawLimit   int
	StartsAt, EndsAt time.Time
	Prizes           []PrizeInput
}

// Validate reports every problem of in at once (template existence is
// checked by CreateLottery).
func (in LotteryInput) Validate() error {
	var errs []error
	if strings.TrimSpace(in.Title) == "" {
		errs = append(errs, fault.Invalidf("title", "is required"))
	}
	if in.CostPoints < 0 {
		errs = append(errs, fault.Invalidf("costPoints", "must not be negative, got %d", in.CostPoints))
	}
	if in.DailyDrawLimit < 1 {
		errs = append(errs, fault.Invalidf("dailyDrawLimit", "must be at least 1, got %d", in.DailyDrawLimit))
	}
	if in.StartsAt.IsZero() || in.EndsAt.IsZero() {
		errs = append(errs, fault.Invalidf("endsAt", "the window needs a start and an end"))
	} else if !in.EndsAt.After(in.StartsAt) {
		errs = append(errs, fault.Invalidf("endsAt", "must be after startsAt"))
	}
	switch {
	case len(in.Prizes) == 0:
		errs = append(errs, fault.Invalidf("prizes", "at least one prize is required"))
	case len(in.Prizes) > maxPrizes:
		errs = append(errs, fault.Invalidf("prizes", "at most %d prizes, got %d", maxPrizes, len(in.Prizes)))
	}
	for i, p := range in.Prizes {
		errs = append(errs, p.validate(fmt.Sprintf("prizes[%d].", i)))
	}
	return errors.Join(errs...)
}

func (p PrizeInput) validate(at string) error {
	var errs []error
	if strings.TrimSpace(p.Name) == "" {
		errs = append(errs, fault.Invalidf(at+"name", "is required"))
	}
	if !slices.Contains(enum.LotteryPrizeKind("").Values(), string(p.Kind)) {
		errs = append(errs, fault.Invalidf(at+"kind", "unknown kind %q", p.Kind))
	}
	if p.Weight < 1 {
		errs = append(errs, fault.Invalidf(at+"weight", "must be at least 1, got %d", p.Weight))
	}
	if p.Stock != nil && *p.Stock < 0 {
		errs = append(errs, fault.Invalidf(at+"stock", "must not be negative, got %d", *p.Stock))
	}
	switch {
	case p.Kind == enum.PrizeCoupon && p.CouponTemplateID == nil:
		errs = append(errs, fault.Invalidf(at+"couponTemplateId", "a COUPON prize needs a coupon template"))
	case p.Kind != enum.PrizeCoupon && p.CouponTemplateID != nil:
		errs = append(errs, fault.Invalidf(at+"couponTemplateId", "only a COUPON prize has a coupon template"))
	}
	switch {
	case p.Kind == enum.PrizePoints && (p.Points == nil || *p.Points < 1):
		errs = append(errs, fault.Invalidf(at+"points", "a POINTS prize needs points of at least 1"))
	case p.Kind != enum.PrizePoints && p.Points != nil:
		errs = append(errs, fault.Invalidf(at+"points", "only a POINTS prize has points"))
	}
	return errors.Join(errs...)
}

// CreateLottery creates a lottery with its prizes, in input order.
func (s *Service) CreateLottery(ctx context.Context, in LotteryInput) (*ent.Lottery, error) {
	errs := []error{in.Validate()}
	for i, p := range in.Prizes {
		if p.CouponTemplateID != nil {
			errs = append(errs, s.templatesExist(ctx, []int{*p.CouponTemplateID}, fmt.Sprintf("prizes[%d].couponTemplateId", i)))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	l, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (*ent.Lottery, error) {
		l, err := tx.Lottery.Create().SetTitle(strings.TrimSpace(in.Title)).SetCostPoints(in.CostPoints).
			SetDailyDrawLimit(in.DailyDrawLimit).SetStartsAt(in.StartsAt).SetEndsAt(in.EndsAt).Save(ctx)
		if err != nil {
			return nil, fmt.Errorf("creating lottery: %w", err)
		}
		prizes := make([]*ent.LotteryPrizeCreate, len(in.Prizes))
		for i, p := range in.Prizes {
			prizes[i] = tx.LotteryPrize.Create().SetLotteryID(l.ID).SetName(strings.TrimSpace(p.Name)).
				SetKind(p.Kind).SetWeight(p.Weight).SetNillableStock(p.Stock).
				SetNillableCouponTemplateID(p.CouponTemplateID).SetNillablePoints(p.Points).SetPosition(i)
		}
		ps, err := tx.LotteryPrize.CreateBulk(prizes...).Save(ctx)
		if err != nil {
			return nil, fmt.Errorf("creating prizes: %w", err)
		}
		l.Edges.Prizes = ps
		return l, nil
	})
	if err != nil {
		return nil, err
	}
	return database.Detach(l), nil
}

// Lottery returns a lottery with its prizes (Edges.Prizes) by position.
func (s *Service) Lottery(ctx context.Context, id int) (*ent.Lottery, error) {
	l, err := s.db.Lottery.Query().Where(lottery.ID(id)).
		WithPrizes(func(q *ent.LotteryPrizeQuery) { q.Order(lotteryprize.ByPosition(), lotteryprize.ByID()) }).
		Only(ctx)
	if ent.IsNotFound(err) {
		return nil, ErrLotteryNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("loading lottery %d: %w", id, err)
	}
	return l, nil
}

// OpenLotteries lists the lotteries open now, ending soonest first.
func (s *Service) OpenLotteries(ctx context.Context) ([]*ent.Lottery, error) {
	now := s.now()
	ls, err := s.db.Lottery.Query().Where(lottery.StartsAtLTE(now), lottery.EndsAtGT(now)).
		Order(lottery.ByEndsAt(), lottery.ByID()).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing open lotteries: %w", err)
	}
	return ls, nil
}

// DrawsLeftToday is how many more times the member may draw in the
// lottery during the current business day.
func (s *Service) DrawsLeftToday(ctx context.Context, memberID, lotteryID int) (int, error) {
	l, err := s.db.Lottery.Get(ctx, lotteryID)
	if ent.IsNotFound(err) {
		return 0, ErrLotteryNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("loading lottery %d: %w", lotteryID, err)
	}
	n, err := s.drawsToday(ctx, s.db, memberID, lotteryID)
	if err != nil {
		return 0, err
	}
	return max(l.DailyDrawLimit-n, 0), nil
}

func (s *Service) drawsToday(ctx context.Context, db *ent.Client, memberID, lotteryID int) (int, error) {
	from, to := s.dayBounds(s.now())
	n, err := db.LotteryDraw.Query().
		Where(lotterydraw.LotteryID(lotteryID), lotterydraw.MemberID(memberID),
			lotterydraw.DrawnAtGTE(from), lotterydraw.DrawnAtLT(to)).
		Count(ctx)
	if err != nil {
		return 0, fmt.Errorf("counting today's draws: %w", err)
	}
	return n, nil
}

// DrawResult is one draw and what it gave.
type DrawResult struct {
	Draw *ent.LotteryDraw
	// Prize is the slot the draw landed on (a NOTHING prize included),
	// nil when every prize was gone.
	Prize         *ent.LotteryPrize
	Coupon        *ent.Coupon // a COUPON prize's coupon
	PointsAwarded int64
	PointsBalance int64
	// Duplicate is true when the key had already been used for this
	// lottery: nothing changed and Draw is the first one.
	Duplicate bool
}

// Draw spins the wheel once for the member, idempotent on the member's
// key (the same key for another lottery is ErrIdempotencyConflict).
//
// In one transaction under the member's account lock (which makes the
// daily limit exact): window, daily limit, the cost burned, then a prize
// picked with crypto/rand among the prizes that still have stock, weighted
// by weight. A limited prize's stock is taken with a conditional UPDATE;
// when that finds none left (another draw took the last one since we
// read it), or when a COUPON prize's coupon cannot be issued (template
// out of stock, member limit), that prize is dropped and the pick is
// made again among the rest, so a prize without stock is never won and
// the other prizes keep their relative odds. If nothing is left the draw
// is recorded as lost with no prize. NOTHING is a loss; PHYSICAL is won
// and fulfilled outside the system; POINTS earns its points. Every draw,
// won or lost, is recorded.
func (s *Service) Draw(ctx context.Context, memberID, lotteryID int, key string) (DrawResult, error) {
	if err := validKey(key); err != nil {
		return DrawResult{}, err
	}
	if res, found, err := s.drawDuplicate(ctx, s.db, memberID, lotteryID, key); found || err != nil {
		return res, err
	}
	res, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (DrawResult, error) {
		l, err := tx.Lottery.Get(ctx, lotteryID)
		if ent.IsNotFound(err) {
			return DrawResult{}, ErrLotteryNotFound
		}
		if err != nil {
			return DrawResult{}, fmt.Errorf("loading lottery %d: %w", lotteryID, err)
		}
		acct, err := lockAccount(ctx, tx, memberID, l.CostPoints > 0)
		if err != nil {
			return DrawResult{}, err
		}
		if res, found, err := s.drawDuplicate(ctx, tx.Client(), memberID, lotteryID, key); found || err != nil {
			return res, err
		}
		now := s.now()
		switch {
		case now.Before(l.StartsAt):
			return DrawResult{}, ErrLotteryNotStarted
		case !now.Before(l.EndsAt):
			return DrawResult{}, ErrLotteryEnded
		}
		n, err := s.drawsToday(ctx, tx.Client(), memberID, lotteryID)
		if err != nil {
			return DrawResult{}, err
		}
		if n >= l.DailyDrawLimit {
			return DrawResult{}, fmt.Errorf("%w: %d a day", ErrDailyDrawLimit, l.DailyDrawLimit)
		}
		if l.CostPoints > 0 {
			burnKey := fmt.Sprintf("lottery:%d:%s", memberID, key)
			if _, err := s.ledger.BurnPoints(ctx, tx, acct, ledger.Entry{
				Amount: int64(l.CostPoints), Source: ledger.SourceLottery, Reason: "抽奖 " + l.Title, Key: &burnKey,
			}); err != nil {
				return DrawResult{}, err
			}
		}
		out, err := s.spin(ctx, tx, acct, l, key)
		if err != nil {
			return DrawResult{}, err
		}
		create := tx.LotteryDraw.Create().SetLotteryID(lotteryID).SetMemberID(memberID).
			SetPointsSpent(int64(l.CostPoints)).SetPointsAwarded(out.PointsAwarded).
			SetIdempotencyKey(key).SetDrawnAt(now).
			SetWon(out.Prize != nil && out.Prize.Kind != enum.PrizeNothing)
		if out.Prize != nil {
			create.SetPrizeID(out.Prize.ID)
		}
		if out.Coupon != nil {
			create.SetCouponID(out.Coupon.ID)
		}
		if out.Draw, err = create.Save(ctx); err != nil {
			return DrawResult{}, fmt.Errorf("recording draw: %w", err)
		}
		out.PointsBalance = acct.PointsBalance
		return out, nil
	})
	if database.IsUniqueViolation(err) {
		if res, found, derr := s.drawDuplicate(ctx, s.db, memberID, lotteryID, key); found || derr != nil {
			return res, derr
		}
	}
	if err != nil {
		return DrawResult{}, err
	}
	res.Draw = database.Detach(res.Draw)
	if res.Prize != nil {
		res.Prize = database.Detach(res.Prize)
	}
	if res.Coupon != nil {
		res.Coupon = database.Detach(res.Coupon)
	}
	return res, nil
}

// spin picks and awards a prize; see Draw.
func (s *Service) spin(ctx context.Context, tx *ent.Tx, acct *ent.Account, l *ent.Lottery, key string) (DrawResult, error) {
	cands, err := tx.LotteryPrize.Query().
		Where(lotteryprize.LotteryID(l.ID), lotteryprize.Or(lotteryprize.StockIsNil(), lotteryprize.StockGT(0))).
		Order(lotteryprize.ByPosition(), lotteryprize.ByID()).All(ctx)
	if err != nil {
		return DrawResult{}, fmt.Errorf("loading prizes of lottery %d: %w", l.ID, err)
	}
	for len(cands) > 0 {
		i, err := pick(cands, s.opts.randIntn)
		if err != nil {
			return DrawResult{}, err
		}
		p := cands[i]
		out, ok, err := s.award(ctx, tx, acct, p, key)
		if err != nil {
			return DrawResult{}, err
		}
		if ok {
			return out, nil
		}
		cands = slices.Delete(cands, i, i+1)
	}
	return DrawResult{}, nil
}

// award takes one of p's stock and gives it; ok is false when p turned
// out to have nothing left to give.
func (s *Service) award(ctx context.Context, tx *ent.Tx, acct *ent.Account, p *ent.LotteryPrize, key string) (DrawResult, bool, error) {
	take := func() (bool, error) {
		if p.Stock == nil {
			return true, nil
		}
		n, err := tx.LotteryPrize.Update().Where(lotteryprize.ID(p.ID), lotteryprize.StockGT(0)).AddStock(-1).Save(ctx)
		if err != nil {
			return false, fmt.Errorf("taking stock of prize %d: %w", p.ID, err)
		}
		if n == 1 {
			p.Stock = ptr(*p.Stock - 1) // approximate: others may have taken more
		}
		return n == 1, nil
	}
	out := DrawResult{Prize: p}
	switch p.Kind {
	case enum.PrizeCoupon:
		// The savepoint gives the prize's stock back when the coupon
		// cannot be issued.
		var taken bool
		ok, err := trySavepoint(ctx, tx, acct, func() error {
			var err error
			if taken, err = take(); err != nil || !taken {
				return err
			}
			out.Coupon, err = s.coupons.IssueInTx(ctx, tx, acct, *p.CouponTemplateID, couponSourceLottery)
			return err
		})
		return out, ok && taken, err
	case enum.PrizePoints:
		ok, err := take()
		if err != nil || !ok {
			return out, false, err
		}
		earnKey := fmt.Sprintf("lottery:%d:%s:prize", acct.MemberID, key)
		if _, err := s.ledger.EarnPoints(ctx, tx, acct, ledger.Entry{
			Amount: int64(*p.Points), Source: ledger.SourceLottery, Reason: "抽奖奖品 " + p.Name, Key: &earnKey,
		}); err != nil {
			return out, false, err
		}
		out.PointsAwarded = int64(*p.Points)
		return out, true, nil
	default: // NOTHING, PHYSICAL
		ok, err := take()
		return out, ok, err
	}
}

// pick returns the index of a prize drawn with probability proportional
// to its weight; intn(n) must be uniform on [0, n).
func pick(prizes []*ent.LotteryPrize, intn func(int64) (int64, error)) (int, error) {
	var total int64
	for _, p := range prizes {
		total += int64(max(p.Weight, 0))
	}
	if total <= 0 {
		return 0, fmt.Errorf("prizes have no positive weight")
	}
	r, err := intn(total)
	if err != nil {
		return 0, err
	}
	for i, p := range prizes {
		if r < int64(max(p.Weight, 0)) {
			return i, nil
		}
		r -= int64(max(p.Weight, 0))
	}
	return len(prizes) - 1, nil // unreachable with a correct intn
}

// drawDuplicate answers a key already used by the member.
func (s *Service) drawDuplicate(ctx context.Context, db *ent.Client, memberID, lotteryID int, key string) (DrawResult, bool, error) {
	d, err := db.LotteryDraw.Query().
		Where(lotterydraw.MemberID(memberID), lotterydraw.IdempotencyKey(key)).Only(ctx)
	if ent.IsNotFound(err) {
		return DrawResult{}, false, nil
	}
	if err != nil {
		return DrawResult{}, false, fmt.Errorf("looking up draw %q: %w", key, err)
	}
	if d.LotteryID != lotteryID {
		return DrawResult{}, true, fmt.Errorf("%w: it drew in lottery %d", ErrIdempotencyConflict, d.LotteryID)
	}
	res := DrawResult{Draw: d, PointsAwarded: d.PointsAwarded, Duplicate: true}
	if d.PrizeID != nil {
		if res.Prize, err = db.LotteryPrize.Get(ctx, *d.PrizeID); err != nil {
			return DrawResult{}, true, fmt.Errorf("loading prize %d: %w", *d.PrizeID, err)
		}
	}
	if d.CouponID != nil {
		if res.Coupon, err = db.Coupon.Query().Where(coupon.ID(*d.CouponID)).Only(ctx); err != nil {
			return DrawResult{}, true, fmt.Errorf("loading coupon %d: %w", *d.CouponID, err)
		}
	}
	acct, err := account.Get(ctx, db, memberID)
	if err != nil {
		return DrawResult{}, true, fmt.Errorf("reading account of member %d: %w", memberID, err)
	}
	res.PointsBalance = acct.PointsBalance
	return res, true, nil
}
