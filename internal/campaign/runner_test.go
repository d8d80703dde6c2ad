package campaign_test

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	entjob "github.com/onemember/onemember/ent/job"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/campaign"
	"github.com/onemember/onemember/internal/campaign/spec"
	"github.com/onemember/onemember/internal/coupon"
	"github.com/onemember/onemember/internal/jobqueue"
	"github.com/onemember/onemember/internal/platform/testkit"
)

// A REGISTRATION campaign gives a new member the welcome coupon within
// seconds, once, with two server processes running their runners and job
// workers on one database.
func TestRegistrationWelcomeOnceOnTwoProcesses(t *testing.T) {
	e := newEnv(t)
	second := e.newNode()
	old := e.members(1)[0]
	e.clock.Advance(time.Second)
	tpl := e.template(2000, 100)
	c := e.create(campaignInput("新人礼", spec.Trigger{Kind: enum.TriggerRegistration}, e.clock.Now().Add(-time.Hour),
		couponAction(tpl.ID), messageAction(enum.MessageInApp, "欢迎", "{{displayName}}，欢迎加入！")))
	e.node.run(t)
	second.run(t)

	e.clock.Advance(time.Second)
	start := time.Now()
	m := e.members(1)[0]
	e.waitFor("the welcome coupon", func() bool {
		return e.count(`SELECT count(*) FROM coupons WHERE member_id = $1`, m) > 0
	})
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the welcome coupon took %s, want within seconds", took)
	}
	time.Sleep(300 * time.Millisecond) // several more passes of both runners
	if n := e.count(`SELECT count(*) FROM coupons WHERE member_id = $1`, m); n != 1 {
		t.Errorf("%d welcome coupons, want 1", n)
	}
	if got := e.statuses(c.ID); len(got) != 1 || len(got[m]) != 1 || got[m][0] != enum.ExecutionReached {
		t.Errorf("executions %v, want one REACHED for the new member only", got)
	}
	if n := e.count(`SELECT count(*) FROM coupons WHERE member_id = $1`, old); n != 0 {
		t.Errorf("a member registered before the activation got %d coupons", n)
	}
	if n := e.count(`SELECT count(*) FROM notifications WHERE member_id = $1 AND body = '会员2，欢迎加入！'`, m); n != 1 {
		t.Errorf("%d welcome messages in the inbox, want 1", n)
	}
}

