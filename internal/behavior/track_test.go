package behavior_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/behavior"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/testkit"
)

func TestTrackStoresAndDeduplicates(t *testing.T) {
	t.Parallel()
	e := newEnv(t, behavior.Options{})
	m := e.member(t)
	now := e.clock.Now()
	in := []behavior.TrackInput{
		{Kind: enum.BehaviorView, OccurredAt: now.Add(-time.Hour), EventID: "e1", TargetID: testkit.Ptr("sku-1")},
		{Kind: enum.BehaviorAddToCart, OccurredAt: now.Add(-time.Minute), EventID: "e2"},
		{Kind: enum.BehaviorView, OccurredAt: now.Add(-time.Second), EventID: "e1"}, // same id in the call
	}
	// No partition covers 2030: the first insert creates it.
	res, err := e.svc.Track(t.Context(), m, enum.ChannelMiniProgram, in)
	if err != nil {
		t.Fatalf("Track: %v", err)
	}
	if res != (behavior.Result{Accepted: 2, Duplicates: 1}) {
		t.Fatalf("result %+v, want 2 accepted, 1 duplicate", res)
	}
	source := fmt.Sprintf("m:%d", m)
	if n := e.count(t, "source = $1 AND member_id = $2 AND channel = 'MINI_PROGRAM'", source, m); n != 2 {
		t.Fatalf("%d rows of the member, want 2", n)
	}
	var (
		kind   string
		target *string
		at     time.Time
		recv   time.Time
	)
	err = e.sql.QueryRow(`SELECT kind, target_id, occurred_at, received_at FROM behavior_events WHERE event_id = 'e1'`).
		Scan(&kind, &target, &at, &recv)
	if err != nil {
		t.Fatal(err)
	}
	if kind != "VIEW" || target == nil || *target != "sku-1" || !at.Equal(now.Add(-time.Hour)) || recv.IsZero() {
		t.Fatalf("row e1 = %s %v %v %v", kind, target, at, recv)
	}
	if n := e.count(t, "event_id = 'e2' AND target_id IS NULL AND business_unit_id IS NULL"); n != 1 {
		t.Fatal("e2 has a target or business unit")
	}
	if got := e.partitionOf(t, source, "e1"); got != "behavior_events_203006" {
		t.Fatalf("e1 is in %s", got)
	}

	// A retry is all duplicates; a new id at the same time is not.
	res, err = e.svc.Track(t.Context(), m, enum.ChannelMiniProgram, append(in[:2:2],
		behavior.TrackInput{Kind: enum.BehaviorClick, OccurredAt: now.Add(-time.Hour), EventID: "e3"}))
	if err != nil {
		t.Fatal(err)
	}
	if res != (behavior.Result{Accepted: 1, Duplicates: 2}) {
		t.Fatalf("retry result %+v", res)
	}
	// Another member's eventIds are theirs.
	other := e.member(t)
	res, err = e.svc.Track(t.Context(), other, enum.ChannelApp, in[:1])
	if err != nil || res.Accepted != 1 {
		t.Fatalf("other member: %+v, %v", res, err)
	}
	if n := e.count(t, "TRUE"); n != 4 {
		t.Fatalf("%d rows, want 4", n)
	}
}

// TestTrackMonthsInBusinessZone: just after midnight on 1 July in
// Shanghai (still 30 June in UTC), events either side of the Shanghai
// midnight land in June's and July's partitions.
func TestTrackMonthsInBusinessZone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, behavior.Options{})
	m := e.member(t)
	midnight := time.Date(2030, 7, 1, 0, 0, 0, 0, e.zone)
	e.clock.Set(midnight.Add(2 * time.Minute))
	_, err := e.svc.Track(t.Context(), m, enum.ChannelMiniProgram, []behavior.TrackInput{
		{Kind: enum.BehaviorView, OccurredAt: midnight.Add(-time.Nanosecond * 1000), EventID: "june"},
		{Kind: enum.BehaviorView, OccurredAt: midnight, EventID: "july"},
	})
	if err != nil {
		t.Fatal(err)
	}
	source := fmt.Sprintf("m:%d", m)
	if got := e.partitionOf(t, source, "june"); got != "behavior_events_203006" {
		t.Errorf("june in %s", got)
	}
	if got := e.partitionOf(t, source, "july"); got != "behavior_events_203007" {
		t.Errorf("july in %s", got)
	}
}

func TestTrackValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, behavior.Options{})
	m := e.member(t)
	now := e.clock.Now()
	ok := func(id string) behavior.TrackInput {
		return behavior.TrackInput{Kind: enum.BehaviorView, OccurredAt: now, EventID: id}
	}
	_, err := e.svc.Track(t.Context(), m, enum.ChannelMiniProgram, nil)
	wantCode(t, err, fault.BadUserInput, "events")
	many := make([]behavior.TrackInput, 101)
	for i := range many {
		many[i] = ok(fmt.Sprint(i))
	}
	_, err = e.svc.Track(t.Context(), m, enum.ChannelMiniProgram, many)
	wantCode(t, err, fault.BadUserInput, "events")

	for _, k := range []enum.BehaviorKind{enum.BehaviorPurchase, enum.BehaviorRepurchase, enum.BehaviorRegister,
		enum.BehaviorClaimCoupon, enum.BehaviorCheckIn, "SNEEZE"} {
		bad := ok("k")
		bad.Kind = k
		_, err = e.svc.Track(t.Context(), m, enum.ChannelMiniProgram, []behavior.TrackInput{ok("a"), bad})
		wantCode(t, err, fault.BadUserInput, "events[1].kind")
	}

	tooOld, oldest := ok("old"), ok("oldest")
	tooOld.OccurredAt = now.Add(-7*24*time.Hour - time.Second)
	oldest.OccurredAt = now.Add(-7 * 24 * time.Hour)
	tooNew, newest := ok("new"), ok("newest")
	tooNew.OccurredAt = now.Add(5*time.Minute + time.Second)
	newest.OccurredAt = now.Add(5 * time.Minute)
	noID, longID, cjkID := ok(""), ok(strings.Repeat("x", 65)), ok(strings.Repeat("事", 64))
	longTarget, target := ok("t1"), ok("t2")
	longTarget.TargetID = testkit.Ptr(strings.Repeat("y", 129))
	target.TargetID = testkit.Ptr(strings.Repeat("y", 128))

	// Every problem is reported at once and nothing is stored.
	_, err = e.svc.Track(t.Context(), m, enum.ChannelMiniProgram,
		[]behavior.TrackInput{oldest, tooOld, newest, tooNew, noID, longID, cjkID, longTarget, target})
	wantCode(t, err, fault.BadUserInput, "events[1].occurredAt", "events[3].occurredAt", "events[4].eventId",
		"events[5].eventId", "events[7].targetId")
	if n := len(fault.Fields(err)); n != 5 {
		t.Errorf("%d problems reported, want 5: %v", n, err)
	}
	if n := e.count(t, "TRUE"); n != 0 {
		t.Fatalf("%d rows stored by a refused call", n)
	}
	_, err = e.svc.Track(t.Context(), m, "FAX", []behavior.TrackInput{ok("c")})
	wantCode(t, err, fault.BadUserInput, "channel")

	// The limits themselves are accepted (the oldest event is in May: its
	// partition is made on demand too).
	res, err := e.svc.Track(t.Context(), m, enum.ChannelMiniProgram, []behavior.TrackInput{oldest, newest, cjkID, target})
	if err != nil || res.Accepted != 4 {
		t.Fatalf("limits: %+v, %v", res, err)
	}
}

func TestTrackRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, behavior.Options{MemberRate: 10, MemberBurst: 200})
	m, other := e.member(t), e.member(t)
	seq := 0
	events := func(n int) []behavior.TrackInput {
		out := make([]behavior.TrackInput, n)
		for i := range out {
			seq++
			out[i] = behavior.TrackInput{Kind: enum.BehaviorClick, OccurredAt: e.clock.Now(), EventID: fmt.Sprint("r", seq)}
		}
		return out
	}
	for range 2 {
		if _, err := e.svc.Track(t.Context(), m, enum.ChannelApp, events(100)); err != nil {
			t.Fatalf("within the burst: %v", err)
		}
	}
	_, err := e.svc.Track(t.Context(), m, enum.ChannelApp, events(1))
	wantCode(t, err, fault.RateLimited)
	wantIs(t, err, behavior.ErrRateLimited)
	if n := e.count(t, "member_id = $1", m); n != 200 {
		t.Fatalf("%d rows, want 200 (nothing of the refused call)", n)
	}
	if _, err := e.svc.Track(t.Context(), other, enum.ChannelApp, events(100)); err != nil {
		t.Fatalf("another member is limited too: %v", err)
	}
	// A second gives 10 tokens back.
	e.clock.Advance(time.Second)
	_, err = e.svc.Track(t.Context(), m, enum.ChannelApp, events(11))
	wantCode(t, err, fault.RateLimited)
	if _, err := e.svc.Track(t.Context(), m, enum.ChannelApp, events(10)); err != nil {
		t.Fatalf("after a second: %v", err)
	}
}

// TestTrackRateLimitRace: 40 calls of 10 events each for one member at
// once, with a burst of 200: exactly 20 get through.
func TestTrackRateLimitRace(t *testing.T) {
	t.Parallel()
	e := newEnv(t, behavior.Options{MemberRate: 0.001, MemberBurst: 200})
	m := e.member(t)
	var (
		wg       sync.WaitGroup
		start    = make(chan struct{})
		mu       sync.Mutex
		ok, hold int
	)
	for g := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in := make([]behavior.TrackInput, 10)
			for i := range in {
				in[i] = behavior.TrackInput{Kind: enum.BehaviorView, OccurredAt: e.clock.Now(), EventID: fmt.Sprintf("g%d-%d", g, i)}
			}
			<-start
			_, err := e.svc.Track(context.Background(), m, enum.ChannelMiniProgram, in)
			mu.Lock()
			defer mu.Unlock()
			switch fault.CodeOf(err) {
			case fault.RateLimited:
				hold++
			default:
				if err != nil {
					t.Errorf("Track: %v", err)
					return
				}
				ok++
			}
		}()
	}
	close(start)
	wg.Wait()
	if ok != 20 || hold != 20 {
		t.Fatalf("%d calls through, %d limited; want 20 and 20", ok, hold)
	}
	if n := e.count(t, "member_id = $1", m); n != 200 {
		t.Fatalf("%d rows, want 200", n)
	}
}

// TestTrackCreatesPartitionsConcurrently: many members track at once into
// a month without a partition; every call succeeds.
func TestTrackCreatesPartitionsConcurrently(t *testing.T) {
	t.Parallel()
	e := newEnv(t, behavior.Options{})
	e.clock.Set(time.Date(2031, 2, 1, 0, 1, 0, 0, e.zone))
	members := make([]int, 16)
	for i := range members {
		members[i] = e.member(t)
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for _, m := range members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			// One event in January, one in February: two partitions.
			_, err := e.svc.Track(context.Background(), m, enum.ChannelMiniProgram, []behavior.TrackInput{
				{Kind: enum.BehaviorView, OccurredAt: e.clock.Now().Add(-time.Hour), EventID: "jan"},
				{Kind: enum.BehaviorView, OccurredAt: e.clock.Now(), EventID: "feb"},
			})
			if err != nil {
				t.Errorf("Track: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if n := e.count(t, "TRUE"); n != 32 {
		t.Fatalf("%d rows, want 32", n)
	}
	got := e.partitions(t)
	for _, want := range []string{"behavior_events_203101", "behavior_events_203102"} {
		found := false
		for _, p := range got {
			found = found || p == want
		}
		if !found {
			t.Errorf("partition %s missing from %v", want, got)
		}
	}
}
