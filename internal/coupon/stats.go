package coupon

import (
	"context"
	"fmt"

	"github.com/onemember/onemember/ent/coupontemplate"
)

// Stats are a template's numbers.
type Stats struct {
	// Issued counts the template's coupons (any status).
	Issued int
	// Redeemed and Expired count the coupons in those statuses now (a
	// coupon returned by a refund no longer counts as redeemed).
	Redeemed, Expired int
	// RedemptionRate is Redeemed / Issued, 0 when none was issued: a
	// ratio, not money.
	RedemptionRate float64
	// DiscountTotal sums the discounts of the redeemed coupons (fen).
	DiscountTotal int64
	// AttributedRevenue sums, over the distinct orders that redeemed a
	// coupon of the template, amount − refunded_amount (fen).
	AttributedRevenue int64
}

const statsQuery = `SELECT
  count(*),
  count(*) FILTER (WHERE status = 'REDEEMED'),
  count(*) FILTER (WHERE status = 'EXPIRED'),
  coalesce(sum(discount) FILTER (WHERE status = 'REDEEMED'), 0),
  coalesce((SELECT sum(o.amount - o.refunded_amount) FROM orders o
            WHERE o.id IN (SELECT order_id FROM coupons
                           WHERE template_id = $1 AND status = 'REDEEMED' AND order_id IS NOT NULL)), 0)
FROM coupons WHERE template_id = $1`

// Stats computes the numbers of templateID in one statement (one
// snapshot).
func (s *Service) Stats(ctx context.Context, templateID int) (Stats, error) {
	exists, err := s.db.CouponTemplate.Query().Where(coupontemplate.ID(templateID)).Exist(ctx)
	if err != nil {
		return Stats{}, fmt.Errorf("loading coupon template: %w", err)
	}
	if !exists {
		return Stats{}, ErrTemplateNotFound
	}
	rows, err := s.db.QueryContext(ctx, statsQuery, templateID)
	if err != nil {
		return Stats{}, fmt.Errorf("computing coupon stats: %w", err)
	}
	defer rows.Close()
	var st Stats
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return Stats{}, fmt.Errorf("computing coupon stats: %w", err)
		}
		return Stats{}, fmt.Errorf("computing coupon stats: no row")
	}
	if err := rows.Scan(&st.Issued, &st.Redeemed, &st.Expired, &st.DiscountTotal, &st.AttributedRevenue); err != nil {
		return Stats{}, fmt.Errorf("reading coupon stats: %w", err)
	}
	if st.Issued > 0 {
		st.RedemptionRate = float64(st.Redeemed) / float64(st.Issued)
	}
	return st, rows.Close()
}
