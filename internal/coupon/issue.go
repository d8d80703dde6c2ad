package coupon

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"time"

	"entgo.io/ent/dialect/sql"

	"github.com/onemember/onemember/ent"
	entcoupon "github.com/onemember/onemember/ent/coupon"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/events"
)

// takeStock adds $2 to issued_count unless the stock left is smaller (then
// no row), in one statement: concurrent issuers queue on the template's row
// and each sees the count the previous one committed, so stock is never
// oversold.
const takeStock = `UPDATE coupon_templates SET issued_count = issued_count + $2
WHERE id = $1 AND issued_count + $2 <= total_stock
RETURNING issued_count`

// IssueInTx issues one coupon of templateID to the member of acct, which
// the caller holds locked in tx (account.Lock) — claims, promo codes,
// lottery prizes, mall items, referrals and campaigns all come through
// here.
//
//   - The template's window must not have ended (ErrEnded); issuing before
//     valid_from is allowed (the coupon is usable from valid_from).
//   - Per-member limit: the member's coupons of the template in any status
//     but VOID (redeemed and expired ones count: the limit is on coupons
//     received, and a voided one was taken back), counted under the account
//     lock, so concurrent issues to one member cannot overshoot
//     (ErrLimitExceeded). Checked before the stock, so a refused member
//     does not hold the template's row lock.
//   - Stock: one conditional UPDATE (takeStock), the last statement, so
//     that the template's row is locked as briefly as possible; none left
//     is ErrOutOfStock (and the caller rolls back what came before).
//   - The code is 12 random Crockford base32 characters; a code already
//     taken (ON CONFLICT DO NOTHING) is drawn again.
//   - A CouponIssued event (with an in-app notification) is emitted in tx.
func (s *Service) IssueInTx(ctx context.Context, tx *ent.Tx, acct *ent.Account, templateID int, source string) (*ent.Coupon, error) {
	t, err := tx.CouponTemplate.Get(ctx, templateID)
	if ent.IsNotFound(err) {
		return nil, ErrTemplateNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("loading coupon template: %w", err)
	}
	return s.issue(ctx, tx, acct, t, source)
}

// issue is IssueInTx for a template the caller has loaded (its stock
// count is taken by the conditional UPDATE, never from t).
func (s *Service) issue(ctx context.Context, tx *ent.Tx, acct *ent.Account, t *ent.CouponTemplate, source string) (*ent.Coupon, error) {
	return s.issueFor(ctx, tx, acct, t, source, nil)
}

// issueFor is issue recording the ISSUE_COUPONS job that issues the
// coupon (jobID, nil for any other issuer).
func (s *Service) issueFor(ctx context.Context, tx *ent.Tx, acct *ent.Account, t *ent.CouponTemplate, source string, jobID *int) (*ent.Coupon, error) {
	now := s.now().UTC()
	if t.ValidTo != nil && !now.Before(*t.ValidTo) {
		return nil, ErrEnded
	}
	expires, err := s.expiresAt(t, now)
	if err != nil {
		return nil, err
	}

	held, err := tx.Coupon.Query().
		Where(entcoupon.TemplateID(t.ID), entcoupon.MemberID(acct.MemberID), entcoupon.StatusNEQ(enum.CouponVoid)).
		Count(ctx)
	if err != nil {
		return nil, fmt.Errorf("counting the member's coupons: %w", err)
	}
	if held >= t.PerMemberLimit {
		return nil, ErrLimitExceeded
	}

	c, err := s.insert(ctx, tx, t, acct.MemberID, now, expires, source, jobID)
	if err != nil {
		return nil, err
	}
	_, err = events.Emit(ctx, tx, acct, now, events.Event{
		Type:    events.CouponIssued,
		Payload: s.payload(c, t),
		Title:   "获得优惠券",
		Body:    fmt.Sprintf("您获得了一张优惠券「%s」，有效期至%s。", t.Title, s.showTime(c.ExpiresAt)),
	})
	if err != nil {
		return nil, fmt.Errorf("emitting coupon issued: %w", err)
	}
	// Stock last: the template's row is the one every claimant of a hot
	// template queues on, and it stays locked from this UPDATE until the
	// transaction ends; taken last, the lock is held for the commit only.
	if err := takeOne(ctx, tx, t); err != nil {
		return nil, err
	}
	c.Edges.Template = t
	return c, nil
}

func takeOne(ctx context.Context, tx *ent.Tx, t *ent.CouponTemplate) error {
	ok, err := takeExact(ctx, tx, t, 1)
	if err == nil && !ok {
		return ErrOutOfStock
	}
	return err
}

// takeExact takes n coupons of t's stock with takeStock, or reports false
// when less is left; t.IssuedCount is set to what it left.
func takeExact(ctx context.Context, tx *ent.Tx, t *ent.CouponTemplate, n int) (bool, error) {
	rows, err := tx.QueryContext(ctx, takeStock, t.ID, n)
	if err != nil {
		return false, fmt.Errorf("taking coupon stock: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return false, fmt.Errorf("taking coupon stock: %w", err)
		}
		return false, nil
	}
	if err := rows.Scan(&t.IssuedCount); err != nil {
		return false, fmt.Errorf("reading coupon stock: %w", err)
	}
	return true, rows.Close()
}

// insert writes the coupon with a fresh code, drawing again when the code
// is taken. ON CONFLICT DO NOTHING keeps tx usable after a collision (a
// unique violation would abort it). jobID is the issuing job, if any: the
// unique index (issue_job_id, member_id) refuses a second coupon of one
// job to one member (a violation, aborting tx: it never happens unless the
// job's fencing failed).
func (s *Service) insert(ctx context.Context, tx *ent.Tx, t *ent.CouponTemplate, memberID int, now, expires time.Time, source string, jobID *int) (*ent.Coupon, error) {
	for range maxCodeAttempts {
		code, err := s.newCode()
		if err != nil {
			return nil, err
		}
		create := tx.Coupon.Create().
			SetCode(code).SetTemplateID(t.ID).SetMemberID(memberID).
			SetStatus(enum.CouponAvailable).SetIssuedAt(now).SetExpiresAt(expires).
			SetSource(source).SetNillableIssueJobID(jobID)
		create.OnConflict(sql.ConflictColumns(entcoupon.FieldCode)).DoNothing()
		c, err := create.Save(ctx)
		if errors.Is(err, stdsql.ErrNoRows) {
			continue // the code is taken
		}
		if err != nil {
			return nil, fmt.Errorf("writing coupon: %w", err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("no free coupon code after %d attempts", maxCodeAttempts)
}

// payload is the member event payload of a coupon event.
func (s *Service) payload(c *ent.Coupon, t *ent.CouponTemplate) map[string]any {
	return map[string]any{
		"couponId":   c.ID,
		"templateId": t.ID,
		"title":      t.Title,
		"expiresAt":  c.ExpiresAt.In(s.zone).Format(time.RFC3339),
	}
}

// showTime renders an expiry for a member in the business zone; an expiry
// at midnight shows as 23:59 of the day before, the last day it is usable.
func (s *Service) showTime(t time.Time) string {
	local := t.In(s.zone)
	if local.Hour() == 0 && local.Minute() == 0 && local.Second() == 0 && local.Nanosecond() == 0 {
		local = local.Add(-time.Minute)
	}
	return local.Format("2006-01-02 15:04")
}
