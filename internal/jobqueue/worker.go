package jobqueue

import (
	"context"
	stdsql "database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"

	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
)

// jobColumns are the columns a claim returns, in scanJob's order.
const jobColumns = `id, created_at, updated_at, kind, status, idempotency_key, params, total, processed,
failed, checkpoint, error, attempts, lease_until, created_by_staff_id, started_at, finished_at`

// claimSQL claims the oldest job due, of the kinds $3: QUEUED with no
// backoff pending, or RUNNING with its lease run out. $1 is now, $2 the
// new lease's end. SKIP LOCKED: claimers never wait on each other or on a
// handler's Advance (which locks the row until its transaction ends).
const claimSQL = `UPDATE jobs SET status = 'RUNNING', attempts = attempts + 1, lease_until = $2,
	started_at = coalesce(started_at, $1), updated_at = $1
WHERE id = (
	SELECT id FROM jobs
	WHERE kind = ANY($3) AND (
		(status = 'QUEUED' AND (lease_until IS NULL OR lease_until <= $1))
		OR (status = 'RUNNING' AND lease_until < $1))
	ORDER BY id
	LIMIT 1
	FOR UPDATE SKIP LOCKED)
RETURNING ` + jobColumns

// The ends of a run; each matches the claim ($1 id, $2 attempts).
const (
	heartbeatSQL = `UPDATE jobs SET lease_until = $3, updated_at = $4
WHERE id = $1 AND attempts = $2 AND status = 'RUNNING'`
	succeedSQL = `UPDATE jobs SET status = 'SUCCEEDED', lease_until = NULL, finished_at = $3, updated_at = $3
WHERE id = $1 AND attempts = $2 AND status = 'RUNNING'`
	failSQL = `UPDATE jobs SET status = 'FAILED', lease_until = NULL, error = $4, finished_at = $3, updated_at = $3
WHERE id = $1 AND attempts = $2 AND status = 'RUNNING'`
	// retrySQL puts the job back with lease_until as the end of its
	// backoff: claims take QUEUED jobs only once it has passed.
	retrySQL = `UPDATE jobs SET status = 'QUEUED', lease_until = $4, updated_at = $3
WHERE id = $1 AND attempts = $2 AND status = 'RUNNING'`
)

// Run runs the workers until ctx ends, and returns when every worker (and
// every handler and heartbeat they started) has stopped. Each worker
// claims one job at a time, and looks for the next one right after it,
// when Enqueue wakes it, or every Poll.
func (q *Queue) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range q.opts.Workers {
		wg.Go(func() { q.work(ctx) })
	}
	wg.Wait()
}

func (q *Queue) work(ctx context.Context) {
	tick := time.NewTicker(q.opts.Poll)
	defer tick.Stop()
	for {
		for ctx.Err() == nil && q.runNext(ctx) {
		}
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		case <-tick.C:
		}
	}
}

// runNext claims a job and runs it; it reports whether there was one.
func (q *Queue) runNext(ctx context.Context) bool {
	kinds := q.kinds()
	if len(kinds) == 0 {
		return false
	}
	r, err := q.claim(ctx, kinds)
	if err != nil {
		if ctx.Err() == nil {
			q.log.ErrorContext(ctx, "claiming job", "err", err)
		}
		return false
	}
	if r == nil {
		return false
	}
	q.execute(ctx, r)
	return true
}

func (q *Queue) claim(ctx context.Context, kinds []string) (*Run, error) {
	now := q.opts.Now().UTC()
	rows, err := q.db.QueryContext(ctx, claimSQL, now, now.Add(q.opts.Lease), pq.Array(kinds))
	if err != nil {
		return nil, fmt.Errorf("claiming job: %w", err)
	}
	defer rows.Close()
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("claiming job: %w", err)
		}
		return nil, nil
	}
	j, err := scanJob(rows)
	if err != nil {
		return nil, fmt.Errorf("reading claimed job: %w", err)
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("claiming job: %w", err)
	}
	return &Run{Job: j, q: q}, nil
}

func scanJob(rows *stdsql.Rows) (*ent.Job, error) {
	var (
		j                                    ent.Job
		kind, status                         string
		key                                  stdsql.NullString
		params                               []byte
		lease, started, finished             stdsql.NullTime
		staff                                stdsql.NullInt64
		id, attempts                         int64
		total, processed, failed, checkpoint int64
		createdAt, updatedAt                 time.Time
		errText                              string
	)
	err := rows.Scan(&id, &createdAt, &updatedAt, &kind, &status, &key, &params, &total, &processed,
		&failed, &checkpoint, &errText, &attempts, &lease, &staff, &started, &finished)
	if err != nil {
		return nil, err
	}
	j.ID, j.CreatedAt, j.UpdatedAt = int(id), createdAt, updatedAt
	j.Kind, j.Status = enum.JobKind(kind), enum.JobStatus(status)
	j.Total, j.Processed, j.Failed, j.Checkpoint = total, processed, failed, checkpoint
	j.Error, j.Attempts = errText, int(attempts)
	if key.Valid {
		j.IdempotencyKey = &key.String
	}
	if len(params) > 0 {
		if err := json.Unmarshal(params, &j.Params); err != nil {
			return nil, fmt.Errorf("decoding params of job %d: %w", j.ID, err)
		}
	}
	if staff.Valid {
		v := int(staff.Int64)
		j.CreatedByStaffID = &v
	}
	j.LeaseUntil = nullTime(lease)
	j.StartedAt = nullTime(started)
	j.FinishedAt = nullTime(finished)
	return &j, nil
}

