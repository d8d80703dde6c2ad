package marketing

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/coupontemplate"
	"github.com/onemember/onemember/ent/mallitem"
	"github.com/onemember/onemember/ent/mallredemption"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Mall limits.
const maxQuantity = 99

// Errors of the points mall.
var (
	// ErrMallItemNotFound is an unknown item or one no longer offered.
	ErrMallItemNotFound   = fault.New(fault.NotFound, "mall item not found")
	ErrMallItemOutOfStock = fault.New(fault.OutOfStock, "not enough of this item left")
	ErrMallItemLimit      = fault.New(fault.LimitExceeded, "this would exceed the item's limit per member")
)

// MallItemInput describes a new mall item.
type MallItemInput struct {
	Title            string
	ImageURL         *string
	PointsPrice      int
	Stock            int
	PerMemberLimit   *int // nil: no limit
	CouponTemplateID *int // the item is a coupon of this template; nil: a physical item
}

// Validate reports every problem of in at once (the template's existence
// is checked by CreateMallItem).
func (in MallItemInput) Validate() error {
	var errs []error
	if strings.TrimSpace(in.Title) == "" {
		errs = append(errs, fault.Invalidf("title", "is required"))
	}
	if in.PointsPrice < 1 {
		errs = append(errs, fault.Invalidf("pointsPrice", "must be at least 1, got %d", in.PointsPrice))
	}
	if in.Stock < 0 {
		errs = append(errs, fault.Invalidf("stock", "must not be negative, got %d", in.Stock))
	}
	if in.PerMemberLimit != nil && *in.PerMemberLimit < 1 {
		errs = append(errs, fault.Invalidf("perMemberLimit", "must be at least 1 when given, got %d", *in.PerMemberLimit))
	}
	return errors.Join(errs...)
}

// CreateMallItem adds an item to the points mall.
func (s *Service) CreateMallItem(ctx context.Context, in MallItemInput) (*ent.MallItem, error) {
	errs := []error{in.Validate()}
	if in.CouponTemplateID != nil {
		if err := s.templatesExist(ctx, []int{*in.CouponTemplateID}, "couponTemplateId"); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	it, err := s.db.MallItem.Create().
		SetTitle(strings.TrimSpace(in.Title)).
		SetNillableImageURL(in.ImageURL).
		SetPointsPrice(in.PointsPrice).
		SetStock(in.Stock).
		SetNillablePerMemberLimit(in.PerMemberLimit).
		SetNillableCouponTemplateID(in.CouponTemplateID).
		Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("creating mall item: %w", err)
	}
	return it, nil
}

// templatesExist returns an *fault.Invalid on field unless every id names
// a coupon template; any other failure is returned as it is.
func (s *Service) templatesExist(ctx context.Context, ids []int, field string) error {
	if len(ids) == 0 {
		return nil
	}
	found, err := s.db.CouponTemplate.Query().Where(coupontemplate.IDIn(ids...)).IDs(ctx)
	if err != nil {
		return fmt.Errorf("looking up coupon templates: %w", err)
	}
	known := make(map[int]bool, len(found))
	for _, id := range found {
		known[id] = true
	}
	for _, id := range ids {
		if !known[id] {
			return fault.Invalidf(field, "%d is not a known coupon template", id)
		}
	}
	return nil
}

// MallItem returns an item, active or not.
func (s *Service) MallItem(ctx context.Context, id int) (*ent.MallItem, error) {
	it, err := s.db.MallItem.Get(ctx, id)
	if ent.IsNotFound(err) {
		return nil, ErrMallItemNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("loading mall item %d: %w", id, err)
	}
	return it, nil
}

// MallItems lists the items on offer, oldest first.
func (s *Service) MallItems(ctx context.Context) ([]*ent.MallItem, error) {
	items, err := s.db.MallItem.Query().Where(mallitem.Active(true)).Order(mallitem.ByID()).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing mall items: %w", err)
	}
	return items, nil
}

// MallResult is a redemption and the member's points balance after it.
type MallResult struct {
	Redemption    *ent.MallRedemption
	PointsBalance int64
	// Duplicate is true when the key had already been used for this
	// request: nothing changed and Redemption is the first one.
	Duplicate bool
}

