package marketing

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"entgo.io/ent/dialect/sql"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/predicate"
	"github.com/onemember/onemember/ent/promocode"
	"github.com/onemember/onemember/ent/promoredemption"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Promo code shape.
const (
	minCodeLen = 4
	maxCodeLen = 32
)

// Errors of promo codes.
var (
	ErrPromoCodeNotFound    = fault.New(fault.NotFound, "promo code not found")
	ErrPromoCodeExists      = fault.New(fault.Conflict, "a promo code with this code already exists")
	ErrPromoCodeNotYetValid = fault.Invalidf("code", "this code is not valid yet")
	ErrPromoCodeExpired     = fault.Invalidf("code", "this code has expired")
	// ErrPromoCodeUsedUp is the code's total usage limit reached: like a
	// sold-out item, nobody can use it any more, so OUT_OF_STOCK rather
	// than LIMIT_EXCEEDED, which is kept for this member's own limit.
	ErrPromoCodeUsedUp      = fault.New(fault.OutOfStock, "this code has been used up")
	ErrPromoCodeMemberLimit = fault.New(fault.LimitExceeded, "you have already used this code as many times as allowed")
)

// PromoInput describes a new promo code.
type PromoInput struct {
	Code              string // any case; stored trimmed and upper-cased
	CouponTemplateIDs []int  // one coupon of each (repeat an id for several)
	Points            int
	UsageLimit        int // total redemptions
	PerMemberLimit    int
	ValidFrom         *time.Time // nil: from creation
	ValidTo           *time.Time // nil: no end; exclusive
}

// NormalizeCode is how a promo code is stored and matched: trimmed and
// upper-cased.
func NormalizeCode(code string) string { return strings.ToUpper(strings.TrimSpace(code)) }

// wellFormedCode reports whether a normalized code has the allowed shape.
func wellFormedCode(code string) bool {
	if len(code) < minCodeLen || len(code) > maxCodeLen {
		return false
	}
	for _, r := range code {
		if (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' && r != '_' {
			return false
		}
	}
	return true
}

// Validate reports every problem of in at once (template existence and
// uniqueness are checked by CreatePromoCode).
func (in PromoInput) Validate() error {
	var errs []error
	if !wellFormedCode(NormalizeCode(in.Code)) {
		errs = append(errs, fault.Invalidf("code", "must be %d to %d characters of A-Z, 0-9, '-' and '_'", minCodeLen, maxCodeLen))
	}
	if in.Points < 0 {
		errs = append(errs, fault.Invalidf("points", "must not be negative, got %d", in.Points))
	}
	if len(in.CouponTemplateIDs) == 0 && in.Points <= 0 {
		errs = append(errs, fault.Invalidf("couponTemplateIds", "a code must grant coupons, points or both"))
	}
	if in.UsageLimit < 1 {
		errs = append(errs, fault.Invalidf("usageLimit", "must be at least 1, got %d", in.UsageLimit))
	}
	if in.PerMemberLimit < 1 {
		errs = append(errs, fault.Invalidf("perMemberLimit", "must be at least 1, got %d", in.PerMemberLimit))
	}
	if in.ValidFrom != nil && in.ValidTo != nil && !in.ValidTo.After(*in.ValidFrom) {
		errs = append(errs, fault.Invalidf("validTo", "must be after validFrom"))
	}
	return errors.Join(errs...)
}

// CreatePromoCode creates a promo code.
func (s *Service) CreatePromoCode(ctx context.Context, in PromoInput) (*ent.PromoCode, error) {
	errs := []error{in.Validate()}
	errs = append(errs, s.templatesExist(ctx, in.CouponTemplateIDs, "couponTemplateIds"))
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	pc, err := s.db.PromoCode.Create().
		SetCode(NormalizeCode(in.Code)).
		SetCouponTemplateIds(in.CouponTemplateIDs).
		SetPoints(in.Points).
		SetUsageLimit(in.UsageLimit).
		SetPerMemberLimit(in.PerMemberLimit).
		SetNillableValidFrom(in.ValidFrom).
		SetNillableValidTo(in.ValidTo).
		Save(ctx)
	if database.IsUniqueViolation(err) {
		return nil, ErrPromoCodeExists
	}
	if err != nil {
		return nil, fmt.Errorf("creating promo code: %w", err)
	}
	return pc, nil
}

// PromoCode returns a code, matched case-insensitively.
func (s *Service) PromoCode(ctx context.Context, code string) (*ent.PromoCode, error) {
	code = NormalizeCode(code)
	if !wellFormedCode(code) {
		return nil, ErrPromoCodeNotFound
	}
	pc, err := s.db.PromoCode.Query().Where(promocode.Code(code)).Only(ctx)
	if ent.IsNotFound(err) {
		return nil, ErrPromoCodeNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("looking up promo code: %w", err)
	}
	return pc, nil
}

