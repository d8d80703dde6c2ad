package eventbus_test

import (
	"context"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/onemember/onemember/internal/eventbus"
)

// bulkMembers creates n members with accounts in two statements.
func (e *env) bulkMembers(t testing.TB, n int) []int {
	t.Helper()
	rows, err := e.db.QueryContext(t.Context(), `INSERT INTO members
		(created_at, updated_at, member_no, source_channel, registered_at)
		SELECT now(), now(), 'L' || g || '-' || $2, 'POS', now() FROM generate_series(1, $1::int) g
		RETURNING id`, n, e.n.Add(1))
	if err != nil {
		t.Fatalf("inserting members: %v", err)
	}
	defer rows.Close()
	ids := make([]int, 0, n)
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			t.Fatalf("scanning member id: %v", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("reading member ids: %v", err)
	}
	if _, err := e.db.ExecContext(t.Context(), `INSERT INTO accounts (created_at, updated_at, member_id)
		SELECT now(), now(), unnest($1::bigint[])`, pq.Array(ids)); err != nil {
		t.Fatalf("inserting accounts: %v", err)
	}
	return ids
}

// TestIdleSubscriptionMemory bounds what an idle subscription costs the
// bus (channel, registry entry, context callback). Not parallel: it reads
// the process heap.
func TestIdleSubscriptionMemory(t *testing.T) {
	e := newEnv(t)
	b := e.bus(t, e.dsn, eventbus.Options{})
	ids := e.bulkMembers(t, 200)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	subs := make([]*eventbus.Subscription, 0, 5*len(ids))
	for _, id := range ids {
		for range 5 {
			s, err := b.Subscribe(ctx, id, 0)
			if err != nil {
				t.Fatalf("Subscribe: %v", err)
			}
			subs = append(subs, s)
		}
	}
	eventually(t, "nothing is held", func() bool { return b.Subscribers() == len(subs) })
	time.Sleep(50 * time.Millisecond) // first reads done
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / int64(len(subs))
	t.Logf("%d idle subscriptions: %d bytes each", len(subs), per)
	if per > 4096 {
		t.Errorf("an idle subscription costs %d bytes of heap, want at most 4 KiB", per)
	}
	runtime.KeepAlive(subs)
}

