package campaign

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/platform/calendar"
)

// reportSQL computes a campaign's report in one statement ($1 the
// campaign, $2 its attribution days). An order "counts" unless it was
// refunded in full (status REFUNDED); its revenue is amount −
// refunded_amount.
const reportSQL = `WITH ex AS (
	SELECT status, member_id, executed_at, coupon_id FROM campaign_executions WHERE campaign_id = $1
), counts AS (
	SELECT count(*) AS targeted,
		count(*) FILTER (WHERE status = 'REACHED') AS reached,
		count(*) FILTER (WHERE status = 'SUPPRESSED_CONSENT') AS consent,
		count(*) FILTER (WHERE status IN ('SUPPRESSED_CAP', 'SUPPRESSED_PRIORITY', 'SUPPRESSED_BUDGET')) AS capped,
		count(*) FILTER (WHERE status = 'HOLDOUT') AS holdout,
		count(coupon_id) AS issued
	FROM ex
), redeemed AS (
	SELECT count(*) AS n FROM ex JOIN coupons c ON c.id = ex.coupon_id WHERE c.status = 'REDEEMED'
), attributed AS (
	SELECT o.id, o.amount - o.refunded_amount AS net
	FROM ex JOIN orders o ON o.member_id = ex.member_id
		AND o.paid_at >= ex.executed_at AND o.paid_at < ex.executed_at + make_interval(days => $2)
	WHERE ex.status = 'REACHED' AND o.status <> 'REFUNDED'
	UNION
	SELECT o.id, o.amount - o.refunded_amount
	FROM ex JOIN coupons c ON c.id = ex.coupon_id JOIN orders o ON o.id = c.order_id
	WHERE o.status <> 'REFUNDED'
), groups AS (
	SELECT ex.status, count(DISTINCT ex.member_id) AS members,
		count(DISTINCT ex.member_id) FILTER (WHERE EXISTS (
			SELECT 1 FROM orders o WHERE o.member_id = ex.member_id AND o.status <> 'REFUNDED'
			AND o.paid_at >= ex.executed_at AND o.paid_at < ex.executed_at + make_interval(days => $2))) AS converted
	FROM ex WHERE ex.status IN ('REACHED', 'HOLDOUT') GROUP BY ex.status
)
SELECT counts.targeted, counts.reached, counts.consent, counts.capped, counts.holdout, counts.issued,
	redeemed.n,
	(SELECT count(*) FROM attributed), (SELECT coalesce(sum(net), 0) FROM attributed),
	coalesce((SELECT members FROM groups WHERE status = 'REACHED'), 0),
	coalesce((SELECT converted FROM groups WHERE status = 'REACHED'), 0),
	coalesce((SELECT members FROM groups WHERE status = 'HOLDOUT'), 0),
	coalesce((SELECT converted FROM groups WHERE status = 'HOLDOUT'), 0),
	(SELECT spent FROM campaigns WHERE id = $1)
FROM counts, redeemed`

// Report is a campaign's effect (营销复盘), computed from the database in
// one statement (reportSQL):
//
//   - targeted: its executions of every status; reached, holdout and
//     suppressedByConsent: those of that status; suppressedByCap: those
//     SUPPRESSED_CAP, SUPPRESSED_PRIORITY or SUPPRESSED_BUDGET (FAILED
//     ones count in targeted only).
//   - couponsIssued: the executions that issued a coupon; couponsRedeemed:
//     those coupons now REDEEMED; redemptionRate = redeemed / issued (0
//     without coupons).
//   - attributedOrders and attributedRevenue: the orders that count (not
//     refunded in full) that redeemed one of the campaign's coupons, or
//     that a REACHED member placed (paid_at) within attributionDays after
//     that execution; each order once, its revenue net of refunds.
//   - cost: what the executions committed (campaigns.spent, read in
//     the statement that counts them, so both are of one snapshot); roi =
//     (attributedRevenue − cost) / cost, nil without cost.
//   - treatedConversionRate and holdoutConversionRate: the share of the
//     distinct members REACHED (resp. HOLDOUT) with an order that counts
//     within attributionDays after one of their executions of that
//     status (0 for an empty group); lift = treated / holdout − 1, nil
//     when the holdout group did not convert.
func (s *Service) Report(ctx context.Context, campaignID int) (*Report, error) {
	c, err := s.db.Campaign.Get(ctx, campaignID)
	if ent.IsNotFound(err) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("reading campaign %d: %w", campaignID, err)
	}
	var (
		r                                                   Report
		treated, treatedConv, holdoutMembers, holdoutConv   int64
		targeted, reached, consent, capped, holdout, issued int64
		redeemed, orders                                    int64
	)
	err = s.sql.QueryRowContext(ctx, reportSQL, c.ID, c.AttributionDays).Scan(&targeted, &reached, &consent, &capped,
		&holdout, &issued, &redeemed, &orders, &r.AttributedRevenue, &treated, &treatedConv, &holdoutMembers, &holdoutConv,
		&r.Cost)
	if err != nil {
		return nil, fmt.Errorf("computing campaign %d's report: %w", c.ID, err)
	}
	r.Targeted, r.Reached, r.SuppressedByConsent, r.SuppressedByCap = int(targeted), int(reached), int(consent), int(capped)
	r.Holdout, r.CouponsIssued, r.CouponsRedeemed, r.AttributedOrders = int(holdout), int(issued), int(redeemed), int(orders)
	r.RedemptionRate = ratio(redeemed, issued)
	if r.Cost > 0 {
		roi := float64(r.AttributedRevenue-r.Cost) / float64(r.Cost)
		r.Roi = &roi
	}
	r.TreatedConversionRate = ratio(treatedConv, treated)
	r.HoldoutConversionRate = ratio(holdoutConv, holdoutMembers)
	if r.HoldoutConversionRate > 0 {
		lift := r.TreatedConversionRate/r.HoldoutConversionRate - 1
		r.Lift = &lift
	}
	return &r, nil
}

