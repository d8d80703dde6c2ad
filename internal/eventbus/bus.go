package eventbus

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onemember/onemember/internal/platform/fault"
)

// Defaults applied by New to zero Options fields.
const (
	DefaultNotifyChannel = "member_events"
	DefaultNotifyEvery   = 20 * time.Millisecond
	DefaultPollEvery     = time.Second
	DefaultBuffer        = 256
	DefaultMaxPerMember  = 5
	DefaultRetention     = 30 * 24 * time.Hour
)

// FromNow, passed to Subscribe as afterSeq, starts a subscription at the
// member's latest event: only events committed after it are delivered.
const FromNow int64 = -1

var (
	// ErrEventsExpired is a cursor some of whose following events were
	// deleted by Prune: the client must reload its state and subscribe
	// again from the latest seq (or FromNow).
	ErrEventsExpired = fault.New(fault.EventsExpired, "events after this cursor are no longer kept; reload and subscribe again")
	// ErrSlowConsumer ends a live subscription whose buffer was full when an
	// event arrived. It is RATE_LIMITED: the client was sent events faster
	// than it read them and should resume from the last seq it received.
	// The GraphQL layer closes the websocket with its own close code on it.
	ErrSlowConsumer = fault.New(fault.RateLimited, "events arrived faster than they were read; resume from the last received seq")
	// ErrTooManySubscriptions refuses a subscription beyond
	// Options.MaxPerMember live ones of the same member on this process.
	ErrTooManySubscriptions = fault.New(fault.LimitExceeded, "too many live event subscriptions for this member")
	// ErrStopped ends every subscription when Run returns, and refuses new
	// ones after that: the process is shutting down, and the client should
	// reconnect (to another replica) and resume by cursor.
	ErrStopped = errors.New("event bus stopped")
)

// Tuning that callers have no reason to change.
const (
	pageSize       = 500                    // most rows read for one subscription at once
	maxGroups      = 5000                   // most (member, cursor) pairs in one read
	gatherWindow   = 5 * time.Millisecond   // least time between two reads
	heldEvery      = 2 * time.Millisecond   // how often held subscriptions are looked at
	chanCap        = 16                     // physical channel capacity of a subscription
	notifyMaxBytes = 7900                   // a NOTIFY payload must stay under 8000 bytes
	notifyAllAbove = 2000                   // more pending ids than this are sent as "*"
	pingEvery      = 30 * time.Second       // listener connection check
	pruneBatch     = 10000                  // rows per Prune delete
	queryTimeout   = 30 * time.Second       // bound on any one statement
	retryMax       = 5 * time.Second        // longest back-off after a failed statement
	listenMinRetry = 100 * time.Millisecond // pq.Listener reconnect interval bounds
	listenMaxRetry = 10 * time.Second
)

// Event is one member event as stored in member_events. Payload is shared
// by every subscription that receives the event: do not modify it.
type Event struct {
	ID         int
	MemberID   int
	Seq        int64
	Type       string
	Payload    json.RawMessage
	OccurredAt time.Time
}

