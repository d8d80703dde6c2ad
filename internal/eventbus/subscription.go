package eventbus

import (
	"sync"
	"sync/atomic"
)

// Subscription is one subscriber's stream of a member's events. It holds no
// goroutine: the Bus's fetcher fills it. A subscription made by Subscribe
// hands its events over through a small channel (Events); one made by
// SubscribeFunc keeps them in a slice and calls its ready function, and
// the consumer takes them with Next.
type Subscription struct {
	bus      *Bus
	memberID int
	ch       chan Event // nil for SubscribeFunc's subscriptions
	ready    func()     // SubscribeFunc's callback, nil for channels
	// last is the seq of the last event handed over (to ch or pend).
	// Written by the fetcher only; read by the tailer to skip subscriptions
	// that are already past what it saw.
	last atomic.Int64

	// Guarded by bus.mu.
	registered bool // in bus.members
	active     bool // cursor checked: wakes may queue it

	mu      sync.Mutex
	ended   bool
	err     error
	pend    []Event // overflow of ch, nil when empty; filled by the fetcher
	stopCtx func() bool

	// Owned by the fetcher goroutine.
	live   bool // has caught up with the stored events once
	behind bool // replaying, waiting for buffer room to read more
}

// Events returns the channel of the subscription's events, in seq order,
// each seq once. It is closed when the subscription ends; see Err. It is
// nil for a subscription made by SubscribeFunc.
func (s *Subscription) Events() <-chan Event { return s.ch }

// Next takes the next waiting event of a subscription made by
// SubscribeFunc, in seq order, each seq once; false when none is waiting.
// After the subscription ended (Ended), the events still waiting are
// dropped: the consumer resumes by cursor.
func (s *Subscription) Next() (Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pend) == 0 {
		return Event{}, false
	}
	ev := s.pend[0]
	s.pend[0] = Event{}
	s.pend = s.pend[1:]
	if len(s.pend) == 0 {
		s.pend = nil // free the array: idle subscriptions hold none
	}
	return ev, true
}

// Ended reports whether the subscription has ended; Err says why.
func (s *Subscription) Ended() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ended
}

// Err returns why the subscription ended, once Events is closed: nil when
// its context ended or Close was called, ErrSlowConsumer, ErrEventsExpired
// (events after its position were pruned while it read), or ErrStopped.
func (s *Subscription) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// MemberID returns the member whose events s delivers.
func (s *Subscription) MemberID() int { return s.memberID }

// Close ends the subscription and removes it from the bus. Events already
// in the channel can still be received. Close is idempotent and may be
// called from any goroutine.
func (s *Subscription) Close() {
	s.end(nil)
	s.bus.unregister(s)
}

// end closes the channel with err unless s has ended already, releases
// the context callback, and tells a SubscribeFunc consumer.
func (s *Subscription) end(err error) {
	s.mu.Lock()
	ended := s.ended
	if !ended {
		s.endLocked(err)
	}
	stop := s.stopCtx
	s.mu.Unlock()
	if stop != nil {
		stop()
	}
	if !ended && s.ready != nil {
		s.ready()
	}
}

func (s *Subscription) endLocked(err error) {
	s.ended = true
	s.err = err
	s.pend = nil
	if s.ch != nil {
		close(s.ch)
	}
}

// pumpLocked moves overflow events into the channel while it has room.
func (s *Subscription) pumpLocked() {
	if s.ch == nil {
		return // SubscribeFunc: pend is the buffer
	}
	for len(s.pend) > 0 {
		select {
		case s.ch <- s.pend[0]:
			s.pend[0] = Event{}
			s.pend = s.pend[1:]
		default:
			return
		}
	}
	s.pend = nil // free the array
}

// pushLocked hands ev over, to the channel or the overflow slice, and
// reports false when the buffer of size limit is full.
func (s *Subscription) pushLocked(ev Event, limit int) bool {
	s.pumpLocked()
	if len(s.pend) == 0 {
		select {
		case s.ch <- ev:
			return true
		default:
		}
	}
	if len(s.ch)+len(s.pend) >= limit {
		return false
	}
	s.pend = append(s.pend, ev)
	return true
}

// roomLocked returns how many more events the buffer of size limit takes.
func (s *Subscription) roomLocked(limit int) int {
	return max(0, limit-len(s.ch)-len(s.pend))
}
