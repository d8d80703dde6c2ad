package eventbus

import (
	"context"
	"fmt"
	"time"

	"github.com/lib/pq"
)

// fetchSQL reads, for each (member, cursor, limit) triple, the member's
// next events after the cursor: one index range scan on (member_id, seq)
// per triple. c.i (1-based) tells which triple a row answers.
const fetchSQL = `SELECT c.i, e.id, e.member_id, e.seq, e.type, e.payload, e.occurred_at
FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) WITH ORDINALITY AS c(member_id, after, lim, i)
CROSS JOIN LATERAL (
	SELECT m.id, m.member_id, m.seq, m.type, m.payload, m.occurred_at
	FROM member_events m
	WHERE m.member_id = c.member_id AND m.seq > c.after
	ORDER BY m.seq
	LIMIT c.lim
) e
ORDER BY c.i, e.seq`

// fetchLoop is the fetcher: it reads the events of ready subscriptions in
// batches and hands them over, and keeps held subscriptions moving.
func (b *Bus) fetchLoop(ctx context.Context) {
	held := time.NewTimer(heldEvery)
	defer held.Stop()
	var (
		lastRun time.Time
		wait    time.Duration
	)
	for {
		var heldC <-chan time.Time
		if len(b.held) > 0 {
			held.Reset(heldEvery)
			heldC = held.C
		}
		select {
		case <-ctx.Done():
			return
		case <-b.fetchSig:
		case <-heldC:
		}
		b.serviceHeld()
		if !b.hasReady() {
			continue
		}
		// Gather: wakes that arrive within gatherWindow of the previous read
		// share the next one; an idle fetcher reads at once.
		if d := gatherWindow - time.Since(lastRun); d > 0 && !sleep(ctx, d) {
			return
		}
		batch := b.takeReady()
		lastRun = time.Now()
		if err := b.fetch(ctx, batch); err != nil {
			if ctx.Err() != nil {
				return
			}
			wait = backoff(wait)
			b.log.Warn("event bus: reading events", "err", err, "subscriptions", len(batch), "retry_in", wait)
			b.requeue(batch...)
			if !sleep(ctx, wait) {
				return
			}
			continue
		}
		wait = 0
	}
}

func (b *Bus) hasReady() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.ready) > 0
}

// takeReady removes up to maxGroups subscriptions from the ready set.
func (b *Bus) takeReady() []*Subscription {
	b.mu.Lock()
	defer b.mu.Unlock()
	batch := make([]*Subscription, 0, min(len(b.ready), maxGroups))
	for s := range b.ready {
		if len(batch) == maxGroups {
			signal(b.fetchSig) // the rest in the next round
			break
		}
		batch = append(batch, s)
		delete(b.ready, s)
	}
	return batch
}

// requeue puts subscriptions back in the ready set.
func (b *Bus) requeue(subs ...*Subscription) {
	b.mu.Lock()
	for _, s := range subs {
		if s.active {
			b.ready[s] = struct{}{}
		}
	}
	b.mu.Unlock()
	signal(b.fetchSig)
}

// serviceHeld moves overflow events into channels that have room, and
// makes replaying subscriptions ready again once half their buffer is free.
func (b *Bus) serviceHeld() {
	var again []*Subscription
	for s := range b.held {
		s.mu.Lock()
		if s.ended {
			s.mu.Unlock()
			delete(b.held, s)
			continue
		}
		s.pumpLocked()
		pending := len(s.pend) > 0
		room := s.roomLocked(b.opts.Buffer)
		s.mu.Unlock()
		if s.behind && 2*room >= b.opts.Buffer {
			s.behind = false
			again = append(again, s)
		}
		if !pending && !s.behind {
			delete(b.held, s)
		}
	}
	if len(again) > 0 {
		b.requeue(again...)
	}
}

// group is subscriptions of one member at the same cursor: they share the
// rows of one read.
type group struct {
	memberID int
	after    int64
	lim      int
	subs     []*Subscription
	rows     []Event
}

type groupKey struct {
	memberID int
	after    int64
}

