package eventbus_test

import (
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/onemember/onemember/internal/eventbus"
	"github.com/onemember/onemember/internal/platform/fault"
)

func TestReplayThenLive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.bus(t, e.dsn, eventbus.Options{})
	m, other := e.member(t), e.member(t)
	e.emitN(t, b, m, 3)
	e.emitN(t, b, other, 2)

	all := subscribe(t, b, m, 0)
	fromTwo := subscribe(t, b, m, 2)
	now := subscribe(t, b, m, eventbus.FromNow)
	got := expectSeqs(t, all, m, 1, 2, 3)
	expectSeqs(t, fromTwo, m, 3)

	var payload map[string]any
	if err := json.Unmarshal(got[0].Payload, &payload); err != nil || payload["member"] != float64(m) {
		t.Errorf("payload of seq 1 = %s (%v), want member %d", got[0].Payload, err, m)
	}
	if got[0].Type != "POINTS_CHANGED" || got[0].ID == 0 || got[0].OccurredAt.IsZero() {
		t.Errorf("event = %+v, want type, id and time filled", got[0])
	}

	e.emitN(t, b, m, 2)
	e.emitN(t, b, other, 1)
	expectSeqs(t, all, m, 4, 5)
	expectSeqs(t, fromTwo, m, 4, 5)
	expectSeqs(t, now, m, 4, 5)
	// No duplicate: repeated wakes with nothing new deliver nothing.
	b.Wake(m)
	b.Wake(m, other)
	expectQuiet(t, all, 200*time.Millisecond)
	expectQuiet(t, now, 10*time.Millisecond)
}

// A backlog longer than the buffer is replayed at the reader's pace, not
// treated as a slow consumer.
func TestReplayLargerThanBuffer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.bus(t, e.dsn, eventbus.Options{Buffer: 8})
	m := e.member(t)
	e.emitN(t, nil, m, 60)

	s := subscribe(t, b, m, 0)
	time.Sleep(100 * time.Millisecond) // let the fetcher find the buffer full
	expectSeqs(t, s, m, seqRange(1, 60)...)
	e.emitN(t, b, m, 3)
	expectSeqs(t, s, m, 61, 62, 63)
}

// Two buses on one database are two replicas: an event woken on A reaches
// B's subscriber through NOTIFY. B's tailer is too slow to be the one.
func TestCrossReplicaNotify(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a := e.bus(t, e.dsn, eventbus.Options{PollEvery: time.Hour})
	b := e.bus(t, e.dsn, eventbus.Options{PollEvery: time.Hour})
	m := e.member(t)
	s := subscribe(t, b, m, 0)

	// The first event may reach B through the wake that follows its first
	// LISTEN; once it has, B is listening.
	e.emitN(t, a, m, 1)
	expectSeqs(t, s, m, 1)

	for seq := int64(2); seq <= 4; seq++ {
		start := time.Now()
		e.emitN(t, a, m, 1)
		expectSeqs(t, s, m, seq)
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("seq %d took %v to reach the other replica", seq, d)
		}
	}
}

// An event committed with no Wake anywhere (its writer crashed) reaches
// the subscriber through the safety tailer, and only through it.
func TestTailerDeliversUnwokenCommit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tailing := e.bus(t, "", eventbus.Options{PollEvery: 50 * time.Millisecond})
	idle := e.bus(t, "", eventbus.Options{PollEvery: time.Hour})
	m := e.member(t)
	e.emit(t, m, time.Now())
	s := subscribe(t, tailing, m, 0)
	control := subscribe(t, idle, m, 0)
	expectSeqs(t, s, m, 1)
	expectSeqs(t, control, m, 1)

	e.emit(t, m, time.Now()) // no Wake
	// The tailer passes a row once every older transaction has ended, and
	// transaction ids are shared by every database of the cluster: a long
	// transaction in another package's test, running in parallel, holds
	// it back. Hence the generous limit.
	expectSeqsWithin(t, time.Minute, s, m, 2)
	expectQuiet(t, control, 300*time.Millisecond)
}

