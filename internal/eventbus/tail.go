package eventbus

import (
	"context"
	"fmt"
	"time"

	"github.com/lib/pq"
)

// tailLoop is the safety tailer (see the package documentation): it wakes
// the local subscribers of every member whose events committed in the
// transaction-id window [lo, horizon) since its last pass.
func (b *Bus) tailLoop(ctx context.Context) {
	t := time.NewTicker(b.opts.PollEvery)
	defer t.Stop()
	var (
		lo      int64
		started bool
	)
	for {
		h, err := b.horizon(ctx)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				b.log.Warn("event bus: reading transaction horizon", "err", err)
			}
		case !started:
			lo, started = h, true
		case h > lo:
			if err := b.tail(ctx, lo, h); err != nil {
				if ctx.Err() == nil {
					b.log.Warn("event bus: tailing member events", "err", err, "from_tx", lo, "to_tx", h)
				}
				break // the same window again next time
			}
			lo = h
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// horizon returns the oldest transaction id that may still be running:
// every lower one has ended.
func (b *Bus) horizon(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	var h int64
	if err := b.db.QueryRowContext(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint`).Scan(&h); err != nil {
		return 0, fmt.Errorf("reading snapshot xmin: %w", err)
	}
	return h, nil
}

// tail wakes the local subscribers behind the events written by
// transactions lo <= tx_id < hi.
func (b *Bus) tail(ctx context.Context, lo, hi int64) error {
	ctx, cancel := context.WithTimeout(ctx, queryTimeout)
	defer cancel()
	rows, err := b.db.QueryContext(ctx, `SELECT member_id, max(seq) FROM member_events
		WHERE tx_id >= $1 AND tx_id < $2 GROUP BY member_id`, lo, hi)
	if err != nil {
		return fmt.Errorf("querying members with new events: %w", err)
	}
	defer rows.Close()
	heads := make(map[int]int64)
	for rows.Next() {
		var (
			id  int
			seq int64
		)
		if err := rows.Scan(&id, &seq); err != nil {
			return fmt.Errorf("scanning member with new events: %w", err)
		}
		heads[id] = seq
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reading members with new events: %w", err)
	}
	if len(heads) > 0 {
		b.wakeBehind(heads)
	}
	return nil
}

// pruneLockKey serializes Prune across replicas (arbitrary, fixed).
const pruneLockKey int64 = 0x65766275 // "evbu"

// Prune deletes the events older than Options.Retention, pruneBatch rows
// per statement, and returns how many it deleted. With every old event it
// also deletes the same member's events of lower seq, which a clock skew
// between writers may have stamped slightly later: what is left of a
// member's events stays a suffix of its sequence, which is what makes the
// ErrEventsExpired check of Subscribe exact. Concurrent Prunes (one per
// replica) take turns batch by batch.
func (b *Bus) Prune(ctx context.Context) (int64, error) {
	cutoff := b.opts.Now().Add(-b.opts.Retention)
	var total int64
	for {
		n, more, err := b.pruneBatch(ctx, cutoff)
		total += n
		if err != nil {
			return total, err
		}
		if !more {
			return total, nil
		}
	}
}

// pruneBatch deletes one batch in one transaction, so that no reader ever
// sees a hole in a member's sequence, and reports whether a full batch of
// old events was found (there may be more).
func (b *Bus) pruneBatch(ctx context.Context, cutoff time.Time) (n int64, more bool, err error) {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, false, fmt.Errorf("beginning prune: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, pruneLockKey); err != nil {
		return 0, false, fmt.Errorf("taking prune lock: %w", err)
	}
	rows, err := tx.QueryContext(ctx, `DELETE FROM member_events WHERE id IN (
			SELECT id FROM member_events WHERE occurred_at < $1 ORDER BY occurred_at LIMIT $2)
		RETURNING member_id, seq`, cutoff, pruneBatch)
	if err != nil {
		return 0, false, fmt.Errorf("deleting old member events: %w", err)
	}
	tops := make(map[int64]int64) // member id → highest deleted seq
	var old int64
	for rows.Next() {
		var id, seq int64
		if err := rows.Scan(&id, &seq); err != nil {
			rows.Close()
			return 0, false, fmt.Errorf("scanning deleted member event: %w", err)
		}
		tops[id] = max(tops[id], seq)
		old++
	}
	n = old
	if err := rows.Err(); err != nil {
		return 0, false, fmt.Errorf("reading deleted member events: %w", err)
	}
	if len(tops) > 0 {
		members := make([]int64, 0, len(tops))
		seqs := make([]int64, 0, len(tops))
		for id, seq := range tops {
			members = append(members, id)
			seqs = append(seqs, seq)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM member_events e
			USING unnest($1::bigint[], $2::bigint[]) AS c(member_id, seq)
			WHERE e.member_id = c.member_id AND e.seq < c.seq`, pq.Array(members), pq.Array(seqs))
		if err != nil {
			return 0, false, fmt.Errorf("deleting member events below pruned ones: %w", err)
		}
		below, err := res.RowsAffected()
		if err != nil {
			return 0, false, fmt.Errorf("counting member events below pruned ones: %w", err)
		}
		n += below
	}
	if err := tx.Commit(); err != nil {
		return 0, false, fmt.Errorf("committing prune: %w", err)
	}
	return n, old >= pruneBatch, nil
}
