package campaign_test

import (
	"math"
	"testing"
	"time"

	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/campaign"
	"github.com/onemember/onemember/internal/platform/testkit"
)

// The report's attribution, conversion and lift, against a plain
// computation over the raw rows.
func TestReportMatchesPlainComputation(t *testing.T) {
	e := newEnv(t)
	ms := e.members(60)
	tpl := e.template(1000, 1000)
	in := e.oneOff("复盘", couponAction(tpl.ID))
	in.HoldoutPercent, in.AttributionDays = testkit.Ptr(30), testkit.Ptr(7)
	c := e.create(in)
	e.runDue()
	at := e.clock.Now()
	day := 24 * time.Hour

	// Orders around the touch, by member: inside the window, after it,
	// refunded in full, refunded in part, and coupons redeemed late.
	coupons := map[int]int{}
	rows, err := e.sql.QueryContext(t.Context(), `SELECT member_id, id FROM coupons WHERE template_id = $1`, tpl.ID)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var m, id int
		if err := rows.Scan(&m, &id); err != nil {
			t.Fatal(err)
		}
		coupons[m] = id
	}
	rows.Close()
	for i, m := range ms {
		e.order(m, 5000, at.Add(-day)) // before: never attributed
		switch i % 6 {
		case 0:
			e.order(m, 10000, at.Add(day))
		case 1:
			e.order(m, 10000, at.Add(10*day))
		case 2:
			o := e.order(m, 9000, at.Add(2*day))
			e.db.Order.UpdateOne(o).SetStatus("REFUNDED").SetRefundedAmount(9000).ExecX(t.Context())
		case 3:
			o := e.order(m, 8000, at.Add(3*day))
			e.db.Order.UpdateOne(o).SetStatus("PARTIALLY_REFUNDED").SetRefundedAmount(3000).ExecX(t.Context())
		case 4:
			if id, ok := coupons[m]; ok {
				o := e.order(m, 12000, at.Add(20*day))
				e.db.Coupon.UpdateOneID(id).SetStatus(enum.CouponRedeemed).SetOrderID(o.ID).
					SetRedeemedAt(o.PaidAt).ExecX(t.Context())
			}
		case 5:
			if id, ok := coupons[m]; ok { // redeemed inside the window: counted once
				o := e.order(m, 7000, at.Add(day))
				e.db.Coupon.UpdateOneID(id).SetStatus(enum.CouponRedeemed).SetOrderID(o.ID).
					SetRedeemedAt(o.PaidAt).ExecX(t.Context())
			} else {
				e.order(m, 7000, at.Add(6*day))
			}
		}
	}

	got, err := e.svc.Report(t.Context(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := plainReport(t, e, c.ID, 7)
	t.Logf("report %+v lift %v roi %v", *got, deref(got.Lift), deref(got.Roi))
	if got.Targeted != want.Targeted || got.Reached != want.Reached || got.Holdout != want.Holdout ||
		got.CouponsIssued != want.CouponsIssued || got.CouponsRedeemed != want.CouponsRedeemed ||
		got.AttributedOrders != want.AttributedOrders || got.AttributedRevenue != want.AttributedRevenue ||
		got.Cost != want.Cost || !near(got.RedemptionRate, want.RedemptionRate) ||
		!near(got.TreatedConversionRate, want.TreatedConversionRate) ||
		!near(got.HoldoutConversionRate, want.HoldoutConversionRate) ||
		!nearPtr(got.Lift, want.Lift) || !nearPtr(got.Roi, want.Roi) {
		t.Errorf("report\n %+v\nwant\n %+v", *got, want)
	}
	if got.AttributedOrders == 0 || got.Holdout == 0 || got.Lift == nil || got.CouponsRedeemed == 0 {
		t.Errorf("the data should exercise attribution, holdout, redemption and lift: %+v", *got)
	}
}

// plainReport computes the report from the raw rows with the simplest
// SQL and loops.
func plainReport(t *testing.T, e *env, campaignID, days int) campaign.Report {
	t.Helper()
	ctx := t.Context()
	type exec struct {
		member int
		status string
		at     time.Time
		coupon *int
	}
	var execs []exec
	rows, err := e.sql.QueryContext(ctx, `SELECT member_id, status, executed_at, coupon_id FROM campaign_executions WHERE campaign_id = $1`, campaignID)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var x exec
		if err := rows.Scan(&x.member, &x.status, &x.at, &x.coupon); err != nil {
			t.Fatal(err)
		}
		execs = append(execs, x)
	}
	rows.Close()
	type order struct {
		id, member       int
		net              int64
		counts           bool
		paid             time.Time
		redeemsCampaigns bool
	}
	var orders []order
	rows, err = e.sql.QueryContext(ctx, `SELECT o.id, o.member_id, o.amount - o.refunded_amount, o.status <> 'REFUNDED', o.paid_at,
		EXISTS (SELECT 1 FROM coupons c WHERE c.order_id = o.id AND c.source = 'campaign:' || $1::bigint)
		FROM orders o`, campaignID)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var o order
		if err := rows.Scan(&o.id, &o.member, &o.net, &o.counts, &o.paid, &o.redeemsCampaigns); err != nil {
			t.Fatal(err)
		}
		orders = append(orders, o)
	}
	rows.Close()

	var r campaign.Report
	window := time.Duration(days) * 24 * time.Hour
	inWindow := func(x exec, o order) bool {
		return o.member == x.member && !o.paid.Before(x.at) && o.paid.Before(x.at.Add(window))
	}
	groups := map[string]map[int]bool{"REACHED": {}, "HOLDOUT": {}}
	converted := map[string]map[int]bool{"REACHED": {}, "HOLDOUT": {}}
	for _, x := range execs {
		r.Targeted++
		switch x.status {
		case "REACHED":
			r.Reached++
		case "HOLDOUT":
			r.Holdout++
		}
		if x.coupon != nil {
			r.CouponsIssued++
			var status string
			if err := e.sql.QueryRowContext(ctx, `SELECT status FROM coupons WHERE id = $1`, *x.coupon).Scan(&status); err != nil {
				t.Fatal(err)
			}
			if status == "REDEEMED" {
				r.CouponsRedeemed++
			}
		}
		if g := groups[x.status]; g != nil {
			g[x.member] = true
			for _, o := range orders {
				if o.counts && inWindow(x, o) {
					converted[x.status][x.member] = true
				}
			}
		}
	}
	for _, o := range orders {
		if !o.counts {
			continue
		}
		attributed := o.redeemsCampaigns
		for _, x := range execs {
			if x.status == "REACHED" && inWindow(x, o) {
				attributed = true
			}
		}
		if attributed {
			r.AttributedOrders++
			r.AttributedRevenue += o.net
		}
	}
	if r.CouponsIssued > 0 {
		r.RedemptionRate = float64(r.CouponsRedeemed) / float64(r.CouponsIssued)
	}
	if err := e.sql.QueryRowContext(ctx, `SELECT spent FROM campaigns WHERE id = $1`, campaignID).Scan(&r.Cost); err != nil {
		t.Fatal(err)
	}
	if r.Cost > 0 {
		roi := float64(r.AttributedRevenue-r.Cost) / float64(r.Cost)
		r.Roi = &roi
	}
	rate := func(s string) float64 {
		if len(groups[s]) == 0 {
			return 0
		}
		return float64(len(converted[s])) / float64(len(groups[s]))
	}
	r.TreatedConversionRate, r.HoldoutConversionRate = rate("REACHED"), rate("HOLDOUT")
	if r.HoldoutConversionRate > 0 {
		lift := r.TreatedConversionRate/r.HoldoutConversionRate - 1
		r.Lift = &lift
	}
	return r
}

