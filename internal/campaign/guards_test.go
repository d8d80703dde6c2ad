package campaign_test

import (
	"testing"
	"time"

	entjob "github.com/onemember/onemember/ent/job"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/campaign"
	"github.com/onemember/onemember/internal/campaign/spec"
	"github.com/onemember/onemember/internal/platform/testkit"
)

func TestOneOffReachesTheAudienceOnce(t *testing.T) {
	e := newEnv(t)
	ms := e.members(130)
	aud := e.audience(ms[:120])
	if err := e.db.Member.UpdateOneID(ms[7]).SetStatus(member.StatusFROZEN).Exec(t.Context()); err != nil {
		t.Fatal(err)
	}
	tpl := e.template(1000, 1000)
	in := e.oneOff("春季回馈", couponAction(tpl.ID),
		messageAction(enum.MessageInApp, "送您一张券", "{{displayName}}，送您「{{couponTitle}}」{{nope}}。"))
	in.AudienceID = &aud
	c := e.create(in)
	e.runDue()

	st := e.statuses(c.ID)
	if len(st) != 119 {
		t.Fatalf("%d members executed, want 119 (the audience less the frozen member)", len(st))
	}
	for _, m := range ms[:120] {
		want := 1
		if m == ms[7] {
			want = 0
		}
		if len(st[m]) != want || (want == 1 && st[m][0] != enum.ExecutionReached) {
			t.Errorf("member %d: %v, want %d REACHED", m, st[m], want)
		}
	}
	if n := e.count(`SELECT count(*) FROM coupons WHERE template_id = $1`, tpl.ID); n != 119 {
		t.Errorf("%d coupons, want 119", n)
	}
	if n := e.count(`SELECT count(*) FROM campaign_executions e JOIN coupons c ON c.id = e.coupon_id
		WHERE e.campaign_id = $1 AND c.member_id = e.member_id AND c.source = 'campaign:' || $1`, c.ID); n != 119 {
		t.Errorf("%d executions point at their member's coupon, want 119", n)
	}
	var body string
	if err := e.sql.QueryRowContext(t.Context(), `SELECT n.body FROM notifications n JOIN member_events ev ON ev.id = n.event_id
		WHERE n.member_id = $1 AND ev.type = 'MESSAGE'`, ms[0]).Scan(&body); err != nil {
		t.Fatalf("reading the message: %v", err)
	}
	if want := "会员1，送您「立减10元」。"; body != want {
		t.Errorf("message body %q, want %q", body, want)
	}
	j, err := e.db.Job.Query().Where(entjob.KindEQ(enum.JobRunCampaign)).Only(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// The frozen member is not selected at all.
	if j.Status != enum.JobSucceeded || j.Processed != 119 || j.Failed != 0 || j.Total != 119 {
		t.Errorf("job %s processed %d failed %d total %d, want SUCCEEDED 119/0/119", j.Status, j.Processed, j.Failed, j.Total)
	}
	if got := e.campaign(c.ID).Spent; got != 119*1000 {
		t.Errorf("spent %d, want %d", got, 119*1000)
	}
	// Planning again enqueues nothing: the slot is done.
	if n, err := e.svc.Plan(t.Context()); err != nil || n != 0 {
		t.Errorf("second plan enqueued %d (%v), want 0", n, err)
	}
}

func TestBudgetStopsIssuing(t *testing.T) {
	e := newEnv(t)
	ms := e.members(20)
	tpl := e.template(1000, 100)
	in := e.oneOff("预算", couponAction(tpl.ID))
	in.Budget = testkit.Ptr[int64](5500)
	c := e.create(in)
	e.runDue()
	reached, budget := 0, 0
	for _, m := range ms {
		switch e.statuses(c.ID)[m][0] {
		case enum.ExecutionReached:
			reached++
		case enum.ExecutionSuppressedBudget:
			budget++
		}
	}
	if reached != 5 || budget != 15 {
		t.Errorf("%d REACHED and %d SUPPRESSED_BUDGET, want 5 and 15", reached, budget)
	}
	if n := e.count(`SELECT count(*) FROM coupons WHERE template_id = $1`, tpl.ID); n != 5 {
		t.Errorf("%d coupons issued, want 5", n)
	}
	if got := e.campaign(c.ID).Spent; got != 5000 {
		t.Errorf("spent %d, want 5000", got)
	}
	r, err := e.svc.Report(t.Context(), c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.Cost != 5000 || r.SuppressedByCap != 15 || r.Reached != 5 || r.CouponsIssued != 5 {
		t.Errorf("report %+v, want cost 5000, 15 suppressed, 5 reached and issued", r)
	}
}

// A coupon out of stock makes the execution FAILED: recorded once, at no
// cost, without the campaign's other actions.
func TestOutOfStockFails(t *testing.T) {
	e := newEnv(t)
	ms := e.members(5)
	tpl := e.template(1000, 3)
	c := e.create(e.oneOff("限量", couponAction(tpl.ID), messageAction(enum.MessageInApp, "送券", "送您一张券")))
	e.runDue()
	failed := 0
	for _, m := range ms {
		st := e.statuses(c.ID)[m]
		if len(st) != 1 {
			t.Fatalf("member %d: %v, want one execution", m, st)
		}
		if st[0] == enum.ExecutionFailed {
			failed++
			if n := e.count(`SELECT count(*) FROM member_events WHERE member_id = $1`, m); n != 0 {
				t.Errorf("a FAILED member got %d events (the message must not go)", n)
			}
		}
	}
	if failed != 2 || e.campaign(c.ID).Spent != 3000 {
		t.Errorf("%d FAILED, spent %d; want 2 and 3000", failed, e.campaign(c.ID).Spent)
	}
	if n := e.count(`SELECT count(*) FROM campaign_executions WHERE campaign_id = $1 AND status = 'FAILED' AND cost = 0
		AND coupon_id IS NULL AND action = 'ISSUE_COUPON'`, c.ID); n != 2 {
		t.Errorf("%d FAILED executions at no cost without a coupon, want 2", n)
	}
}

func TestConsentSuppressesMessages(t *testing.T) {
	e := newEnv(t)
	ms := e.members(4) // SMS only, WeChat only, both, none
	e.consent(ms[0], "MARKETING_SMS")
	e.consent(ms[1], "MARKETING_WECHAT")
	e.consent(ms[2], "MARKETING_SMS")
	e.consent(ms[2], "MARKETING_WECHAT")
	msgs := e.create(e.oneOff("只发消息",
		messageAction(enum.MessageSMS, "上新", "{{displayName}}，春装上新"),
		messageAction(enum.MessageWechatSubscribe, "上新", "春装上新")))
	e.runDue()
	st := e.statuses(msgs.ID)
	for i, want := range []enum.CampaignExecutionStatus{enum.ExecutionReached, enum.ExecutionReached,
		enum.ExecutionReached, enum.ExecutionSuppressedConsent} {
		if got := st[ms[i]]; len(got) != 1 || got[0] != want {
			t.Errorf("member %d: %v, want %s", i, got, want)
		}
	}
	sms := map[int]string{}
	for _, m := range e.messenger.messages() {
		if m.Channel != enum.MessageSMS || m.CampaignID != msgs.ID {
			t.Errorf("messenger got %+v, want SMS of campaign %d only", m, msgs.ID)
		}
		sms[m.MemberID] = m.Body
	}
	if len(sms) != 2 || sms[ms[0]] != "会员1，春装上新" || sms[ms[2]] == "" {
		t.Errorf("SMS sent %v, want members 0 and 2 with their name", sms)
	}
	for i, want := range []int{0, 1, 1, 0} {
		n := e.count(`SELECT count(*) FROM member_events WHERE member_id = $1 AND type = 'MESSAGE'
			AND payload->>'channel' = 'WECHAT_SUBSCRIBE'`, ms[i])
		if n != want {
			t.Errorf("member %d: %d WeChat message events, want %d", i, n, want)
		}
	}
	if got := e.campaign(msgs.ID).Spent; got != 2*5 {
		t.Errorf("spent %d, want two SMS of 5 fen", got)
	}

	// With a coupon as well, the member without consent is reached: the
	// coupon goes, the SMS does not.
	tpl := e.template(500, 10)
	e.clock.Advance(time.Minute)
	mixed := e.create(e.oneOff("券加短信", couponAction(tpl.ID), messageAction(enum.MessageSMS, "送券", "送您一张券")))
	e.runDue()
	if got := e.statuses(mixed.ID)[ms[3]]; len(got) != 1 || got[0] != enum.ExecutionReached {
		t.Errorf("member without consent: %v, want REACHED with the coupon", got)
	}
	for _, m := range e.messenger.messages() {
		if m.CampaignID == mixed.ID && m.MemberID == ms[3] {
			t.Errorf("SMS sent to a member without consent")
		}
	}
	if n := e.count(`SELECT count(*) FROM campaign_executions WHERE campaign_id = $1 AND action = 'ISSUE_COUPON'
		AND coupon_id IS NOT NULL`, mixed.ID); n != 4 {
		t.Errorf("%d executions issued a coupon, want 4", n)
	}
}

func TestFrequencyCapAcrossCampaigns(t *testing.T) {
	e := newEnv(t)
	ms := e.members(10)
	tpl := e.template(100, 100)
	e.clock.Advance(-72 * time.Hour)
	first := e.oneOff("三天前", couponAction(tpl.ID))
	first.AudienceID = testkit.Ptr(e.audience(ms[:5]))
	e.create(first)
	e.runDue()
	e.clock.Advance(72 * time.Hour)

	week := e.oneOff("周限一次", couponAction(tpl.ID))
	week.FrequencyCapDays = testkit.Ptr(7)
	w := e.create(week)
	e.runDue()
	st := e.statuses(w.ID)
	for i, m := range ms {
		want := enum.ExecutionReached
		if i < 5 {
			want = enum.ExecutionSuppressedCap
		}
		if got := st[m]; len(got) != 1 || got[0] != want {
			t.Errorf("member %d: %v, want %s", i, got, want)
		}
	}
	r, err := e.svc.Report(t.Context(), w.ID)
	if err != nil {
		t.Fatal(err)
	}
	if r.SuppressedByCap != 5 || r.Reached != 5 || r.Targeted != 10 {
		t.Errorf("report %+v, want 10 targeted, 5 reached, 5 suppressed by cap", r)
	}

	// Two days: those touched three days ago are free again, those
	// touched just now are not.
	e.clock.Advance(time.Minute)
	two := e.oneOff("两天一次", couponAction(tpl.ID))
	two.FrequencyCapDays = testkit.Ptr(2)
	c2 := e.create(two)
	e.runDue()
	st = e.statuses(c2.ID)
	for i, m := range ms {
		want := enum.ExecutionSuppressedCap
		if i < 5 {
			want = enum.ExecutionReached
		}
		if got := st[m]; len(got) != 1 || got[0] != want {
			t.Errorf("member %d: %v, want %s", i, got, want)
		}
	}
}

func TestMaxPerMemberInAndAcrossPasses(t *testing.T) {
	e := newEnv(t)
	m := e.members(1)[0]
	tpl := e.template(100, 100)
	c := e.create(campaignInput("每单送券", spec.Trigger{Kind: enum.TriggerPurchase, MinAmount: testkit.Ptr[int64](1000)},
		e.clock.Now().Add(-time.Hour), couponAction(tpl.ID)))
	e.db.Campaign.UpdateOneID(c.ID).SetMaxPerMember(2).ExecX(t.Context())
	e.clock.Advance(time.Second)
	e.order(m, 5000, e.clock.Now())
	e.order(m, 999, e.clock.Now()) // below minAmount
	e.order(m, 6000, e.clock.Now())
	e.order(m, 7000, e.clock.Now())
	e.pass()
	got := e.statuses(c.ID)[m]
	want := []enum.CampaignExecutionStatus{enum.ExecutionReached, enum.ExecutionReached, enum.ExecutionSuppressedCap}
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Fatalf("executions %v, want %v", got, want)
	}
	e.order(m, 8000, e.clock.Now())
	e.pass()
	if got := e.statuses(c.ID)[m]; len(got) != 4 || got[3] != enum.ExecutionSuppressedCap {
		t.Errorf("executions %v, want a fourth SUPPRESSED_CAP", got)
	}
	if n := e.count(`SELECT count(*) FROM coupons WHERE member_id = $1`, m); n != 2 {
		t.Errorf("%d coupons, want 2 (maxPerMember)", n)
	}
}

// campaignInput is a campaign of any trigger starting at start.
func campaignInput(name string, tr spec.Trigger, start time.Time, actions ...*spec.Action) campaign.CreateInput {
	return campaign.CreateInput{Name: name, Trigger: &tr, Actions: actions, StartsAt: start}
}
