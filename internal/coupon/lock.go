package coupon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/onemember/onemember/ent"
	entcoupon "github.com/onemember/onemember/ent/coupon"
	"github.com/onemember/onemember/ent/coupontemplate"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/ent/store"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

// MaxOrderRefLength bounds an order reference.
const MaxOrderRefLength = 128

// LockInput is a till reserving coupons for one basket.
type LockInput struct {
	// OrderRef names the basket; the order ingested for it carries the same
	// couponOrderRef. Unique across tills.
	OrderRef string
	Codes    []string
	// BasketAmount is the basket before coupons, in fen.
	BasketAmount int64
	StoreCode    string
	// ClientStoreOK is the store restriction of the calling till (nil: any
	// store).
	ClientStoreOK func(*ent.Store) bool
}

// LockResult is what the till takes off and the coupons it locked (in the
// order of the codes), each with its own discount.
type LockResult struct {
	Discount int64
	Coupons  []*ent.Coupon
}

// Validate reports every problem of in at once.
func (in LockInput) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fault.Invalidf(field, format, args...))
	}
	switch {
	case strings.TrimSpace(in.OrderRef) == "":
		bad("orderRef", "is required")
	case len(in.OrderRef) > MaxOrderRefLength:
		bad("orderRef", "is longer than %d characters", MaxOrderRefLength)
	}
	switch {
	case len(in.Codes) == 0:
		bad("codes", "give at least one coupon code")
	case len(in.Codes) > MaxCodesPerLock:
		bad("codes", "at most %d coupons per basket", MaxCodesPerLock)
	default:
		seen := make(map[string]bool, len(in.Codes))
		for _, c := range in.Codes {
			n := NormalizeCode(c)
			switch {
			case n == "":
				bad("codes", "must not contain blank codes")
			case seen[n]:
				bad("codes", "coupon %s is listed twice", n)
			}
			seen[n] = true
		}
	}
	if in.BasketAmount <= 0 {
		bad("basketAmount", "must be more than 0")
	}
	if strings.TrimSpace(in.StoreCode) == "" {
		bad("storeCode", "is required")
	}
	return errors.Join(errs...)
}

// Discount is what a coupon of t takes off basket (fen): FIXED_AMOUNT and
// THRESHOLD their face value capped at the basket, PERCENT_OFF
// floor(basket × (100−p) / 100) computed without overflow, GIFT nothing.
// Minimum spend is not checked here.
func Discount(t *ent.CouponTemplate, basket int64) int64 {
	if basket <= 0 {
		return 0
	}
	switch t.Kind {
	case KindFixedAmount, KindThreshold:
		return min(t.FaceValue, basket)
	case KindPercentOff:
		if t.DiscountPercent == nil {
			return 0
		}
		off := int64(100 - *t.DiscountPercent)
		// basket = 100a + r: floor(basket×off/100) = a×off + floor(r×off/100).
		return basket/100*off + basket%100*off/100
	}
	return 0
}

// Lock reserves coupons for one basket at a till; see the package comment
// for the rules. Errors leave every coupon as it was:
//   - a code that does not exist: NOT_FOUND naming the codes;
//   - coupons of different members: BAD_USER_INPUT on codes;
//   - a coupon locked for another order (lock younger than LockTTL),
//     redeemed or void: CONFLICT (ErrCouponConflict);
//   - an expired coupon, or one whose window has not started:
//     BAD_USER_INPUT on codes;
//   - a coupon not valid at the store: BAD_USER_INPUT on storeCode;
//   - a basket below a coupon's minimum spend: BAD_USER_INPUT on
//     basketAmount;
//   - two discount coupons, or two of one template: BAD_USER_INPUT on codes.
func (s *Service) Lock(ctx context.Context, in LockInput) (LockResult, error) {
	if err := in.Validate(); err != nil {
		return LockResult{}, err
	}
	codes := make([]string, len(in.Codes))
	for i, c := range in.Codes {
		codes[i] = NormalizeCode(c)
	}
	st, err := s.db.Store.Query().Where(store.Code(strings.TrimSpace(in.StoreCode))).Only(ctx)
	if ent.IsNotFound(err) {
		return LockResult{}, invalid(ErrUnknownStore, "storeCode", "unknown store %s", in.StoreCode)
	}
	if err != nil {
		return LockResult{}, fmt.Errorf("loading store: %w", err)
	}
	if in.ClientStoreOK != nil && !in.ClientStoreOK(st) {
		return LockResult{}, ErrStoreForbidden
	}
	now := s.now().UTC()
	res, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (LockResult, error) {
		return s.lock(ctx, tx, in.OrderRef, codes, in.BasketAmount, st, now)
	})
	if err != nil {
		return LockResult{}, err
	}
	for i, c := range res.Coupons {
		res.Coupons[i] = database.Detach(c)
	}
	return res, nil
}

