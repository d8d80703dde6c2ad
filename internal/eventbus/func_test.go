package eventbus_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/onemember/onemember/internal/eventbus"
)

// A SubscribeFunc consumer takes events when told: a replay four times its
// buffer arrives in order, then live events; every ready call finds what
// the bus handed over, and nothing is taken twice.
func TestSubscribeFuncReplayThenLive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.bus(t, e.dsn, eventbus.Options{Buffer: 8})
	m := e.member(t)
	e.emitN(t, nil, m, 32)

	ready := make(chan struct{}, 1)
	s, err := b.SubscribeFunc(t.Context(), m, 0, func() {
		select {
		case ready <- struct{}{}:
		default:
		}
	})
	if err != nil {
		t.Fatalf("SubscribeFunc: %v", err)
	}
	t.Cleanup(s.Close)
	if s.Events() != nil {
		t.Fatal("a SubscribeFunc subscription has a channel")
	}

	var got []int64
	take := func(n int) {
		t.Helper()
		deadline := time.After(wait)
		for len(got) < n {
			select {
			case <-ready:
			case <-deadline:
				t.Fatalf("got %d of %d events: %v", len(got), n, got)
			}
			for ev, ok := s.Next(); ok; ev, ok = s.Next() {
				got = append(got, ev.Seq)
			}
		}
	}
	take(32)
	e.emitN(t, b, m, 3)
	take(35)
	if !slices.Equal(got, seqRange(1, 35)) {
		t.Fatalf("seqs %v, want 1..35", got)
	}
	if s.Ended() {
		t.Fatalf("ended: %v", s.Err())
	}
	s.Close()
	if !s.Ended() || s.Err() != nil {
		t.Fatalf("after Close: ended %v, err %v", s.Ended(), s.Err())
	}
}

// A consumer that stops taking is ended as too slow once its buffer is
// full, and told so through ready.
func TestSubscribeFuncSlowConsumer(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.bus(t, e.dsn, eventbus.Options{Buffer: 4})
	m := e.member(t)
	ready := make(chan struct{}, 16)
	s, err := b.SubscribeFunc(t.Context(), m, 0, func() { ready <- struct{}{} })
	if err != nil {
		t.Fatalf("SubscribeFunc: %v", err)
	}
	t.Cleanup(s.Close)
	// The first event makes the subscription live (a replay would wait for
	// room instead of ending it).
	e.emitN(t, b, m, 1)
	select {
	case <-ready:
	case <-time.After(wait):
		t.Fatal("no ready call for the first event")
	}
	e.emitN(t, b, m, 5)
	eventually(t, "the slow subscription ends", s.Ended)
	if err := s.Err(); !errors.Is(err, eventbus.ErrSlowConsumer) {
		t.Fatalf("Err() = %v, want ErrSlowConsumer", err)
	}
	if _, ok := s.Next(); ok {
		t.Error("an ended subscription still hands out events")
	}
	eventually(t, "the slow subscription is unregistered", func() bool { return b.Subscribers() == 0 })
}