func TestPriorityBetweenCampaigns(t *testing.T) {
	e := newEnv(t)
	tpl := e.template(100, 100)
	start := e.clock.Now().Add(-time.Hour)
	reg := spec.Trigger{Kind: enum.TriggerRegistration}
	in := func(name string, prio int) campaign.CreateInput {
		c := campaignInput(name, reg, start, couponAction(tpl.ID))
		c.Priority = &prio
		return c
	}
	high := e.create(in("高", 10))
	low := e.create(in("低", 5))
	peer := e.create(in("同级", 10))
	e.clock.Advance(time.Second)
	m := e.members(1)[0]
	e.pass()
	for c, want := range map[int]enum.CampaignExecutionStatus{high.ID: enum.ExecutionReached,
		peer.ID: enum.ExecutionReached, low.ID: enum.ExecutionSuppressedPriority} {
		if got := e.statuses(c)[m]; len(got) != 1 || got[0] != want {
			t.Errorf("campaign %d: %v, want %s", c, got, want)
		}
	}
	r, err := e.svc.Report(t.Context(), low.ID)
	if err != nil || r.SuppressedByCap != 1 || r.Reached != 0 {
		t.Errorf("low campaign's report %+v (%v), want 1 suppressed by cap (priority), 0 reached", r, err)
	}

	// Time triggers on one day: the low one runs first and still leaves
	// the members of the high one (which runs later that day) alone; a
	// higher one tomorrow does not count.
	for _, c := range []*ent.Campaign{high, low, peer} {
		if _, err := e.svc.End(t.Context(), c.ID); err != nil {
			t.Fatal(err)
		}
	}
	ms := e.members(15)
	later := e.oneOff("今晚", couponAction(tpl.ID))
	later.Trigger.At = testkit.Ptr(e.clock.Now().Add(2 * time.Hour))
	later.AudienceID, later.Priority = testkit.Ptr(e.audience(ms[:10])), testkit.Ptr(10)
	tomorrow := e.oneOff("明天", couponAction(tpl.ID))
	tomorrow.Trigger.At = testkit.Ptr(e.clock.Now().Add(24 * time.Hour))
	tomorrow.Priority = testkit.Ptr(20)
	now := e.oneOff("现在", couponAction(tpl.ID))
	now.AudienceID, now.Priority = testkit.Ptr(e.audience(ms[5:])), testkit.Ptr(1)
	h, _, l := e.create(later), e.create(tomorrow), e.create(now)
	e.runDue()
	st := e.statuses(l.ID)
	for i, m := range ms[5:] {
		want := enum.ExecutionReached
		if i < 5 {
			want = enum.ExecutionSuppressedPriority
		}
		if got := st[m]; len(got) != 1 || got[0] != want {
			t.Errorf("low campaign, member %d: %v, want %s", i+5, got, want)
		}
	}
	if n := len(e.statuses(h.ID)); n != 0 {
		t.Fatalf("the evening campaign ran early (%d executions)", n)
	}
	e.clock.Advance(2 * time.Hour)
	e.runDue()
	if st := e.statuses(h.ID); len(st) != 10 || st[ms[7]][0] != enum.ExecutionReached {
		t.Errorf("evening campaign: %v, want its 10 members REACHED", st)
	}
}

func TestPausedCampaignDoesNothingUntilReactivated(t *testing.T) {
	e := newEnv(t)
	m := e.members(1)[0]
	tpl := e.template(100, 100)
	c := e.create(campaignInput("每单", spec.Trigger{Kind: enum.TriggerPurchase}, e.clock.Now().Add(-time.Hour), couponAction(tpl.ID)))
	occurrences := func() map[string]bool {
		rows, err := e.sql.QueryContext(t.Context(), `SELECT occurrence FROM campaign_executions WHERE campaign_id = $1`, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]bool{}
		for rows.Next() {
			var o string
			if err := rows.Scan(&o); err != nil {
				t.Fatal(err)
			}
			out[o] = true
		}
		return out
	}
	key := func(o *ent.Order) string { return "order:" + itoa(o.ID) }
	step := func() { e.clock.Advance(2 * time.Minute) }

	step()
	o1 := e.order(m, 1000, e.clock.Now())
	e.pass()
	if _, err := e.svc.Pause(t.Context(), c.ID); err != nil {
		t.Fatal(err)
	}
	step()
	o2 := e.order(m, 1000, e.clock.Now()) // while paused
	e.pass()
	if got := occurrences(); len(got) != 1 || !got[key(o1)] {
		t.Fatalf("after a pause: %v, want only %s", got, key(o1))
	}
	step()
	if _, err := e.svc.Activate(t.Context(), c.ID, false); err != nil {
		t.Fatal(err)
	}
	step()
	o3 := e.order(m, 1000, e.clock.Now())
	e.pass()
	e.pass()
	if got := occurrences(); len(got) != 2 || !got[key(o3)] || got[key(o2)] {
		t.Fatalf("reactivated: %v, want %s and %s, not the skipped %s", got, key(o1), key(o3), key(o2))
	}

	// replaySkipped: what happened during this pause is done after all.
	step()
	if _, err := e.svc.Pause(t.Context(), c.ID); err != nil {
		t.Fatal(err)
	}
	step()
	o4 := e.order(m, 1000, e.clock.Now())
	step()
	if _, err := e.svc.Activate(t.Context(), c.ID, true); err != nil {
		t.Fatal(err)
	}
	e.pass()
	if got := occurrences(); len(got) != 3 || !got[key(o4)] || got[key(o2)] {
		t.Fatalf("replayed: %v, want %s replayed and %s still skipped", got, key(o4), key(o2))
	}

	// A ONE_OFF paused past its time does not run when reactivated.
	e.members(3)
	once := e.oneOff("整点", couponAction(tpl.ID))
	once.Trigger.At = testkit.Ptr(e.clock.Now().Add(time.Hour))
	oc := e.create(once)
	if _, err := e.svc.Pause(t.Context(), oc.ID); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(2 * time.Hour)
	e.runDue()
	if _, err := e.svc.Activate(t.Context(), oc.ID, false); err != nil {
		t.Fatal(err)
	}
	e.runDue()
	if n := len(e.statuses(oc.ID)); n != 0 {
		t.Errorf("a ONE_OFF skipped by its pause ran for %d members", n)
	}
}