func (s *Service) lock(ctx context.Context, tx *ent.Tx, ref string, codes []string, basket int64, st *ent.Store, now time.Time) (LockResult, error) {
	// The listed coupons and those ref locked before, row-locked in id
	// order: two tills wanting the same coupon queue here, and the second
	// reads what the first committed.
	rows, err := tx.Coupon.Query().
		Where(entcoupon.Or(
			entcoupon.CodeIn(codes...),
			entcoupon.And(entcoupon.LockedOrderRef(ref), entcoupon.StatusEQ(enum.CouponLocked)),
		)).
		Order(entcoupon.ByID()).
		ForUpdate().
		All(ctx)
	if err != nil {
		return LockResult{}, fmt.Errorf("locking coupons: %w", err)
	}
	fresh := func(c *ent.Coupon) bool {
		return c.Status == enum.CouponLocked && c.LockedAt != nil && now.Sub(*c.LockedAt) < LockTTL
	}
	byCode := make(map[string]*ent.Coupon, len(rows))
	var previous []int // locked by ref before and not listed again
	for _, c := range rows {
		if slices.Contains(codes, c.Code) {
			byCode[c.Code] = c
		} else {
			previous = append(previous, c.ID)
		}
	}
	listed := make([]*ent.Coupon, 0, len(codes))
	var missing []string
	for _, code := range codes {
		if c, ok := byCode[code]; ok {
			listed = append(listed, c)
		} else {
			missing = append(missing, code)
		}
	}
	if len(missing) > 0 {
		return LockResult{}, fmt.Errorf("coupon %s: %w", strings.Join(missing, ", "), ErrCouponNotFound)
	}
	memberID := listed[0].MemberID
	for _, c := range listed[1:] {
		if c.MemberID != memberID {
			return LockResult{}, invalid(ErrMixedMembers, "codes", "coupons %s and %s belong to different members", listed[0].Code, c.Code)
		}
	}
	for _, c := range rows {
		if c.MemberID != memberID && fresh(c) && *c.LockedOrderRef == ref {
			return LockResult{}, fmt.Errorf("order reference %q: %w", ref, ErrOrderRefInUse)
		}
	}
	for _, c := range listed {
		if err := usable(c, ref, now, fresh(c)); err != nil {
			return LockResult{}, err
		}
	}

	tplIDs := make([]int, 0, len(listed))
	for _, c := range listed {
		if !slices.Contains(tplIDs, c.TemplateID) {
			tplIDs = append(tplIDs, c.TemplateID)
		}
	}
	tpls, err := tx.CouponTemplate.Query().
		Where(coupontemplate.IDIn(tplIDs...)).
		WithBusinessUnits().WithStores().
		All(ctx)
	if err != nil {
		return LockResult{}, fmt.Errorf("loading coupon templates: %w", err)
	}
	byTpl := make(map[int]*ent.CouponTemplate, len(tpls))
	for _, t := range tpls {
		byTpl[t.ID] = t
	}
	if err := fits(listed, byTpl, basket, st, now); err != nil {
		return LockResult{}, err
	}

	if len(previous) > 0 {
		err := tx.Coupon.Update().Where(entcoupon.IDIn(previous...)).
			SetStatus(enum.CouponAvailable).ClearLockedOrderRef().ClearLockedAt().SetDiscount(0).
			Exec(ctx)
		if err != nil {
			return LockResult{}, fmt.Errorf("releasing coupons no longer in the basket: %w", err)
		}
	}
	res := LockResult{Coupons: make([]*ent.Coupon, 0, len(listed))}
	for _, c := range listed {
		t := byTpl[c.TemplateID]
		d := Discount(t, basket)
		u, err := tx.Coupon.UpdateOneID(c.ID).
			SetStatus(enum.CouponLocked).SetLockedOrderRef(ref).SetLockedAt(now).SetDiscount(d).
			Save(ctx)
		if err != nil {
			return LockResult{}, fmt.Errorf("locking coupon %s: %w", c.Code, err)
		}
		u.Edges.Template = t
		res.Discount += d
		res.Coupons = append(res.Coupons, u)
	}
	// One discount coupon at most, capped at the basket: the sum is too.
	res.Discount = min(res.Discount, basket)
	return res, nil
}

