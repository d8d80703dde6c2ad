package tier_test

import (
	"testing"

	"github.com/onemember/onemember/ent/memberevent"
	"github.com/onemember/onemember/ent/notification"
	"github.com/onemember/onemember/ent/tierchange"
)

func TestReevaluatePromotesSkippingLevels(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	now := e.clock.Now()
	m := e.member(memberSpec{tier: "NORMAL"})
	e.growth(m.ID, 1600, now.AddDate(0, 0, -3))
	// 300 yuan paid this month, 50 of it refunded: 250 net.
	e.order(m.ID, 30000, e.at(2026, 6, 2, 12, 0), 5000, e.at(2026, 6, 3, 9, 0))
	// Last month's spend does not count towards this month's condition.
	e.order(m.ID, 90000, e.at(2026, 5, 20, 12, 0), 0, now)

	tc, acct, err := e.reevaluate(ctx, m.ID, "消费升级 POS-1")
	if err != nil {
		t.Fatalf("Reevaluate: %v", err)
	}
	if tc == nil {
		t.Fatal("Reevaluate returned no change; want NORMAL → GOLD")
	}
	if tc.Direction != tierchange.DirectionUP || tc.FromTierID == nil || *tc.FromTierID != e.tiers["NORMAL"].ID ||
		tc.ToTierID != e.tiers["GOLD"].ID || tc.Reason != "消费升级 POS-1" || !tc.ChangedAt.Equal(now) {
		t.Errorf("change = %+v, want UP NORMAL → GOLD at %v with the caller's reason", tc, now)
	}
	if got := e.tierOf(m.ID); got != "GOLD" {
		t.Errorf("member tier = %s, want GOLD (one step, skipping SILVER)", got)
	}
	stored := e.account(m.ID)
	if stored.TierSince == nil || !stored.TierSince.Equal(now) {
		t.Errorf("tier_since = %v, want %v", stored.TierSince, now)
	}
	if stored.EventSeq != 1 || acct.EventSeq != 1 {
		t.Errorf("event_seq stored %d, caller's account %d; want 1 and 1", stored.EventSeq, acct.EventSeq)
	}

	evs := e.db.MemberEvent.Query().Where(memberevent.MemberID(m.ID)).AllX(ctx)
	if len(evs) != 1 {
		t.Fatalf("%d member events, want 1", len(evs))
	}
	ev := evs[0]
	if ev.Type != memberevent.TypeTIER_CHANGED || ev.Seq != 1 || !ev.OccurredAt.Equal(now) {
		t.Errorf("event = %s seq %d at %v, want TIER_CHANGED seq 1 at %v", ev.Type, ev.Seq, ev.OccurredAt, now)
	}
	for k, want := range map[string]any{
		"direction": "UP", "fromCode": "NORMAL", "toCode": "GOLD", "reason": "消费升级 POS-1",
		"fromTierId": float64(e.tiers["NORMAL"].ID), "toTierId": float64(e.tiers["GOLD"].ID),
	} {
		if got := ev.Payload[k]; got != want {
			t.Errorf("payload[%s] = %v (%T), want %v", k, got, got, want)
		}
	}
	n := e.db.Notification.Query().Where(notification.MemberID(m.ID)).OnlyX(ctx)
	if n.Title != "恭喜升级为金卡会员" || n.EventID == nil || *n.EventID != ev.ID {
		t.Errorf("notification %q for event %v, want 恭喜升级为金卡会员 for %d", n.Title, n.EventID, ev.ID)
	}

	// Nothing changed since: a second evaluation is a no-op.
	tc, _, err = e.reevaluate(ctx, m.ID, "again")
	if err != nil || tc != nil {
		t.Fatalf("second Reevaluate = %v, %v; want no change", tc, err)
	}
	if n := e.db.TierChange.Query().Where(tierchange.MemberID(m.ID)).CountX(ctx); n != 1 {
		t.Errorf("%d tier changes, want 1", n)
	}
	if n := e.db.MemberEvent.Query().Where(memberevent.MemberID(m.ID)).CountX(ctx); n != 1 {
		t.Errorf("%d events, want 1", n)
	}
}

func TestReevaluateConditions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	now := e.clock.Now()

	tests := []struct {
		name  string
		from  string
		setup func(memberID int)
		want  string // tier afterwards
	}{
		{"refunds net out the month's spend", "NORMAL", func(id int) {
			e.growth(id, 1600, now)
			e.order(id, 25000, e.at(2026, 6, 1, 12, 0), 6000, now) // 190 yuan net
		}, "SILVER"},
		{"midnight in Shanghai starts the month", "NORMAL", func(id int) {
			e.growth(id, 1600, now)
			e.order(id, 20000, e.at(2026, 6, 1, 0, 30), 0, now) // 31 May 16:30 UTC
		}, "GOLD"},
		{"before midnight in Shanghai is last month", "NORMAL", func(id int) {
			e.growth(id, 1600, now)
			e.order(id, 20000, e.at(2026, 5, 31, 23, 30), 0, now)
		}, "SILVER"},
		{"diamond with a referral and no spend", "SILVER", func(id int) {
			e.growth(id, 3100, now)
			e.account(id).Update().SetSuccessfulReferrals(1).ExecX(ctx)
		}, "DIAMOND"},
		{"never demotes", "DIAMOND", func(id int) { e.growth(id, 10, now) }, "DIAMOND"},
		{"placed on the ladder when it had no tier", "", func(id int) { e.growth(id, 600, now) }, "SILVER"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := e.member(memberSpec{tier: tt.from})
			tt.setup(m.ID)
			if _, _, err := e.reevaluate(ctx, m.ID, "test"); err != nil {
				t.Fatalf("Reevaluate: %v", err)
			}
			if got := e.tierOf(m.ID); got != tt.want {
				t.Errorf("tier = %s, want %s", got, tt.want)
			}
		})
	}
}
