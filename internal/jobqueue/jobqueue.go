// Package jobqueue owns durable background jobs (the jobs table): staff
// start a job (issue coupons to an audience, refresh an audience or a tag,
// compute an RFM model), every replica's workers claim jobs from the table,
// and the job's row shows its progress until it SUCCEEDED or FAILED.
//
// # Claiming and leases
//
// A worker claims one job with one statement: the lowest id among the
// QUEUED jobs due (lease_until null or passed) and the RUNNING jobs whose
// lease ran out, locked FOR UPDATE SKIP LOCKED so that claimers never wait
// on each other, becomes RUNNING with attempts+1 and a lease. While the
// handler runs, a heartbeat extends the lease every Lease/3; a worker that
// dies stops extending it, and after Lease another worker takes the job
// over and resumes it from its checkpoint.
//
// # Fencing
//
// The attempts number a worker claimed is its fencing token: every write
// of a running job (progress, total, note, the final status) matches
// id, attempts and status RUNNING, so a worker whose job was taken over
// (a long GC pause, a lost network, a lease shorter than a batch) writes
// nothing. A handler does its work in transactions that call Run.Advance:
// a fenced-out worker's Advance fails with ErrLeaseLost and its work rolls
// back with it, so work and checkpoint always commit together and a job
// resumed by another worker never does anything twice.
//
// # Outcome
//
// A handler returning nil makes the job SUCCEEDED. An error puts it back
// to QUEUED after a backoff while attempts < MaxAttempts, and makes it
// FAILED with the error's text otherwise; an error marked Permanent fails
// it at once. A panic is recovered and counts as an error. A job
// interrupted because the queue is shutting down goes back to QUEUED at
// once (the attempt still counts).
//
// All times written to the table come from Options.Now, never from the
// database's clock, so that tests can move time with a fake clock.
package jobqueue

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"entgo.io/ent/dialect/sql"

	"github.com/onemember/onemember/ent"
	entjob "github.com/onemember/onemember/ent/job"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Defaults of zero Options fields.
const (
	DefaultWorkers     = 2
	DefaultLease       = 30 * time.Second
	DefaultPoll        = time.Second
	DefaultMaxAttempts = 5

	// MaxKeyLength bounds an idempotency key (clients send UUIDs or
	// similar).
	MaxKeyLength = 128

	maxBackoff   = 5 * time.Minute
	finishWithin = 10 * time.Second // for writes after the queue's context ended
	maxErrorText = 2000             // bytes of an error kept in jobs.error
)

// Errors.
var (
	// ErrLeaseLost is a write of a worker that no longer owns its job:
	// another worker claimed it after the lease ran out (or it finished
	// meanwhile). The caller rolls back its transaction.
	ErrLeaseLost = errors.New("job lease lost: another worker owns the job now")
	// ErrJobNotFound is a job id that does not exist.
	ErrJobNotFound = fault.New(fault.NotFound, "job not found")
	// ErrKeyConflict is an idempotency key already used for a job of
	// another kind.
	ErrKeyConflict = fault.New(fault.Conflict, "idempotency key already used for a job of another kind")
)

// Options tune a Queue; zero fields take the defaults.
type Options struct {
	// Workers is how many jobs this queue runs at once (DefaultWorkers).
	Workers int
	// Lease is how long a claim holds without a heartbeat (DefaultLease);
	// the heartbeat renews it every Lease/3.
	Lease time.Duration
	// Poll is how often idle workers look for jobs enqueued elsewhere
	// (DefaultPoll); jobs enqueued through this Queue wake them at once.
	Poll time.Duration
	// MaxAttempts is how many times a failing job is tried before it is
	// FAILED (DefaultMaxAttempts).
	MaxAttempts int
	// Backoff is how long a job waits after its attempt-th failure before
	// it is claimed again (default: 1s, 2s, 4s, … capped at 5 minutes).
	Backoff func(attempt int) time.Duration
	// Now is the clock (time.Now).
	Now func() time.Time
}