func deref(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func nearPtr(a, b *float64) bool {
	if a == nil || b == nil {
		return a == b
	}
	return near(*a, *b)
}

// dryRunCampaign changes nothing, and its counts are what a real run then
// records.
func TestDryRunMatchesTheRun(t *testing.T) {
	e := newEnv(t)
	ms := e.members(60)
	e.consentAll(ms[:45], "MARKETING_SMS")
	tpl := e.template(100, 100)
	e.clock.Advance(-24 * time.Hour)
	recent := e.oneOff("昨天", couponAction(tpl.ID))
	recent.AudienceID = testkit.Ptr(e.audience(ms[:6]))
	e.create(recent)
	e.runDue()
	e.clock.Advance(24 * time.Hour)

	in := e.oneOff("短信召回", messageAction(enum.MessageSMS, "想你了", "{{displayName}}，好久不见"))
	in.FrequencyCapDays, in.HoldoutPercent, in.Budget = testkit.Ptr(3), testkit.Ptr(20), testkit.Ptr[int64](5*25)
	before := snapshot(e)
	dry, err := e.svc.DryRun(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	if after := snapshot(e); after != before {
		t.Fatalf("dry run changed the database: %v → %v", before, after)
	}
	c := e.create(in)
	e.runDue()
	count := func(statuses ...string) int {
		n := 0
		for _, s := range statuses {
			n += e.count(`SELECT count(*) FROM campaign_executions WHERE campaign_id = $1 AND status = $2`, c.ID, s)
		}
		return n
	}
	targeted := count("REACHED", "HOLDOUT", "SUPPRESSED_CONSENT", "SUPPRESSED_CAP", "SUPPRESSED_PRIORITY", "SUPPRESSED_BUDGET", "FAILED")
	afterConsent := targeted - count("SUPPRESSED_CONSENT")
	afterCaps := afterConsent - count("SUPPRESSED_CAP", "SUPPRESSED_PRIORITY")
	want := campaign.DryRun{Targeted: targeted, AfterConsent: afterConsent, AfterCaps: afterCaps,
		Holdout: count("HOLDOUT"), EstimatedCost: e.campaign(c.ID).Spent}
	if *dry != want {
		t.Errorf("dry run %+v, the run recorded %+v", *dry, want)
	}
	// Each guard had something to do.
	if dry.Targeted == dry.AfterConsent || dry.AfterConsent == dry.AfterCaps || dry.Holdout == 0 ||
		count("SUPPRESSED_BUDGET") == 0 {
		t.Errorf("dry run %+v (budget suppressed %d): want every guard exercised", *dry, count("SUPPRESSED_BUDGET"))
	}
}

// snapshot counts what a dry run must not change.
func snapshot(e *env) [5]int {
	return [5]int{
		e.count(`SELECT count(*) FROM campaigns`),
		e.count(`SELECT count(*) FROM campaign_executions`),
		e.count(`SELECT count(*) FROM coupons`),
		e.count(`SELECT count(*) FROM jobs`),
		e.count(`SELECT count(*) FROM member_events`),
	}
}
