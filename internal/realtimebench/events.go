package realtimebench

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"

	"github.com/onemember/onemember/internal/eventbus"
)

// genSQL writes one PointsChanged event for each member of $1 in one
// transaction, in the shape events.Emit writes them: the member's account
// row is locked (by the UPDATE) and its event_seq advanced, and the
// member_events row takes that seq (tx_id defaults to the transaction id,
// which the bus's safety tailer reads). pointsDelta is 0, so balances stay
// consistent with the events. One statement instead of Emit's three keeps
// the generator's own cost low; what the bus reads is the same.
const genSQL = `WITH a AS (
	UPDATE accounts SET event_seq = event_seq + 1
	WHERE member_id = ANY($1::bigint[])
	RETURNING member_id, event_seq, points_balance
)
INSERT INTO member_events (member_id, seq, type, payload, occurred_at)
SELECT member_id, event_seq, 'POINTS_CHANGED',
	jsonb_build_object('pointsDelta', 0, 'pointsBalance', points_balance, 'reason', $2::text), now()
FROM a
RETURNING member_id, seq`

// Waker is told about commits (an eventbus.Bus).
type Waker interface{ Wake(memberIDs ...int) }

// GenOptions configure Generate.
type GenOptions struct {
	DB *sql.DB
	// Members get the events; each worker owns a disjoint share of them, so
	// that workers never wait for each other's row locks.
	Members []int
	// Rate is the target in events per second (all workers together).
	Rate float64
	// Duration is how long to generate.
	Duration time.Duration
	// Workers are concurrent writers (default 8).
	Workers int
	// Batch is the number of events (of distinct members) per transaction
	// (default 1).
	Batch int
	// Waker, if set, is woken with the members of each transaction after it
	// commits, as the services' commit hook wakes the bus.
	Waker Waker
	// Record keeps every event's commit time in the result.
	Record bool
	// Reason is the events' reason.
	Reason string
}

// Commit is an event and the time its transaction's commit was
// acknowledged to the generator.
type Commit struct {
	Member int
	Seq    int64
	At     time.Time
}

// GenResult is what Generate did.
type GenResult struct {
	Events       int64    `json:"events"`
	Transactions int64    `json:"transactions"`
	Errors       int64    `json:"errors"`
	Seconds      float64  `json:"seconds"`
	Rate         float64  `json:"rate"` // achieved events per second
	TxP50ms      float64  `json:"tx_p50_ms"`
	TxP99ms      float64  `json:"tx_p99_ms"`
	FirstError   string   `json:"first_error"`
	Commits      []Commit `json:"-"`
}

// Generate writes events at Rate for Duration. Workers pace themselves: a
// worker that falls behind catches up by at most one second's worth, so
// the achieved rate is what the database (and the machine) allowed.
func Generate(ctx context.Context, o GenOptions) GenResult {
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.Batch <= 0 {
		o.Batch = 1
	}
	o.Workers = min(o.Workers, len(o.Members))
	o.Batch = min(o.Batch, len(o.Members)/o.Workers)
	var (
		res     GenResult
		mu      sync.Mutex
		wg      sync.WaitGroup
		lats    []time.Duration
		start   = time.Now()
		end     = start.Add(o.Duration)
		events  atomic.Int64
		perWork = o.Rate / float64(o.Workers)
	)
	stmt, err := o.DB.PrepareContext(ctx, genSQL)
	if err != nil {
		res.FirstError = err.Error()
		return res
	}
	defer stmt.Close()
	interval := time.Duration(float64(o.Batch) / perWork * float64(time.Second))
	for w := range o.Workers {
		var share []int
		for i := w; i < len(o.Members); i += o.Workers {
			share = append(share, o.Members[i])
		}
		wg.Go(func() {
			var (
				mine    []time.Duration
				commits []Commit
				txs     int64
				errs    int64
				first   string
				next    = start.Add(time.Duration(w) * interval / time.Duration(o.Workers))
				pos     int
				batch   = make([]int, o.Batch)
				members []int
				seqs    []int64
				err     error
			)
			for ctx.Err() == nil {
				now := time.Now()
				if !now.Before(end) {
					break
				}
				if d := next.Sub(now); d > 0 {
					time.Sleep(d)
				} else if -d > time.Second {
					next = now.Add(-time.Second)
				}
				next = next.Add(interval)
				for i := range batch {
					batch[i] = share[pos]
					pos = (pos + 1) % len(share)
				}
				t0 := time.Now()
				members, seqs, err = genOnce(ctx, stmt, batch, o.Reason, members[:0], seqs[:0])
				at := time.Now()
				mine = append(mine, at.Sub(t0))
				if err != nil {
					errs++
					if first == "" {
						first = err.Error()
					}
					continue
				}
				txs++
				events.Add(int64(len(members)))
				if o.Waker != nil {
					o.Waker.Wake(members...)
				}
				if o.Record {
					for i, m := range members {
						commits = append(commits, Commit{Member: m, Seq: seqs[i], At: at})
					}
				}
			}
			mu.Lock()
			res.Transactions += txs
			res.Errors += errs
			if res.FirstError == "" {
				res.FirstError = first
			}
			lats = append(lats, mine...)
			res.Commits = append(res.Commits, commits...)
			mu.Unlock()
		})
	}
	wg.Wait()
	res.Seconds = time.Since(start).Seconds()
	res.Events = events.Load()
	res.Rate = float64(res.Events) / res.Seconds
	ps := Percentiles(lats, 0.5, 0.99)
	res.TxP50ms, res.TxP99ms = ms(ps[0]), ms(ps[1])
	return res
}