func (o Options) withDefaults() Options {
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.Lease <= 0 {
		o.Lease = DefaultLease
	}
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.Backoff == nil {
		o.Backoff = exponentialBackoff
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

func exponentialBackoff(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	if attempt > 9 { // 1s<<9 is past the cap already
		return maxBackoff
	}
	return min(time.Second<<(attempt-1), maxBackoff)
}

// Handler does a job. It reports progress through run and does its work
// in transactions that call run.Advance, so that work and progress commit
// together. Its context ends when the queue shuts down or when the worker
// lost the job's lease (context.Cause is then ErrLeaseLost).
type Handler func(ctx context.Context, run *Run) error

// Queue enqueues jobs and runs the handlers of the kinds registered with
// it. Several Queues (replicas) may share one database.
type Queue struct {
	db   *ent.Client
	log  *slog.Logger
	opts Options
	// wake holds up to Workers tokens: an Enqueue wakes one idle worker.
	wake chan struct{}

	mu       sync.RWMutex
	handlers map[enum.JobKind]Handler
}

// New builds a Queue on db; run its workers with Run.
func New(db *ent.Client, log *slog.Logger, opts Options) *Queue {
	opts = opts.withDefaults()
	return &Queue{
		db:       db,
		log:      log,
		opts:     opts,
		wake:     make(chan struct{}, opts.Workers),
		handlers: make(map[enum.JobKind]Handler),
	}
}

// Register makes this queue's workers run jobs of kind with h (replacing
// an earlier handler). Workers claim only the kinds registered with their
// queue.
func (q *Queue) Register(kind enum.JobKind, h Handler) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.handlers[kind] = h
}

func (q *Queue) handler(kind enum.JobKind) Handler {
	q.mu.RLock()
	defer q.mu.RUnlock()
	return q.handlers[kind]
}

// kinds lists the registered kinds, sorted (for a stable statement).
func (q *Queue) kinds() []string {
	q.mu.RLock()
	defer q.mu.RUnlock()
	out := make([]string, 0, len(q.handlers))
	for k := range q.handlers {
		out = append(out, string(k))
	}
	slices.Sort(out)
	return out
}

// notify wakes one idle worker, if none is awake already.
func (q *Queue) notify() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

type enqueued struct {
	job     *ent.Job
	created bool
}

// Enqueue adds a job of kind with params, started by staffID (nil: the
// system). With an idempotency key already used it returns that job and
// created=false (a job of another kind under the key is ErrKeyConflict,
// CONFLICT); an empty key is no key. Wakes this queue's idle workers.
func (q *Queue) Enqueue(ctx context.Context, kind enum.JobKind, params map[string]any, idempotencyKey string, staffID *int) (job *ent.Job, created bool, err error) {
	res, err := database.WithTx(ctx, q.db, func(tx *ent.Tx) (enqueued, error) {
		j, created, err := q.EnqueueInTx(ctx, tx, kind, params, idempotencyKey, staffID)
		return enqueued{job: j, created: created}, err
	})
	if err != nil {
		return nil, false, err
	}
	return database.Detach(res.job), res.created, nil
}

// EnqueueInTx is Enqueue inside the caller's transaction, for a job that
// must exist exactly when the caller's change commits. The caller commits;
// the workers are woken after the commit (tx.OnCommit).
//
// Two callers racing with one key: the second insert waits for the first
// transaction and then does nothing (ON CONFLICT DO NOTHING, which keeps
// tx usable), and the job the first committed is returned.
func (q *Queue) EnqueueInTx(ctx context.Context, tx *ent.Tx, kind enum.JobKind, params map[string]any, idempotencyKey string, staffID *int) (*ent.Job, bool, error) {
	if err := validEnqueue(kind, idempotencyKey); err != nil {
		return nil, false, err
	}
	now := q.opts.Now().UTC()
	create := tx.Job.Create().
		SetKind(kind).SetStatus(enum.JobQueued).SetNillableCreatedByStaffID(staffID).
		SetCreatedAt(now).SetUpdatedAt(now)
	if params != nil {
		create.SetParams(params)
	}
	if idempotencyKey != "" {
		create.SetIdempotencyKey(idempotencyKey).
			OnConflict(sql.ConflictColumns(entjob.FieldIdempotencyKey)).DoNothing()
	}
	j, err := create.Save(ctx)
	if idempotencyKey != "" && errors.Is(err, stdsql.ErrNoRows) {
		prev, err := tx.Job.Query().Where(entjob.IdempotencyKey(idempotencyKey)).Only(ctx)
		if err != nil {
			return nil, false, fmt.Errorf("reading job of idempotency key %q: %w", idempotencyKey, err)
		}
		if prev.Kind != kind {
			return nil, false, fmt.Errorf("idempotency key %q is job %d of kind %s: %w", idempotencyKey, prev.ID, prev.Kind, ErrKeyConflict)
		}
		return prev, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("writing job: %w", err)
	}
	tx.OnCommit(func(next ent.Committer) ent.Committer {
		return ent.CommitFunc(func(ctx context.Context, tx *ent.Tx) error {
			err := next.Commit(ctx, tx)
			if err == nil {
				q.notify()
			}
			return err
		})
	})
	return j, true, nil
}

func validEnqueue(kind enum.JobKind, key string) error {
	var errs []error
	if !slices.Contains(kind.Values(), string(kind)) {
		errs = append(errs, fault.Invalidf("kind", "unknown job kind %q", kind))
	}
	switch {
	case len(key) > MaxKeyLength:
		errs = append(errs, fault.Invalidf("idempotencyKey", "must be at most %d bytes", MaxKeyLength))
	case key != "" && strings.TrimSpace(key) == "":
		errs = append(errs, fault.Invalidf("idempotencyKey", "must not be blank"))
	}
	return errors.Join(errs...)
}

// Get returns the job with id (ErrJobNotFound, NOT_FOUND, when there is
// none).
func (q *Queue) Get(ctx context.Context, id int) (*ent.Job, error) {
	j, err := q.db.Job.Get(ctx, id)
	if ent.IsNotFound(err) {
		return nil, fmt.Errorf("job %d: %w", id, ErrJobNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("reading job %d: %w", id, err)
	}
	return j, nil
}

// Watch sends the job now, and again whenever its status, total,
// processed or failed changed, reading the row every `every` (Poll when
// not positive). It closes the channel after sending a finished job
// (SUCCEEDED or FAILED), when the job disappears, or when ctx ends. A slow
// reader misses intermediate states, never the last one. A job that does
// not exist is ErrJobNotFound at once.
func (q *Queue) Watch(ctx context.Context, id int, every time.Duration) (<-chan *ent.Job, error) {
	if every <= 0 {
		every = q.opts.Poll
	}
	j, err := q.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	ch := make(chan *ent.Job)
	go func() {
		defer close(ch)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case ch <- j:
			case <-ctx.Done():
				return
			}
			if Finished(j.Status) {
				return
			}
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				next, err := q.db.Job.Get(ctx, id)
				if ent.IsNotFound(err) {
					return
				}
				if err != nil {
					if ctx.Err() != nil {
						return
					}
					q.log.WarnContext(ctx, "watching job", "job", id, "err", err)
					continue
				}
				if changed(j, next) {
					j = next
					break
				}
			}
		}
	}()
	return ch, nil
}

// Finished reports whether a job in status s is done for good.
func Finished(s enum.JobStatus) bool { return s == enum.JobSucceeded || s == enum.JobFailed }

func changed(a, b *ent.Job) bool {
	return a.Status != b.Status || a.Total != b.Total || a.Processed != b.Processed || a.Failed != b.Failed
}

// permanentError is an error a retry cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as one a retry cannot fix (bad parameters, a
// template whose window ended): a handler returning it fails the job at
// once. errors.Is and errors.As see through it. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}