// A run that a pause stops part-way stays stopped when reactivated, and
// is finished, without repeating anyone, with replaySkipped.
func TestPauseStopsARunAndReplayFinishesIt(t *testing.T) {
	for _, replay := range []bool{false, true} {
		e := newEnv(t)
		e.consentAll(e.members(120), "MARKETING_SMS")
		c := e.create(e.oneOff("分批", messageAction(enum.MessageSMS, "通知", "会员日")))
		var once sync.Once
		e.messenger.onSend(func(campaign.Message) {
			once.Do(func() {
				if _, err := e.svc.Pause(context.Background(), c.ID); err != nil {
					t.Errorf("pausing: %v", err)
				}
			})
		})
		e.runDue()
		if n := len(e.statuses(c.ID)); n != 50 {
			t.Fatalf("%d members served before the pause stopped the run, want one batch of 50", n)
		}
		if _, err := e.svc.Activate(t.Context(), c.ID, replay); err != nil {
			t.Fatal(err)
		}
		e.runDue()
		want := 50
		if replay {
			want = 120
		}
		st := e.statuses(c.ID)
		if len(st) != want {
			t.Errorf("replay %v: %d members served, want %d", replay, len(st), want)
		}
		for m, s := range st {
			if len(s) != 1 {
				t.Errorf("member %d executed %d times", m, len(s))
			}
		}
		if n := len(e.messenger.messages()); n != want {
			t.Errorf("replay %v: %d SMS, want %d", replay, n, want)
		}
	}
}

