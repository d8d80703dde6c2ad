package membercard

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
)

// Card reads that arrive together share a statement.
//
// Much of what a card costs PostgreSQL is paid per statement, not per
// member: the round trip (waking the backend, the protocol, the syscalls
// on both sides) and starting the executor on a plan of some forty nodes.
// At most Runners statements read cards at a time. A read that finds a
// runner free runs its statement at once, alone, as before. Reads that
// arrive while every runner is busy queue, and the next free runner reads
// up to maxCardBatch of them in one statement (cardBatchSQL): the same
// per-member query under a LATERAL join, each member with its own
// parameters. A lone read so waits for nothing, and the more reads arrive
// together the fewer statements they take. With the benchmark's 16
// clients, a statement read about three cards, PostgreSQL's CPU per
// MemberHome halved and the requests a second rose by about 40 %
// (docs/BENCHMARKS.md).
//
// Each card is still read in one statement, so in one snapshot; a card
// read with others is the card it would be alone at that instant.
//
// The pool's sessions plan with generic plans (Session). Left to choose,
// PostgreSQL planned the batch statement afresh at every execution: its
// generic plan assumes 10 members in the arrays, so it never looked
// cheaper than a plan for the 2 to 8 sent, and planning cost more than
// the round trips saved. The generic plan is the same index scans by
// member for any number of members.
const (
	// Runners is the size of the pool the Reader reads cards on.
	Runners      = 2
	maxCardBatch = 32
	// cardTimeout bounds a card statement, which runs without any one
	// request's cancellation.
	cardTimeout = 10 * time.Second
)

// Session are the run-time parameters of the pool the Reader reads cards on.
var Session = map[string]string{"plan_cache_mode": "force_generic_plan"}

// cardBatchSQL is cardSQL for several members: $1 to $9 are arrays of
// cardSQL's per-member parameters $1 to $6, $9, $10 and $7 (the zone), $10
// is lotGroups; each row starts with the 1-based position of its member in
// the arrays.
var cardBatchSQL = func() string {
	inner, ok := strings.CutSuffix(cardSQL, "\nORDER BY kind, ord")
	if !ok {
		panic("membercard: cardSQL does not end with its ORDER BY")
	}
	inner = strings.NewReplacer(
		"$1::bigint", "p.member_id", "$2::timestamptz", "p.now", "$3::timestamptz", "p.promotion_from",
		"$4::timestamptz", "p.registered", "$5::int", "p.every", "$6::int", "p.mode", "$7::text", "p.zone",
		"$8::int", "$10::int", "$9::int", "p.lim", "$10::text", "p.status",
	).Replace(inner)
	return `SELECT p.i, x.* FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[], $4::timestamptz[],
	$5::int[], $6::int[], $7::int[], $8::text[], $9::text[])
	WITH ORDINALITY AS p(member_id, now, promotion_from, registered, every, mode, lim, status, zone, i)
CROSS JOIN LATERAL (` + inner + `
) x
ORDER BY p.i, x.kind, x.ord`
}()

// cardArgs are cardSQL's parameters for one member but lotGroups.
type cardArgs struct {
	member                         int
	now, promotionFrom, registered time.Time
	every, mode                    int
	zone                           string
	limit                          int
	status                         *string
}

// cardCall is one read waiting for its rows.
type cardCall struct {
	args cardArgs
	rows []*cardRow
	err  error
	done chan struct{}
}

// batcher queues the reads that found every runner busy.
type batcher struct {
	mu         sync.Mutex
	pending    []*cardCall
	running    int
	statements atomic.Int64 // statements run, for tests
}

// cardRows reads the rows of a's card, in a statement of its own or shared
// (alone on the Reader's client without a card pool).
func (r *Reader) cardRows(ctx context.Context, a cardArgs) ([]*cardRow, error) {
	if r.cardDB == nil {
		call := &cardCall{args: a}
		err := r.readCalls(ctx, r.db, []*cardCall{call})
		return call.rows, err
	}
	call := &cardCall{args: a, done: make(chan struct{})}
	b := &r.batcher
	b.mu.Lock()
	b.pending = append(b.pending, call)
	run := b.running < Runners
	if run {
		b.running++
	}
	b.mu.Unlock()
	if run {
		r.run()
	}
	select {
	case <-call.done:
		return call.rows, call.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// run is a runner: it reads the oldest pending calls in one statement and
// answers them; while calls remain, a goroutine carries on as the runner
// (so that the caller, answered, returns), and otherwise the runner stops.
// The statement serves several requests, so it runs on a context of its
// own rather than on any one request's.
func (r *Reader) run() {
	b := &r.batcher
	b.mu.Lock()
	n := min(len(b.pending), maxCardBatch)
	calls := make([]*cardCall, n)
	copy(calls, b.pending)
	b.pending = append(b.pending[:0], b.pending[n:]...)
	b.mu.Unlock()

	if n > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), cardTimeout)
		err := r.readCalls(ctx, r.cardDB, calls)
		cancel()
		for _, c := range calls {
			if err != nil {
				c.rows, c.err = nil, err
			}
			close(c.done)
		}
	}

	b.mu.Lock()
	if len(b.pending) == 0 {
		b.running--
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	go r.run()
}

// readCalls reads the cards of calls in one statement and hands each call
// its rows.
func (r *Reader) readCalls(ctx context.Context, db *ent.Client, calls []*cardCall) error {
	r.batcher.statements.Add(1)
	var (
		rows *sql.Rows
		err  error
	)
	if len(calls) == 1 {
		a := calls[0].args
		rows, err = db.QueryContext(ctx, cardSQL, a.member, a.now, a.promotionFrom, a.registered,
			a.every, a.mode, a.zone, lotGroups, a.limit, a.status)
	} else {
		n := len(calls)
		ids, every, mode, limit := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
		now, from, registered := make([]time.Time, n), make([]time.Time, n), make([]time.Time, n)
		status, zone := make([]sql.NullString, n), make([]string, n)
		for i, c := range calls {
			a := c.args
			ids[i], every[i], mode[i], limit[i] = int64(a.member), int64(a.every), int64(a.mode), int64(a.limit)
			now[i], from[i], registered[i], zone[i] = a.now, a.promotionFrom, a.registered, a.zone
			if a.status != nil {
				status[i] = sql.NullString{String: *a.status, Valid: true}
			}
		}
		rows, err = db.QueryContext(ctx, cardBatchSQL, pq.Array(ids), pq.Array(now), pq.Array(from),
			pq.Array(registered), pq.Array(every), pq.Array(mode), pq.Array(limit), pq.Array(status),
			pq.Array(zone), lotGroups)
	}
	if err != nil {
		return fmt.Errorf("reading %d cards: %w", len(calls), err)
	}
	defer rows.Close()
	for rows.Next() {
		row, i := new(cardRow), int64(1)
		dest := row.dest()
		if len(calls) > 1 {
			dest = append([]any{&i}, dest...)
		}
		if err := rows.Scan(dest...); err != nil {
			return fmt.Errorf("reading %d cards: %w", len(calls), err)
		}
		if i < 1 || int(i) > len(calls) {
			return fmt.Errorf("reading %d cards: a row of card %d", len(calls), i)
		}
		calls[i-1].rows = append(calls[i-1].rows, row)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading %d cards: %w", len(calls), err)
	}
	return rows.Close()
}
