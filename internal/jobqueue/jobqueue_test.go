package jobqueue_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/jobqueue"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/pgtest"
	"github.com/onemember/onemember/internal/platform/testkit"
	"github.com/onemember/onemember/migrations"
)

const (
	kindA = enum.JobComputeRfm
	kindB = enum.JobRefreshTag
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fast are options for tests on the real clock: quick polls, no backoff.
func fast(mod ...func(*jobqueue.Options)) jobqueue.Options {
	o := jobqueue.Options{Poll: 10 * time.Millisecond, Backoff: func(int) time.Duration { return 0 }}
	for _, m := range mod {
		m(&o)
	}
	return o
}

// start runs q until the test ends (or until the returned stop is called,
// which waits for Run to return).
func start(t *testing.T, q *jobqueue.Queue) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Errorf("Run did not return after its context ended")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func enqueue(t *testing.T, q *jobqueue.Queue, kind enum.JobKind, params map[string]any) *ent.Job {
	t.Helper()
	j, created, err := q.Enqueue(t.Context(), kind, params, "", nil)
	if err != nil || !created {
		t.Fatalf("Enqueue = %v, %v", created, err)
	}
	return j
}

// waitJob polls job id until ok holds (10 s at most) and returns it.
func waitJob(t *testing.T, q *jobqueue.Queue, id int, what string, ok func(*ent.Job) bool) *ent.Job {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, err := q.Get(t.Context(), id)
		if err != nil {
			t.Fatalf("reading job %d: %v", id, err)
		}
		if ok(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d: waited in vain for %s; it is %s, attempts %d, error %q", id, what, j.Status, j.Attempts, j.Error)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func finished(j *ent.Job) bool { return jobqueue.Finished(j.Status) }

// advance does one unit of work: Advance in its own transaction.
func advance(ctx context.Context, db *ent.Client, r *jobqueue.Run, cp int64) error {
	tx, err := db.Tx(ctx)
	if err != nil {
		return err
	}
	if err := r.Advance(ctx, tx, cp, 1, 0); err != nil {
		return errors.Join(err, tx.Rollback())
	}
	return tx.Commit()
}

func recv(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("waited in vain for %s", what)
	}
}

func TestEnqueueIdempotencyKey(t *testing.T) {
	db, _ := testkit.EntClient(t, 16)
	q := jobqueue.New(db, quiet, fast())
	staff := 7
	params := map[string]any{"templateId": 12}

	first, created, err := q.Enqueue(t.Context(), kindA, params, "K1", &staff)
	if err != nil || !created {
		t.Fatalf("first Enqueue = %v, %v", created, err)
	}
	if first.Status != enum.JobQueued || first.CreatedByStaffID == nil || *first.CreatedByStaffID != staff {
		t.Fatalf("new job = %+v", first)
	}
	again, created, err := q.Enqueue(t.Context(), kindA, map[string]any{"templateId": 99}, "K1", nil)
	if err != nil || created || again.ID != first.ID {
		t.Fatalf("second Enqueue = job %v, created %v, %v; want job %d, not created", again, created, err, first.ID)
	}
	if got := again.Params["templateId"]; got != float64(12) {
		t.Fatalf("the key's job keeps its own params: templateId = %v", got)
	}
	if _, _, err := q.Enqueue(t.Context(), kindB, nil, "K1", nil); fault.CodeOf(err) != fault.Conflict || !errors.Is(err, jobqueue.ErrKeyConflict) {
		t.Fatalf("another kind under K1: %v; want CONFLICT", err)
	}
	a, b := enqueue(t, q, kindA, nil), enqueue(t, q, kindA, nil)
	if a.ID == b.ID {
		t.Fatal("jobs without a key are each new")
	}
	if _, _, err := q.Enqueue(t.Context(), kindA, nil, strings.Repeat("k", jobqueue.MaxKeyLength+1), nil); fault.CodeOf(err) != fault.BadUserInput {
		t.Fatalf("long key: %v; want BAD_USER_INPUT", err)
	}
	if _, _, err := q.Enqueue(t.Context(), enum.JobKind("NOPE"), nil, "", nil); fault.CodeOf(err) != fault.BadUserInput {
		t.Fatalf("unknown kind: %v; want BAD_USER_INPUT", err)
	}

	// Racing callers with one key: one job, one creator.
	const n = 8
	var (
		wg      sync.WaitGroup
		gate    = make(chan struct{})
		mu      sync.Mutex
		ids     = map[int]bool{}
		creates int
		errs    []error
	)
	for range n {
		wg.Go(func() {
			<-gate
			j, created, err := q.Enqueue(context.Background(), kindA, nil, "RACE", nil)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			ids[j.ID] = true
			if created {
				creates++
			}
		})
	}
	close(gate)
	wg.Wait()
	if len(errs) > 0 || len(ids) != 1 || creates != 1 {
		t.Fatalf("racing Enqueue: ids %v, %d created, errors %v; want one job created once", ids, creates, errs)
	}

	// EnqueueInTx rolled back leaves no job behind.
	tx, err := db.Tx(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	j, created, err := q.EnqueueInTx(t.Context(), tx, kindA, nil, "ROLLED", nil)
	if err != nil || !created {
		t.Fatalf("EnqueueInTx = %v, %v", created, err)
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Get(t.Context(), j.ID); fault.CodeOf(err) != fault.NotFound {
		t.Fatalf("Get of a rolled back job: %v; want NOT_FOUND", err)
	}
}

// Two replicas (two pools on one database) with two workers each race for
// 20 jobs: each runs exactly once.
func TestTwoQueuesRunEachJobOnce(t *testing.T) {
	dsn := pgtest.New(t, migrations.FS)
	db1, _ := testkit.OpenEntClient(t, dsn, 8)
	db2, _ := testkit.OpenEntClient(t, dsn, 8)
	var (
		mu    sync.Mutex
		runs  = map[int]int{}
		byQ   = map[string]int{}
		fails []error
	)
	handler := func(name string, db *ent.Client) jobqueue.Handler {
		return func(ctx context.Context, r *jobqueue.Run) error {
			mu.Lock()
			runs[r.Job.ID]++
			byQ[name]++
			mu.Unlock()
			time.Sleep(3 * time.Millisecond) // let the other replica claim meanwhile
			if err := advance(ctx, db, r, 1); err != nil {
				mu.Lock()
				fails = append(fails, err)
				mu.Unlock()
				return err
			}
			return nil
		}
	}
	q1 := jobqueue.New(db1, quiet, fast(func(o *jobqueue.Options) { o.Poll = 5 * time.Millisecond }))
	q2 := jobqueue.New(db2, quiet, fast(func(o *jobqueue.Options) { o.Poll = 5 * time.Millisecond }))
	q1.Register(kindA, handler("q1", db1))
	q2.Register(kindA, handler("q2", db2))

	const n = 20
	ids := make([]int, n)
	for i := range ids {
		ids[i] = enqueue(t, q1, kindA, map[string]any{"i": i}).ID
	}
	gate := make(chan struct{})
	for _, q := range []*jobqueue.Queue{q1, q2} {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			<-gate
			q.Run(ctx)
		}()
		t.Cleanup(func() { cancel(); <-done })
	}
	close(gate)
	for _, id := range ids {
		j := waitJob(t, q1, id, "the end", finished)
		if j.Status != enum.JobSucceeded || j.Attempts != 1 || j.Processed != 1 || j.FinishedAt == nil || j.StartedAt == nil {
			t.Fatalf("job %d = %s, attempts %d, processed %d", id, j.Status, j.Attempts, j.Processed)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, id := range ids {
		if runs[id] != 1 {
			t.Fatalf("job %d ran %d times; want once (all runs: %v)", id, runs[id], runs)
		}
	}
	if len(fails) > 0 {
		t.Fatalf("handler errors: %v", fails)
	}
	t.Logf("jobs run per replica: %v", byQ)
}

// A worker whose lease ran out and was taken over keeps working: its
// Advance fails with ErrLeaseLost and its work rolls back, while the new
// owner's commits.
func TestTakenOverWorkerIsFenced(t *testing.T) {
	dsn := pgtest.New(t, migrations.FS)
	db1, sqlDB := testkit.OpenEntClient(t, dsn, 8)
	db2, _ := testkit.OpenEntClient(t, dsn, 8)
	if _, err := sqlDB.ExecContext(t.Context(), `CREATE TABLE work (job bigint NOT NULL, attempt int NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	clock := testkit.NewClock(time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC))
	// A long lease: no heartbeat fires during the test (one every 200 s).
	opts := fast(func(o *jobqueue.Options) { o.Lease, o.Now = 10*time.Minute, clock.Now })

	started, release := make(chan struct{}), make(chan struct{})
	newDone, newFinish := make(chan struct{}), make(chan struct{})
	staleErr := make(chan error, 1)
	handler := func(db *ent.Client) jobqueue.Handler {
		return func(ctx context.Context, r *jobqueue.Run) error {
			if r.Job.Attempts == 1 {
				close(started)
				<-release // stalls past its lease
			}
			if r.Job.Attempts == 2 {
				// The new owner's work is committed, the job still
				// RUNNING, while the stale worker carries on.
				defer func() {
					close(newDone)
					<-newFinish
				}()
			}
			tx, err := db.Tx(ctx)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO work (job, attempt) VALUES ($1, $2)`, r.Job.ID, r.Job.Attempts); err != nil {
				return errors.Join(err, tx.Rollback())
			}
			err = r.Advance(ctx, tx, 1, 1, 0)
			if r.Job.Attempts == 1 {
				staleErr <- err
			}
			if err != nil {
				return errors.Join(err, tx.Rollback())
			}
			return tx.Commit()
		}
	}
	q1, q2 := jobqueue.New(db1, quiet, opts), jobqueue.New(db2, quiet, opts)
	q1.Register(kindA, handler(db1))
	q2.Register(kindA, handler(db2))
	j := enqueue(t, q1, kindA, nil)
	start(t, q1)
	var releaseOnce sync.Once
	releaseStale := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(releaseStale)
	recv(t, started, "the first attempt")

	clock.Advance(20 * time.Minute) // the first worker's lease runs out
	start(t, q2)
	var finishOnce sync.Once
	finishNew := func() { finishOnce.Do(func() { close(newFinish) }) }
	t.Cleanup(finishNew) // before the queues stop, should the test fail early
	recv(t, newDone, "the second attempt's work")

	releaseStale()
	select {
	case err := <-staleErr:
		if !errors.Is(err, jobqueue.ErrLeaseLost) {
			t.Fatalf("stale worker's Advance = %v; want ErrLeaseLost", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stale worker never reached Advance")
	}
	finishNew()
	done := waitJob(t, q1, j.ID, "the second attempt to finish", finished)
	if done.Status != enum.JobSucceeded || done.Attempts != 2 || done.Processed != 1 {
		t.Fatalf("job = %s, attempts %d, processed %d; want SUCCEEDED by attempt 2", done.Status, done.Attempts, done.Processed)
	}
	var attempts []int
	rows, err := sqlDB.QueryContext(t.Context(), `SELECT attempt FROM work WHERE job = $1 ORDER BY attempt`, j.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var a int
		if err := rows.Scan(&a); err != nil {
			t.Fatal(err)
		}
		attempts = append(attempts, a)
	}
	if fmt.Sprint(attempts) != "[2]" {
		t.Fatalf("committed work of attempts %v; want [2] only (the stale attempt rolled back)", attempts)
	}
	// The stale worker wrote nothing on its way out either.
	time.Sleep(50 * time.Millisecond)
	after, err := q1.Get(t.Context(), j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if after.Status != enum.JobSucceeded || after.Attempts != 2 || after.Processed != 1 || after.Error != "" {
		t.Fatalf("job after the stale worker returned = %s, attempts %d, processed %d, error %q", after.Status, after.Attempts, after.Processed, after.Error)
	}
}

// The heartbeat renews a running job's lease (from the queue's clock), and
// cancels the handler with ErrLeaseLost once the job was taken over.
func TestHeartbeat(t *testing.T) {
	db, sqlDB := testkit.EntClient(t, 8)
	clock := testkit.NewClock(time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC))
	const lease = 150 * time.Millisecond // a beat every 50 ms of real time
	// One worker: nobody else could take the job while its lease is out.
	q := jobqueue.New(db, quiet, fast(func(o *jobqueue.Options) { o.Lease, o.Now, o.Workers = lease, clock.Now, 1 }))
	started := make(chan struct{})
	cause := make(chan error, 1)
	q.Register(kindA, func(ctx context.Context, r *jobqueue.Run) error {
		if r.Job.Attempts > 1 {
			return nil
		}
		close(started)
		select {
		case <-ctx.Done():
			cause <- context.Cause(ctx)
		case <-time.After(10 * time.Second):
			cause <- errors.New("not cancelled")
		}
		return ctx.Err()
	})
	start(t, q)
	j := enqueue(t, q, kindA, nil)
	recv(t, started, "the handler")
	if got := waitJob(t, q, j.ID, "the claim", func(*ent.Job) bool { return true }); got.LeaseUntil == nil || !got.LeaseUntil.Equal(clock.Now().Add(lease)) {
		t.Fatalf("claimed job's lease_until = %v; want now + lease", got.LeaseUntil)
	}
	// Time jumps far past the lease: the next beat renews it from there,
	// so no other worker could take the job.
	clock.Advance(time.Hour)
	waitJob(t, q, j.ID, "the lease renewed", func(j *ent.Job) bool {
		return j.LeaseUntil != nil && j.LeaseUntil.Equal(clock.Now().Add(lease)) && j.Status == enum.JobRunning
	})

	// Taken over (simulated: attempts moves on under the worker).
	if _, err := sqlDB.ExecContext(t.Context(), `UPDATE jobs SET attempts = attempts + 1 WHERE id = $1`, j.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-cause:
		if !errors.Is(err, jobqueue.ErrLeaseLost) {
			t.Fatalf("handler's context cause = %v; want ErrLeaseLost", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler never stopped")
	}
	time.Sleep(100 * time.Millisecond) // the stale worker writes nothing
	if got, _ := q.Get(t.Context(), j.ID); got.Status != enum.JobRunning || got.Attempts != 2 {
		t.Fatalf("taken-over job = %s, attempts %d; want RUNNING by attempt 2", got.Status, got.Attempts)
	}
	// Nobody renews attempt 2's lease: once it ran out the job is run
	// again (attempt 3), which succeeds.
	clock.Advance(time.Minute)
	if got := waitJob(t, q, j.ID, "the end", finished); got.Status != enum.JobSucceeded || got.Attempts != 3 {
		t.Fatalf("job = %s after %d attempts; want SUCCEEDED after 3", got.Status, got.Attempts)
	}
}

func TestRetryThenFailed(t *testing.T) {
	db, _ := testkit.EntClient(t, 8)
	q := jobqueue.New(db, quiet, fast(func(o *jobqueue.Options) { o.MaxAttempts = 3 }))
	var (
		mu    sync.Mutex
		calls = map[int]int{}
	)
	q.Register(kindA, func(ctx context.Context, r *jobqueue.Run) error {
		mu.Lock()
		defer mu.Unlock()
		calls[r.Job.ID]++
		if r.Params()["ok after"] != nil && calls[r.Job.ID] > 2 {
			return nil
		}
		return fmt.Errorf("boom %d", calls[r.Job.ID])
	})
	q.Register(kindB, func(ctx context.Context, r *jobqueue.Run) error {
		mu.Lock()
		defer mu.Unlock()
		calls[r.Job.ID]++
		return jobqueue.Permanent(errors.New("bad params"))
	})
	start(t, q)
	failing := enqueue(t, q, kindA, nil)
	recovering := enqueue(t, q, kindA, map[string]any{"ok after": 2})
	permanent := enqueue(t, q, kindB, nil)

	j := waitJob(t, q, failing.ID, "the end", finished)
	if j.Status != enum.JobFailed || j.Attempts != 3 || j.Error != "boom 3" || j.FinishedAt == nil {
		t.Fatalf("failing job = %s, attempts %d, error %q; want FAILED after 3 with boom 3", j.Status, j.Attempts, j.Error)
	}
	j = waitJob(t, q, recovering.ID, "the end", finished)
	if j.Status != enum.JobSucceeded || j.Attempts != 3 {
		t.Fatalf("recovering job = %s, attempts %d, error %q; want SUCCEEDED on attempt 3", j.Status, j.Attempts, j.Error)
	}
	j = waitJob(t, q, permanent.ID, "the end", finished)
	if j.Status != enum.JobFailed || j.Attempts != 1 || j.Error != "bad params" {
		t.Fatalf("permanently failing job = %s, attempts %d, error %q; want FAILED at once", j.Status, j.Attempts, j.Error)
	}
	time.Sleep(50 * time.Millisecond) // nothing runs a finished job again
	mu.Lock()
	defer mu.Unlock()
	if calls[failing.ID] != 3 || calls[recovering.ID] != 3 || calls[permanent.ID] != 1 {
		t.Fatalf("handler calls %v; want 3, 3 and 1", calls)
	}
}

// A failed attempt waits out its backoff (on the queue's clock) before the
// job is claimed again.
func TestBackoff(t *testing.T) {
	db, _ := testkit.EntClient(t, 8)
	clock := testkit.NewClock(time.Date(2026, 1, 5, 9, 0, 0, 0, time.UTC))
	q := jobqueue.New(db, quiet, jobqueue.Options{
		Poll: 5 * time.Millisecond, Now: clock.Now,
		Backoff: func(attempt int) time.Duration { return time.Duration(attempt) * time.Minute },
	})
	q.Register(kindA, func(ctx context.Context, r *jobqueue.Run) error {
		if r.Job.Attempts == 1 {
			return errors.New("try later")
		}
		return nil
	})
	start(t, q)
	j := enqueue(t, q, kindA, nil)
	waiting := waitJob(t, q, j.ID, "the first attempt", func(j *ent.Job) bool { return j.Attempts == 1 && j.Status == enum.JobQueued })
	if waiting.LeaseUntil == nil || !waiting.LeaseUntil.Equal(clock.Now().Add(time.Minute)) {
		t.Fatalf("requeued job's lease_until = %v; want now + 1 minute", waiting.LeaseUntil)
	}
	time.Sleep(100 * time.Millisecond) // twenty polls
	if got, _ := q.Get(t.Context(), j.ID); got.Attempts != 1 {
		t.Fatalf("job claimed again during its backoff (attempts %d)", got.Attempts)
	}
	clock.Advance(time.Minute)
	if got := waitJob(t, q, j.ID, "the end", finished); got.Status != enum.JobSucceeded || got.Attempts != 2 {
		t.Fatalf("job = %s, attempts %d; want SUCCEEDED on attempt 2", got.Status, got.Attempts)
	}
}

func TestPanicRecovered(t *testing.T) {
	db, _ := testkit.EntClient(t, 8)
	q := jobqueue.New(db, quiet, fast(func(o *jobqueue.Options) { o.MaxAttempts, o.Workers = 1, 1 }))
	q.Register(kindA, func(ctx context.Context, r *jobqueue.Run) error {
		var m map[string]int
		m["x"] = 1 // panics: assignment to entry in nil map
		return nil
	})
	q.Register(kindB, func(ctx context.Context, r *jobqueue.Run) error { return nil })
	start(t, q)
	bad := enqueue(t, q, kindA, nil)
	j := waitJob(t, q, bad.ID, "the end", finished)
	if j.Status != enum.JobFailed || !strings.Contains(j.Error, "panicked") || !strings.Contains(j.Error, "nil map") {
		t.Fatalf("panicking job = %s, error %q; want FAILED naming the panic", j.Status, j.Error)
	}
	// The only worker survived.
	good := enqueue(t, q, kindB, nil)
	if j := waitJob(t, q, good.ID, "the end", finished); j.Status != enum.JobSucceeded {
		t.Fatalf("next job = %s", j.Status)
	}
}

func TestWatch(t *testing.T) {
	db, _ := testkit.EntClient(t, 8)
	q := jobqueue.New(db, quiet, fast())
	step := make(chan struct{})
	q.Register(kindA, func(ctx context.Context, r *jobqueue.Run) error {
		if err := r.SetTotal(ctx, 3); err != nil {
			return err
		}
		for i := range int64(3) {
			select {
			case <-step:
			case <-ctx.Done():
				return ctx.Err()
			}
			if err := advance(ctx, db, r, i+1); err != nil {
				return err
			}
		}
		return r.Note(ctx, "all done")
	})
	if _, err := q.Watch(t.Context(), 1, time.Millisecond); fault.CodeOf(err) != fault.NotFound {
		t.Fatalf("Watch of a missing job: %v; want NOT_FOUND", err)
	}
	j := enqueue(t, q, kindA, nil)
	ch, err := q.Watch(t.Context(), j.ID, 5*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	var last *ent.Job // the last job received
	next := func(want string, ok func(*ent.Job) bool) *ent.Job {
		t.Helper()
		if last != nil && ok(last) {
			return last // the poll that saw processed 3 may see the end too
		}
		deadline := time.After(10 * time.Second)
		for {
			select {
			case got, open := <-ch:
				if !open {
					t.Fatalf("channel closed while waiting for %s", want)
				}
				last = got
				if ok(got) {
					return got
				}
			case <-deadline:
				t.Fatalf("waited in vain for %s", want)
			}
		}
	}
	if first := next("the queued job", func(*ent.Job) bool { return true }); first.Status != enum.JobQueued {
		t.Fatalf("first sent = %s; want the job as it is now (QUEUED)", first.Status)
	}
	start(t, q)
	next("total 3", func(j *ent.Job) bool { return j.Total == 3 && j.Status == enum.JobRunning })
	for i := range int64(3) {
		step <- struct{}{}
		next(fmt.Sprintf("processed %d", i+1), func(j *ent.Job) bool { return j.Processed == i+1 })
	}
	end := next("the end", finished)
	if end.Status != enum.JobSucceeded || end.Error != "all done" {
		t.Fatalf("last sent = %s, error %q", end.Status, end.Error)
	}
	select {
	case extra, open := <-ch:
		if open {
			t.Fatalf("sent after the end: %+v", extra)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel not closed after the end")
	}

	// Watching a finished job sends it once and closes; an ended context
	// closes the channel of an unfinished job.
	ch, err = q.Watch(t.Context(), j.ID, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if got := <-ch; got.Status != enum.JobSucceeded {
		t.Fatalf("finished job sent as %s", got.Status)
	}
	if _, open := <-ch; open {
		t.Fatal("channel of a finished job stays open")
	}
	idle := enqueue(t, jobqueue.New(db, quiet, fast()), kindB, nil) // nobody runs kindB
	ctx, cancel := context.WithCancel(t.Context())
	ch, err = q.Watch(ctx, idle.ID, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	<-ch
	cancel()
	select {
	case _, open := <-ch:
		if open {
			t.Fatal("sent an unchanged job")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("channel not closed after its context ended")
	}
}

// A queue shutting down puts its running job back, and Run returns only
// after the handler did.
func TestShutdownReleasesJob(t *testing.T) {
	db, _ := testkit.EntClient(t, 8)
	q := jobqueue.New(db, quiet, fast())
	started := make(chan struct{})
	var returned atomic.Bool
	q.Register(kindA, func(ctx context.Context, r *jobqueue.Run) error {
		defer returned.Store(true)
		close(started)
		<-ctx.Done()
		time.Sleep(20 * time.Millisecond) // cleaning up
		return ctx.Err()
	})
	stop := start(t, q)
	j := enqueue(t, q, kindA, nil)
	recv(t, started, "the handler")
	stop()
	if !returned.Load() {
		t.Fatal("Run returned before the handler")
	}
	got, err := q.Get(t.Context(), j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != enum.JobQueued || got.LeaseUntil != nil || got.Attempts != 1 {
		t.Fatalf("interrupted job = %s, lease %v, attempts %d; want QUEUED, no lease", got.Status, got.LeaseUntil, got.Attempts)
	}

	q2 := jobqueue.New(db, quiet, fast())
	q2.Register(kindA, func(ctx context.Context, r *jobqueue.Run) error { return nil })
	start(t, q2)
	if got := waitJob(t, q2, j.ID, "the end", finished); got.Status != enum.JobSucceeded || got.Attempts != 2 {
		t.Fatalf("resumed job = %s, attempts %d", got.Status, got.Attempts)
	}
}

// Workers claim only the kinds registered with their queue.
func TestClaimsRegisteredKindsOnly(t *testing.T) {
	db, _ := testkit.EntClient(t, 8)
	q := jobqueue.New(db, quiet, fast())
	q.Register(kindA, func(ctx context.Context, r *jobqueue.Run) error { return nil })
	start(t, q)
	other := enqueue(t, q, kindB, nil)
	mine := enqueue(t, q, kindA, nil)
	waitJob(t, q, mine.ID, "the end", finished)
	time.Sleep(30 * time.Millisecond)
	if got, _ := q.Get(t.Context(), other.ID); got.Status != enum.JobQueued || got.Attempts != 0 {
		t.Fatalf("job of an unregistered kind = %s, attempts %d; want untouched", got.Status, got.Attempts)
	}
}

func TestIntParam(t *testing.T) {
	params := map[string]any{
		"float": float64(21474836480), "int": 7, "int64": int64(8), "half": 1.5,
		"huge": float64(1 << 60), "text": "12", "nil": nil,
	}
	for name, want := range map[string]int{"float": 21474836480, "int": 7, "int64": 8} {
		if got, err := jobqueue.IntParam(params, name); err != nil || got != want {
			t.Errorf("IntParam(%s) = %d, %v; want %d", name, got, err, want)
		}
	}
	for _, name := range []string{"half", "huge", "text", "nil", "missing"} {
		_, err := jobqueue.IntParam(params, name)
		if !jobqueue.IsPermanent(err) || fault.CodeOf(err) != fault.BadUserInput {
			t.Errorf("IntParam(%s) = %v; want a permanent BAD_USER_INPUT", name, err)
		}
	}
}