// usable checks a coupon's own state: AVAILABLE (or LOCKED by ref, or
// LOCKED with a lock older than LockTTL, which counts as released) and not
// expired. A coupon ref already holds is not re-checked for expiry: it was
// valid when locked, and RedeemLocked accepts it.
func usable(c *ent.Coupon, ref string, now time.Time, fresh bool) error {
	switch c.Status {
	case enum.CouponAvailable:
	case enum.CouponLocked:
		if *c.LockedOrderRef == ref && fresh {
			return nil
		}
		if fresh {
			return fmt.Errorf("coupon %s: %w", c.Code, ErrCouponConflict)
		}
	case enum.CouponRedeemed, enum.CouponVoid:
		return fmt.Errorf("coupon %s: %w", c.Code, ErrCouponConflict)
	case enum.CouponExpired:
		return invalid(ErrCouponExpired, "codes", "coupon %s has expired", c.Code)
	default:
		return fmt.Errorf("coupon %s has unknown status %s", c.Code, c.Status)
	}
	if !now.Before(c.ExpiresAt) {
		return invalid(ErrCouponExpired, "codes", "coupon %s has expired", c.Code)
	}
	return nil
}

// fits checks the coupons against their templates, the store, the basket
// and the stacking rules.
func fits(listed []*ent.Coupon, byTpl map[int]*ent.CouponTemplate, basket int64, st *ent.Store, now time.Time) error {
	var discount *ent.Coupon
	seen := make(map[int]*ent.Coupon, len(listed))
	for _, c := range listed {
		t := byTpl[c.TemplateID]
		if t == nil {
			return fmt.Errorf("coupon %s: template %d not found", c.Code, c.TemplateID)
		}
		if t.ValidFrom != nil && now.Before(*t.ValidFrom) {
			return invalid(ErrNotStarted, "codes", "coupon %s is not valid yet", c.Code)
		}
		if !appliesAt(t, st) {
			return invalid(ErrNotApplicable, "storeCode", "coupon %s is not valid at store %s", c.Code, st.Code)
		}
		if basket < t.MinSpend {
			return invalid(ErrBelowMinSpend, "basketAmount", "coupon %s needs a basket of at least %d fen", c.Code, t.MinSpend)
		}
		if other := seen[t.ID]; other != nil {
			return invalid(ErrStacking, "codes", "coupons %s and %s are of the same kind: one per basket", other.Code, c.Code)
		}
		seen[t.ID] = c
		if t.Kind != KindGift {
			if discount != nil {
				return invalid(ErrStacking, "codes", "coupons %s and %s both take money off: one discount coupon per basket (plus gift coupons)", discount.Code, c.Code)
			}
			discount = c
		}
	}
	return nil
}

// appliesAt reports whether a coupon of t may be used at st: t lists no
// business unit and no store, or lists st, or lists st's business unit.
func appliesAt(t *ent.CouponTemplate, st *ent.Store) bool {
	if len(t.Edges.BusinessUnits) == 0 && len(t.Edges.Stores) == 0 {
		return true
	}
	for _, s := range t.Edges.Stores {
		if s.ID == st.ID {
			return true
		}
	}
	for _, b := range t.Edges.BusinessUnits {
		if b.ID == st.BusinessUnitID {
			return true
		}
	}
	return false
}

// Release frees the coupons orderRef holds locked (the till cancelled the
// basket) and answers how many; an unknown orderRef frees none.
func (s *Service) Release(ctx context.Context, orderRef string) (int, error) {
	if strings.TrimSpace(orderRef) == "" {
		return 0, fault.Invalidf("orderRef", "is required")
	}
	return database.WithTx(ctx, s.db, func(tx *ent.Tx) (int, error) {
		ids, err := tx.Coupon.Query().
			Where(entcoupon.LockedOrderRef(orderRef), entcoupon.StatusEQ(enum.CouponLocked)).
			Order(entcoupon.ByID()).
			ForUpdate().
			IDs(ctx)
		if err != nil {
			return 0, fmt.Errorf("locking coupons of order %q: %w", orderRef, err)
		}
		if len(ids) == 0 {
			return 0, nil
		}
		n, err := tx.Coupon.Update().Where(entcoupon.IDIn(ids...)).
			SetStatus(enum.CouponAvailable).ClearLockedOrderRef().ClearLockedAt().SetDiscount(0).
			Save(ctx)
		if err != nil {
			return 0, fmt.Errorf("releasing coupons of order %q: %w", orderRef, err)
		}
		return n, nil
	})
}

