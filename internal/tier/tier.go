// Package tier owns the membership ladder (等级) and every member's place on
// it: the promotion rule (Eligible, Reevaluate), the retention review that
// moves members down (Review), the explainable status a member sees
// (Status), the tier history, ladder configuration (Upsert) and what-if
// replays of a proposed ladder (Simulate).
//
// A member's tier changes only under the member's account lock
// (account.Lock): the lock serializes a promotion against a concurrent
// review of the same member, and the event sequence the TierChanged event
// takes comes from the same row.
package tier

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/member"
	enttier "github.com/onemember/onemember/ent/tier"
	"github.com/onemember/onemember/internal/platform/ttlcache"
)

// windowMonths is the length of the retention window: at a review the
// growth earned in the last 12 months must reach the tier's threshold
// (DOMAIN.md). It is fixed, unlike the review cadence (retention_months).
const windowMonths = 12

// Service applies the tier rules.
type Service struct {
	db          *ent.Client
	zone        *time.Location
	now         func() time.Time
	reviewBatch int
	// display caches the ladder for what members are shown (status, the
	// card's tier); rules that change tiers always read the table.
	display ttlcache.Value[[]*ent.Tier]
}

// New returns a Service. zone is the business time zone (calendar months
// for monthly spend and month arithmetic for reviews); now is the clock,
// injectable so that reviews can be tested at a chosen instant.
func New(db *ent.Client, zone *time.Location, now func() time.Time) *Service {
	if zone == nil {
		zone = time.UTC
	}
	if now == nil {
		now = time.Now
	}
	return &Service{db: db, zone: zone, now: now, reviewBatch: defaultReviewBatch, display: ttlcache.Value[[]*ent.Tier]{TTL: displayTTL}}
}

// Ladder returns the tiers by rank, lowest first.
//
// It reads the table every time rather than caching: the ladder is a
// handful of rows on a unique index, and a cache on one replica could not
// be invalidated by an Upsert served by another, which would promote
// members against a stale ladder. What members are shown (Status,
// Display) may lag an Upsert by displayTTL instead.
func (s *Service) Ladder(ctx context.Context) ([]*ent.Tier, error) {
	return loadLadder(ctx, s.db.Tier)
}

func loadLadder(ctx context.Context, tiers *ent.TierClient) ([]*ent.Tier, error) {
	l, err := tiers.Query().Order(enttier.ByRank()).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading tier ladder: %w", err)
	}
	return l, nil
}

// Eligible returns the highest-ranked tier of ladder that a member with
// this growth value, spend this month (fen, net of refunds) and number of
// successful referrals qualifies for, or nil when none. Each tier's extra
// conditions stand on their own: DIAMOND needs a referral but not GOLD's
// monthly spend. The order of ladder does not matter.
func Eligible(ladder []*ent.Tier, growth int64, monthSpend int64, referrals int) *ent.Tier {
	var best *ent.Tier
	for _, t := range ladder {
		if growth >= t.Threshold && monthSpend >= t.MonthlySpendRequired &&
			referrals >= t.ReferralsRequired && (best == nil || t.Rank > best.Rank) {
			best = t
		}
	}
	return best
}

// indexOf returns the position of tier id in ladder, or -1.
func indexOf(ladder []*ent.Tier, id *int) int {
	if id == nil {
		return -1
	}
	for i, t := range ladder {
		if t.ID == *id {
			return i
		}
	}
	return -1
}

// live reports whether a member still holds a place on the ladder: merged
// and erased members keep their rows for lineage only.
func live(m *ent.Member) bool {
	return m.Status == member.StatusACTIVE || m.Status == member.StatusFROZEN
}

// periodStart is when the member's current review period began: the last
// tier change or kept review, or registration for a member never moved.
func periodStart(acct *ent.Account, m *ent.Member) time.Time {
	if acct.TierSince != nil {
		return *acct.TierSince
	}
	return m.RegisteredAt
}

// addMonths moves t by n calendar months in loc, keeping the wall clock and
// clamping the day to the end of a shorter month (Jan 31 + 1 month = Feb
// 28), which is also how PostgreSQL adds a month interval; time.AddDate
// would overflow into March instead.
func addMonths(t time.Time, n int, loc *time.Location) time.Time {
	l := t.In(loc)
	y, m, d := l.Date()
	first := time.Date(y, m+time.Month(n), 1, 0, 0, 0, 0, loc)
	if last := daysIn(first.Year(), first.Month(), loc); d > last {
		d = last
	}
	return time.Date(first.Year(), first.Month(), d, l.Hour(), l.Minute(), l.Second(), l.Nanosecond(), loc)
}

func daysIn(y int, m time.Month, loc *time.Location) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, loc).Day()
}

// monthBounds returns the calendar month of t in loc as [start, end).
func monthBounds(t time.Time, loc *time.Location) (time.Time, time.Time) {
	y, m, _ := t.In(loc).Date()
	start := time.Date(y, m, 1, 0, 0, 0, 0, loc)
	return start, start.AddDate(0, 1, 0)
}

// unlimited stands for "any amount of spend" when probing whether spend
// could matter at all.
const unlimited = math.MaxInt64

// displayTTL is how long members may be shown a ladder after an Upsert on
// another replica (this replica's Upserts drop the cache at once).
const displayTTL = 2 * time.Second

// Display returns the tier with this id as members are shown it (from the
// display cache), or nil.
func (s *Service) Display(ctx context.Context, id *int) (*ent.Tier, error) {
	if id == nil {
		return nil, nil
	}
	l, err := s.display.Get(ctx, func(ctx context.Context) ([]*ent.Tier, error) { return loadLadder(ctx, s.db.Tier) })
	if err != nil {
		return nil, err
	}
	if i := indexOf(l, id); i >= 0 {
		return l[i], nil
	}
	return nil, nil
}
