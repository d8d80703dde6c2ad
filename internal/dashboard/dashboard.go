// Package dashboard owns the operating dashboards' figures (经营数据看板):
// sales by channel, business unit and day, top products, store monthly
// reports against their targets, members by registration channel
// (ChannelStats), today's live sales (LiveSales) and the cross-BU points
// settlement. The membership dashboard (member totals and distributions)
// is audience.Service.MemberStats, over the audience index.
//
// The sales figures answer from pre-aggregated tables (migrations
// 20261123021000_sales_aggregates and 20261123120000_dashboard_aggregates),
// never from raw orders at request time:
//
//   - sales_daily: per business day, store and channel, the revenue net of
//     refunds, the paid members' part of it, the orders that count and a
//     roaring bitmap of their buyers;
//   - product_daily: the same per business day, store and SKU, and
//     product_months, its sums per store, month and SKU;
//   - store_member_months: per store, business month and member, the orders
//     that count and whether it is the member's first month at the store,
//     and store_months, its counts per store and month;
//   - member_first_orders and first_order_days: each member's first order
//     that counts (its business day), and per day a bitmap of the members
//     whose first it was;
//   - sales_days: a version per day, changed with any of the day's
//     sales_daily rows, by which each replica keeps the days it has read
//     in memory (SalesOverview, ChannelStats).
//
// Refresh keeps them current from sales_changes, which triggers on orders
// fill (see Run for the freshness bound); Rebuild recomputes them. Live
// sales are the one exception: RunLive reads today's orders (see there).
//
// Definitions, the same everywhere:
//
//   - A day is a calendar day in the business zone; an order belongs to the
//     day it was paid on (paid_at in the zone). Refunds are attributed to
//     the order's paid day, not to the day of the refund: a day's revenue is
//     what its orders brought, minus what has been refunded of them so far.
//   - Revenue is Σ(amount − refunded_amount), in fen.
//   - An order counts (in orders, buyers, product quantity and repurchase)
//     unless it has been refunded in full; a partly refunded order counts.
//   - Buyers are distinct members over the whole range asked (not a sum of
//     daily buyers).
//   - Every order carries a member (order ingestion resolves one), so the
//     "members' share" cannot be members against walk-in shoppers. It is
//     the share of revenue from paid members (付费会员): orders whose member
//     held a paid membership whose purchased period (a
//     paid_membership_purchases row) covers the order's paid_at.
//   - A line's product revenue is its share, by line amount, of what was
//     paid and not refunded of its order: floor(line amount × (amount −
//     refunded) / Σ line amounts). Order-level coupon discounts and partial
//     refunds are thus spread over the lines in proportion; product revenue
//     can fall short of sales revenue by under 1 fen per line. Refunds do
//     not say which lines went back, so a product's quantity is the
//     quantity of the orders that count.
package dashboard

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/RoaringBitmap/roaring/v2"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/audience"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Errors of the dashboards.
var (
	ErrStoreNotFound        = fault.New(fault.NotFound, "store not found")
	ErrBusinessUnitNotFound = fault.New(fault.NotFound, "business unit not found")
	// ErrNoMembers is a Service built without WithMembers asked for
	// figures keyed by the membership.
	ErrNoMembers = errors.New("dashboard: no membership index configured (WithMembers)")
)

// Limits on what one request may ask.
const (
	// MaxRangeDays is the longest date range a query covers.
	MaxRangeDays = 731
	// MaxFirst is the most products TopProducts returns.
	MaxFirst = 100
)

// Service answers the dashboards and keeps their aggregates current.
type Service struct {
	db      *ent.Client
	sql     *sql.DB
	zone    *time.Location
	now     func() time.Time
	members Members
	live    *liveHub
	days    *dayCache
}

// Members is the live membership by registration channel
// (audience.Service, from its in-memory index).
type Members interface {
	ByRegistrationChannel(ctx context.Context, from, to calendar.Date) (map[enum.Channel]audience.ChannelMembers, error)
}

// Option configures a Service.
type Option func(*Service)

