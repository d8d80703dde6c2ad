// Package analytics owns the RFM and AIPL models of the data centre
// (DOMAIN.md, "Data centre"): defining them, computing an RFM model's
// per-member results into rfm_results, and reading a model's segments,
// a member's results and the AIPL funnel (snapshot, trend, flow, a
// member's stage and the members at a stage) for any business date.
//
// # RFM
//
// ComputeRfm takes the model's orders paid in the last window_days days
// (not REFUNDED; within the model's business units and channels when it
// names any) and gives every ACTIVE or FROZEN member with at least one
// such order a result: R = business-zone calendar days from the day of the
// last such order to today (0: bought today; an order stamped after now,
// by a till whose clock runs ahead, counts as today too), F = the number
// of such orders, M = the sum of amount − refunded_amount over them
// (fen). Each of R, F and M is split by the mean or the median over those
// members, or by the model's custom values; a value equal to the split
// counts as high (R is high when it is at most the split, F and M when
// they are at least it). The three high/low answers pick one of the eight
// segments.
//
// The whole computation is one transaction: the model row is locked first
// (FOR UPDATE, so two computations of one model run one after the other),
// the model's old results are deleted and one INSERT … SELECT computes the
// aggregates, the splits and the segments and, in the same statement,
// stores the splits and computed_at on the model.
//
// # AIPL
//
// AIPL stages are computed on read, never stored. A member's stage on
// business date D counts what happened in the window (end(D) − window_days
// days, end(D)], where end(D) is the start of D+1 in the business zone:
// behaviour events of the kinds listed for each stage, and, for the kinds
// PURCHASE and REPURCHASE, paid orders that are not REFUNDED (one order,
// one purchase; purchases are not read from behavior_events). The model's
// channels, when it names any, filter events and orders alike. The stage
// is the highest reached: LOYALTY (at least loyalty_min_purchases
// purchases, and a SHARE event in the window when loyalty_require_share),
// PURCHASE (a purchase), INTEREST, AWARENESS, else NONE. Every count is
// over the members who are ACTIVE or FROZEN now and registered before
// end(D); in a flow, members registered after the first date count as
// NONE on it. Each answer for one date (for a flow, one pair of dates) is
// one SQL statement, reading events through behavior_events_kind (kind,
// occurred_at, member_id) and orders through their paid_at index; a
// trend's statements share one read-only snapshot of the database.
package analytics

import (
	"database/sql"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Bounds of a model definition.
const (
	MaxNameLength = 100
	MaxWindowDays = 3650
	// MaxTrendPoints bounds the snapshots of one AiplTrend call.
	MaxTrendPoints = 400
)

// Errors.
var (
	ErrRfmModelNotFound  = fault.New(fault.NotFound, "RFM model not found")
	ErrAiplModelNotFound = fault.New(fault.NotFound, "AIPL model not found")
	ErrMemberNotFound    = fault.New(fault.NotFound, "member not found")
)

// memberStatuses are the statuses of the members the models count.
const memberStatuses = `('ACTIVE', 'FROZEN')`

// Service defines the models and computes them.
type Service struct {
	db   *ent.Client
	sql  *sql.DB
	zone *time.Location
	now  func() time.Time
}

// New builds a Service. sqlDB is the pool under db, for the set-based
// reads; zone is the business time zone (an IANA name, which PostgreSQL
// must know too: RFM recency is reckoned in it); now is the clock.
func New(db *ent.Client, sqlDB *sql.DB, zone *time.Location, now func() time.Time) *Service {
	return &Service{db: db, sql: sqlDB, zone: zone, now: now}
}

// validateName reports a blank or too long model name.
func validateName(name string) error {
	switch n := utf8.RuneCountInString(strings.TrimSpace(name)); {
	case n == 0:
		return fault.Invalidf("name", "is required")
	case n > MaxNameLength:
		return fault.Invalidf("name", "is longer than %d characters", MaxNameLength)
	}
	return nil
}

// validateWindow reports a window outside 1..MaxWindowDays.
func validateWindow(days int) error {
	if days < 1 || days > MaxWindowDays {
		return fault.Invalidf("windowDays", "must be between 1 and %d", MaxWindowDays)
	}
	return nil
}

// unique returns vs without repeats, in first-seen order.
func unique[T comparable](vs []T) []T {
	seen := make(map[T]bool, len(vs))
	out := make([]T, 0, len(vs))
	for _, v := range vs {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

// strs converts a slice of string-kinded values for a text[] parameter.
func strs[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}