// PromoResult is what a redemption gave.
type PromoResult struct {
	Redemption    *ent.PromoRedemption
	Coupons       []*ent.Coupon
	PointsAwarded int64
	PointsBalance int64
}

// RedeemPromoCode gives the member what the code grants. It is not
// idempotent: each call is one use, bounded by the per-member limit.
//
// One transaction: the member's account lock makes the per-member count
// exact; the total usage is taken with a conditional UPDATE of the code's
// row, before the coupons (so a used-up code fails fast and never touches
// the templates); coupons are issued in ascending template id order, the
// order every path locks templates in. Any refusal (a template out of
// stock included) rolls everything back, the use included. A frozen
// member may redeem: freezing blocks spending (as in the ledger and
// ordering), and a code spends nothing.
func (s *Service) RedeemPromoCode(ctx context.Context, memberID int, code string) (PromoResult, error) {
	pc, err := s.PromoCode(ctx, code)
	if err != nil {
		return PromoResult{}, err
	}
	now := s.now()
	if pc.ValidFrom != nil && now.Before(*pc.ValidFrom) {
		return PromoResult{}, fmt.Errorf("%w: valid from %s", ErrPromoCodeNotYetValid, pc.ValidFrom.In(s.zone).Format(time.DateTime))
	}
	if pc.ValidTo != nil && !now.Before(*pc.ValidTo) {
		return PromoResult{}, fmt.Errorf("%w: valid until %s", ErrPromoCodeExpired, pc.ValidTo.In(s.zone).Format(time.DateTime))
	}
	res, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (PromoResult, error) {
		acct, err := lockAccount(ctx, tx, memberID, false)
		if err != nil {
			return PromoResult{}, err
		}
		used, err := tx.PromoRedemption.Query().
			Where(promoredemption.PromoCodeID(pc.ID), promoredemption.MemberID(memberID)).Count(ctx)
		if err != nil {
			return PromoResult{}, fmt.Errorf("counting uses of promo code %d: %w", pc.ID, err)
		}
		if used >= pc.PerMemberLimit {
			return PromoResult{}, ErrPromoCodeMemberLimit
		}
		n, err := tx.PromoCode.Update().
			Where(promocode.ID(pc.ID), usedBelowLimit()).
			AddUsedCount(1).Save(ctx)
		if err != nil {
			return PromoResult{}, fmt.Errorf("using promo code %d: %w", pc.ID, err)
		}
		if n == 0 {
			return PromoResult{}, ErrPromoCodeUsedUp
		}
		var out PromoResult
		templates := slices.Sorted(slices.Values(pc.CouponTemplateIds))
		couponIDs := make([]int, 0, len(templates))
		for _, t := range templates {
			c, err := s.coupons.IssueInTx(ctx, tx, acct, t, couponSourcePromo)
			if err != nil {
				return PromoResult{}, err
			}
			out.Coupons = append(out.Coupons, c)
			couponIDs = append(couponIDs, c.ID)
		}
		if pc.Points > 0 {
			// used+1 numbers this member's uses, so a retried
			// ledger call of the same use cannot credit twice.
			earnKey := fmt.Sprintf("promo:%d:%d:%d", pc.ID, memberID, used+1)
			if _, err := s.ledger.EarnPoints(ctx, tx, acct, ledger.Entry{
				Amount: int64(pc.Points), Source: ledger.SourcePromoCode, Reason: "口令 " + pc.Code, Key: &earnKey,
			}); err != nil {
				return PromoResult{}, err
			}
			out.PointsAwarded = int64(pc.Points)
		}
		out.Redemption, err = tx.PromoRedemption.Create().SetPromoCodeID(pc.ID).SetMemberID(memberID).
			SetCouponIds(couponIDs).SetPoints(out.PointsAwarded).SetCreatedAt(now).Save(ctx)
		if err != nil {
			return PromoResult{}, fmt.Errorf("recording promo redemption: %w", err)
		}
		out.PointsBalance = acct.PointsBalance
		return out, nil
	})
	if err != nil {
		return PromoResult{}, err
	}
	res.Redemption = database.Detach(res.Redemption)
	for i, c := range res.Coupons {
		res.Coupons[i] = database.Detach(c)
	}
	return res, nil
}

// usedBelowLimit is used_count < usage_limit, read in the UPDATE itself.
func usedBelowLimit() predicate.PromoCode {
	return func(s *sql.Selector) {
		s.Where(sql.ColumnsLT(s.C(promocode.FieldUsedCount), s.C(promocode.FieldUsageLimit)))
	}
}
