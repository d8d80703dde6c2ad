package coupon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"entgo.io/ent/dialect/sql"

	"github.com/onemember/onemember/ent"
	entcoupon "github.com/onemember/onemember/ent/coupon"
	"github.com/onemember/onemember/ent/coupontemplate"
	"github.com/onemember/onemember/ent/predicate"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/events"
	"github.com/onemember/onemember/internal/platform/database"
)

// ReleaseExpiredLocks frees the coupons whose till lock is LockTTL old
// (LOCKED → AVAILABLE) and answers how many. Batched, one transaction per
// batch; rows a till or an order holds right now are skipped (SKIP
// LOCKED) and left for the next run, so the job never waits on a till.
func (s *Service) ReleaseExpiredLocks(ctx context.Context) (int64, error) {
	cutoff := s.now().UTC().Add(-LockTTL)
	return s.batches(ctx, "releasing expired coupon locks",
		[]predicate.Coupon{entcoupon.StatusEQ(enum.CouponLocked), entcoupon.LockedAtLTE(cutoff)},
		func(u *ent.CouponUpdate) *ent.CouponUpdate {
			return u.SetStatus(enum.CouponAvailable).ClearLockedOrderRef().ClearLockedAt().SetDiscount(0)
		})
}

// Expire marks EXPIRED the AVAILABLE coupons past expires_at and answers
// how many. LOCKED coupons are left to their till (a stale lock becomes
// AVAILABLE through ReleaseExpiredLocks and expires on the next run).
// Batched like ReleaseExpiredLocks.
func (s *Service) Expire(ctx context.Context) (int64, error) {
	now := s.now().UTC()
	return s.batches(ctx, "expiring coupons",
		[]predicate.Coupon{entcoupon.StatusEQ(enum.CouponAvailable), entcoupon.ExpiresAtLTE(now)},
		func(u *ent.CouponUpdate) *ent.CouponUpdate { return u.SetStatus(enum.CouponExpired) })
}

// batches applies set to the coupons matching where, jobBatch rows per
// transaction, until a batch comes back short.
func (s *Service) batches(ctx context.Context, what string, where []predicate.Coupon, set func(*ent.CouponUpdate) *ent.CouponUpdate) (int64, error) {
	var total int64
	for {
		n, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (int, error) {
			ids, err := tx.Coupon.Query().Where(where...).
				Order(entcoupon.ByID()).Limit(jobBatch).
				ForUpdate(sql.WithLockAction(sql.SkipLocked)).
				IDs(ctx)
			if err != nil || len(ids) == 0 {
				return 0, err
			}
			// The rows are locked and re-checked by the SELECT: the
			// update cannot touch a coupon that changed meanwhile.
			return set(tx.Coupon.Update().Where(entcoupon.IDIn(ids...))).Save(ctx)
		})
		if err != nil {
			return total, fmt.Errorf("%s: %w", what, err)
		}
		total += int64(n)
		if n < jobBatch {
			return total, nil
		}
	}
}

// NotifyExpiring reminds members of their AVAILABLE coupons that expire
// within ExpiringWithin and were not reminded of yet: per member, in one
// transaction under the member's account lock, a CouponExpiring event (with
// an in-app notification) per coupon and expiring_notified_at set. The
// coupons are read again under the lock, so a coupon is announced exactly
// once even when two replicas run the job at the same time: the second
// waits for the first's lock and then finds the coupons marked. A member
// that fails is reported in the joined error; the others proceed. Answers
// how many coupons were announced.
func (s *Service) NotifyExpiring(ctx context.Context) (int64, error) {
	now := s.now().UTC()
	due := []predicate.Coupon{
		entcoupon.StatusEQ(enum.CouponAvailable),
		entcoupon.ExpiresAtGT(now),
		entcoupon.ExpiresAtLTE(now.Add(ExpiringWithin)),
		entcoupon.ExpiringNotifiedAtIsNil(),
	}
	var (
		total int64
		errs  []error
		after int
	)
	for {
		members, err := s.db.Coupon.Query().
			Where(slices.Concat(due, []predicate.Coupon{entcoupon.MemberIDGT(after)})...).
			Order(entcoupon.ByMemberID()).
			Unique(true).
			Limit(jobBatch).
			Select(entcoupon.FieldMemberID).
			Ints(ctx)
		if err != nil {
			return total, errors.Join(append(errs, fmt.Errorf("listing members with expiring coupons: %w", err))...)
		}
		for _, memberID := range members {
			n, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (int64, error) {
				return s.notifyMember(ctx, tx, memberID, now, due)
			})
			if err != nil {
				errs = append(errs, fmt.Errorf("reminding member %d of expiring coupons: %w", memberID, err))
				if ctx.Err() != nil || len(errs) >= maxJobErrors {
					return total, errors.Join(errs...)
				}
				continue
			}
			total += n
		}
		if len(members) < jobBatch {
			return total, errors.Join(errs...)
		}
		after = members[len(members)-1]
	}
}

func (s *Service) notifyMember(ctx context.Context, tx *ent.Tx, memberID int, now time.Time, due []predicate.Coupon) (int64, error) {
	acct, err := account.Lock(ctx, tx, memberID)
	if err != nil {
		return 0, err
	}
	coupons, err := tx.Coupon.Query().
		Where(slices.Concat(due, []predicate.Coupon{entcoupon.MemberID(memberID)})...).
		Order(entcoupon.ByID()). // the lock order of Lock, so the two cannot deadlock
		ForUpdate().
		All(ctx)
	if err != nil || len(coupons) == 0 {
		return 0, err
	}
	tplIDs := make([]int, 0, len(coupons))
	for _, c := range coupons {
		tplIDs = append(tplIDs, c.TemplateID)
	}
	tpls, err := tx.CouponTemplate.Query().Where(coupontemplate.IDIn(tplIDs...)).All(ctx)
	if err != nil {
		return 0, fmt.Errorf("loading coupon templates: %w", err)
	}
	byID := make(map[int]*ent.CouponTemplate, len(tpls))
	for _, t := range tpls {
		byID[t.ID] = t
	}
	for _, c := range coupons {
		t := byID[c.TemplateID]
		if t == nil {
			return 0, fmt.Errorf("coupon %d: template %d not found", c.ID, c.TemplateID)
		}
		_, err := events.Emit(ctx, tx, acct, now, events.Event{
			Type:    events.CouponExpiring,
			Payload: s.payload(c, t),
			Title:   "优惠券即将过期",
			Body:    fmt.Sprintf("您的优惠券「%s」将于%s过期，请尽快使用。", t.Title, s.showTime(c.ExpiresAt)),
		})
		if err != nil {
			return 0, fmt.Errorf("emitting coupon expiring: %w", err)
		}
	}
	ids := make([]int, len(coupons))
	for i, c := range coupons {
		ids[i] = c.ID
	}
	if err := tx.Coupon.Update().Where(entcoupon.IDIn(ids...)).SetExpiringNotifiedAt(now).Exec(ctx); err != nil {
		return 0, fmt.Errorf("marking coupons reminded: %w", err)
	}
	return int64(len(coupons)), nil
}