// Transactions commit out of id order: tx1 (member X) takes its id first
// and commits last. The tailer must not skip tx1's row, and cannot pass
// tx2's row either while tx1 is open. Nothing wakes the bus but the
// tailer: no Wake, no listener.
func TestTailerOutOfOrderCommit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.bus(t, "", eventbus.Options{PollEvery: 50 * time.Millisecond})
	x, y := e.member(t), e.member(t)
	e.emit(t, x, time.Now())
	e.emit(t, y, time.Now())
	sx, sy := subscribe(t, b, x, 0), subscribe(t, b, y, 0)
	expectSeqs(t, sx, x, 1)
	expectSeqs(t, sy, y, 1)

	tx1, seqX := e.begin(t, x, time.Now())
	defer tx1.Rollback() //nolint:errcheck // no-op after commit
	seqY := e.emit(t, y, time.Now())
	expectQuiet(t, sy, 400*time.Millisecond) // tx1 holds the horizon back
	if err := tx1.Commit(); err != nil {
		t.Fatalf("committing tx1: %v", err)
	}
	expectSeqs(t, sx, x, seqX)
	expectSeqs(t, sy, y, seqY)
}

func TestSlowConsumer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.bus(t, e.dsn, eventbus.Options{Buffer: 4})
	slowM, fastM := e.member(t), e.member(t)
	slow := subscribe(t, b, slowM, 0)
	sameMember := subscribe(t, b, slowM, 0)
	fast := subscribe(t, b, fastM, 0)

	// One event makes the slow subscription live without anyone reading it.
	e.emitN(t, b, slowM, 1)
	eventually(t, "the first event is buffered", func() bool { return len(slow.Events()) == 1 })
	expectSeqs(t, sameMember, slowM, 1)

	// The other subscriptions are read while the events arrive.
	fastDone := make(chan []int64, 1)
	go func() { fastDone <- collect(fast, 10) }()
	sameDone := make(chan []int64, 1)
	go func() { sameDone <- collect(sameMember, 9) }()
	for range 9 {
		e.emitN(t, b, slowM, 1)
		e.emitN(t, b, fastM, 1)
	}
	e.emitN(t, b, fastM, 1)
	eventually(t, "the slow subscription ends", func() bool { return slow.Err() != nil })
	if err := slow.Err(); !errors.Is(err, eventbus.ErrSlowConsumer) || fault.CodeOf(err) != fault.RateLimited {
		t.Fatalf("Err() = %v (%s), want ErrSlowConsumer", err, fault.CodeOf(err))
	}
	var buffered []int64
	for ev := range slow.Events() { // closed, with what it had buffered
		buffered = append(buffered, ev.Seq)
	}
	if len(buffered) != 4 || buffered[0] != 1 || buffered[3] != 4 {
		t.Errorf("slow subscription kept seqs %v, want [1 2 3 4]", buffered)
	}
	if got := <-fastDone; !slices.Equal(got, seqRange(1, 10)) {
		t.Errorf("other member's subscription got seqs %v (%v), want 1..10", got, fast.Err())
	}
	if got := <-sameDone; !slices.Equal(got, seqRange(2, 10)) {
		t.Errorf("same member's reading subscription got seqs %v (%v), want 2..10", got, sameMember.Err())
	}
	eventually(t, "the slow subscription is unregistered", func() bool { return b.Subscribers() == 2 })

	// The client resumes from the last seq it received.
	resumed := subscribe(t, b, slowM, buffered[len(buffered)-1])
	expectSeqs(t, resumed, slowM, seqRange(5, 10)...)
}

