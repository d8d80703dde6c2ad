package campaign_test

import (
	"testing"
	"time"

	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/campaign"
	"github.com/onemember/onemember/internal/campaign/spec"
	"github.com/onemember/onemember/internal/pii"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/testkit"
)

// Holdout members are never touched, and the same member is in or out
// of the holdout at every occurrence.
func TestHoldoutIsStableAndUntouched(t *testing.T) {
	e := newEnv(t)
	ms := e.members(200)
	tpl := e.template(100, 1000)
	in := campaignInput("每日两次", spec.Trigger{Kind: enum.TriggerScheduled, Cron: testkit.Ptr("0 9,15 * * *")},
		e.clock.Now().Add(-time.Hour), couponAction(tpl.ID), messageAction(enum.MessageInApp, "t", "b"))
	in.HoldoutPercent = testkit.Ptr(30)
	dry, err := e.svc.DryRun(t.Context(), in)
	if err != nil {
		t.Fatal(err)
	}
	c := e.create(in)
	if got := e.campaign(c.ID).NextRunAt; got == nil || !got.Equal(time.Date(2026, 3, 10, 15, 0, 0, 0, e.zone)) {
		t.Fatalf("next run %v, want today 15:00", got)
	}
	e.clock.Set(time.Date(2026, 3, 10, 15, 0, 30, 0, e.zone))
	e.runDue()
	e.clock.Set(time.Date(2026, 3, 11, 9, 0, 5, 0, e.zone))
	e.runDue()
	st := e.statuses(c.ID)
	held := 0
	for _, m := range ms {
		s := st[m]
		if len(s) != 2 || s[0] != s[1] {
			t.Fatalf("member %d: %v, want the same status at both slots", m, s)
		}
		if s[0] == enum.ExecutionHoldout {
			held++
			if n := e.count(`SELECT count(*) FROM coupons WHERE member_id = $1`, m) +
				e.count(`SELECT count(*) FROM member_events WHERE member_id = $1`, m); n != 0 {
				t.Errorf("held-out member %d was touched (%d rows)", m, n)
			}
		}
	}
	if held < 30 || held > 90 {
		t.Errorf("%d of 200 held out, want about 30%%", held)
	}
	if dry.Holdout != held {
		t.Errorf("dry run counted %d held out, the runs %d", dry.Holdout, held)
	}
}

func TestInactivity(t *testing.T) {
	e := newEnv(t)
	ms := e.members(4) // lapsed, recent, never bought, lapsed behind a refunded order
	now := e.clock.Now()
	lapsed := e.order(ms[0], 1000, now.Add(-40*24*time.Hour))
	e.order(ms[1], 1000, now.Add(-10*24*time.Hour))
	older := e.order(ms[3], 1000, now.Add(-100*24*time.Hour))
	refunded := e.order(ms[3], 1000, now.Add(-5*24*time.Hour))
	e.db.Order.UpdateOne(refunded).SetStatus("REFUNDED").SetRefundedAmount(1000).ExecX(t.Context())
	tpl := e.template(100, 100)
	c := e.create(campaignInput("30天召回", spec.Trigger{Kind: enum.TriggerInactivity, InactiveDays: testkit.Ptr(30)},
		now.Add(-time.Hour), couponAction(tpl.ID)))
	e.runDue() // activated after 09:00: today's run happens at once
	want := map[int]string{ms[0]: "inactive:" + itoa(lapsed.ID), ms[3]: "inactive:" + itoa(older.ID)}
	check := func() {
		t.Helper()
		rows, err := e.sql.QueryContext(t.Context(), `SELECT member_id, occurrence FROM campaign_executions WHERE campaign_id = $1`, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		got := map[int]string{}
		for rows.Next() {
			var m int
			var o string
			if err := rows.Scan(&m, &o); err != nil {
				t.Fatal(err)
			}
			got[m] = o
		}
		if len(got) != len(want) || got[ms[0]] != want[ms[0]] || got[ms[3]] != want[ms[3]] {
			t.Errorf("executions %v, want %v", got, want)
		}
	}
	check()
	e.clock.Set(time.Date(2026, 3, 11, 9, 1, 0, 0, e.zone)) // the next day: nobody again
	e.runDue()
	check()
}

func TestBirthdayWithinDaysBefore(t *testing.T) {
	key := func(b byte) []byte {
		k := make([]byte, pii.KeySize)
		for i := range k {
			k[i] = b + byte(i)
		}
		return k
	}
	p, err := pii.NewProtector(key(1), key(100))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(d *campaign.Deps) { d.PII = p })
	ms := e.members(4)
	for i, b := range []string{"1990-03-12", "1985-03-20", "", "2000-03-10"} {
		up := e.db.Member.UpdateOneID(ms[i]).SetBirthMonth(3)
		if b != "" {
			enc, err := p.Encrypt(b, "member.birthday")
			if err != nil {
				t.Fatal(err)
			}
			up.SetBirthdayEnc(enc)
		}
		up.ExecX(t.Context())
	}
	tpl := e.template(2000, 100)
	c := e.create(campaignInput("生日礼", spec.Trigger{Kind: enum.TriggerBirthday, DaysBefore: testkit.Ptr(3)},
		e.clock.Now().Add(-time.Hour), couponAction(tpl.ID)))
	e.runDue()
	st := e.statuses(c.ID)
	if len(st) != 2 || len(st[ms[0]]) != 1 || len(st[ms[3]]) != 1 {
		t.Fatalf("executions %v, want the birthdays of 12 and 10 March (not the 20th, nor the 1st)", st)
	}
	if n := e.count(`SELECT count(*) FROM campaign_executions WHERE campaign_id = $1 AND occurrence = 'birthday:2026'`, c.ID); n != 2 {
		t.Errorf("%d executions for birthday:2026, want 2", n)
	}
	e.clock.Set(calendar.Date{Year: 2026, Month: 3, Day: 11}.Start(e.zone).Add(9*time.Hour + time.Minute))
	e.runDue()
	if n := e.count(`SELECT count(*) FROM campaign_executions WHERE campaign_id = $1`, c.ID); n != 2 {
		t.Errorf("%d executions after the next day's run, want still 2", n)
	}
}