// WithMembers gives ChannelStats the membership it keys its figures by.
func WithMembers(m Members) Option { return func(s *Service) { s.members = m } }

// New returns a Service over db (entities) and sqlDB (the aggregate
// tables); zone is the business time zone the days are cut in.
func New(db *ent.Client, sqlDB *sql.DB, zone *time.Location, now func() time.Time, opts ...Option) *Service {
	if now == nil {
		now = time.Now
	}
	s := &Service{db: db, sql: sqlDB, zone: zone, now: now, live: newLiveHub(), days: newDayCache()}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Breakdown is one slice of a total: a channel or a business unit (its
// code).
type Breakdown struct {
	Key     string
	Revenue int64
	Orders  int
}

// Day is one day of a range.
type Day struct {
	Date    calendar.Date
	Revenue int64
	Orders  int
	Buyers  int
}

// Overview is the sales of a date range.
type Overview struct {
	Revenue int64
	Orders  int
	// Buyers is distinct over the range.
	Buyers int
	// AverageOrderValue is Revenue / Orders in fen, rounded half up; 0
	// without orders.
	AverageOrderValue int64
	// MemberRevenueShare is the paid members' part of Revenue, 0 to 1.
	MemberRevenueShare float64
	// ByChannel and ByBusinessUnit are by revenue, highest first.
	ByChannel      []Breakdown
	ByBusinessUnit []Breakdown
	// ByDay has every day of the range, days without sales included.
	ByDay []Day
}

// Product is one product's sales over a range.
type Product struct {
	SKU, Name, Category string
	Revenue             int64
	Quantity            int
	// Buyers is distinct over the range.
	Buyers int
	// MemberShare is the paid members' part of Revenue, 0 to 1.
	MemberShare float64
}

// averageOrderValue is revenue / orders rounded half up (revenue is never
// negative).
func averageOrderValue(revenue int64, orders int) int64 {
	if orders <= 0 {
		return 0
	}
	return (revenue + int64(orders)/2) / int64(orders)
}

func share(part, whole int64) float64 {
	if whole <= 0 {
		return 0
	}
	return float64(part) / float64(whole)
}

// validateRange checks a date range as the dashboards take it.
func validateRange(from, to calendar.Date) error {
	switch {
	case from.IsZero() || to.IsZero():
		return fault.Invalidf("from", "and to are required")
	case to.Before(from):
		return fault.Invalidf("to", "must not be before from")
	case daysBetween(from, to) >= MaxRangeDays:
		return fault.Invalidf("to", "the range must be at most %d days", MaxRangeDays)
	}
	return nil
}

// daysBetween is the number of days from a to b.
func daysBetween(a, b calendar.Date) int {
	return int(math.Round(b.Start(time.UTC).Sub(a.Start(time.UTC)).Hours() / 24))
}

// parseMonth reads 'YYYY-MM' and returns its first and last days.
func parseMonth(field, month string) (calendar.Date, calendar.Date, error) {
	t, err := time.Parse("2006-01", month)
	if err != nil || len(month) != 7 {
		return calendar.Date{}, calendar.Date{}, fault.Invalidf(field, "must be a month as YYYY-MM")
	}
	first := calendar.Of(t)
	return first, calendar.Of(t.AddDate(0, 1, -1)), nil
}

// ordinal is a member's position in the buyer bitmaps.
func ordinal(memberID int64) (uint32, error) {
	o, ok := audience.Ordinal(int(memberID))
	if !ok {
		return 0, fmt.Errorf("member id %d is outside the bitmap range", memberID)
	}
	return o, nil
}

// orBitmap ORs a stored bitmap into acc.
func orBitmap(acc *roaring.Bitmap, data []byte) error {
	if len(data) == 0 {
		return nil
	}
	bm := roaring.New()
	if err := bm.UnmarshalBinary(data); err != nil {
		return fmt.Errorf("reading buyers bitmap: %w", err)
	}
	acc.Or(bm)
	return nil
}

// querier is a pool, a connection or a transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}