// fetch reads the next events of batch with one query and hands them over.
func (b *Bus) fetch(ctx context.Context, batch []*Subscription) error {
	var groups []*group
	index := make(map[groupKey]int, len(batch))
	for _, s := range batch {
		lim, ok := b.limit(s)
		if !ok {
			continue
		}
		if lim == 0 { // replaying with a full buffer
			s.behind = true
			b.held[s] = struct{}{}
			continue
		}
		k := groupKey{s.memberID, s.last.Load()}
		i, ok := index[k]
		if !ok {
			i = len(groups)
			index[k] = i
			groups = append(groups, &group{memberID: k.memberID, after: k.after})
		}
		g := groups[i]
		g.lim = max(g.lim, lim)
		g.subs = append(g.subs, s)
	}
	if len(groups) == 0 {
		return nil
	}
	if err := b.read(ctx, groups); err != nil {
		return err
	}
	for _, g := range groups {
		for _, s := range g.subs {
			b.deliver(s, g.rows, g.lim)
		}
	}
	return nil
}

// limit returns how many rows to read for s, and false when s has ended.
// A replaying subscription reads what its buffer has room for; a live one
// reads one more, so that an event it has no room for is seen and ends it.
func (b *Bus) limit(s *Subscription) (int, bool) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return 0, false
	}
	s.pumpLocked()
	room := s.roomLocked(b.opts.Buffer)
	s.mu.Unlock()
	if s.live {
		room++
	}
	return min(room, pageSize), true
}

// read runs fetchSQL for groups and fills their rows.
func (b *Bus) read(ctx context.Context, groups []*group) error {
	members := make([]int64, len(groups))
	afters := make([]int64, len(groups))
	lims := make([]int64, len(groups))
	for i, g := range groups {
		members[i], afters[i], lims[i] = int64(g.memberID), g.after, int64(g.lim)
	}
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	rows, err := b.db.QueryContext(ctx, fetchSQL, pq.Array(members), pq.Array(afters), pq.Array(lims))
	if err != nil {
		return fmt.Errorf("querying member events: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			i       int
			ev      Event
			payload []byte
		)
		if err := rows.Scan(&i, &ev.ID, &ev.MemberID, &ev.Seq, &ev.Type, &payload, &ev.OccurredAt); err != nil {
			return fmt.Errorf("scanning member event: %w", err)
		}
		if i < 1 || i > len(groups) {
			return fmt.Errorf("member event row for unknown cursor %d", i)
		}
		ev.Payload = payload
		groups[i-1].rows = append(groups[i-1].rows, ev)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading member events: %w", err)
	}
	return nil
}

// deliver hands rows (the result of a read limited to lim rows from s's
// cursor) to s, and decides what s needs next.
func (b *Bus) deliver(s *Subscription, rows []Event, lim int) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	last := s.last.Load()
	from := last
	var (
		n   int // rows handled
		end error
	)
	for _, ev := range rows {
		if ev.Seq <= last { // cannot happen: the read started after last
			n++
			continue
		}
		if ev.Seq != last+1 {
			// Seqs are gap-free, so the missing ones were pruned.
			end = ErrEventsExpired
			break
		}
		if !s.pushLocked(ev, b.opts.Buffer) {
			if s.live {
				end = ErrSlowConsumer
			}
			break // replay resumes when the consumer makes room
		}
		last = ev.Seq
		n++
	}
	s.last.Store(last)
	if end != nil {
		s.mu.Unlock()
		s.end(end)
		b.unregister(s)
		b.log.Debug("event bus: subscription ended", "member_id", s.memberID, "seq", last, "err", end)
		return
	}
	// A SubscribeFunc consumer's events wait in pend for Next: nothing to
	// move into a channel.
	pending := len(s.pend) > 0 && s.ch != nil
	pushed := last > from
	s.mu.Unlock()
	if pushed && s.ready != nil {
		s.ready()
	}

	switch {
	case len(rows) < lim && n == len(rows): // read everything there was
		s.live, s.behind = true, false
	case s.live: // a full page: read the rest now
		b.requeue(s)
	default:
		s.behind = true
	}
	if pending || s.behind {
		b.held[s] = struct{}{}
	}
}