// TestThroughput writes 5,000 events/s over 5,000 members for 10 s, each
// member subscribed on the writing replica (A) and on another one (B), and
// checks order, completeness and the publish-to-receive latency.
// Run it with EVENTBUS_LOAD=1 (and without -race for realistic numbers).
func TestThroughput(t *testing.T) {
	if os.Getenv("EVENTBUS_LOAD") == "" {
		t.Skip("set EVENTBUS_LOAD=1 to run the load test")
	}
	const (
		members  = 5000
		rate     = 5000 // events per second
		duration = 10 * time.Second
		perTx    = 10
		writers  = 25
	)
	e := newEnv(t)
	a := e.bus(t, e.dsn, eventbus.Options{})
	b := e.bus(t, e.dsn, eventbus.Options{})
	ids := e.bulkMembers(t, members)

	type result struct {
		bus  int
		lat  []time.Duration // from commit
		ins  []time.Duration // from insert (occurred_at)
		errs []string
		n    int
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	results := make(chan result, 2*members)
	var committed sync.Map // eventKey → commit time
	var readers sync.WaitGroup
	for bi, bus := range []*eventbus.Bus{a, b} {
		for _, id := range ids {
			s, err := bus.Subscribe(ctx, id, 0)
			if err != nil {
				t.Fatalf("Subscribe: %v", err)
			}
			readers.Go(func() {
				r := result{bus: bi}
				last := int64(0)
				for ev := range s.Events() {
					now := time.Now()
					r.ins = append(r.ins, now.Sub(ev.OccurredAt))
					var l time.Duration // received before the writer noted its commit
					if c, ok := committed.Load(eventKey(ev.MemberID, ev.Seq)); ok {
						l = max(0, now.Sub(c.(time.Time)))
					}
					r.lat = append(r.lat, l)
					if ev.Seq != last+1 {
						r.errs = append(r.errs, "gap or duplicate")
					}
					last = ev.Seq
					r.n++
				}
				if err := s.Err(); err != nil {
					r.errs = append(r.errs, err.Error())
				}
				results <- r
			})
		}
	}

	var (
		written = make([]int, writers)
		wg      sync.WaitGroup
	)
	start := time.Now()
	cpu0 := cpuTime()
	interval := time.Duration(float64(time.Second) * perTx * writers / rate)
	for w := range writers {
		wg.Go(func() {
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for time.Since(start) < duration {
				batch := make([]int, 0, perTx)
				for len(batch) < perTx {
					if id := ids[rand.IntN(len(ids))]; !slices.Contains(batch, id) {
						batch = append(batch, id)
					}
				}
				slices.Sort(batch) // lock order
				ids, seqs, err := writeBatch(t.Context(), e, batch)
				if err != nil {
					t.Errorf("writing events: %v", err)
					return
				}
				now := time.Now()
				for i := range ids {
					committed.Store(eventKey(int(ids[i]), seqs[i]), now)
				}
				a.Wake(batch...)
				written[w] += len(batch)
				<-tick.C
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpu := cpuTime() - cpu0
	total := 0
	for _, n := range written {
		total += n
	}
	time.Sleep(time.Second) // stragglers
	cancel()
	readers.Wait()
	close(results)

	var (
		lat      []time.Duration
		ins      []time.Duration
		byBus    [2][]time.Duration
		received int
		errs     int
	)
	for r := range results {
		lat = append(lat, r.lat...)
		ins = append(ins, r.ins...)
		byBus[r.bus] = append(byBus[r.bus], r.lat...)
		received += r.n
		for _, e := range r.errs {
			if e != "" && errs < 5 {
				t.Errorf("subscriber: %s", e)
			}
			errs++
		}
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[int(p*float64(len(lat)-1))] }
	slices.Sort(ins)
	t.Logf("from insert (includes the writer's commit): p50 %v p99 %v", ins[len(ins)/2], ins[int(0.99*float64(len(ins)-1))])
	for i, l := range byBus {
		slices.Sort(l)
		t.Logf("bus %c: p50 %v p99 %v", 'A'+i, l[len(l)/2], l[int(0.99*float64(len(l)-1))])
	}
	t.Logf("wrote %d events in %v (%.0f/s); received %d (want %d); commit-to-receive latency p50 %v p99 %v max %v",
		total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), received, 2*total,
		q(0.5), q(0.99), lat[len(lat)-1])
	t.Logf("test process CPU (writers, readers, both buses): %.2f cores", cpu.Seconds()/elapsed.Seconds())
	st := e.db.Stats()
	t.Logf("pool: %d waits for a connection, %v in total", st.WaitCount, st.WaitDuration)
	if received != 2*total {
		t.Errorf("received %d events, want %d", received, 2*total)
	}
	if p99 := q(0.99); p99 > 200*time.Millisecond {
		t.Errorf("p99 latency %v, want at most 200ms", p99)
	}
}

// writeBatch commits one event for each member the way events.Emit does
// (seq from the member's locked account row, locks taken in member order),
// in three statements.
func writeBatch(ctx context.Context, e *env, members []int) (ids, seqs []int64, err error) {
	tx, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, nil, err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	rows, err := tx.QueryContext(ctx, `UPDATE accounts a SET event_seq = a.event_seq + 1
		FROM (SELECT id FROM accounts WHERE member_id = ANY($1) ORDER BY member_id FOR UPDATE) l
		WHERE a.id = l.id RETURNING a.member_id, a.event_seq`, pq.Array(members))
	if err != nil {
		return nil, nil, err
	}
	for rows.Next() {
		var id, seq int64
		if err := rows.Scan(&id, &seq); err != nil {
			rows.Close()
			return nil, nil, err
		}
		ids, seqs = append(ids, id), append(seqs, seq)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO member_events (member_id, seq, type, payload, occurred_at)
		SELECT m, s, 'POINTS_CHANGED', '{"points":10}', $3 FROM unnest($1::bigint[], $2::bigint[]) AS u(m, s)`,
		pq.Array(ids), pq.Array(seqs), time.Now()); err != nil {
		return nil, nil, err
	}
	return ids, seqs, tx.Commit()
}

func eventKey(member int, seq int64) int64 { return int64(member)<<20 | seq }

// cpuTime returns the CPU time used by this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