// Options tunes a Bus. Zero fields take the Default* values.
type Options struct {
	// NotifyChannel is the PostgreSQL channel of the cross-replica
	// notifications; every replica must use the same one.
	NotifyChannel string
	// NotifyEvery is the coalescing window of outgoing notifications: at
	// most one pg_notify statement is sent per window.
	NotifyEvery time.Duration
	// PollEvery is the period of the safety tailer.
	PollEvery time.Duration
	// Buffer is how many undelivered events a subscription may hold.
	Buffer int
	// MaxPerMember bounds the live subscriptions of one member on this
	// process.
	MaxPerMember int
	// Retention is how long Prune keeps events.
	Retention time.Duration
	// Now is the clock of Prune; time.Now by default.
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.NotifyChannel == "" {
		o.NotifyChannel = DefaultNotifyChannel
	}
	if o.NotifyEvery <= 0 {
		o.NotifyEvery = DefaultNotifyEvery
	}
	if o.PollEvery <= 0 {
		o.PollEvery = DefaultPollEvery
	}
	if o.Buffer <= 0 {
		o.Buffer = DefaultBuffer
	}
	if o.MaxPerMember <= 0 {
		o.MaxPerMember = DefaultMaxPerMember
	}
	if o.Retention <= 0 {
		o.Retention = DefaultRetention
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

type runState int

const (
	stateIdle runState = iota
	stateRunning
	stateStopped
)

// Bus delivers member events to the subscribers of this process. Make one
// per process with New and start it with Run.
type Bus struct {
	db   *sql.DB
	dsn  string
	log  *slog.Logger
	opts Options

	fetchSig  chan struct{} // a subscription became ready
	notifySig chan struct{} // member ids are waiting to be notified
	// notifierPID is the backend pid of the notifier's connection, so that
	// the listener can ignore this process's own notifications.
	notifierPID atomic.Int64

	mu        sync.Mutex
	state     runState
	members   map[int][]*Subscription // registered subscriptions by member
	count     int
	ready     map[*Subscription]struct{} // to be read by the fetcher
	notifyIDs map[int]struct{}           // to be notified
	notifyAll bool                       // notify "*" instead of notifyIDs

	// held is owned by the fetcher goroutine: subscriptions with events in
	// their overflow slice, or replaying and waiting for buffer room.
	held map[*Subscription]struct{}
}

// New returns a Bus reading events through db and listening for other
// replicas' notifications on its own connection to dsn (the DSN db was
// opened with). An empty dsn runs no listener: other replicas' events then
// arrive through the safety tailer only, within Options.PollEvery.
func New(db *sql.DB, dsn string, log *slog.Logger, opts Options) *Bus {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Bus{
		db:        db,
		dsn:       dsn,
		log:       log,
		opts:      opts.withDefaults(),
		fetchSig:  make(chan struct{}, 1),
		notifySig: make(chan struct{}, 1),
		members:   make(map[int][]*Subscription),
		ready:     make(map[*Subscription]struct{}),
		notifyIDs: make(map[int]struct{}),
		held:      make(map[*Subscription]struct{}),
	}
}

// Run runs the listener, the notifier, the safety tailer and the fetcher
// until ctx ends, then waits for all of them to stop, ends every
// subscription with ErrStopped and returns nil. Failures of the database
// are logged and retried, never returned. Run may be called once.
//
// Stopping may take up to the listener's reconnect back-off (10s) when the
// listener is failing to connect at that moment: lib/pq sleeps between
// attempts without looking at Close.
func (b *Bus) Run(ctx context.Context) error {
	b.mu.Lock()
	if b.state != stateIdle {
		b.mu.Unlock()
		return errors.New("event bus: Run called more than once")
	}
	b.state = stateRunning
	b.mu.Unlock()

	var wg sync.WaitGroup
	wg.Go(func() { b.fetchLoop(ctx) })
	wg.Go(func() { b.notifyLoop(ctx) })
	if b.dsn != "" {
		wg.Go(func() { b.listenLoop(ctx) })
	}
	wg.Go(func() { b.tailLoop(ctx) })
	wg.Wait()

	b.shutdown()
	return nil
}

// Disable turns the bus off for good, in place of Run: subscriptions are
// refused with ErrStopped and Wake does nothing. Events are still written
// by the services; other replicas' buses deliver them. For replicas that
// serve no subscriber, and for measuring the writers without the bus.
func (b *Bus) Disable() {
	b.mu.Lock()
	idle := b.state == stateIdle
	if idle {
		b.state = stateRunning // Run refuses from now on
	}
	b.mu.Unlock()
	if idle {
		b.shutdown()
	}
}

// Wake tells the bus that a transaction which wrote events of these
// members has committed: their local subscribers are read at once and the
// other replicas are notified. It never blocks; call it after every commit
// that emitted events (a missed call only delays delivery to the safety
// tailer's period).
func (b *Bus) Wake(memberIDs ...int) {
	if len(memberIDs) == 0 {
		return
	}
	b.mu.Lock()
	if b.state == stateStopped {
		b.mu.Unlock()
		return
	}
	woke := b.markLocked(memberIDs)
	if !b.notifyAll {
		for _, id := range memberIDs {
			b.notifyIDs[id] = struct{}{}
		}
		if len(b.notifyIDs) > notifyAllAbove {
			b.notifyAll = true
			clear(b.notifyIDs)
		}
	}
	b.mu.Unlock()
	if woke {
		signal(b.fetchSig)
	}
	signal(b.notifySig)
}

// Subscribers returns how many subscriptions are registered on this
// process.
func (b *Bus) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.count
}

// Subscribe starts delivering the member's events with seq > afterSeq:
// first those already stored (replay), then new ones as they commit. The
// subscription ends when ctx ends, on Close, or on the errors listed at
// Subscription.Err.
//
// afterSeq is a cursor: the seq of the last event the client has, 0 for
// all stored events, or FromNow. With head the member's accounts.event_seq
// (0 when the member has no account) and first the lowest seq still stored
// (head+1 when none is), Subscribe fails with
//   - a BAD_USER_INPUT error on field "after" when afterSeq > head or
//     afterSeq < FromNow: the client cannot have seen such an event;
//   - ErrEventsExpired when afterSeq < first-1: events between the cursor
//     and the oldest stored one were pruned (so 0 is expired once a
//     member's first event has been pruned);
//   - ErrTooManySubscriptions beyond Options.MaxPerMember;
//   - ErrStopped after Run has returned.
//
// Subscribe may be called before Run; delivery starts when Run does.
// Authorizing the caller for memberID is the caller's job.
func (b *Bus) Subscribe(ctx context.Context, memberID int, afterSeq int64) (*Subscription, error) {
	s, err := b.subscribe(ctx, &Subscription{bus: b, memberID: memberID, ch: make(chan Event, min(chanCap, b.opts.Buffer))}, afterSeq)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, s.Close)
	s.mu.Lock()
	s.stopCtx = stop
	s.mu.Unlock()
	return s, nil
}

