package eventbus_test

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/eventbus"
	"github.com/onemember/onemember/internal/events"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/pgtest"
	"github.com/onemember/onemember/migrations"
)

// wait is how long a test waits for something that should happen; the
// tailer tests may be held back by long transactions of other tests on
// the same cluster, hence the generous bound.
const wait = 10 * time.Second

type env struct {
	dsn    string
	db     *sql.DB
	client *ent.Client
	n      atomic.Int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dsn := pgtest.New(t, migrations.FS)
	db, err := database.Open(t.Context(), dsn, database.Options{MaxOpenConns: 40})
	if err != nil {
		t.Fatalf("opening database: %v", err)
	}
	client := ent.NewClient(ent.Driver(entsql.OpenDB(dialect.Postgres, db)))
	t.Cleanup(func() { client.Close() })
	return &env{dsn: dsn, db: db, client: client}
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("EVENTBUS_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// bus starts a Bus listening on dsn ("" for none) and stops it when the
// test ends, failing the test if Run does not return.
func (e *env) bus(t *testing.T, dsn string, opts eventbus.Options) *eventbus.Bus {
	t.Helper()
	b := eventbus.New(e.db, dsn, testLogger(t), opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("Run did not return after its context ended")
		}
	})
	return b
}

func (e *env) member(t *testing.T) int {
	t.Helper()
	m, err := e.client.Member.Create().
		SetMemberNo(fmt.Sprintf("E%08d", e.n.Add(1))).
		SetSourceChannel(enum.ChannelPOS).
		Save(t.Context())
	if err != nil {
		t.Fatalf("creating member: %v", err)
	}
	return m.ID
}

// emit commits one event of the member, written the way the services do
// (events.Emit under the account lock), and returns its seq. It does not
// Wake any bus.
func (e *env) emit(t *testing.T, memberID int, at time.Time) int64 {
	t.Helper()
	tx, seq := e.begin(t, memberID, at)
	if err := tx.Commit(); err != nil {
		t.Fatalf("committing event: %v", err)
	}
	return seq
}

// begin writes one event of the member in a transaction it leaves open.
func (e *env) begin(t *testing.T, memberID int, at time.Time) (*ent.Tx, int64) {
	t.Helper()
	ctx := t.Context()
	tx, err := e.client.Tx(ctx)
	if err != nil {
		t.Fatalf("beginning transaction: %v", err)
	}
	acct, err := account.Lock(ctx, tx, memberID)
	if err != nil {
		_ = tx.Rollback()
		t.Fatalf("locking account: %v", err)
	}
	ev, err := events.Emit(ctx, tx, acct, at, events.Event{
		Type:    events.PointsChanged,
		Payload: map[string]any{"member": memberID, "seq": acct.EventSeq},
	})
	if err != nil {
		_ = tx.Rollback()
		t.Fatalf("emitting event: %v", err)
	}
	return tx, ev.Seq
}

// emitN commits n events of the member, waking b (when not nil) after each.
func (e *env) emitN(t *testing.T, b *eventbus.Bus, memberID, n int) []int64 {
	t.Helper()
	seqs := make([]int64, n)
	for i := range seqs {
		seqs[i] = e.emit(t, memberID, time.Now())
		if b != nil {
			b.Wake(memberID)
		}
	}
	return seqs
}

func subscribe(t *testing.T, b *eventbus.Bus, memberID int, after int64) *eventbus.Subscription {
	t.Helper()
	s, err := b.Subscribe(t.Context(), memberID, after)
	if err != nil {
		t.Fatalf("Subscribe(member %d, after %d): %v", memberID, after, err)
	}
	t.Cleanup(s.Close)
	return s
}

// expectSeqs receives exactly the events with seqs want, in order.
func expectSeqs(t *testing.T, s *eventbus.Subscription, memberID int, want ...int64) []eventbus.Event {
	t.Helper()
	return expectSeqsWithin(t, wait, s, memberID, want...)
}

// expectSeqsWithin is expectSeqs with its own time limit.
func expectSeqsWithin(t *testing.T, limit time.Duration, s *eventbus.Subscription, memberID int, want ...int64) []eventbus.Event {
	t.Helper()
	got := make([]eventbus.Event, 0, len(want))
	timeout := time.After(limit)
	for len(got) < len(want) {
		select {
		case ev, ok := <-s.Events():
			if !ok {
				t.Fatalf("subscription ended after %d of %d events: %v", len(got), len(want), s.Err())
			}
			if ev.MemberID != memberID {
				t.Fatalf("event of member %d on a subscription of member %d", ev.MemberID, memberID)
			}
			if w := want[len(got)]; ev.Seq != w {
				t.Fatalf("event %d: got seq %d, want %d", len(got), ev.Seq, w)
			}
			got = append(got, ev)
		case <-timeout:
			t.Fatalf("got %d of %d events within %v (seqs %v)", len(got), len(want), limit, want)
		}
	}
	return got
}

// expectQuiet fails if s receives an event or ends within d.
func expectQuiet(t *testing.T, s *eventbus.Subscription, d time.Duration) {
	t.Helper()
	select {
	case ev, ok := <-s.Events():
		if !ok {
			t.Fatalf("subscription ended: %v", s.Err())
		}
		t.Fatalf("unexpected event seq %d", ev.Seq)
	case <-time.After(d):
	}
}

// eventually polls cond until it holds or wait passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func seqRange(from, to int64) []int64 {
	var out []int64
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

// collect returns the seqs of the next n events of s, fewer if s ends or
// wait passes; it may run on its own goroutine.
func collect(s *eventbus.Subscription, n int) []int64 {
	var seqs []int64
	timeout := time.After(wait)
	for len(seqs) < n {
		select {
		case ev, ok := <-s.Events():
			if !ok {
				return seqs
			}
			seqs = append(seqs, ev.Seq)
		case <-timeout:
			return seqs
		}
	}
	return seqs
}
