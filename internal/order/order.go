// Package order owns sales: ingesting completed orders from tills and
// e-commerce back ends (idempotent on channel and external id), with their
// items and payments, the points burned and earned, the growth earned and
// the tier re-evaluation, all in one transaction; and refunds, which
// reverse all of that in proportion, idempotent on the refund id.
package order

import (
	"context"
	"fmt"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/earningrule"
	"github.com/onemember/onemember/ent/member"
	entorder "github.com/onemember/onemember/ent/order"
	"github.com/onemember/onemember/ent/orderpayment"
	"github.com/onemember/onemember/ent/pointsentry"
	"github.com/onemember/onemember/ent/refund"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/ent/store"
	"github.com/onemember/onemember/ent/storedvalueentry"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/auth"
	"github.com/onemember/onemember/internal/identity"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Errors of ordering.
var (
	ErrUnknownStore    = fault.Invalidf("storeCode", "is not a known store")
	ErrStoreForbidden  = fault.New(fault.Forbidden, "this client may not act for that store")
	ErrOrderNotFound   = fault.New(fault.NotFound, "order not found")
	ErrRefundTooLarge  = fault.Invalidf("amount", "exceeds what is left to refund")
	ErrMemberFrozen    = fault.New(fault.Forbidden, "the member is frozen: spending is blocked")
	ErrStoredValueLink = fault.Invalidf("payments", "storedValueTransactionId is not an unused stored-value payment of this member for that amount")
)

// Ledger is what ordering needs of the ledgers.
type Ledger interface {
	EarnPoints(ctx context.Context, tx *ent.Tx, acct *ent.Account, e ledger.Entry) (*ent.PointsEntry, error)
	BurnPoints(ctx context.Context, tx *ent.Tx, acct *ent.Account, e ledger.Entry) (*ent.PointsEntry, error)
	ReverseEarnedPoints(ctx context.Context, tx *ent.Tx, acct *ent.Account, e ledger.Entry) (*ent.PointsEntry, error)
	RestoreBurnedPoints(ctx context.Context, tx *ent.Tx, acct *ent.Account, burnEntryID int, e ledger.Entry) (*ent.PointsEntry, error)
	EarnGrowth(ctx context.Context, tx *ent.Tx, acct *ent.Account, e ledger.Entry) (*ent.GrowthEntry, error)
	ReverseGrowth(ctx context.Context, tx *ent.Tx, acct *ent.Account, e ledger.Entry) (*ent.GrowthEntry, error)
	RefundStoredValue(ctx context.Context, tx *ent.Tx, acct *ent.Account, paymentEntryID int, amount int64, e ledger.Entry) (*ent.StoredValueEntry, error)
}

// Tiers re-evaluates a member's tier after a change.
type Tiers interface {
	Reevaluate(ctx context.Context, tx *ent.Tx, acct *ent.Account, reason string) (*ent.TierChange, error)
}

// Members resolves member references.
type Members interface {
	Resolve(ctx context.Context, db *ent.Client, ref identity.MemberRef, field string) (*ent.Member, error)
}

// Coupons redeems, in the order's transaction, the coupons a till locked
// for the order's couponOrderRef, and gives them back on a full refund.
type Coupons interface {
	RedeemLocked(ctx context.Context, tx *ent.Tx, memberID int, orderRef string, o *ent.Order) ([]*ent.Coupon, error)
	ReturnForRefund(ctx context.Context, tx *ent.Tx, o *ent.Order) (int, error)
}

// Referrals rewards a referrer for the referee's first paid order.
type Referrals interface {
	RewardFirstPaidOrder(ctx context.Context, tx *ent.Tx, refereeAcct *ent.Account, o *ent.Order) error
}

// Hooks are the other domains an order touches in its transaction; a nil
// hook is skipped.
type Hooks struct {
	Coupons   Coupons
	Referrals Referrals
}

// Service ingests orders and refunds.
type Service struct {
	db      *ent.Client
	ledger  Ledger
	tiers   Tiers
	members Members
	hooks   Hooks
	limits  Limits
	now     func() time.Time
}

// New builds a Service.
func New(db *ent.Client, l Ledger, t Tiers, m Members, h Hooks, lim Limits, now func() time.Time) *Service {
	return &Service{db: db, ledger: l, tiers: t, members: m, hooks: h, limits: lim, now: now}
}

// Result is an ingested (or found) order.
type Result struct {
	Order     *ent.Order
	Member    *ent.Member
	Duplicate bool
}

// Ingest records a completed sale. The same (channel, externalId) again
// changes nothing and answers Duplicate; concurrent duplicates meet at the
// member's account lock (or, for different members, the unique index) and
// all but one answer Duplicate.
func (s *Service) Ingest(ctx context.Context, in IngestInput) (Result, error) {
	if err := in.Validate(s.limits, s.now()); err != nil {
		return Result{}, err
	}
	if r, ok, err := s.existing(ctx, s.db, in.Channel, in.ExternalID); ok || err != nil {
		return r, err
	}
	st, err := s.db.Store.Query().Where(store.Code(in.StoreCode)).Only(ctx)
	if ent.IsNotFound(err) {
		return Result{}, ErrUnknownStore
	}
	if err != nil {
		return Result{}, fmt.Errorf("loading store: %w", err)
	}
	if !auth.ViewerFrom(ctx).CanUseStore(st) && !auth.ViewerFrom(ctx).HasRole(enum.RoleAdmin) {
		return Result{}, ErrStoreForbidden
	}
	m, err := s.members.Resolve(ctx, s.db, in.Member, "member")
	if err != nil {
		return Result{}, err
	}
	// A referral reward locks the referrer's account after the member's;
	// a merge racing it can deadlock, and PostgreSQL then aborts one side:
	// the order is simply tried again (it is idempotent on its external id).
	var res Result
	for attempt := 0; ; attempt++ {
		res, err = s.ingestOnce(ctx, m, st, in)
		if !database.IsDeadlock(err) || attempt == 2 {
			break
		}
	}
	if database.IsUniqueViolation(err) {
		if r, ok, err := s.existing(ctx, s.db, in.Channel, in.ExternalID); ok || err != nil {
			return r, err
		}
	}
	if err != nil {
		return Result{}, err
	}
	res.Order = database.Detach(res.Order)
	// Re-read after commit so the answer shows the tier just earned.
	if res.Member, err = s.db.Member.Get(ctx, res.Order.MemberID); err != nil {
		return Result{}, err
	}
	return res, nil
}

func (s *Service) ingestOnce(ctx context.Context, m *ent.Member, st *ent.Store, in IngestInput) (Result, error) {
	return database.WithTx(ctx, s.db, func(tx *ent.Tx) (Result, error) {
		acct, err := s.lockLive(ctx, tx, m)
		if err != nil {
			return Result{}, err
		}
		m = acct.Edges.Member
		// Under the member's lock a concurrent duplicate has committed or
		// not started: look again.
		if r, ok, err := s.existing(ctx, tx.Client(), in.Channel, in.ExternalID); ok || err != nil {
			return r, err
		}
		o, err := s.record(ctx, tx, acct, m, st, in)
		if err != nil {
			return Result{}, err
		}
		return Result{Order: o}, nil
	})
}

// lockLive locks the account of m, or of the member m was merged into
// while this request was on its way: a merge that commits between
// resolving the member and locking it must not leave the order on the
// merged member, where nobody would see it.
func (s *Service) lockLive(ctx context.Context, tx *ent.Tx, m *ent.Member) (*ent.Account, error) {
	for hops := 0; hops < 8; hops++ {
		acct, err := account.Lock(ctx, tx, m.ID)
		if err != nil {
			return nil, err
		}
		if m, err = tx.Member.Get(ctx, m.ID); err != nil {
			return nil, err
		}
		if m.Status != member.StatusMERGED || m.MergedIntoID == nil {
			acct.Edges.Member = m
			return acct, nil
		}
		m = &ent.Member{ID: *m.MergedIntoID}
	}
	return nil, fmt.Errorf("merge chain too long")
}

func (s *Service) existing(ctx context.Context, db *ent.Client, ch enum.Channel, externalID string) (Result, bool, error) {
	o, err := db.Order.Query().Where(entorder.ChannelEQ(ch), entorder.ExternalID(externalID)).Only(ctx)
	if ent.IsNotFound(err) {
		return Result{}, false, nil
	}
	if err != nil {
		return Result{}, false, fmt.Errorf("looking up order: %w", err)
	}
	m, err := db.Member.Get(ctx, o.MemberID)
	if err != nil {
		return Result{}, false, err
	}
	return Result{Order: o, Member: m, Duplicate: true}, true, nil
}

// record writes the order and its consequences in tx.
func (s *Service) record(ctx context.Context, tx *ent.Tx, acct *ent.Account, m *ent.Member, st *ent.Store, in IngestInput) (*ent.Order, error) {
	create := tx.Order.Create().
		SetExternalID(in.ExternalID).SetChannel(in.Channel).SetMemberID(m.ID).
		SetStoreID(st.ID).SetBusinessUnitID(st.BusinessUnitID).SetAmount(in.Amount).
		SetPaidAt(in.PaidAt).SetCouponOrderRef(in.CouponOrderRef).SetCreatedAt(s.now())
	if in.CampaignID != nil {
		create.SetCampaignID(*in.CampaignID)
	}
	o, err := create.Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("recording order: %w", err)
	}
	items := make([]*ent.OrderItemCreate, len(in.Items))
	for i, it := range in.Items {
		items[i] = tx.OrderItem.Create().SetOrderID(o.ID).SetSku(it.SKU).SetName(it.Name).
			SetCategory(it.Category).SetBrand(it.Brand).SetQuantity(it.Quantity).
			SetUnitPrice(it.UnitPrice).SetAmount(it.Amount)
	}
	if err := tx.OrderItem.CreateBulk(items...).Exec(ctx); err != nil {
		return nil, fmt.Errorf("recording items: %w", err)
	}
	if in.CouponOrderRef != "" && s.hooks.Coupons != nil {
		if _, err := s.hooks.Coupons.RedeemLocked(ctx, tx, m.ID, in.CouponOrderRef, o); err != nil {
			return nil, err
		}
	}
	entry := func(amount int64, source string) ledger.Entry {
		key := fmt.Sprintf("order:%d:%s", o.ID, source)
		return ledger.Entry{Amount: amount, Source: source, Reason: "订单 " + in.ExternalID,
			BusinessUnitID: &st.BusinessUnitID, StoreID: &st.ID, OrderID: &o.ID, Key: &key, At: in.PaidAt}
	}
	var burned int64
	for _, p := range in.Payments {
		pay := tx.OrderPayment.Create().SetOrderID(o.ID).SetMethod(p.Method).SetAmount(p.Amount)
		switch p.Method {
		case enum.PayPoints:
			if m.Status == member.StatusFROZEN {
				return nil, ErrMemberFrozen
			}
			e := entry(p.Points, "ORDER")
			e.Key = ptr(fmt.Sprintf("order:%d:burn", o.ID))
			if _, err := s.ledger.BurnPoints(ctx, tx, acct, e); err != nil {
				return nil, err
			}
			burned += p.Points
			pay.SetPoints(p.Points)
		case enum.PayStoredValue:
			if err := s.checkStoredValuePayment(ctx, tx, m.ID, *p.StoredValueEntryID, p.Amount); err != nil {
				return nil, err
			}
			pay.SetStoredValueEntryID(*p.StoredValueEntryID)
		}
		if err := pay.Exec(ctx); err != nil {
			if database.IsUniqueViolation(err) {
				return nil, ErrStoredValueLink
			}
			return nil, fmt.Errorf("recording payment: %w", err)
		}
	}
	pointsRate, growthRate, err := s.rates(ctx, tx, st.BusinessUnitID)
	if err != nil {
		return nil, err
	}
	multiplier := int64(1000)
	if m.TierID != nil {
		t, err := tx.Tier.Get(ctx, *m.TierID)
		if err != nil {
			return nil, fmt.Errorf("loading tier: %w", err)
		}
		multiplier = int64(t.PointsMultiplierPermille)
	}
	// Points pay for nothing twice: the part paid with points earns none.
	base := in.Amount - burned
	earned := base * pointsRate * multiplier / (100 * 1000 * 1000)
	growth := base * growthRate / (100 * 1000)
	if earned > 0 {
		if _, err := s.ledger.EarnPoints(ctx, tx, acct, entry(earned, "ORDER")); err != nil {
			return nil, err
		}
	}
	if growth > 0 {
		if _, err := s.ledger.EarnGrowth(ctx, tx, acct, entry(growth, "ORDER")); err != nil {
			return nil, err
		}
	}
	o, err = tx.Order.UpdateOne(o).SetPointsEarned(earned).SetPointsBurned(burned).SetGrowthEarned(growth).Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("updating order: %w", err)
	}
	if _, err := s.tiers.Reevaluate(ctx, tx, acct, "消费订单 "+in.ExternalID); err != nil {
		return nil, err
	}
	if in.Amount > 0 && s.hooks.Referrals != nil {
		if err := s.hooks.Referrals.RewardFirstPaidOrder(ctx, tx, acct, o); err != nil {
			return nil, err
		}
	}
	return o, nil
}

