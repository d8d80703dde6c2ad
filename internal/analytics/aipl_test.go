package analytics_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	entorder "github.com/onemember/onemember/ent/order"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/analytics"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/fault"
)

// expectStages computes, in plain Go over the rows read back, the stage on
// d of every member of d's population.
func expectStages(snap snapshot, m *ent.AiplModel, d calendar.Date, zone *time.Location) map[int]enum.AiplStage {
	hi := time.Date(d.Year, d.Month, d.Day+1, 0, 0, 0, 0, zone)
	lo := time.Date(d.Year, d.Month, d.Day+1-m.WindowDays, 0, 0, 0, 0, zone)
	inWindow := func(t time.Time) bool { return t.After(lo) && !t.After(hi) }
	channelOK := func(c enum.Channel) bool { return len(m.Channels) == 0 || slices.Contains(m.Channels, c) }
	isPurchase := func(k enum.BehaviorKind) bool {
		return k == enum.BehaviorPurchase || k == enum.BehaviorRepurchase
	}
	lists := [3][]enum.BehaviorKind{m.Awareness, m.Interest, m.Purchase}

	counts := map[int]*[4]int{} // awareness, interest, purchases, shares
	get := func(id int) *[4]int {
		c := counts[id]
		if c == nil {
			c = &[4]int{}
			counts[id] = c
		}
		return c
	}
	for _, e := range snap.events {
		if !inWindow(e.at) || !channelOK(e.channel) {
			continue
		}
		for i, l := range lists {
			if !isPurchase(e.kind) && slices.Contains(l, e.kind) {
				get(e.member)[i]++
			}
		}
		if e.kind == enum.BehaviorShare {
			get(e.member)[3]++
		}
	}
	for _, o := range snap.orders {
		if o.Status == entorder.StatusREFUNDED || !inWindow(o.PaidAt) || !channelOK(o.Channel) {
			continue
		}
		for i, l := range lists {
			if slices.ContainsFunc(l, isPurchase) {
				get(o.MemberID)[i]++
			}
		}
	}
	out := map[int]enum.AiplStage{}
	for id, mb := range snap.members {
		if !counted(mb.Status) || !mb.RegisteredAt.Before(hi) {
			continue
		}
		c := get(id)
		switch {
		case c[2] >= m.LoyaltyMinPurchases && (!m.LoyaltyRequireShare || c[3] > 0):
			out[id] = enum.AiplLoyalty
		case c[2] > 0:
			out[id] = enum.AiplPurchase
		case c[1] > 0:
			out[id] = enum.AiplInterest
		case c[0] > 0:
			out[id] = enum.AiplAwareness
		default:
			out[id] = enum.AiplNone
		}
	}
	return out
}

func tally(at calendar.Date, stages map[int]enum.AiplStage) analytics.Snapshot {
	sn := analytics.Snapshot{At: at}
	for _, st := range stages {
		switch st {
		case enum.AiplNone:
			sn.None++
		case enum.AiplAwareness:
			sn.Awareness++
		case enum.AiplInterest:
			sn.Interest++
		case enum.AiplPurchase:
			sn.Purchase++
		case enum.AiplLoyalty:
			sn.Loyalty++
		}
	}
	return sn
}

func (w *world) aiplModel(t *testing.T, in analytics.CreateAiplInput) *ent.AiplModel {
	t.Helper()
	m, err := w.svc.CreateAiplModel(context.Background(), in)
	if err != nil {
		t.Fatalf("creating AIPL model %s: %v", in.Name, err)
	}
	return m
}

func defaultAipl(name string) analytics.CreateAiplInput {
	return analytics.CreateAiplInput{
		Name: name, WindowDays: 90,
		Awareness: []enum.BehaviorKind{enum.BehaviorView, enum.BehaviorClick, enum.BehaviorWatch},
		Interest: []enum.BehaviorKind{enum.BehaviorRegister, enum.BehaviorFavorite, enum.BehaviorAddToCart,
			enum.BehaviorInteract, enum.BehaviorClaimCoupon},
		Purchase:            []enum.BehaviorKind{enum.BehaviorPurchase},
		LoyaltyMinPurchases: 2,
	}
}