func nullTime(t stdsql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	return &t.Time
}

// execute runs the handler of r's job with a heartbeat, then records the
// outcome.
func (q *Queue) execute(ctx context.Context, r *Run) {
	log := q.log.With("job", r.Job.ID, "kind", r.Job.Kind, "attempt", r.Job.Attempts)
	log.InfoContext(ctx, "job claimed", "checkpoint", r.Job.Checkpoint)
	hctx, cancel := context.WithCancelCause(ctx)
	beat := make(chan struct{})
	go func() {
		defer close(beat)
		q.heartbeat(hctx, r, cancel, log)
	}()
	start := time.Now()
	err := call(hctx, q.handler(r.Job.Kind), r)
	cancel(nil)
	<-beat
	if errors.Is(context.Cause(hctx), ErrLeaseLost) || errors.Is(err, ErrLeaseLost) {
		log.WarnContext(ctx, "job lease lost: another worker took the job over", "err", err)
		return
	}
	q.finish(ctx, r, err, log, time.Since(start))
}

// call runs h, turning a panic into an error that carries the stack (for
// the log; the job's error text gets the panic value only).
func call(ctx context.Context, h Handler, r *Run) (err error) {
	if h == nil {
		return Permanent(fmt.Errorf("no handler registered for job kind %s", r.Job.Kind))
	}
	defer func() {
		if p := recover(); p != nil {
			err = &panicError{value: p, stack: debug.Stack()}
		}
	}()
	return h(ctx, r)
}

// panicError is a recovered handler panic.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("job handler panicked: %v", e.value) }

// heartbeat extends r's lease every Lease/3 until ctx ends; when it finds
// the job taken over it cancels the handler with ErrLeaseLost. A failed
// renewal (database unreachable) is retried on the next beat: if the lease
// runs out meanwhile, fencing keeps the handler from writing anything.
func (q *Queue) heartbeat(ctx context.Context, r *Run, cancel context.CancelCauseFunc, log *slog.Logger) {
	t := time.NewTicker(max(q.opts.Lease/3, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := q.opts.Now().UTC()
		err := r.fenced(ctx, q.db, "renewing lease of job", heartbeatSQL, now.Add(q.opts.Lease), now)
		switch {
		case errors.Is(err, ErrLeaseLost):
			cancel(ErrLeaseLost)
			return
		case err != nil && ctx.Err() == nil:
			log.WarnContext(ctx, "renewing job lease", "err", err)
		}
	}
}

// finish records the outcome of a run that still owned its job. Writes
// use a context that outlives the queue's, so that a shutdown still puts
// the job back.
func (q *Queue) finish(ctx context.Context, r *Run, err error, log *slog.Logger, took time.Duration) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finishWithin)
	defer cancel()
	now := q.opts.Now().UTC()
	var werr error
	switch {
	case err == nil:
		werr = r.fenced(wctx, q.db, "finishing job", succeedSQL, now)
		if werr == nil {
			log.InfoContext(ctx, "job succeeded", "took", took.Round(time.Millisecond))
		}
	case ctx.Err() != nil:
		// Shutting down: the job is not at fault; another worker (or this
		// one after a restart) takes it up again at once.
		werr = r.fenced(wctx, q.db, "releasing job", retrySQL, now, nil)
		if werr == nil {
			log.InfoContext(ctx, "job released on shutdown", "err", err)
		}
	case IsPermanent(err) || r.Job.Attempts >= q.opts.MaxAttempts:
		werr = r.fenced(wctx, q.db, "failing job", failSQL, now, truncate(err.Error()))
		if werr == nil {
			q.logError(ctx, log, "job failed", err)
		}
	default:
		wait := q.opts.Backoff(r.Job.Attempts)
		werr = r.fenced(wctx, q.db, "requeueing job", retrySQL, now, now.Add(wait))
		if werr == nil {
			q.logError(ctx, log, "job attempt failed, retrying", err, "retryIn", wait)
		}
	}
	switch {
	case errors.Is(werr, ErrLeaseLost):
		log.WarnContext(ctx, "job lease lost before its outcome was written", "err", err)
	case werr != nil:
		// The lease runs out and another worker takes the job up again.
		log.ErrorContext(ctx, "recording job outcome", "err", werr, "jobErr", err)
	}
}

func (q *Queue) logError(ctx context.Context, log *slog.Logger, msg string, err error, args ...any) {
	args = append(args, "err", err)
	if p := (*panicError)(nil); errors.As(err, &p) {
		args = append(args, "stack", string(p.stack))
	}
	log.ErrorContext(ctx, msg, args...)
}
