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
	p, err := s.PlanStatus(ctx, db, m)
	if err != nil {
		return Status{}, err
	}
	recent, inWindow, err := growthSince(ctx, db, m.ID, p.PromotionFrom(), p.WindowFrom(acct.TierSince), p.now)
	if err != nil {
		return Status{}, err
	}
	return p.Finish(acct.TierSince, recent, inWindow), nil
}

// StatusPlan is a member's tier status before its figures are read: the
// ladder (from the display cache), the clock and the promotion window are
// known from the member alone. A caller that reads the account and the
// growth sums in a statement of its own (the member's card, one round trip
// for the whole home page) takes the windows from the plan and finishes
// the status with Finish; StatusOf is the same with statements of its own.
type StatusPlan struct {
	member *ent.Member
	ladder []*ent.Tier
	i      int // the member's tier in ladder, -1 for none
	now    time.Time
	zone   *time.Location
}

// PlanStatus plans the status of m (see StatusPlan). db reads the ladder
// when the display cache has none.
func (s *Service) PlanStatus(ctx context.Context, db *ent.Client, m *ent.Member) (StatusPlan, error) {
	ladder, err := s.display.Get(ctx, func(ctx context.Context) ([]*ent.Tier, error) { return loadLadder(ctx, db.Tier) })
	if err != nil {
		return StatusPlan{}, err
	}
	// The database keeps microseconds: an instant the plan derives from now
	// and one PostgreSQL derives from it in SQL are then comparable.
	return StatusPlan{member: m, ladder: ladder, i: indexOf(ladder, m.TierID),
		now: s.now().Truncate(time.Microsecond), zone: s.zone}, nil
}

// Now is the instant the status describes.
func (p StatusPlan) Now() time.Time { return p.now }

// Zone is the business time zone the review dates are computed in.
func (p StatusPlan) Zone() *time.Location { return p.zone }

// PromotionFrom is where the promotion window starts: the promotion rule
// (Reevaluate) counts growth in (PromotionFrom, Now].
func (p StatusPlan) PromotionFrom() time.Time { return p.now.AddDate(-1, 0, 0) }

// Review says how the member's review falls, for callers that compute the
// retention window in SQL: held is false for a member on no tier (the
// window is then the promotion window); otherwise the review is
// everyMonths after the period start (the account's tier_since, or
// registration), and for the lowest tier, which is never reviewed,
// recurring says it falls on the first such anniversary after Now.
// WindowFrom is the rule; SQL computing it must be checked against it.
func (p StatusPlan) Review() (everyMonths int, recurring, held bool) {
	if p.i < 0 {
		return 0, false, false
	}
	return p.ladder[p.i].RetentionMonths, p.i == 0, true
}

// WindowFrom is where the retention window starts for a member whose
// account has tierSince (nil when never moved): the review counts growth
// in (WindowFrom, Now].
func (p StatusPlan) WindowFrom(tierSince *time.Time) time.Time {
	if p.i < 0 {
		return p.PromotionFrom()
	}
	return addMonths(later(p.reviewAt(tierSince), p.now), -windowMonths, p.zone)
}

// reviewAt is Status.ReviewAt of a member on a tier.
func (p StatusPlan) reviewAt(tierSince *time.Time) time.Time {
	start := p.member.RegisteredAt
	if tierSince != nil {
		start = *tierSince
	}
	every := p.ladder[p.i].RetentionMonths
	at := addMonths(start, every, p.zone)
	if p.i == 0 {
		// Count periods from the start rather than adding to the previous
		// anniversary, so that a clamped month end (Feb 28) does not
		// stick for the years after.
		for k := 2; !at.After(p.now); k++ {
			at = addMonths(start, k*every, p.zone)
		}
	}
	return at
}

// Finish is the status of a member whose account has tierSince, with
// recent the net growth in the promotion window and inWindow that in the
// retention window (see PromotionFrom and WindowFrom).
func (p StatusPlan) Finish(tierSince *time.Time, recent, inWindow int64) Status {
	var st Status
	if p.i+1 < len(p.ladder) {
		st.Next = p.ladder[p.i+1]
		st.ToNext = max(0, st.Next.Threshold-recent)
	}
	if p.i < 0 {
		return st
	}
	st.Current = p.ladder[p.i]
	st.Projected = st.Current
	st.ReviewAt = p.reviewAt(tierSince)
	st.GrowthInWindow = inWindow
	st.GrowthToRetain = max(0, st.Current.Threshold-st.GrowthInWindow)
	if st.GrowthToRetain > 0 && p.i > 0 {
		st.Projected = p.ladder[p.i-1]
	}
	return st
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
