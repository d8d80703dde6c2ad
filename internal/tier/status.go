package tier

import (
	"context"
	"fmt"
	"time"

	"entgo.io/ent/dialect/sql"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/tierchange"
	"github.com/onemember/onemember/internal/account"
)

// Status explains a member's tier (DOMAIN.md, "explainable tier").
type Status struct {
	// ReviewAt is when retention is next reviewed: retention_months after
	// the start of the review period. A review that is due but not yet run
	// shows its due instant (in the past). The lowest tier is never
	// reviewed; for it ReviewAt is the next anniversary of the period
	// start, where a review would fall.
	ReviewAt time.Time
	// GrowthInWindow is the growth earned so far that the review will
	// count: net growth in the 12 months before ReviewAt (before now when
	// the review is already due), up to now. Growth that will have left the
	// window by ReviewAt is not counted, so a member is never told they are
	// safe while their figures are about to expire.
	GrowthInWindow int64
	// GrowthToRetain is the growth still needed by ReviewAt to keep the
	// current tier: max(0, threshold - GrowthInWindow).
	GrowthToRetain int64
	// Projected is the tier after the review if nothing more is earned:
	// Current, or the tier one below when GrowthToRetain > 0.
	Projected *ent.Tier
	// Current is the member's tier (nil for a member not yet placed).
	Current *ent.Tier
	// Next is the tier one rank up, nil at the top.
	Next *ent.Tier
	// ToNext is the growth value still missing for Next's threshold (the
	// promotion rule counts the last 12 months' growth); Next's other
	// conditions (monthly spend, referrals) are not included.
	ToNext int64
}

// Status returns the explainable tier status of a member, read through db
// (a client, or a transaction's client for a consistent read).
func (s *Service) Status(ctx context.Context, db *ent.Client, memberID int) (Status, error) {
	m, err := db.Member.Get(ctx, memberID)
	if ent.IsNotFound(err) {
		return Status{}, account.ErrMemberNotFound
	}
	if err != nil {
		return Status{}, fmt.Errorf("reading member %d: %w", memberID, err)
	}
	acct, err := account.Get(ctx, db, memberID)
	if err != nil {
		return Status{}, fmt.Errorf("reading account of member %d: %w", memberID, err)
	}
	return s.StatusOf(ctx, db, m, acct)
}

// StatusOf is Status for a member and account the caller already loaded
// (a page that shows balances has them at hand).
func (s *Service) StatusOf(ctx context.Context, db *ent.Client, m *ent.Member, acct *ent.Account) (Status, error) {
	ladder, err := s.display.Get(ctx, func(ctx context.Context) ([]*ent.Tier, error) { return loadLadder(ctx, db.Tier) })
	if err != nil {
		return Status{}, err
	}
	now := s.now()

	var st Status
	i := indexOf(ladder, m.TierID)
	// Promotion counts the last 12 months' growth (Reevaluate); retention
	// the review window's. One statement sums both.
	promotionFrom := now.AddDate(-1, 0, 0)
	windowFrom := promotionFrom
	if i >= 0 {
		st.Current = ladder[i]
		st.Projected = st.Current
		start := periodStart(acct, m)
		st.ReviewAt = addMonths(start, st.Current.RetentionMonths, s.zone)
		if i == 0 {
			// Count periods from the start rather than adding to the previous
			// anniversary, so that a clamped month end (Feb 28) does not
			// stick for the years after.
			for k := 2; !st.ReviewAt.After(now); k++ {
				st.ReviewAt = addMonths(start, k*st.Current.RetentionMonths, s.zone)
			}
		}
		windowFrom = addMonths(later(st.ReviewAt, now), -windowMonths, s.zone)
	}
	recent, inWindow, err := growthSince(ctx, db, m.ID, promotionFrom, windowFrom, now)
	if err != nil {
		return Status{}, err
	}
	if i+1 < len(ladder) {
		st.Next = ladder[i+1]
		st.ToNext = max(0, st.Next.Threshold-recent)
	}
	if i < 0 {
		return st, nil
	}

	st.GrowthInWindow = inWindow
	st.GrowthToRetain = max(0, st.Current.Threshold-st.GrowthInWindow)
	if st.GrowthToRetain > 0 && i > 0 {
		st.Projected = ladder[i-1]
	}
	return st, nil
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// History returns the member's tier changes, newest first, with the from
// and to tiers loaded.
func (s *Service) History(ctx context.Context, db *ent.Client, memberID int) ([]*ent.TierChange, error) {
	h, err := db.TierChange.Query().
		Where(tierchange.MemberID(memberID)).
		Order(tierchange.ByChangedAt(sql.OrderDesc()), tierchange.ByID(sql.OrderDesc())).
		WithFrom().WithTo().
		All(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading tier history of member %d: %w", memberID, err)
	}
	return h, nil
}

// growthSince sums the member's growth with occurred_at in (a, now] and in
// (b, now] in one statement.
func growthSince(ctx context.Context, db *ent.Client, memberID int, a, b, now time.Time) (sumA, sumB int64, err error) {
	rows, err := db.QueryContext(ctx, `SELECT
		COALESCE(SUM(amount) FILTER (WHERE occurred_at > $2), 0),
		COALESCE(SUM(amount) FILTER (WHERE occurred_at > $3), 0)
	FROM growth_entries WHERE member_id = $1 AND occurred_at > LEAST($2, $3) AND occurred_at <= $4`,
		memberID, a, b, now)
	if err != nil {
		return 0, 0, fmt.Errorf("summing growth of member %d: %w", memberID, err)
	}
	defer rows.Close()
	if rows.Next() {
		err = rows.Scan(&sumA, &sumB)
	}
	if err == nil {
		err = rows.Err()
	}
	if err != nil {
		return 0, 0, fmt.Errorf("summing growth of member %d: %w", memberID, err)
	}
	return sumA, sumB, nil
}