// RedeemLocked marks REDEEMED, on order o, the coupons orderRef holds
// locked for memberID. Order ingestion calls it in its own transaction
// with the member's account locked.
//
//   - A lock older than LockTTL is still accepted when nobody released or
//     re-locked the coupon meanwhile: the till applied the discount, the sale
//     happened, and the coupon was reserved for it.
//   - Coupons orderRef holds with a fresh lock for another member:
//     CONFLICT (ErrOrderRefInUse), nothing changes. Stale locks of another
//     member are left alone (ReleaseExpiredLocks frees them).
//   - Each coupon keeps the discount computed when it was locked (against
//     the basket the till sent then); redeemed_at is the order's paid_at.
//   - No coupon locked with orderRef (released, expired and taken over, or
//     already redeemed): none redeemed, no error — the order is a fact
//     either way; the caller decides what to make of an empty answer.
func (s *Service) RedeemLocked(ctx context.Context, tx *ent.Tx, memberID int, orderRef string, o *ent.Order) ([]*ent.Coupon, error) {
	if orderRef == "" {
		return nil, nil
	}
	if o == nil {
		return nil, errors.New("redeeming coupons: no order")
	}
	now := s.now().UTC()
	rows, err := tx.Coupon.Query().
		Where(entcoupon.LockedOrderRef(orderRef), entcoupon.StatusEQ(enum.CouponLocked)).
		Order(entcoupon.ByID()).
		ForUpdate().
		All(ctx)
	if err != nil {
		return nil, fmt.Errorf("locking coupons of order %q: %w", orderRef, err)
	}
	var mine []*ent.Coupon
	for _, c := range rows {
		switch {
		case c.MemberID == memberID:
			mine = append(mine, c)
		case c.LockedAt != nil && now.Sub(*c.LockedAt) < LockTTL:
			return nil, fmt.Errorf("order reference %q: %w", orderRef, ErrOrderRefInUse)
		}
	}
	at := o.PaidAt
	if at.IsZero() {
		at = now
	}
	out := make([]*ent.Coupon, 0, len(mine))
	for _, c := range mine {
		u, err := tx.Coupon.UpdateOneID(c.ID).
			SetStatus(enum.CouponRedeemed).SetRedeemedAt(at.UTC()).SetOrderID(o.ID).
			Save(ctx)
		if err != nil {
			return nil, fmt.Errorf("redeeming coupon %s: %w", c.Code, err)
		}
		out = append(out, u)
	}
	return out, nil
}

// ReturnForRefund gives back the coupons redeemed on o when o is refunded
// in full (the caller decides that; partial refunds keep the coupons
// used): those not yet past expires_at become AVAILABLE, the others
// EXPIRED; either way order, redemption time, discount and lock are
// cleared, so the coupon no longer counts as redeemed. Answers how many
// became AVAILABLE. Called in the refund's transaction with the member's
// account locked.
func (s *Service) ReturnForRefund(ctx context.Context, tx *ent.Tx, o *ent.Order) (int, error) {
	now := s.now().UTC()
	rows, err := tx.Coupon.Query().
		Where(entcoupon.OrderID(o.ID), entcoupon.StatusEQ(enum.CouponRedeemed)).
		Order(entcoupon.ByID()).
		ForUpdate().
		All(ctx)
	if err != nil {
		return 0, fmt.Errorf("locking coupons of order %d: %w", o.ID, err)
	}
	returned := 0
	for _, c := range rows {
		status := enum.CouponExpired
		if now.Before(c.ExpiresAt) {
			status = enum.CouponAvailable
			returned++
		}
		err := tx.Coupon.UpdateOneID(c.ID).
			SetStatus(status).ClearOrderID().ClearRedeemedAt().SetDiscount(0).
			ClearLockedOrderRef().ClearLockedAt().
			Exec(ctx)
		if err != nil {
			return 0, fmt.Errorf("returning coupon %s: %w", c.Code, err)
		}
	}
	return returned, nil
}