func genOnce(ctx context.Context, stmt *sql.Stmt, batch []int, reason string, members []int, seqs []int64) ([]int, []int64, error) {
	rows, err := stmt.QueryContext(ctx, pq.Array(batch), reason)
	if err != nil {
		return members, seqs, err
	}
	for rows.Next() {
		var (
			m int
			s int64
		)
		if err := rows.Scan(&m, &s); err != nil {
			rows.Close()
			return members, seqs, err
		}
		members, seqs = append(members, m), append(seqs, s)
	}
	// Close returns after ReadyForQuery, that is after the commit.
	if err := rows.Close(); err != nil {
		return members, seqs, err
	}
	if len(members) != len(batch) {
		return members, seqs, fmt.Errorf("%d events written for %d members: missing accounts", len(members), len(batch))
	}
	return members, seqs, rows.Err()
}

// EnsureAccounts creates the accounts the members lack (as account.Lock
// would on their first change) and returns every member's event_seq.
func EnsureAccounts(ctx context.Context, db *sql.DB, members []int) (map[int]int64, error) {
	if _, err := db.ExecContext(ctx, `INSERT INTO accounts (created_at, updated_at, member_id)
		SELECT now(), now(), unnest($1::bigint[]) ON CONFLICT (member_id) DO NOTHING`, pq.Array(members)); err != nil {
		return nil, fmt.Errorf("creating accounts: %w", err)
	}
	rows, err := db.QueryContext(ctx, `SELECT member_id, event_seq FROM accounts WHERE member_id = ANY($1::bigint[])`, pq.Array(members))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	heads := make(map[int]int64, len(members))
	for rows.Next() {
		var (
			m int
			s int64
		)
		if err := rows.Scan(&m, &s); err != nil {
			return nil, err
		}
		heads[m] = s
	}
	if len(heads) != len(members) {
		return nil, fmt.Errorf("%d accounts for %d members", len(heads), len(members))
	}
	return heads, rows.Err()
}

// Step is one measured phase of Deliver.
type Step struct {
	Rate     float64       // events per second
	Batch    int           // events (of distinct members) per transaction
	Duration time.Duration // how long to generate
}

// DeliverOptions configure Deliver.
type DeliverOptions struct {
	URL   string // ws://host:port/query of the server under test
	Query string // MemberEvents
	DB    *sql.DB
	// Tokens of distinct members: one subscriber each.
	Tokens  []string
	Dialers int
	// Settle is the pause between the last subscription and the warm-up.
	Settle time.Duration
	// Warmup generates at the first step's rate before the steps, and waits
	// until every warm-up event has arrived: proof that every subscription
	// is live.
	Warmup time.Duration
	// Drain bounds the wait for a step's events after its generation.
	Drain time.Duration
	// Gen holds Workers, Waker and Reason; each step sets Rate, Batch and
	// Duration.
	Gen   GenOptions
	Steps []Step
	// ServerPID, when not 0, is the server process whose CPU time each
	// step reports.
	ServerPID int
}