// SubscribeFunc is Subscribe for a consumer that takes events when told
// rather than blocking on a channel (a websocket server with no goroutine
// per subscription): the bus calls ready, from its own goroutines, each
// time events are waiting (take them with Next until it reports false) and
// once when the subscription ends (Ended, Err). ready must not block.
// The subscription holds no buffer while nothing waits. ctx bounds only
// the cursor check: the subscription lasts until Close or an error of
// Subscription.Err.
func (b *Bus) SubscribeFunc(ctx context.Context, memberID int, afterSeq int64, ready func()) (*Subscription, error) {
	return b.subscribe(ctx, &Subscription{bus: b, memberID: memberID, ready: ready}, afterSeq)
}

// subscribe registers s, checks its cursor and queues its first read.
func (b *Bus) subscribe(ctx context.Context, s *Subscription, afterSeq int64) (*Subscription, error) {
	if afterSeq < FromNow {
		return nil, fault.Invalidf("after", "must not be negative")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	memberID := s.memberID

	// Register before reading the cursor bounds, so that a FromNow cursor
	// and the first read both come after registration.
	b.mu.Lock()
	switch {
	case b.state == stateStopped:
		b.mu.Unlock()
		return nil, ErrStopped
	case len(b.members[memberID]) >= b.opts.MaxPerMember:
		b.mu.Unlock()
		return nil, ErrTooManySubscriptions
	}
	b.members[memberID] = append(b.members[memberID], s)
	s.registered = true
	b.count++
	b.mu.Unlock()

	after, err := b.checkCursor(ctx, memberID, afterSeq)
	if err != nil {
		b.unregister(s)
		return nil, err
	}
	s.last.Store(after)

	b.mu.Lock()
	if s.registered { // not closed meanwhile
		s.active = true
		b.ready[s] = struct{}{}
	}
	b.mu.Unlock()
	signal(b.fetchSig)
	return s, nil
}

// checkCursor validates afterSeq against the member's stored events and
// returns the cursor to start from.
func (b *Bus) checkCursor(ctx context.Context, memberID int, afterSeq int64) (int64, error) {
	var (
		head   int64
		oldest sql.NullInt64
	)
	// One statement, so both values come from the same snapshot.
	err := b.db.QueryRowContext(ctx, `SELECT
		COALESCE((SELECT event_seq FROM accounts WHERE member_id = $1), 0),
		(SELECT min(seq) FROM member_events WHERE member_id = $1)`, memberID).Scan(&head, &oldest)
	if err != nil {
		return 0, fmt.Errorf("reading event cursor bounds of member %d: %w", memberID, err)
	}
	if afterSeq == FromNow {
		return head, nil
	}
	if afterSeq > head {
		return 0, fault.Invalidf("after", "is beyond the member's latest event %d", head)
	}
	first := head + 1
	if oldest.Valid {
		first = oldest.Int64
	}
	if afterSeq < first-1 {
		return 0, ErrEventsExpired
	}
	return afterSeq, nil
}

// markLocked queues the active subscriptions of members for reading and
// reports whether it queued any. b.mu must be held.
func (b *Bus) markLocked(memberIDs []int) bool {
	woke := false
	for _, id := range memberIDs {
		for _, s := range b.members[id] {
			if s.active {
				b.ready[s] = struct{}{}
				woke = true
			}
		}
	}
	return woke
}

// wakeLocal queues this process's subscriptions of members for reading,
// without notifying other replicas.
func (b *Bus) wakeLocal(memberIDs []int) {
	b.mu.Lock()
	woke := b.markLocked(memberIDs)
	b.mu.Unlock()
	if woke {
		signal(b.fetchSig)
	}
}

// wakeAll queues every subscription of this process for reading: after a
// window in which notifications may have been lost.
func (b *Bus) wakeAll() {
	b.mu.Lock()
	woke := false
	for _, subs := range b.members {
		for _, s := range subs {
			if s.active {
				b.ready[s] = struct{}{}
				woke = true
			}
		}
	}
	b.mu.Unlock()
	if woke {
		signal(b.fetchSig)
	}
}

// wakeBehind queues the subscriptions of the members in heads (member id
// to its highest seq seen) that have not handed over that seq yet.
func (b *Bus) wakeBehind(heads map[int]int64) {
	b.mu.Lock()
	woke := false
	for id, seq := range heads {
		for _, s := range b.members[id] {
			if s.active && s.last.Load() < seq {
				b.ready[s] = struct{}{}
				woke = true
			}
		}
	}
	b.mu.Unlock()
	if woke {
		signal(b.fetchSig)
	}
}

// unregister removes s from the registry; it is idempotent.
func (b *Bus) unregister(s *Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !s.registered {
		return
	}
	s.registered = false
	s.active = false
	delete(b.ready, s)
	subs := b.members[s.memberID]
	for i, x := range subs {
		if x == s {
			subs = append(subs[:i], subs[i+1:]...)
			break
		}
	}
	if len(subs) == 0 {
		delete(b.members, s.memberID)
	} else {
		b.members[s.memberID] = subs
	}
	b.count--
}

// shutdown ends every subscription with ErrStopped and refuses new ones.
func (b *Bus) shutdown() {
	b.mu.Lock()
	b.state = stateStopped
	var subs []*Subscription
	for _, ms := range b.members {
		for _, s := range ms {
			s.registered, s.active = false, false
			subs = append(subs, s)
		}
	}
	clear(b.members)
	clear(b.ready)
	clear(b.notifyIDs)
	b.count = 0
	b.mu.Unlock()
	for _, s := range subs {
		s.end(ErrStopped)
	}
}

// signal makes a pending signal on c, without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// sleep waits for d or until ctx ends, reporting whether it was the former.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// backoff doubles a retry delay, from 50ms up to retryMax.
func backoff(d time.Duration) time.Duration {
	if d <= 0 {
		return 50 * time.Millisecond
	}
	return min(2*d, retryMax)
}