// Two processes, each with its runner and two job workers, and a second
// job of the same slot racing the planned one: every member gets exactly
// one coupon.
func TestOneOffExactlyOnceUnderRace(t *testing.T) {
	// Small batches, each a little slow, so that the two runs overlap.
	small := func(d *campaign.Deps) {
		d.Options.BatchSize = 25
		d.Coupons = slow{CouponIssuer: d.Coupons, d: 5 * time.Millisecond}
	}
	e := newEnv(t, small)
	second := e.newNode(small)
	ms := e.members(300)
	tpl := e.template(100, 1000)
	in := e.oneOff("抢跑", couponAction(tpl.ID))
	at := e.clock.Now().Add(time.Minute)
	in.Trigger.At = &at
	c := e.create(in)
	e.node.run(t)
	second.run(t)

	e.clock.Advance(2 * time.Minute)
	e.waitFor("the planned run to start", func() bool {
		n, err := e.db.Job.Query().Where(entjob.KindEQ(enum.JobRunCampaign), entjob.StatusEQ(enum.JobRunning)).Count(t.Context())
		return err == nil && n == 1
	})
	params := map[string]any{"campaignId": c.ID, "slot": at.UTC().Format(time.RFC3339Nano)}
	if _, _, err := e.jobs.Enqueue(t.Context(), enum.JobRunCampaign, params, "duplicate-run", nil); err != nil {
		t.Fatal(err)
	}
	e.waitFor("both runs", func() bool {
		n, err := e.db.Job.Query().Where(entjob.KindEQ(enum.JobRunCampaign), entjob.StatusEQ(enum.JobSucceeded)).Count(t.Context())
		return err == nil && n == 2
	})
	if n := e.count(`SELECT count(*) FROM campaign_executions WHERE campaign_id = $1`, c.ID); n != 300 {
		t.Errorf("%d executions, want 300", n)
	}
	if n := e.count(`SELECT count(DISTINCT member_id) FROM coupons WHERE template_id = $1`, tpl.ID); n != 300 {
		t.Errorf("%d members with a coupon, want 300", n)
	}
	if n := e.count(`SELECT count(*) FROM coupons WHERE template_id = $1`, tpl.ID); n != 300 {
		t.Errorf("%d coupons, want 300 (one each)", n)
	}
	if n := e.count(`SELECT issued_count FROM coupon_templates WHERE id = $1`, tpl.ID); n != 300 {
		t.Errorf("issued_count %d, want 300", n)
	}
	if n := e.count(`SELECT count(*) FROM member_events WHERE type = 'COUPON_ISSUED' AND member_id = ANY($1)`, int64s(ms)); n != 300 {
		t.Errorf("%d COUPON_ISSUED events, want 300", n)
	}
	if n := e.count(`SELECT sum(processed) FROM jobs WHERE kind = 'RUN_CAMPAIGN'`); n != 300 {
		t.Errorf("the two jobs recorded %d executions between them, want 300", n)
	}
	rows, err := e.db.Job.Query().Where(entjob.KindEQ(enum.JobRunCampaign)).All(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range rows {
		t.Logf("job %d: recorded %d, skipped %d of %d", j.ID, j.Processed, j.Failed, j.Total)
	}
}

// slow delays every coupon batch.
type slow struct {
	campaign.CouponIssuer
	d time.Duration
}

func (s slow) IssueBatchInTx(ctx context.Context, tx *ent.Tx, accts []*ent.Account, templateID int, source string) ([]coupon.Issued, error) {
	time.Sleep(s.d)
	return s.CouponIssuer.IssueBatchInTx(ctx, tx, accts, templateID, source)
}

// failing fails the n-th coupon batch, once.
type failing struct {
	campaign.CouponIssuer
	n     int32
	calls atomic.Int32
}

func (f *failing) IssueBatchInTx(ctx context.Context, tx *ent.Tx, accts []*ent.Account, templateID int, source string) ([]coupon.Issued, error) {
	if f.calls.Add(1) == f.n {
		return nil, errInjected
	}
	return f.CouponIssuer.IssueBatchInTx(ctx, tx, accts, templateID, source)
}

// A RUN_CAMPAIGN job that fails part-way is retried from its checkpoint:
// the batches it committed are not done again and nobody is served twice.
func TestRunResumesFromCheckpoint(t *testing.T) {
	var f *failing
	e := newEnv(t, func(d *campaign.Deps) { f = &failing{CouponIssuer: d.Coupons, n: 3}; d.Coupons = f })
	e.members(250)
	tpl := e.template(100, 1000)
	c := e.create(e.oneOff("断点续跑", couponAction(tpl.ID)))
	if _, err := e.svc.Plan(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.node.run(t)
	// The retry waits for its backoff on the (fake) clock. The clock moves
	// only while the job waits: moved while an attempt runs, it would run
	// out the attempt's lease (30 s, renewed on real time) on a slow
	// machine, and another attempt would take the job over.
	e.waitFor("the job to succeed", func() bool {
		j, err := e.db.Job.Query().Where(entjob.KindEQ(enum.JobRunCampaign)).Only(t.Context())
		if err != nil {
			return false
		}
		if j.Status == enum.JobQueued {
			e.clock.Advance(time.Second)
		}
		return jobqueue.Finished(j.Status)
	})
	j, err := e.db.Job.Query().Where(entjob.KindEQ(enum.JobRunCampaign)).Only(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != enum.JobSucceeded || j.Attempts != 2 || j.Processed != 250 || j.Failed != 0 {
		t.Errorf("job %s after %d attempts, processed %d failed %d; want SUCCEEDED after 2, 250 and 0",
			j.Status, j.Attempts, j.Processed, j.Failed)
	}
	// 2 batches, the failed third, then the 3 left: nothing done twice.
	if n := f.calls.Load(); n != 6 {
		t.Errorf("%d coupon batches, want 6", n)
	}
	if n := e.count(`SELECT count(*) FROM campaign_executions WHERE campaign_id = $1`, c.ID); n != 250 {
		t.Errorf("%d executions, want 250", n)
	}
	if n := e.count(`SELECT count(*) FROM (SELECT member_id FROM coupons WHERE template_id = $1
		GROUP BY member_id HAVING count(*) = 1) x`, tpl.ID); n != 250 {
		t.Errorf("%d members with exactly one coupon, want 250", n)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func int64s(ids []int) any {
	out := make([]int64, len(ids))
	for i, id := range ids {
		out[i] = int64(id)
	}
	return pq.Array(out)
}

func TestFirstPurchaseAndTierChanged(t *testing.T) {
	e := newEnv(t)
	silver := e.db.Tier.Create().SetCode("SILVER").SetName("银卡会员").SetRank(2).SetThreshold(500).SaveX(t.Context())
	gold := e.db.Tier.Create().SetCode("GOLD").SetName("金卡会员").SetRank(3).SetThreshold(1500).SaveX(t.Context())
	ms := e.members(3)
	e.order(ms[0], 1000, e.clock.Now().Add(-24*time.Hour)) // bought before: not a first purchase now
	e.clock.Advance(time.Second)
	first := e.create(campaignInput("首单礼", spec.Trigger{Kind: enum.TriggerFirstPurchase}, e.clock.Now().Add(-time.Hour),
		&spec.Action{Kind: enum.ActionAwardPoints, Points: testkit.Ptr(200)}))
	tier := e.create(campaignInput("升金卡", spec.Trigger{Kind: enum.TriggerTierChanged, TierCode: testkit.Ptr("GOLD")},
		e.clock.Now().Add(-time.Hour), messageAction(enum.MessageAppPush, "恭喜", "{{displayName}}，欢迎成为{{tierName}}")))
	e.clock.Advance(time.Second)
	e.order(ms[0], 1000, e.clock.Now())
	e.order(ms[1], 1000, e.clock.Now())
	e.order(ms[1], 2000, e.clock.Now())
	change := func(m, to int) {
		e.db.TierChange.Create().SetMemberID(m).SetToTierID(to).SetDirection("UP").SetReason("test").
			SetChangedAt(e.clock.Now()).ExecX(t.Context())
		e.db.Member.UpdateOneID(m).SetTierID(to).ExecX(t.Context())
	}
	change(ms[2], silver.ID)
	change(ms[1], gold.ID)
	e.pass()
	e.pass()
	if st := e.statuses(first.ID); len(st) != 1 || len(st[ms[1]]) != 1 {
		t.Errorf("first purchases %v, want member 1 once", st)
	}
	if n := e.count(`SELECT points_balance FROM accounts WHERE member_id = $1`, ms[1]); n != 200 {
		t.Errorf("points balance %d, want 200", n)
	}
	if st := e.statuses(tier.ID); len(st) != 1 || len(st[ms[1]]) != 1 {
		t.Errorf("tier executions %v, want member 1 (entered GOLD) once", st)
	}
	var payload string
	if err := e.sql.QueryRowContext(t.Context(), `SELECT payload->>'body' FROM member_events
		WHERE member_id = $1 AND type = 'MESSAGE' AND payload->>'channel' = 'APP_PUSH'`, ms[1]).Scan(&payload); err != nil {
		t.Fatal(err)
	}
	if payload != "会员2，欢迎成为金卡会员" {
		t.Errorf("push message %q", payload)
	}
	if n := e.count(`SELECT count(*) FROM notifications n JOIN member_events ev ON ev.id = n.event_id
		WHERE ev.type = 'MESSAGE'`); n != 0 {
		t.Errorf("an APP_PUSH message wrote %d notifications, want none", n)
	}
}