// DeliverResult is what one step of Deliver measured.
type DeliverResult struct {
	Subscribers int64  `json:"subscribers"`
	Failed      int64  `json:"failed"`
	Ended       int64  `json:"ended"` // subscribers disconnected during the whole run
	Reasons     string `json:"reasons"`
	WarmupOK    bool   `json:"warmup_ok"`

	Target     float64 `json:"target_rate"`
	Batch      int     `json:"batch"`
	Events     int64   `json:"events"`
	Seconds    float64 `json:"seconds"`
	Rate       float64 `json:"rate"`
	GenErrors  int64   `json:"gen_errors"`
	FirstError string  `json:"first_error"`
	TxP50ms    float64 `json:"tx_p50_ms"`
	TxP99ms    float64 `json:"tx_p99_ms"`

	Received   int64 `json:"received"`     // events of the step that arrived
	Lost       int64 `json:"lost"`         // events of the step that had not arrived at the end of the run
	Duplicates int64 `json:"duplicates"`   // events that arrived more than once (whole run)
	OutOfOrder int64 `json:"out_of_order"` // events whose seq was not the previous one's + 1 (whole run)
	Foreign    int64 `json:"foreign"`      // events of another member, or undecodable (whole run)
	Early      int64 `json:"early"`        // arrived before the generator saw its commit (counted as 0 ms)

	P50ms  float64 `json:"p50_ms"`
	P90ms  float64 `json:"p90_ms"`
	P99ms  float64 `json:"p99_ms"`
	P999ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
	// DrainSeconds is how long after generation stopped the step's last
	// event arrived (or Drain, when some never did).
	DrainSeconds float64 `json:"drain_seconds"`
	// Slow lists the 100 ms windows of commit time (seconds since the
	// step's first commit) whose slowest event took more than 4 × p50 and
	// over 100 ms, as "t:max_ms", in time order (at most 40).
	Slow string `json:"slow"`
	// Start is when the step's generation began (Unix seconds), to match
	// Slow with other processes' logs.
	Start float64 `json:"start_unix"`
	// CPU used while the step generated, in cores: the server (ServerPID),
	// this process (generator, bus and subscribers), PostgreSQL (every
	// process named postgres) and the whole machine.
	ServerCores   float64 `json:"server_cores"`
	ClientCores   float64 `json:"client_cores"`
	PostgresCores float64 `json:"postgres_cores"`
	MachineCores  float64 `json:"machine_cores"`
}

// eventKey names an event: member and seq.
type eventKey struct {
	m int
	s int64
}

type recv struct {
	seq int64
	at  time.Time
}