// RedeemMallItem buys quantity of an item with points, idempotent on the
// member's key: the same key again answers with the first redemption and
// changes nothing (Duplicate), the same key for a different item or
// quantity is ErrIdempotencyConflict.
//
// One transaction: the member's account lock serializes the member's own
// redemptions (so the per-member limit, the sum of the quantities of the
// member's COMPLETED redemptions of the item, and the key check are
// exact); the points are burned before the item's stock is taken, so the
// item's row, which every buyer contends for, stays locked only for the
// few statements that follow. Any failure rolls everything back.
func (s *Service) RedeemMallItem(ctx context.Context, memberID, itemID, quantity int, key string) (MallResult, error) {
	var errs []error
	if quantity < 1 || quantity > maxQuantity {
		errs = append(errs, fault.Invalidf("quantity", "must be between 1 and %d, got %d", maxQuantity, quantity))
	}
	errs = append(errs, validKey(key))
	if err := errors.Join(errs...); err != nil {
		return MallResult{}, err
	}
	if res, found, err := s.mallDuplicate(ctx, s.db, memberID, itemID, quantity, key); found || err != nil {
		return res, err
	}

	res, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (MallResult, error) {
		acct, err := lockAccount(ctx, tx, memberID, true)
		if err != nil {
			return MallResult{}, err
		}
		// A concurrent request with the key may have committed while we
		// waited for the lock.
		if res, found, err := s.mallDuplicate(ctx, tx.Client(), memberID, itemID, quantity, key); found || err != nil {
			return res, err
		}
		item, err := tx.MallItem.Get(ctx, itemID)
		if ent.IsNotFound(err) || (err == nil && !item.Active) {
			return MallResult{}, ErrMallItemNotFound
		}
		if err != nil {
			return MallResult{}, fmt.Errorf("loading mall item %d: %w", itemID, err)
		}
		// Unlocked read: settles the common sold-out case before any
		// points move; the conditional UPDATE below decides.
		if item.Stock < quantity {
			return MallResult{}, fmt.Errorf("%w: %d left", ErrMallItemOutOfStock, item.Stock)
		}
		if item.PerMemberLimit != nil {
			had, err := tx.MallRedemption.Query().
				Where(mallredemption.ItemID(itemID), mallredemption.MemberID(memberID),
					mallredemption.StatusEQ(mallredemption.StatusCOMPLETED)).
				Aggregate(coalescedSum(mallredemption.FieldQuantity)).Int(ctx)
			if err != nil {
				return MallResult{}, fmt.Errorf("summing redemptions of item %d: %w", itemID, err)
			}
			if had+quantity > *item.PerMemberLimit {
				return MallResult{}, fmt.Errorf("%w: limit %d, already redeemed %d", ErrMallItemLimit, *item.PerMemberLimit, had)
			}
		}
		cost := int64(item.PointsPrice) * int64(quantity)
		burnKey := fmt.Sprintf("mall:%d:%s", memberID, key)
		if _, err := s.ledger.BurnPoints(ctx, tx, acct, ledger.Entry{
			Amount: cost, Source: ledger.SourceMall, Reason: "积分商城兑换 " + item.Title, Key: &burnKey,
		}); err != nil {
			return MallResult{}, err
		}
		n, err := tx.MallItem.Update().
			Where(mallitem.ID(itemID), mallitem.Active(true), mallitem.StockGTE(quantity)).
			AddStock(-quantity).Save(ctx)
		if err != nil {
			return MallResult{}, fmt.Errorf("taking stock of item %d: %w", itemID, err)
		}
		if n == 0 {
			return MallResult{}, ErrMallItemOutOfStock
		}
		var couponIDs []int
		if item.CouponTemplateID != nil {
			for range quantity {
				c, err := s.coupons.IssueInTx(ctx, tx, acct, *item.CouponTemplateID, couponSourceMall)
				if err != nil {
					return MallResult{}, err
				}
				couponIDs = append(couponIDs, c.ID)
			}
		}
		r, err := tx.MallRedemption.Create().
			SetItemID(itemID).SetMemberID(memberID).SetQuantity(quantity).SetPointsSpent(cost).
			SetIdempotencyKey(key).SetCouponIds(couponIDs).SetCreatedAt(s.now()).
			Save(ctx)
		if err != nil {
			return MallResult{}, fmt.Errorf("recording redemption: %w", err)
		}
		return MallResult{Redemption: r, PointsBalance: acct.PointsBalance}, nil
	})
	if database.IsUniqueViolation(err) {
		// Only possible if something bypassed the account lock; the
		// committed redemption is the answer.
		if res, found, derr := s.mallDuplicate(ctx, s.db, memberID, itemID, quantity, key); found || derr != nil {
			return res, derr
		}
	}
	if err != nil {
		return MallResult{}, err
	}
	res.Redemption = database.Detach(res.Redemption)
	return res, nil
}

// mallDuplicate answers a key already used by the member.
func (s *Service) mallDuplicate(ctx context.Context, db *ent.Client, memberID, itemID, quantity int, key string) (MallResult, bool, error) {
	r, err := db.MallRedemption.Query().
		Where(mallredemption.MemberID(memberID), mallredemption.IdempotencyKey(key)).Only(ctx)
	if ent.IsNotFound(err) {
		return MallResult{}, false, nil
	}
	if err != nil {
		return MallResult{}, false, fmt.Errorf("looking up redemption %q: %w", key, err)
	}
	if r.ItemID != itemID || r.Quantity != quantity {
		return MallResult{}, true, fmt.Errorf("%w: it redeemed %d of item %d", ErrIdempotencyConflict, r.Quantity, r.ItemID)
	}
	acct, err := account.Get(ctx, db, memberID)
	if err != nil {
		return MallResult{}, true, fmt.Errorf("reading account of member %d: %w", memberID, err)
	}
	return MallResult{Redemption: r, PointsBalance: acct.PointsBalance, Duplicate: true}, true, nil
}