// checkStoredValuePayment verifies that a STORED_VALUE tender refers to a
// payWithStoredValue transaction of this member for this amount (the
// unique index on order_payments stops it from paying two orders).
func (s *Service) checkStoredValuePayment(ctx context.Context, tx *ent.Tx, memberID, entryID int, amount int64) error {
	ok, err := tx.StoredValueEntry.Query().Where(
		storedvalueentry.ID(entryID), storedvalueentry.MemberID(memberID),
		storedvalueentry.KindEQ(storedvalueentry.KindPAYMENT), storedvalueentry.Amount(-amount),
	).Exist(ctx)
	if err != nil {
		return fmt.Errorf("checking stored-value payment: %w", err)
	}
	if !ok {
		return ErrStoredValueLink
	}
	return nil
}

// rates are the BU's earning rates in permille per yuan (default 1000).
func (s *Service) rates(ctx context.Context, tx *ent.Tx, bu int) (points, growth int64, err error) {
	r, err := tx.EarningRule.Query().Where(earningrule.BusinessUnitID(bu)).Only(ctx)
	if ent.IsNotFound(err) {
		return 1000, 1000, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("loading earning rule: %w", err)
	}
	return int64(r.PointsPerYuanPermille), int64(r.GrowthPerYuanPermille), nil
}