// Deliver measures commit-to-receive latency: it subscribes one connection
// per token from the member's current event_seq (a cursor, so that nothing
// committed later can be missed whatever the timing), warms up, then for
// each step generates events for those members with Generate and times
// each from its commit (as the generator saw it) to its arrival at the
// subscriber. It returns one result per step.
func Deliver(ctx context.Context, o DeliverOptions) ([]DeliverResult, error) {
	members := make([]int, len(o.Tokens))
	for i, t := range o.Tokens {
		id, err := MemberIDOfToken(t)
		if err != nil {
			return nil, fmt.Errorf("token %d: %w", i+1, err)
		}
		members[i] = id
	}
	heads, err := EnsureAccounts(ctx, o.DB, members)
	if err != nil {
		return nil, err
	}
	after := make([]string, len(members))
	last := make([]int64, len(members)) // touched only by connection i's reader
	got := make([][]recv, len(members)) // likewise
	var foreign, outOfOrder, received atomic.Int64
	for i, m := range members {
		after[i] = eventbus.EncodeCursor(m, heads[m])
		last[i] = heads[m]
	}
	onEvent := func(i int, at time.Time, payload []byte) {
		var p struct {
			Data struct {
				MemberEvents struct {
					Cursor string `json:"cursor"`
				} `json:"memberEvents"`
			} `json:"data"`
		}
		if json.Unmarshal(payload, &p) != nil {
			foreign.Add(1)
			return
		}
		m, seq, err := eventbus.DecodeCursor(p.Data.MemberEvents.Cursor)
		if err != nil || m != members[i] {
			foreign.Add(1)
			return
		}
		if seq != last[i]+1 {
			outOfOrder.Add(1)
		}
		last[i] = seq
		got[i] = append(got[i], recv{seq, at})
		received.Add(1)
	}
	pool := Hold(ctx, HoldOptions{URL: o.URL, Query: o.Query, Tokens: o.Tokens, After: after, Dialers: o.Dialers, OnEvent: onEvent})
	st := pool.Stats()
	if st.Connected == 0 {
		pool.Close()
		return nil, fmt.Errorf("no subscriber connected: %s", st.Reasons)
	}
	live := make([]int, 0, len(members))
	pool.mu.Lock()
	for i, c := range pool.conns {
		if c != nil {
			live = append(live, members[i])
		}
	}
	pool.mu.Unlock()
	sleepCtx(ctx, o.Settle)

	var committed int64
	waitAll := func(limit time.Duration) (bool, time.Time) {
		deadline := time.Now().Add(limit)
		for received.Load() < committed {
			if time.Now().After(deadline) || ctx.Err() != nil {
				return false, time.Now()
			}
			time.Sleep(2 * time.Millisecond)
		}
		return true, time.Now()
	}
	g := o.Gen
	g.DB, g.Members = o.DB, live
	warmupOK := true
	if o.Warmup > 0 && len(o.Steps) > 0 {
		w := g
		w.Rate, w.Batch, w.Duration, w.Record = o.Steps[0].Rate, o.Steps[0].Batch, o.Warmup, false
		wr := Generate(ctx, w)
		committed += wr.Events
		warmupOK, _ = waitAll(30 * time.Second)
	}
	results := make([]DeliverResult, len(o.Steps))
	gens := make([]GenResult, len(o.Steps))
	for k, step := range o.Steps {
		r := &results[k]
		g.Rate, g.Batch, g.Duration, g.Record = step.Rate, step.Batch, step.Duration, true
		r.Start = float64(time.Now().UnixMicro()) / 1e6
		c0 := readCPU(o.ServerPID)
		gens[k] = Generate(ctx, g)
		c1 := readCPU(o.ServerPID)
		genEnd := time.Now()
		committed += gens[k].Events
		_, doneAt := waitAll(o.Drain)
		r.DrainSeconds = doneAt.Sub(genEnd).Seconds()
		r.ServerCores, r.ClientCores, r.PostgresCores, r.MachineCores = c1.cores(c0)
	}
	pool.Close()
	st = pool.Stats()

	arrived := make(map[eventKey]time.Time, received.Load())
	var duplicates int64
	for i, rs := range got {
		for _, x := range rs {
			k := eventKey{members[i], x.seq}
			if _, dup := arrived[k]; dup {
				duplicates++
				continue
			}
			arrived[k] = x.at
		}
	}
	for k, gr := range gens {
		r := &results[k]
		r.Subscribers, r.Failed, r.Ended, r.Reasons, r.WarmupOK = st.Connected, st.Failed, st.Ended, st.Reasons, warmupOK
		r.Duplicates, r.Foreign, r.OutOfOrder = duplicates, foreign.Load(), outOfOrder.Load()
		r.Target, r.Batch, r.Events, r.Seconds, r.Rate = o.Steps[k].Rate, max(o.Steps[k].Batch, 1), gr.Events, gr.Seconds, gr.Rate
		r.GenErrors, r.FirstError, r.TxP50ms, r.TxP99ms = gr.Errors, gr.FirstError, gr.TxP50ms, gr.TxP99ms
		lats := make([]time.Duration, 0, len(gr.Commits))
		for _, c := range gr.Commits {
			at, ok := arrived[eventKey{c.Member, c.Seq}]
			if !ok {
				r.Lost++
				continue
			}
			r.Received++
			d := at.Sub(c.At)
			if d < 0 {
				r.Early++
				d = 0
			}
			lats = append(lats, d)
		}
		ps := Percentiles(lats, 0.5, 0.9, 0.99, 0.999, 1)
		r.P50ms, r.P90ms, r.P99ms, r.P999ms, r.MaxMs = ms(ps[0]), ms(ps[1]), ms(ps[2]), ms(ps[3]), ms(ps[4])
		r.Slow = slowWindows(gr.Commits, arrived, lats)
	}
	return results, nil
}

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// slowWindows groups the measured events by 100 ms of commit time and
// lists the windows with slow events (see DeliverResult.Slow).
func slowWindows(commits []Commit, arrived map[eventKey]time.Time, lats []time.Duration) string {
	if len(commits) == 0 {
		return ""
	}
	p50 := Percentiles(lats, 0.5)[0]
	limit := max(4*p50, 100*time.Millisecond)
	first := commits[0].At
	for _, c := range commits {
		if c.At.Before(first) {
			first = c.At
		}
	}
	worst := map[int]time.Duration{}
	for _, c := range commits {
		at, ok := arrived[eventKey{c.Member, c.Seq}]
		if !ok {
			continue
		}
		w := int(c.At.Sub(first) / (100 * time.Millisecond))
		worst[w] = max(worst[w], at.Sub(c.At))
	}
	var ws []int
	for w, d := range worst {
		if d > limit {
			ws = append(ws, w)
		}
	}
	slices.Sort(ws)
	var b strings.Builder
	for i, w := range ws {
		if i == 40 {
			fmt.Fprintf(&b, " (+%d)", len(ws)-40)
			break
		}
		fmt.Fprintf(&b, "%s%.1f:%.0f", map[bool]string{true: "", false: " "}[i == 0], float64(w)/10, ms(worst[w]))
	}
	return b.String()
}