func ratio(n, d int64) float64 {
	if d == 0 {
		return 0
	}
	return float64(n) / float64(d)
}

// dryRunWindow is how far back dryRunCampaign looks for event triggers.
const dryRunWindow = 30 * 24 * time.Hour

// DryRun answers what the campaign in would do now, changing nothing.
// "Now" depends on the trigger: for time triggers, the members its run
// would select if it ran now (ONE_OFF, SCHEDULED and HOLIDAY: every
// ACTIVE member of the audience; the daily triggers: today's selection);
// for event triggers, the members it would have reacted to over the last
// 30 days (one occurrence each). The guards are those of a real run, in
// the same order, against the executions recorded so far: consent
// (afterConsent), then maxPerMember, frequencyCapDays and, for time
// triggers, the ACTIVE time-triggered campaigns that would take the
// members today by a higher priority (afterCaps), then
// the holdout (whose hash a campaign gets from its name and start, so the
// count is exact), then the budget: estimatedCost is what acting on the
// rest costs within the budget. Coupon stock and per-member limits are not
// checked.
func (s *Service) DryRun(ctx context.Context, in CreateInput) (*DryRun, error) {
	if err := s.validate(ctx, in); err != nil {
		return nil, err
	}
	in = normalize(in)
	now := s.now().UTC()
	c := &ent.Campaign{Name: in.Name, TriggerKind: in.Trigger.Kind, Trigger: *in.Trigger, Actions: in.Actions,
		AudienceID: in.AudienceID, StartsAt: in.StartsAt, EndsAt: in.EndsAt, MaxPerMember: in.MaxPerMember,
		FrequencyCapDays: in.FrequencyCapDays, Budget: in.Budget, Status: enum.CampaignDraft}
	if in.HoldoutPercent != nil {
		c.HoldoutPercent = *in.HoldoutPercent
	}
	if in.Priority != nil {
		c.Priority = *in.Priority
	}
	p, err := s.loadPlan(ctx, c)
	if err != nil {
		return nil, err
	}
	var (
		cands []cand
		taken []int
	)
	if isEvent(c.TriggerKind) {
		from := now.Add(-dryRunWindow)
		ms, err := s.recordedBetween(ctx, p, from, now)
		if err != nil {
			return nil, err
		}
		all, err := s.selectEvents(ctx, p, ms, from, &now)
		if err != nil {
			return nil, err
		}
		for _, cd := range all { // one occurrence per member
			if len(cands) == 0 || cands[len(cands)-1].member != cd.member {
				cands = append(cands, cd)
			}
		}
	} else {
		if cands, err = s.selectTime(ctx, p, now, 0); err != nil {
			return nil, err
		}
		if taken, err = s.takenByHigher(ctx, p, calendar.In(now, s.zone)); err != nil {
			return nil, err
		}
	}
	ws := make([]*work, len(cands))
	for i, cd := range cands {
		_, lost := slices.BinarySearch(taken, cd.member)
		ws[i] = &work{p: p, member: cd.member, occurrence: cd.occurrence, lost: lost}
	}
	out := &DryRun{Targeted: len(ws)}
	if len(ws) == 0 {
		return out, nil
	}
	g, err := s.loadGuards(ctx, s.sql, ws, now)
	if err != nil {
		return nil, err
	}
	for _, w := range ws {
		g.decide(w)
		switch w.status {
		case enum.ExecutionSuppressedConsent:
			continue
		case enum.ExecutionSuppressedCap, enum.ExecutionSuppressedPriority:
			out.AfterConsent++
			continue
		}
		out.AfterConsent++
		out.AfterCaps++
		if w.status == enum.ExecutionHoldout {
			out.Holdout++
		}
		out.EstimatedCost += w.cost
	}
	return out, nil
}

var _ querier = (*sql.DB)(nil)
