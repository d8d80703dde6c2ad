package tier_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/account"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/ent/memberevent"
	"github.com/onemember/onemember/ent/notification"
	"github.com/onemember/onemember/ent/tierchange"
	"github.com/onemember/onemember/internal/platform/testkit"
	"github.com/onemember/onemember/internal/tier"
)

func TestReview(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	now := e.clock.Now()
	ago := func(months int) time.Time { return now.AddDate(0, -months, 0) }

	// Growth from 14 months ago is outside the window and does not help.
	short := e.member(memberSpec{tier: "GOLD", tierSince: ago(13)})
	e.growth(short.ID, 5000, ago(14))
	e.growth(short.ID, 1000, ago(2))

	// Below even SILVER's threshold, yet only one step down.
	veryShort := e.member(memberSpec{tier: "GOLD", tierSince: ago(13)})
	e.growth(veryShort.ID, 100, ago(1))

	kept := e.member(memberSpec{tier: "GOLD", tierSince: ago(13)})
	e.growth(kept.ID, 1200, ago(11))
	e.growth(kept.ID, 400, ago(1))

	notDue := e.member(memberSpec{tier: "GOLD", tierSince: ago(11)})

	// Never moved: the review runs 12 months after registration.
	neverMoved := e.member(memberSpec{tier: "DIAMOND", registered: ago(13)})

	// The lowest tier has nowhere to go: not reviewed, no account created.
	normal := e.member(memberSpec{tier: "NORMAL", registered: ago(60)})
	merged := e.member(memberSpec{tier: "GOLD", status: member.StatusMERGED, tierSince: ago(13)})

	demoted, err := e.svc.Review(ctx)
	if err != nil {
		t.Fatalf("Review: %v", err)
	}
	if demoted != 3 {
		t.Errorf("Review demoted %d, want 3", demoted)
	}
	for _, c := range []struct {
		name string
		m    *ent.Member
		want string
	}{
		{"short of GOLD", short, "SILVER"},
		{"short of SILVER too", veryShort, "SILVER"},
		{"kept", kept, "GOLD"},
		{"not due", notDue, "GOLD"},
		{"never moved", neverMoved, "GOLD"},
		{"lowest tier", normal, "NORMAL"},
		{"merged", merged, "GOLD"},
	} {
		if got := e.tierOf(c.m.ID); got != c.want {
			t.Errorf("%s: tier %s, want %s", c.name, got, c.want)
		}
	}

	tc := e.db.TierChange.Query().Where(tierchange.MemberID(short.ID)).OnlyX(ctx)
	if tc.Direction != tierchange.DirectionDOWN || *tc.FromTierID != e.tiers["GOLD"].ID ||
		tc.ToTierID != e.tiers["SILVER"].ID || !strings.Contains(tc.Reason, "1000") || !tc.ChangedAt.Equal(now) {
		t.Errorf("change = %+v, want DOWN GOLD → SILVER at %v with the window's growth in the reason", tc, now)
	}
	ev := e.db.MemberEvent.Query().Where(memberevent.MemberID(short.ID)).OnlyX(ctx)
	if ev.Payload["direction"] != "DOWN" || ev.Payload["fromCode"] != "GOLD" || ev.Payload["toCode"] != "SILVER" || ev.Seq != 1 {
		t.Errorf("event payload %v seq %d, want DOWN GOLD → SILVER seq 1", ev.Payload, ev.Seq)
	}
	if n := e.db.Notification.Query().Where(notification.MemberID(short.ID)).OnlyX(ctx); n.Title != "会员等级调整为银卡会员" {
		t.Errorf("notification %q, want 会员等级调整为银卡会员", n.Title)
	}
	for _, m := range []*ent.Member{short, kept, neverMoved} {
		if a := e.account(m.ID); a.TierSince == nil || !a.TierSince.Equal(now) {
			t.Errorf("member %d: tier_since %v, want the review instant %v", m.ID, a.TierSince, now)
		}
	}
	if a := e.account(notDue.ID); !a.TierSince.Equal(ago(11)) {
		t.Errorf("not-due member's tier_since moved to %v", a.TierSince)
	}
	if e.db.TierChange.Query().Where(tierchange.MemberIDIn(kept.ID, notDue.ID, normal.ID, merged.ID)).ExistX(ctx) {
		t.Error("a member who was not demoted has a tier change")
	}
	if e.db.Account.Query().Where(account.MemberID(normal.ID)).ExistX(ctx) {
		t.Error("the review created an account for a member on the lowest tier")
	}

	// Run again at once: everyone due was reviewed, nothing moves.
	if demoted, err := e.svc.Review(ctx); err != nil || demoted != 0 {
		t.Fatalf("second Review = %d, %v; want 0, nil", demoted, err)
	}

	// The kept member's next review is 12 months after this one, not 12
	// months after the last tier change.
	if st, err := e.svc.Status(ctx, e.db, kept.ID); err != nil || !st.ReviewAt.Equal(now.AddDate(1, 0, 0)) {
		t.Fatalf("Status after keep: review at %v (%v), want %v", st.ReviewAt, err, now.AddDate(1, 0, 0))
	}
	e.clock.Set(now.AddDate(1, 0, -1))
	if _, err := e.svc.Review(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.tierOf(kept.ID); got != "GOLD" {
		t.Fatalf("kept member reviewed a day early: %s", got)
	}
	e.clock.Set(now.AddDate(1, 0, 0))
	if _, err := e.svc.Review(ctx); err != nil {
		t.Fatal(err)
	}
	// Its 1600 were earned 11 and 1 months before the first review: none
	// is inside the window now.
	if got := e.tierOf(kept.ID); got != "SILVER" {
		t.Errorf("kept member a year later: %s, want SILVER", got)
	}
}

func TestReviewConcurrentReplicas(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	now := e.clock.Now()
	const due = 40
	ids := make([]int, due)
	for i := range ids {
		spec := memberSpec{tier: "GOLD", tierSince: now.AddDate(-1, -1, 0)}
		if i%2 == 0 {
			spec = memberSpec{tier: "GOLD", registered: now.AddDate(-1, -1, 0)} // no account yet
		}
		ids[i] = e.member(spec).ID
		// Interleave members the scan passes over.
		e.member(memberSpec{tier: "GOLD", tierSince: now.AddDate(0, -6, 0)})
		e.member(memberSpec{tier: "NORMAL", registered: now.AddDate(-3, 0, 0)})
	}
	// Two replicas: separate pools, separate services, the same clock.
	replica, _ := testkit.OpenEntClient(t, e.dsn, 0)
	replicas := []*tier.Service{e.svc, tier.New(replica, e.zone, e.clock.Now)}
	for _, r := range replicas {
		tier.SetReviewBatch(r, 7) // several passes, each racing the other replica
	}
	var (
		wg      sync.WaitGroup
		results [2]int
		errs    [2]error
	)
	for i, svc := range replicas {
		wg.Go(func() { results[i], errs[i] = svc.Review(ctx) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("Review: %v", err)
		}
	}
	if got := results[0] + results[1]; got != due {
		t.Errorf("replicas demoted %d + %d = %d, want %d in all", results[0], results[1], got, due)
	}
	if n := e.db.TierChange.Query().CountX(ctx); n != due {
		t.Errorf("%d tier changes, want %d (one per member)", n, due)
	}
	if n := e.db.MemberEvent.Query().CountX(ctx); n != due {
		t.Errorf("%d events, want %d", n, due)
	}
	for _, id := range ids {
		if got := e.tierOf(id); got != "SILVER" {
			t.Errorf("member %d: %s, want SILVER", id, got)
		}
	}
}
