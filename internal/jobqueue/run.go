package jobqueue

import (
	"context"
	stdsql "database/sql"
	"fmt"
	"maps"

	"github.com/onemember/onemember/ent"
)

// Run is one attempt at a job, owned by the worker that claimed it; its
// writes are fenced by the attempts number it claimed.
type Run struct {
	// Job is the job as claimed: status RUNNING, attempts counting this
	// one, and the checkpoint and counts the previous attempts committed.
	// It is not bound to a client (read its fields, do not query through
	// it).
	Job *ent.Job

	q *Queue
}

// execer is what runs a fenced statement: the queue's client, or a
// handler's transaction.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (stdsql.Result, error)
}

// Every fenced write matches the claim: $1 id, $2 attempts.
const (
	advanceSQL = `UPDATE jobs SET checkpoint = $3, processed = processed + $4, failed = failed + $5, updated_at = $6
WHERE id = $1 AND attempts = $2 AND status = 'RUNNING'`
	setTotalSQL = `UPDATE jobs SET total = $3, updated_at = $4
WHERE id = $1 AND attempts = $2 AND status = 'RUNNING'`
	noteSQL = `UPDATE jobs SET error = $3, updated_at = $4
WHERE id = $1 AND attempts = $2 AND status = 'RUNNING'`
)

// Params returns a copy of the job's parameters. Numbers arrive as
// float64 (JSON); read ids with IntParam.
func (r *Run) Params() map[string]any { return maps.Clone(r.Job.Params) }

// Checkpoint is where the job stood when it was claimed: 0 for a fresh
// job, else what the last committed Advance set. A resumed job continues
// after it.
func (r *Run) Checkpoint() int64 { return r.Job.Checkpoint }

// SetTotal records how many items the job has (outside any transaction is
// fine: it is a display value). ErrLeaseLost when this worker no longer
// owns the job.
func (r *Run) SetTotal(ctx context.Context, total int64) error {
	if total < 0 {
		return fmt.Errorf("job %d: negative total %d", r.Job.ID, total)
	}
	return r.fenced(ctx, r.q.db, "setting job total", setTotalSQL, total, r.q.opts.Now().UTC())
}

// Advance moves the checkpoint to cp and adds processed and failed to the
// job's counts, inside the handler's transaction tx, so that the work done
// in tx and the progress commit together. It fails with ErrLeaseLost when
// this worker no longer owns the job (another worker claimed it after the
// lease ran out): the caller must then roll tx back. Call it last in tx:
// it locks the job's row until tx ends, and the heartbeat waits on it.
func (r *Run) Advance(ctx context.Context, tx *ent.Tx, cp int64, processed, failed int64) error {
	if processed < 0 || failed < 0 {
		return fmt.Errorf("job %d: negative progress %d/%d", r.Job.ID, processed, failed)
	}
	return r.fenced(ctx, tx, "advancing job", advanceSQL, cp, processed, failed, r.q.opts.Now().UTC())
}

// Note sets the job's error text without failing the job, to tell staff
// something about a job that still succeeds (e.g. "out of stock after 250
// coupons"). ErrLeaseLost when this worker no longer owns the job.
func (r *Run) Note(ctx context.Context, text string) error {
	return r.fenced(ctx, r.q.db, "noting on job", noteSQL, truncate(text), r.q.opts.Now().UTC())
}

// NoteInTx is Note inside the handler's transaction, so that the note
// commits with the work it describes.
func (r *Run) NoteInTx(ctx context.Context, tx *ent.Tx, text string) error {
	return r.fenced(ctx, tx, "noting on job", noteSQL, truncate(text), r.q.opts.Now().UTC())
}

// fenced runs query with $1 the job's id and $2 the claimed attempts
// followed by args, and answers ErrLeaseLost when it matched no row.
func (r *Run) fenced(ctx context.Context, db execer, what, query string, args ...any) error {
	res, err := db.ExecContext(ctx, query, append([]any{r.Job.ID, r.Job.Attempts}, args...)...)
	if err != nil {
		return fmt.Errorf("%s %d: %w", what, r.Job.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s %d: %w", what, r.Job.ID, err)
	}
	if n == 0 {
		return fmt.Errorf("%s %d (attempt %d): %w", what, r.Job.ID, r.Job.Attempts, ErrLeaseLost)
	}
	return nil
}

func truncate(s string) string {
	if len(s) <= maxErrorText {
		return s
	}
	// Cut on a rune boundary so the column stays valid UTF-8.
	cut := maxErrorText
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "…"
}