// RefundResult is a recorded (or found) refund.
type RefundResult struct {
	Order               *ent.Order
	Refund              *ent.Refund
	Duplicate           bool
	PointsReversed      int64
	GrowthReversed      int64
	StoredValueRestored int64
}

// Refund reverses part or all of an order. Everything the order moved is
// reversed in proportion to the refunded share, computed on the running
// total (what should be reversed after this refund, minus what earlier
// refunds reversed), so that rounding never drifts and a full refund
// reverses exactly everything.
func (s *Service) Refund(ctx context.Context, in RefundInput) (RefundResult, error) {
	if err := in.Validate(); err != nil {
		return RefundResult{}, err
	}
	o, err := s.db.Order.Query().Where(entorder.ChannelEQ(in.Channel), entorder.ExternalID(in.ExternalID)).Only(ctx)
	if ent.IsNotFound(err) {
		return RefundResult{}, ErrOrderNotFound
	}
	if err != nil {
		return RefundResult{}, fmt.Errorf("loading order: %w", err)
	}
	out, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (RefundResult, error) {
		// A merge may move the order to another member between reading it
		// and locking: lock, re-read, and follow until they agree.
		var acct *ent.Account
		for memberID := o.MemberID; ; memberID = o.MemberID {
			if acct, err = account.Lock(ctx, tx, memberID); err != nil {
				return RefundResult{}, err
			}
			if o, err = tx.Order.Get(ctx, o.ID); err != nil { // current refunded_amount, under the lock
				return RefundResult{}, err
			}
			if o.MemberID == memberID {
				break
			}
		}
		if r, ok, err := existingRefund(ctx, tx.Client(), o.ID, in.RefundID); ok || err != nil {
			return r, err
		}
		if in.Amount > o.Amount-o.RefundedAmount {
			return RefundResult{}, ErrRefundTooLarge
		}
		return s.reverse(ctx, tx, acct, o, in)
	})
	if database.IsUniqueViolation(err) {
		if r, ok, err := existingRefund(ctx, s.db, o.ID, in.RefundID); ok || err != nil {
			return r, err
		}
	}
	out.Order = database.Detach(out.Order)
	return out, err
}

