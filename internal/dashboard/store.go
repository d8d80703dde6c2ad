package dashboard

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/store"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/fault"
)

// MaxTarget bounds a monthly revenue target (fen): 10 billion yuan.
const MaxTarget int64 = 1_000_000_000_000

// StoreReport is one store's month.
type StoreReport struct {
	Store *ent.Store
	// Month is 'YYYY-MM'; From and To are its first and last days, for
	// TopProducts (the report's topProducts(first) field).
	Month    string
	From, To calendar.Date
	Revenue  int64
	// Target is the month's revenue target, 0 when none is set.
	Target int64
	// Progress is Revenue / Target, 0 without a target.
	Progress float64
	Orders   int
	Buyers   int
	// NewMembers are the month's buyers whose first order that counts at
	// this store falls in the month. Members carry the business unit they
	// registered through, not a store, so "new to the store" is the
	// meaning that a store manager can act on.
	NewMembers        int
	AverageOrderValue int64
	// RepurchaseRate is the share of the month's buyers with two or more
	// orders that count in the month at this store (0 without buyers).
	RepurchaseRate float64
}

// SetStoreTarget sets (or replaces) a store's revenue target for a month
// ('YYYY-MM'); revenue is in fen, 0 clears the target's effect.
func (s *Service) SetStoreTarget(ctx context.Context, storeCode, month string, revenue int64) error {
	var errs []error
	if strings.TrimSpace(storeCode) == "" {
		errs = append(errs, fault.Invalidf("storeCode", "is required"))
	}
	if _, _, err := parseMonth("month", month); err != nil {
		errs = append(errs, err)
	}
	if revenue < 0 || revenue > MaxTarget {
		errs = append(errs, fault.Invalidf("revenue", "must be 0 to %d fen", MaxTarget))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	st, err := s.store(ctx, storeCode)
	if err != nil {
		return err
	}
	if _, err := s.sql.ExecContext(ctx, `INSERT INTO store_targets (store_id, month, revenue, updated_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (store_id, month) DO UPDATE SET revenue = EXCLUDED.revenue, updated_at = EXCLUDED.updated_at`,
		st.ID, month, revenue, s.now()); err != nil {
		return fmt.Errorf("setting store target: %w", err)
	}
	return nil
}

func (s *Service) store(ctx context.Context, code string) (*ent.Store, error) {
	st, err := s.db.Store.Query().Where(store.Code(code)).Only(ctx)
	if ent.IsNotFound(err) {
		return nil, ErrStoreNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("loading store: %w", err)
	}
	return st, nil
}

// StoreMonthlyReport returns a store's month ('YYYY-MM' in the business
// zone) from the aggregates, in one query: sales_daily for revenue and
// orders, store_months (the counts of store_member_months) for buyers, new
// members and repurchase, and the target. Its top products are TopProducts(r.From, r.To, first,
// &r.Store.ID).
func (s *Service) StoreMonthlyReport(ctx context.Context, storeCode, month string) (*StoreReport, error) {
	var errs []error
	if strings.TrimSpace(storeCode) == "" {
		errs = append(errs, fault.Invalidf("storeCode", "is required"))
	}
	from, to, err := parseMonth("month", month)
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	st, err := s.store(ctx, storeCode)
	if err != nil {
		return nil, err
	}
	r := &StoreReport{Store: st, Month: month, From: from, To: to}
	var repeat int
	if err := s.sql.QueryRowContext(ctx, `SELECT
  (SELECT coalesce(sum(revenue), 0)::bigint FROM sales_daily WHERE store_id = $1 AND day BETWEEN $2::date AND $3::date),
  (SELECT coalesce(sum(orders), 0)::bigint FROM sales_daily WHERE store_id = $1 AND day BETWEEN $2::date AND $3::date),
  coalesce((SELECT revenue FROM store_targets WHERE store_id = $1 AND month = $4), 0),
  coalesce(m.buyers, 0), coalesce(m.new_members, 0), coalesce(m.repeat, 0)
FROM (SELECT 1) one LEFT JOIN store_months m ON m.store_id = $1 AND m.month = $2::date`,
		st.ID, from.String(), to.String(), month).Scan(&r.Revenue, &r.Orders, &r.Target, &r.Buyers, &r.NewMembers, &repeat); err != nil {
		return nil, fmt.Errorf("reading store month: %w", err)
	}
	r.Progress = share(r.Revenue, r.Target)
	r.AverageOrderValue = averageOrderValue(r.Revenue, r.Orders)
	r.RepurchaseRate = share(int64(repeat), int64(r.Buyers))
	return r, nil
}