func TestPruneAndCursors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	now := time.Now()
	old := now.Add(-40 * 24 * time.Hour)
	b := e.bus(t, e.dsn, eventbus.Options{Retention: 30 * 24 * time.Hour, Now: func() time.Time { return now }})

	// m: 5 old events, then 2 recent ones.
	m := e.member(t)
	for range 5 {
		e.emit(t, m, old)
	}
	e.emitN(t, nil, m, 2)
	// gone: only old events, all pruned.
	gone := e.member(t)
	for range 3 {
		e.emit(t, gone, old)
	}
	// skewed: seq 2 was stamped later than seq 3; pruning 3 takes 2 along.
	skewed := e.member(t)
	e.emit(t, skewed, old)
	e.emit(t, skewed, now)
	e.emit(t, skewed, old)
	e.emit(t, skewed, now)
	// bulk: more old events than one delete batch.
	bulk := e.member(t)
	e.emit(t, bulk, old)
	const bulkOld = 25000
	if _, err := e.db.ExecContext(t.Context(), `INSERT INTO member_events (member_id, seq, type, payload, occurred_at)
		SELECT $1, g, 'POINTS_CHANGED', '{}', $2 FROM generate_series(2, $3::bigint) g`, bulk, old, bulkOld); err != nil {
		t.Fatalf("inserting bulk events: %v", err)
	}
	if _, err := e.db.ExecContext(t.Context(), `UPDATE accounts SET event_seq = $2 WHERE member_id = $1`, bulk, bulkOld); err != nil {
		t.Fatalf("advancing bulk event_seq: %v", err)
	}
	e.emit(t, bulk, now)

	// Before pruning every cursor is valid.
	expectSeqs(t, subscribe(t, b, m, 0), m, seqRange(1, 7)...)

	n, err := b.Prune(t.Context())
	if err != nil {
		t.Fatalf("Prune: %v", err)
	}
	if want := int64(5 + 3 + 3 + bulkOld); n != want {
		t.Errorf("Prune deleted %d events, want %d", n, want)
	}
	if n, err := b.Prune(t.Context()); err != nil || n != 0 {
		t.Errorf("second Prune = %d, %v; want 0, nil", n, err)
	}

	expired := []struct {
		member int
		after  int64
	}{{m, 0}, {m, 4}, {gone, 0}, {gone, 2}, {skewed, 0}, {skewed, 2}, {bulk, 0}, {bulk, bulkOld - 1}}
	for _, c := range expired {
		_, err := b.Subscribe(t.Context(), c.member, c.after)
		if !errors.Is(err, eventbus.ErrEventsExpired) || fault.CodeOf(err) != fault.EventsExpired {
			t.Errorf("Subscribe(after %d) = %v, want ErrEventsExpired", c.after, err)
		}
	}
	expectSeqs(t, subscribe(t, b, m, 5), m, 6, 7)
	expectSeqs(t, subscribe(t, b, skewed, 3), skewed, 4)
	expectSeqs(t, subscribe(t, b, bulk, bulkOld), bulk, bulkOld+1)
	expectQuiet(t, subscribe(t, b, gone, 3), 100*time.Millisecond)

	for _, after := range []int64{8, 100, -2} {
		_, err := b.Subscribe(t.Context(), m, after)
		if !errors.Is(err, fault.ErrBadUserInput) || fault.CodeOf(err) != fault.BadUserInput {
			t.Errorf("Subscribe(after %d) = %v, want BAD_USER_INPUT", after, err)
		}
		if fs := fault.Fields(err); len(fs) != 1 || fs[0].Field != "after" {
			t.Errorf("Subscribe(after %d) fields = %v, want after", after, fs)
		}
	}
	if b.Subscribers() != 5 {
		t.Errorf("Subscribers() = %d after refused subscriptions, want 5", b.Subscribers())
	}
}

func TestMaxPerMember(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.bus(t, e.dsn, eventbus.Options{MaxPerMember: 2})
	m, other := e.member(t), e.member(t)

	first := subscribe(t, b, m, 0)
	ctx, cancel := context.WithCancel(t.Context())
	second, err := b.Subscribe(ctx, m, 0)
	if err != nil {
		t.Fatalf("second Subscribe: %v", err)
	}
	_, err = b.Subscribe(t.Context(), m, 0)
	if !errors.Is(err, eventbus.ErrTooManySubscriptions) || fault.CodeOf(err) != fault.LimitExceeded {
		t.Fatalf("third Subscribe = %v, want ErrTooManySubscriptions", err)
	}
	subscribe(t, b, other, 0) // the limit is per member

	first.Close()
	if _, ok := <-first.Events(); ok || first.Err() != nil {
		t.Errorf("closed subscription: open channel or Err() = %v", first.Err())
	}
	third := subscribe(t, b, m, 0) // a slot was freed at once

	cancel()
	eventually(t, "the cancelled subscription is unregistered", func() bool { return b.Subscribers() == 2 })
	if _, ok := <-second.Events(); ok || second.Err() != nil {
		t.Errorf("cancelled subscription: open channel or Err() = %v", second.Err())
	}
	subscribe(t, b, m, 0)
	e.emitN(t, b, m, 1)
	expectSeqs(t, third, m, 1)
}