func existingRefund(ctx context.Context, db *ent.Client, orderID int, refundID string) (RefundResult, bool, error) {
	r, err := db.Refund.Query().Where(refund.OrderID(orderID), refund.RefundID(refundID)).Only(ctx)
	if ent.IsNotFound(err) {
		return RefundResult{}, false, nil
	}
	if err != nil {
		return RefundResult{}, false, fmt.Errorf("looking up refund: %w", err)
	}
	o, err := db.Order.Get(ctx, orderID)
	if err != nil {
		return RefundResult{}, false, err
	}
	return RefundResult{Order: o, Refund: r, Duplicate: true, PointsReversed: r.PointsReversed,
		GrowthReversed: r.GrowthReversed, StoredValueRestored: r.StoredValueRestored}, true, nil
}

func (s *Service) reverse(ctx context.Context, tx *ent.Tx, acct *ent.Account, o *ent.Order, in RefundInput) (RefundResult, error) {
	prior, err := tx.Refund.Query().Where(refund.OrderID(o.ID)).All(ctx)
	if err != nil {
		return RefundResult{}, err
	}
	var priorPoints, priorGrowth, priorRestored, priorSV int64
	for _, r := range prior {
		priorPoints += r.PointsReversed
		priorGrowth += r.GrowthReversed
		priorRestored += r.PointsRestored
		priorSV += r.StoredValueRestored
	}
	refunded := o.RefundedAmount + in.Amount
	share := func(total, already int64) int64 { return total*refunded/o.Amount - already }
	e := func(amount int64, key string) ledger.Entry {
		k := fmt.Sprintf("refund:%d:%s:%s", o.ID, in.RefundID, key)
		return ledger.Entry{Amount: amount, Source: "REFUND", Reason: "退款 " + in.ExternalID,
			BusinessUnitID: &o.BusinessUnitID, StoreID: &o.StoreID, OrderID: &o.ID, Key: &k, At: s.now()}
	}
	res := RefundResult{}
	if n := share(o.PointsEarned, priorPoints); n > 0 {
		if _, err := s.ledger.ReverseEarnedPoints(ctx, tx, acct, e(n, "points")); err != nil {
			return RefundResult{}, err
		}
		res.PointsReversed = n
	}
	if n := share(o.GrowthEarned, priorGrowth); n > 0 {
		g, err := s.ledger.ReverseGrowth(ctx, tx, acct, e(n, "growth"))
		if err != nil {
			return RefundResult{}, err
		}
		if g != nil {
			res.GrowthReversed = -g.Amount
		}
	}
	var restored int64
	if n := share(o.PointsBurned, priorRestored); n > 0 {
		burn, err := tx.PointsEntry.Query().Where(pointsentry.OrderID(o.ID), pointsentry.KindEQ(pointsentry.KindBURN)).Only(ctx)
		if err != nil {
			return RefundResult{}, fmt.Errorf("finding the order's points burn: %w", err)
		}
		if _, err := s.ledger.RestoreBurnedPoints(ctx, tx, acct, burn.ID, e(n, "restore")); err != nil {
			return RefundResult{}, err
		}
		restored = n
	}
	pays, err := tx.OrderPayment.Query().Where(orderpayment.OrderID(o.ID), orderpayment.MethodEQ(enum.PayStoredValue)).All(ctx)
	if err != nil {
		return RefundResult{}, err
	}
	var svTotal int64
	for _, p := range pays {
		svTotal += p.Amount
	}
	if n := share(svTotal, priorSV); n > 0 {
		// Spread over the stored-value tenders in order (usually one).
		left := n
		for i, p := range pays {
			amt := min(left, p.Amount)
			if i == len(pays)-1 {
				amt = left
			}
			if amt <= 0 {
				continue
			}
			if _, err := s.ledger.RefundStoredValue(ctx, tx, acct, *p.StoredValueEntryID, amt, e(amt, fmt.Sprintf("sv%d", p.ID))); err != nil {
				return RefundResult{}, err
			}
			left -= amt
		}
		res.StoredValueRestored = n
	}
	r, err := tx.Refund.Create().SetOrderID(o.ID).SetRefundID(in.RefundID).SetAmount(in.Amount).
		SetReason(in.Reason).SetPointsReversed(res.PointsReversed).SetPointsRestored(restored).
		SetGrowthReversed(res.GrowthReversed).SetStoredValueRestored(res.StoredValueRestored).
		SetCreatedAt(s.now()).Save(ctx)
	if err != nil {
		return RefundResult{}, fmt.Errorf("recording refund: %w", err)
	}
	status := entorder.StatusPARTIALLY_REFUNDED
	if refunded == o.Amount {
		status = entorder.StatusREFUNDED
		// A refund of the whole order gives its unexpired coupons back.
		if s.hooks.Coupons != nil {
			if _, err := s.hooks.Coupons.ReturnForRefund(ctx, tx, o); err != nil {
				return RefundResult{}, err
			}
		}
	}
	o, err = tx.Order.UpdateOne(o).SetRefundedAmount(refunded).SetStatus(status).Save(ctx)
	if err != nil {
		return RefundResult{}, fmt.Errorf("updating order: %w", err)
	}
	res.Order, res.Refund = o, r
	return res, nil
}

func ptr[T any](v T) *T { return &v }
