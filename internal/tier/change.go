package tier

import (
	"context"
	"fmt"
	"time"

	"entgo.io/ent/dialect/sql"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/growthentry"
	"github.com/onemember/onemember/ent/order"
	"github.com/onemember/onemember/ent/tierchange"
	"github.com/onemember/onemember/internal/events"
)

// Reevaluate promotes the member of acct when their growth value, spend
// this month and successful referrals make a higher tier eligible, in the
// caller's transaction, and returns the change (nil when none). It may skip
// levels, and never demotes: only Review moves members down.
//
// acct must be the member's account locked in tx (account.Lock). It is
// refreshed from its row first, so a caller that changed balances with an
// UPDATE need not reload it, and stays usable for the caller's own
// events.Emit calls afterwards (its event_seq is kept in step).
func (s *Service) Reevaluate(ctx context.Context, tx *ent.Tx, acct *ent.Account, reason string) (*ent.TierChange, error) {
	now := s.now()
	fresh, err := tx.Account.Get(ctx, acct.ID)
	if err != nil {
		return nil, fmt.Errorf("reading account of member %d: %w", acct.MemberID, err)
	}
	*acct = *fresh
	m, err := tx.Member.Get(ctx, acct.MemberID)
	if err != nil {
		return nil, fmt.Errorf("reading member %d: %w", acct.MemberID, err)
	}
	if !live(m) {
		return nil, nil
	}
	ladder, err := loadLadder(ctx, tx.Tier)
	if err != nil {
		return nil, err
	}
	var current *ent.Tier
	if i := indexOf(ladder, m.TierID); i >= 0 {
		current = ladder[i]
	}

	// Most events (a check-in, a small purchase) promote nobody. Probing
	// with lifetime growth and unlimited spend first settles those without
	// summing anything: both only ever narrow the choice.
	best := Eligible(ladder, acct.GrowthValue, unlimited, acct.SuccessfulReferrals)
	if best == nil || (current != nil && best.Rank <= current.Rank) {
		return nil, nil
	}
	// Promotion counts the growth of the last 12 months, as the retention
	// review does: with lifetime growth a member demoted at review would be
	// promoted straight back by the next check-in.
	growth, err := growthBetween(ctx, tx.GrowthEntry, m.ID, now.AddDate(-1, 0, 0), now.Add(time.Nanosecond))
	if err != nil {
		return nil, err
	}
	best = Eligible(ladder, growth, unlimited, acct.SuccessfulReferrals)
	if best == nil || (current != nil && best.Rank <= current.Rank) {
		return nil, nil
	}
	if best.MonthlySpendRequired > 0 {
		from, to := monthBounds(now, s.zone)
		spend, err := monthSpend(ctx, tx.Order, m.ID, from, to)
		if err != nil {
			return nil, err
		}
		best = Eligible(ladder, growth, spend, acct.SuccessfulReferrals)
		if best == nil || (current != nil && best.Rank <= current.Rank) {
			return nil, nil
		}
	}
	return s.change(ctx, tx, acct, m, current, best, tierchange.DirectionUP, reason, now)
}

// change moves the member from one tier to another: the history row, the
// member's tier, the start of the new review period and the TierChanged
// event with its notification, all in tx under the account lock.
func (s *Service) change(ctx context.Context, tx *ent.Tx, acct *ent.Account, m *ent.Member,
	from, to *ent.Tier, dir tierchange.Direction, reason string, at time.Time,
) (*ent.TierChange, error) {
	create := tx.TierChange.Create().SetMemberID(m.ID).SetToTierID(to.ID).
		SetDirection(dir).SetReason(reason).SetChangedAt(at)
	payload := map[string]any{
		"direction":  string(dir),
		"fromTierId": nil,
		"fromCode":   nil,
		"toTierId":   to.ID,
		"toCode":     to.Code,
		"reason":     reason,
	}
	if from != nil {
		create.SetFromTierID(from.ID)
		payload["fromTierId"] = from.ID
		payload["fromCode"] = from.Code
	}
	tc, err := create.Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("recording tier change of member %d: %w", m.ID, err)
	}
	if err := tx.Member.UpdateOneID(m.ID).SetTierID(to.ID).Exec(ctx); err != nil {
		return nil, fmt.Errorf("setting tier of member %d: %w", m.ID, err)
	}
	if err := tx.Account.UpdateOneID(acct.ID).SetTierSince(at).Exec(ctx); err != nil {
		return nil, fmt.Errorf("starting review period of member %d: %w", m.ID, err)
	}
	acct.TierSince = &at
	m.TierID = &to.ID

	ev := events.Event{Type: events.TierChanged, Payload: payload}
	switch {
	case dir == tierchange.DirectionDOWN:
		ev.Title = "会员等级调整为" + to.Name
		ev.Body = fmt.Sprintf("近%d个月成长值未达到%s保级要求，您的会员等级已调整为%s。", windowMonths, from.Name, to.Name)
	case from == nil:
		ev.Title = "欢迎成为" + to.Name
		ev.Body = "您已成为" + to.Name + "，尽享会员权益。"
	default:
		ev.Title = "恭喜升级为" + to.Name
		ev.Body = "您已升级为" + to.Name + "，尽享更多会员权益。"
	}
	if _, err := events.Emit(ctx, tx, acct, at, ev); err != nil {
		return nil, err
	}
	return tc, nil
}

// monthSpend is the member's spend paid in [from, to), net of refunds, in
// fen.
func monthSpend(ctx context.Context, orders *ent.OrderClient, memberID int, from, to time.Time) (int64, error) {
	n, err := orders.Query().
		Where(order.MemberID(memberID), order.PaidAtGTE(from), order.PaidAtLT(to)).
		Aggregate(func(s *sql.Selector) string {
			return fmt.Sprintf("COALESCE(SUM(%s - %s), 0)", s.C(order.FieldAmount), s.C(order.FieldRefundedAmount))
		}).
		Int(ctx)
	if err != nil {
		return 0, fmt.Errorf("summing spend of member %d: %w", memberID, err)
	}
	return int64(n), nil
}

// growthBetween is the member's net growth with occurred_at in (from, to].
func growthBetween(ctx context.Context, entries *ent.GrowthEntryClient, memberID int, from, to time.Time) (int64, error) {
	n, err := entries.Query().
		Where(growthentry.MemberID(memberID), growthentry.OccurredAtGT(from), growthentry.OccurredAtLTE(to)).
		Aggregate(func(s *sql.Selector) string {
			return fmt.Sprintf("COALESCE(SUM(%s), 0)", s.C(growthentry.FieldAmount))
		}).
		Int(ctx)
	if err != nil {
		return 0, fmt.Errorf("summing growth of member %d: %w", memberID, err)
	}
	return int64(n), nil
}