// A listener that cannot connect does not hold up this process's own
// events.
func TestListenerDownLocalWakeDelivers(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.bus(t, "postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=1",
		eventbus.Options{PollEvery: time.Hour})
	m := e.member(t)
	s := subscribe(t, b, m, 0)
	e.emitN(t, b, m, 3)
	expectSeqs(t, s, m, 1, 2, 3)
}

// Wakes within one NotifyEvery window go out as few notifications whose
// payloads name every woken member.
func TestWakeNotifiesCoalesced(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	l := pq.NewListener(e.dsn, 100*time.Millisecond, time.Second, nil)
	defer func() {
		_ = l.Close()
		for range l.Notify {
		}
	}()
	if err := l.Listen("test_channel"); err != nil {
		t.Fatalf("listening: %v", err)
	}
	b := e.bus(t, e.dsn, eventbus.Options{NotifyChannel: "test_channel", NotifyEvery: 200 * time.Millisecond})

	want := map[string]bool{}
	for id := range 100 {
		b.Wake(id + 1000)
		want[strconv.Itoa(id+1000)] = true
	}
	var notifies int
	seen := map[string]bool{}
	deadline := time.After(wait)
	for len(seen) < len(want) {
		select {
		case n := <-l.Notify:
			if n == nil {
				continue
			}
			notifies++
			for id := range strings.SplitSeq(n.Extra, ",") {
				seen[id] = true
			}
		case <-deadline:
			t.Fatalf("notified %d of %d members", len(seen), len(want))
		}
	}
	for id := range seen {
		if !want[id] {
			t.Errorf("notified unexpected member %q", id)
		}
	}
	if notifies > 2 {
		t.Errorf("100 wakes in one window sent %d notifications, want at most 2", notifies)
	}

	many := make([]int, 3000) // too many to list: "*"
	for i := range many {
		many[i] = 5000 + i
	}
	b.Wake(many...)
	select {
	case n := <-l.Notify:
		if n == nil || n.Extra != "*" {
			t.Errorf("notification after 3000 wakes = %+v, want payload *", n)
		}
	case <-time.After(wait):
		t.Fatal("no notification after 3000 wakes")
	}
}

// TestRunStops is not parallel: it checks that no goroutine of any bus is
// left, which parallel tests' buses would spoil.
func TestRunStops(t *testing.T) {
	e := newEnv(t)
	b := eventbus.New(e.db, e.dsn, testLogger(t), eventbus.Options{PollEvery: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	m := e.member(t)
	s := subscribe(t, b, m, 0)
	e.emitN(t, b, m, 2)
	expectSeqs(t, s, m, 1, 2)
	b.Wake(m) // leaves a notification queued

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if _, ok := <-s.Events(); ok || !errors.Is(s.Err(), eventbus.ErrStopped) {
		t.Errorf("subscription after stop: open channel or Err() = %v, want ErrStopped", s.Err())
	}
	if _, err := b.Subscribe(t.Context(), m, 0); !errors.Is(err, eventbus.ErrStopped) {
		t.Errorf("Subscribe after stop = %v, want ErrStopped", err)
	}
	if err := b.Run(t.Context()); err == nil {
		t.Error("second Run = nil, want an error")
	}

	// go.uber.org/goleak is not a dependency of this module: look at the
	// goroutine stacks directly.
	var leaked string
	eventually(t, "the bus's goroutines exit", func() bool {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		leaked = ""
		for g := range strings.SplitSeq(string(buf), "\n\n") {
			if strings.Contains(g, "onemember/internal/eventbus.") || strings.Contains(g, "lib/pq.(*Listener") {
				leaked = g
				return false
			}
		}
		return true
	})
	if leaked != "" {
		t.Errorf("goroutine left running:\n%s", leaked)
	}
}
