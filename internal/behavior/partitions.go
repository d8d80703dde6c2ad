package behavior

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/lib/pq"
)

// partitionLock is the transaction-level advisory lock partition changes
// take, so that replicas maintaining at once queue instead of racing on
// the catalog.
const partitionLock int64 = 0x62656861_76696f72 // "behavior"

// partitionLockTimeout bounds the wait for the table lock DDL on a
// partition needs: a DDL statement queued behind a long query would in turn
// block every insert queued behind it.
const partitionLockTimeout = "10s"

const partitionPrefix = "behavior_events_"

// listPartitions names behavior_events' partitions.
const listPartitions = `SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'behavior_events'::regclass`

// MaintainPartitions creates the monthly partitions from RetentionMonths-1
// months back to MonthsAhead months ahead that are missing (the past ones
// too, so that every event Ingest accepts has its partition), and drops
// the partitions entirely older than RetentionMonths (whose month ended
// before now minus RetentionMonths months). It returns how many partitions
// it created plus dropped. One transaction under an advisory lock: several
// replicas may run it at once.
func (s *Service) MaintainPartitions(ctx context.Context) (int64, error) {
	now := s.now().In(s.zone)
	current := monthStart(now, s.zone)
	want := map[time.Time]bool{}
	for i := -(s.opts.RetentionMonths - 1); i <= MonthsAhead; i++ {
		want[addMonths(current, i)] = true
	}
	cutoff := time.Date(now.Year(), now.Month()-time.Month(s.opts.RetentionMonths), now.Day(),
		now.Hour(), now.Minute(), now.Second(), now.Nanosecond(), s.zone)
	return s.partitionTx(ctx, func(tx *sql.Tx, existing map[string]bool) (int64, error) {
		n, err := s.create(ctx, tx, existing, want)
		if err != nil {
			return n, err
		}
		for _, name := range sortedNames(existing) {
			month, ok := s.parseName(name)
			if !ok || addMonths(month, 1).After(cutoff) {
				continue
			}
			if _, err := tx.ExecContext(ctx, "DROP TABLE IF EXISTS "+pq.QuoteIdentifier(name)); err != nil {
				return n, fmt.Errorf("dropping partition %s: %w", name, err)
			}
			n++
		}
		return n, nil
	})
}

// ensure creates the partitions of months that are missing, returning how
// many it created.
func (s *Service) ensure(ctx context.Context, months map[time.Time]bool) (int64, error) {
	return s.partitionTx(ctx, func(tx *sql.Tx, existing map[string]bool) (int64, error) {
		return s.create(ctx, tx, existing, months)
	})
}

// partitionTx runs fn in a transaction holding partitionLock, with the
// names of the partitions that exist once the lock is held.
func (s *Service) partitionTx(ctx context.Context, fn func(tx *sql.Tx, existing map[string]bool) (int64, error)) (n int64, err error) {
	tx, err := s.sql.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("beginning partition maintenance: %w", err)
	}
	defer func() {
		if err != nil {
			if rerr := tx.Rollback(); rerr != nil {
				err = errors.Join(err, fmt.Errorf("rolling back: %w", rerr))
			}
			n = 0
		}
	}()
	if _, err := tx.ExecContext(ctx, "SET LOCAL lock_timeout = '"+partitionLockTimeout+"'"); err != nil {
		return 0, fmt.Errorf("setting lock timeout: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", partitionLock); err != nil {
		return 0, fmt.Errorf("taking the partition lock: %w", err)
	}
	existing, err := partitionNames(ctx, tx)
	if err != nil {
		return 0, err
	}
	if n, err = fn(tx, existing); err != nil {
		return 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("committing partition maintenance: %w", err)
	}
	return n, nil
}

func partitionNames(ctx context.Context, tx *sql.Tx) (map[string]bool, error) {
	rows, err := tx.QueryContext(ctx, listPartitions)
	if err != nil {
		return nil, fmt.Errorf("listing partitions: %w", err)
	}
	defer rows.Close()
	out := map[string]bool{}
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("listing partitions: %w", err)
		}
		out[name] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("listing partitions: %w", err)
	}
	return out, nil
}

// create adds the partitions of months not in existing, oldest first.
func (s *Service) create(ctx context.Context, tx *sql.Tx, existing map[string]bool, months map[time.Time]bool) (int64, error) {
	list := make([]time.Time, 0, len(months))
	for m := range months {
		list = append(list, m)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Before(list[j]) })
	var n int64
	for _, m := range list {
		name := partitionName(m)
		if existing[name] {
			continue
		}
		// Bounds are instants (UTC) of the month's start and the next
		// one's in the business zone, as the migration's DO block writes
		// them.
		stmt := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s PARTITION OF behavior_events FOR VALUES FROM (%s) TO (%s)",
			pq.QuoteIdentifier(name), pq.QuoteLiteral(m.UTC().Format(time.RFC3339)),
			pq.QuoteLiteral(addMonths(m, 1).UTC().Format(time.RFC3339)))
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return n, fmt.Errorf("creating partition %s: %w", name, err)
		}
		existing[name] = true
		n++
	}
	return n, nil
}

// partitionName is the partition of the month starting at month.
func partitionName(month time.Time) string {
	return partitionPrefix + month.Format("200601")
}

// parseName returns the month a partition holds, in the business zone;
// false for a name not of the form behavior_events_YYYYMM.
func (s *Service) parseName(name string) (time.Time, bool) {
	suffix, ok := strings.CutPrefix(name, partitionPrefix)
	if !ok || len(suffix) != 6 {
		return time.Time{}, false
	}
	t, err := time.ParseInLocation("200601", suffix, s.zone)
	if err != nil {
		return time.Time{}, false
	}
	return t, true
}

func sortedNames(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for name := range set {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