func TestAipl(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	w.seed(t)
	ctx := context.Background()
	snap := w.read(t)

	plain := w.aiplModel(t, defaultAipl("default"))
	shareIn := defaultAipl("share")
	shareIn.LoyaltyRequireShare = true
	share := w.aiplModel(t, shareIn)
	channel := w.aiplModel(t, analytics.CreateAiplInput{
		Name: "mini program", WindowDays: 30, Channels: []enum.Channel{enum.ChannelMiniProgram},
		Awareness: []enum.BehaviorKind{enum.BehaviorView},
		Interest:  []enum.BehaviorKind{enum.BehaviorFavorite, enum.BehaviorShare},
		// Orders and REVIEW events both count as purchases here.
		Purchase:            []enum.BehaviorKind{enum.BehaviorPurchase, enum.BehaviorRepurchase, enum.BehaviorReview},
		LoyaltyMinPurchases: 3, LoyaltyRequireShare: true,
	})
	today := calendar.In(w.clock.Now(), w.zone)
	earlier := calendar.Date{Year: 2026, Month: 1, Day: 20}

	loyal := map[int]int64{}
	for _, m := range []*ent.AiplModel{plain, share, channel} {
		for _, d := range []calendar.Date{earlier, today} {
			t.Run(fmt.Sprintf("%s/%s", m.Name, d), func(t *testing.T) {
				want := expectStages(snap, m, d, w.zone)
				got, err := w.svc.AiplSnapshot(ctx, m.ID, d)
				if err != nil {
					t.Fatalf("snapshot: %v", err)
				}
				wantSn := tally(d, want)
				if got != wantSn {
					t.Errorf("snapshot %+v, want %+v", got, wantSn)
				}
				if d == today {
					loyal[m.ID] = wantSn.Loyalty
				}
				nonZero := 0
				for _, n := range []int64{wantSn.None, wantSn.Awareness, wantSn.Interest, wantSn.Purchase, wantSn.Loyalty} {
					if n > 0 {
						nonZero++
					}
				}
				if nonZero < 4 {
					t.Errorf("only %d stages reached in %+v: the seed is too thin", nonZero, wantSn)
				}

				for _, st := range aiplStageValues() {
					ids, err := w.svc.AiplStageMembers(ctx, m.ID, d, []enum.AiplStage{st})
					if err != nil {
						t.Fatalf("stage members: %v", err)
					}
					if wantIDs := idsAt(want, st); !slices.Equal(ids, wantIDs) {
						t.Errorf("%s members: got %v, want %v", st, ids, wantIDs)
					}
				}
				ids, err := w.svc.AiplStageMembers(ctx, m.ID, d, []enum.AiplStage{enum.AiplLoyalty, enum.AiplNone})
				if err != nil {
					t.Fatalf("stage members: %v", err)
				}
				wantIDs := append(idsAt(want, enum.AiplNone), idsAt(want, enum.AiplLoyalty)...)
				slices.Sort(wantIDs)
				if !slices.Equal(ids, wantIDs) {
					t.Errorf("NONE and LOYALTY members: got %d, want %d", len(ids), len(wantIDs))
				}

				// Member stages: a sample of every status, and a member
				// outside the population is NONE.
				n := 0
				for id, mb := range snap.members {
					got, err := w.svc.AiplMemberStage(ctx, m.ID, id, d)
					if err != nil {
						t.Fatalf("member stage: %v", err)
					}
					wantSt, ok := want[id]
					if !ok {
						wantSt = enum.AiplNone
					}
					if got != wantSt {
						t.Errorf("member %d (%s, registered %v): %s, want %s", id, mb.Status, mb.RegisteredAt, got, wantSt)
					}
					if n++; n == 40 {
						break
					}
				}
			})
		}
	}
	if loyal[share.ID] >= loyal[plain.ID] {
		t.Errorf("requiring a share left %d loyal members of %d", loyal[share.ID], loyal[plain.ID])
	}

	// Flow from the earlier date to today, against both expectations.
	for _, m := range []*ent.AiplModel{plain, channel} {
		from, to := expectStages(snap, m, earlier, w.zone), expectStages(snap, m, today, w.zone)
		type pair struct{ from, to enum.AiplStage }
		counts := map[pair]int64{}
		for id, st := range to {
			f, ok := from[id]
			if !ok {
				f = enum.AiplNone // registered since
			}
			counts[pair{f, st}]++
		}
		var want []analytics.Flow
		for _, f := range aiplStageValues() {
			for _, tt := range aiplStageValues() {
				if n := counts[pair{f, tt}]; n > 0 {
					want = append(want, analytics.Flow{From: f, To: tt, Members: n})
				}
			}
		}
		got, err := w.svc.AiplFlow(ctx, m.ID, earlier, today)
		if err != nil {
			t.Fatalf("flow: %v", err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s flow:\n got %v\nwant %v", m.Name, got, want)
		}
		if len(want) < 6 {
			t.Errorf("%s flow has only %d pairs: the seed is too thin", m.Name, len(want))
		}
		// The same date twice: everyone stays where they are.
		got, err = w.svc.AiplFlow(ctx, m.ID, today, today)
		if err != nil {
			t.Fatalf("flow: %v", err)
		}
		for _, f := range got {
			if f.From != f.To {
				t.Errorf("flow of a date to itself moves %+v", f)
			}
		}
	}

	// Trends: points on each step, and to as the last point.
	for _, c := range []struct {
		from, to calendar.Date
		every    analytics.Interval
		dates    []string
	}{
		{earlier, today, analytics.IntervalWeek, []string{"2026-01-20", "2026-01-27", "2026-02-03", "2026-02-10",
			"2026-02-17", "2026-02-24", "2026-03-03", "2026-03-10"}},
		{calendar.Date{Year: 2025, Month: 12, Day: 31}, today, analytics.IntervalMonth,
			[]string{"2025-12-31", "2026-01-31", "2026-02-28", "2026-03-10"}},
		{today.AddDays(-3), today, analytics.IntervalDay, []string{"2026-03-07", "2026-03-08", "2026-03-09", "2026-03-10"}},
		{today, today, analytics.IntervalDay, []string{"2026-03-10"}},
	} {
		got, err := w.svc.AiplTrend(ctx, channel.ID, c.from, c.to, c.every)
		if err != nil {
			t.Fatalf("trend %v: %v", c.every, err)
		}
		var dates []string
		for i, sn := range got {
			dates = append(dates, sn.At.String())
			if want := tally(sn.At, expectStages(snap, channel, sn.At, w.zone)); sn != want {
				t.Errorf("trend point %d: %+v, want %+v", i, sn, want)
			}
		}
		if !slices.Equal(dates, c.dates) {
			t.Errorf("trend %s from %s: dates %v, want %v", c.every, c.from, dates, c.dates)
		}
	}
}

// Adding events and orders moves one member up the funnel, one stage at a
// time; a REFUNDED order and an event outside the channel do not count.
func TestAiplMemberClimbs(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	m := w.aiplModel(t, func() analytics.CreateAiplInput {
		in := defaultAipl("climb")
		in.Channels = []enum.Channel{enum.ChannelApp, enum.ChannelPOS}
		in.LoyaltyRequireShare = true
		return in
	}())
	now := w.clock.Now()
	today := calendar.In(now, w.zone)
	id := w.member(t, "ACTIVE", now.AddDate(-1, 0, 0))
	stage := func(want enum.AiplStage) {
		t.Helper()
		got, err := w.svc.AiplMemberStage(ctx, m.ID, id, today)
		if err != nil || got != want {
			t.Fatalf("stage %s, %v; want %s", got, err, want)
		}
	}
	stage(enum.AiplNone)
	w.events(t, event{id, enum.BehaviorView, now.Add(-time.Hour), enum.ChannelMiniProgram}) // other channel
	w.events(t, event{id, enum.BehaviorView, now.AddDate(0, 0, -91), enum.ChannelApp})      // before the window
	stage(enum.AiplNone)
	w.events(t, event{id, enum.BehaviorClick, now.Add(-time.Hour), enum.ChannelApp})
	stage(enum.AiplAwareness)
	w.events(t, event{id, enum.BehaviorFavorite, now.Add(-time.Hour), enum.ChannelPOS})
	stage(enum.AiplInterest)
	// A PURCHASE event is not a purchase: purchases come from orders.
	w.events(t, event{id, enum.BehaviorPurchase, now.Add(-time.Hour), enum.ChannelPOS})
	stage(enum.AiplInterest)
	w.saveOrders(t, []*ent.OrderCreate{
		w.orderCreate(id, 0, enum.ChannelPOS, 1000, 1000, entorder.StatusREFUNDED, now.Add(-time.Hour)),
	})
	stage(enum.AiplInterest)
	w.saveOrders(t, []*ent.OrderCreate{
		w.orderCreate(id, 0, enum.ChannelPOS, 1000, 100, entorder.StatusPARTIALLY_REFUNDED, now.Add(-time.Hour)),
		w.orderCreate(id, 1, enum.ChannelApp, 1000, 0, entorder.StatusPAID, now.Add(-2*time.Hour)),
	})
	stage(enum.AiplPurchase) // two purchases but no share yet
	w.events(t, event{id, enum.BehaviorShare, now.Add(-time.Minute), enum.ChannelApp})
	stage(enum.AiplLoyalty)
	// Today's activity stays in the window for 90 days, today included.
	got, err := w.svc.AiplMemberStage(ctx, m.ID, id, today.AddDays(89))
	if err != nil || got != enum.AiplLoyalty {
		t.Errorf("89 days on: %s, %v", got, err)
	}
	got, err = w.svc.AiplMemberStage(ctx, m.ID, id, today.AddDays(90))
	if err != nil || got != enum.AiplNone {
		t.Errorf("90 days on: %s, %v", got, err)
	}
	// Before registration the member is outside the population.
	got, err = w.svc.AiplMemberStage(ctx, m.ID, id, today.AddDays(-400))
	if err != nil || got != enum.AiplNone {
		t.Errorf("before registration: %s, %v", got, err)
	}
	sn, err := w.svc.AiplSnapshot(ctx, m.ID, today.AddDays(-400))
	if err != nil || sn != (analytics.Snapshot{At: today.AddDays(-400)}) {
		t.Errorf("snapshot before anyone registered: %+v, %v", sn, err)
	}
}

func TestAiplErrors(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	ctx := context.Background()
	m := w.aiplModel(t, defaultAipl("errors"))
	today := calendar.In(w.clock.Now(), w.zone)
	member := w.member(t, "ACTIVE", w.clock.Now().AddDate(0, -1, 0))
	unknown := m.ID + 1000

	_, err := w.svc.AiplSnapshot(ctx, unknown, today)
	wantCode(t, err, fault.NotFound)
	_, err = w.svc.AiplTrend(ctx, unknown, today, today, analytics.IntervalDay)
	wantCode(t, err, fault.NotFound)
	_, err = w.svc.AiplFlow(ctx, unknown, today, today)
	wantCode(t, err, fault.NotFound)
	_, err = w.svc.AiplMemberStage(ctx, unknown, member, today)
	wantCode(t, err, fault.NotFound)
	_, err = w.svc.AiplStageMembers(ctx, unknown, today, []enum.AiplStage{enum.AiplNone})
	wantCode(t, err, fault.NotFound)
	_, err = w.svc.AiplMemberStage(ctx, m.ID, member+1000, today)
	wantCode(t, err, fault.NotFound)

	_, err = w.svc.AiplTrend(ctx, m.ID, today, today.AddDays(-1), analytics.IntervalDay)
	wantField(t, err, "to")
	_, err = w.svc.AiplFlow(ctx, m.ID, today, today.AddDays(-1))
	wantField(t, err, "to")
	_, err = w.svc.AiplTrend(ctx, m.ID, today, today.AddDays(400), analytics.IntervalDay)
	wantField(t, err, "to")
	_, err = w.svc.AiplTrend(ctx, m.ID, today, today.AddDays(3), "YEAR")
	wantField(t, err, "interval")
	_, err = w.svc.AiplStageMembers(ctx, m.ID, today, []enum.AiplStage{"ADVOCACY"})
	wantField(t, err, "stages")

	// 400 points is the most a trend gives.
	got, err := w.svc.AiplTrend(ctx, m.ID, today, today.AddDays(399), analytics.IntervalDay)
	if err != nil || len(got) != 400 {
		t.Fatalf("400-point trend: %d points, %v", len(got), err)
	}
	if ids, err := w.svc.AiplStageMembers(ctx, m.ID, today, nil); err != nil || len(ids) != 0 {
		t.Errorf("no stages: %v, %v", ids, err)
	}
}

func aiplStageValues() []enum.AiplStage {
	var out []enum.AiplStage
	for _, v := range enum.AiplStage("").Values() {
		out = append(out, enum.AiplStage(v))
	}
	return out
}

func idsAt(stages map[int]enum.AiplStage, st enum.AiplStage) []int {
	out := []int{}
	for id, s := range stages {
		if s == st {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}
