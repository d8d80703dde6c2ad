package tier

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/tierchange"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/platform/database"
)

const (
	// defaultReviewBatch is how many members one pass of Review scans, so
	// that a run over a million members never holds one long query or a
	// huge result in memory.
	defaultReviewBatch = 1000
	// maxReportedFailures bounds the errors Review returns when many
	// members fail: the first few say what went wrong, a count the rest.
	maxReportedFailures = 10
)

// dueScan pre-selects members whose review may be due. PostgreSQL adds the
// months in the session's time zone while the exact rule (addMonths) works
// in the business zone, so the two can disagree by a day or so around
// month ends; the week of slack makes the scan a superset and Go decides.
// Members on the lowest tier are never reviewed: there is nowhere lower to
// go, and "keeping" them would rewrite every dormant account once a year.
// Keyset pagination on the member id guarantees progress even when
// candidates turn out not to be due.
const dueScan = `
SELECT m.id, COALESCE(a.tier_since, m.registered_at), t.retention_months
FROM members m
JOIN tiers t ON t.id = m.tier_id
LEFT JOIN accounts a ON a.member_id = m.id
WHERE m.id > $1
  AND m.status IN ('ACTIVE', 'FROZEN')
  AND t.rank > (SELECT min(rank) FROM tiers)
  AND COALESCE(a.tier_since, m.registered_at) + make_interval(months => t.retention_months::int) <= $2::timestamptz + interval '7 days'
ORDER BY m.id
LIMIT $3`

// Review runs the retention review of every member whose review is due at
// the current instant and returns how many moved down.
//
// At a review the net growth of the last 12 months must reach the current
// tier's threshold; otherwise the member moves down one tier (never more).
// Either way the next review is the tier's retention_months later: a kept
// member's account.tier_since advances to the review instant, a demoted
// member's to the demotion, which is the same instant.
//
// Each member is reviewed in its own transaction under the account lock,
// and due-ness is checked again inside it, so two replicas running Review
// at once review each member once. A member that fails does not stop the
// others; the failures are returned together with the count of those
// demoted. Cancelling ctx stops Review after the members in flight.
func (s *Service) Review(ctx context.Context) (demoted int, err error) {
	now := s.now()
	var t tally
	after, scanned := 0, s.reviewBatch
	for scanned == s.reviewBatch && ctx.Err() == nil {
		var ids []int
		ids, after, scanned, err = s.dueMembers(ctx, after, now)
		if err != nil {
			t.fail(err)
			break
		}
		s.reviewMembers(ctx, ids, now, &t)
	}
	if err := ctx.Err(); err != nil {
		t.fail(err)
	}
	return t.demoted, t.err()
}

// reviewWorkers is how many members Review has in flight: each review is a
// short transaction of its own, and a few at once hide commit latency
// without taking much of the connection pool.
const reviewWorkers = 4

// reviewMembers reviews ids with reviewWorkers goroutines, all finished
// when it returns.
func (s *Service) reviewMembers(ctx context.Context, ids []int, now time.Time, t *tally) {
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(reviewWorkers, len(ids)) {
		wg.Go(func() {
			for id := range work {
				down, err := s.reviewMember(ctx, id, now)
				t.add(down, err)
			}
		})
	}
	for _, id := range ids {
		if ctx.Err() != nil {
			break
		}
		work <- id
	}
	close(work)
	wg.Wait()
}

// tally counts the outcome of a review run across workers.
type tally struct {
	mu       sync.Mutex
	demoted  int
	failed   int
	failures []error // the first maxReportedFailures
}

func (t *tally) add(demoted bool, err error) {
	if err != nil {
		t.fail(err)
		return
	}
	if demoted {
		t.mu.Lock()
		t.demoted++
		t.mu.Unlock()
	}
}

func (t *tally) fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failed++
	if len(t.failures) < maxReportedFailures {
		t.failures = append(t.failures, err)
	}
}

func (t *tally) err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failed == 0 {
		return nil
	}
	errs := t.failures
	if more := t.failed - len(errs); more > 0 {
		errs = append(errs, fmt.Errorf("and %d more", more))
	}
	return fmt.Errorf("reviewing tiers: %d failures: %w", t.failed, errors.Join(errs...))
}

// dueMembers returns the members after the id cursor whose review is due
// at now, the last id scanned and how many rows were scanned.
func (s *Service) dueMembers(ctx context.Context, after int, now time.Time) (due []int, last, scanned int, err error) {
	rows, err := s.db.QueryContext(ctx, dueScan, after, now, s.reviewBatch)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("finding members due for review: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id        int
			since     time.Time
			retention int
		)
		if err := rows.Scan(&id, &since, &retention); err != nil {
			return nil, 0, 0, fmt.Errorf("reading members due for review: %w", err)
		}
		scanned++
		last = id
		if !addMonths(since, retention, s.zone).After(now) {
			due = append(due, id)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, 0, 0, fmt.Errorf("reading members due for review: %w", err)
	}
	return due, last, scanned, nil
}

// reviewMember reviews one member at now and reports whether they moved
// down.
func (s *Service) reviewMember(ctx context.Context, memberID int, now time.Time) (bool, error) {
	return database.WithTx(ctx, s.db, func(tx *ent.Tx) (bool, error) {
		acct, err := account.Lock(ctx, tx, memberID)
		if err != nil {
			return false, fmt.Errorf("reviewing member %d: %w", memberID, err)
		}
		// Read under the lock: another replica may have reviewed this
		// member, or a promotion moved them, since the scan.
		m, err := tx.Member.Get(ctx, memberID)
		if err != nil {
			return false, fmt.Errorf("reviewing member %d: %w", memberID, err)
		}
		if !live(m) {
			return false, nil
		}
		ladder, err := loadLadder(ctx, tx.Tier)
		if err != nil {
			return false, err
		}
		i := indexOf(ladder, m.TierID)
		if i <= 0 {
			return false, nil
		}
		current := ladder[i]
		if addMonths(periodStart(acct, m), current.RetentionMonths, s.zone).After(now) {
			return false, nil
		}
		growth, err := growthBetween(ctx, tx.GrowthEntry, memberID, addMonths(now, -windowMonths, s.zone), now)
		if err != nil {
			return false, err
		}
		if growth >= current.Threshold {
			if err := tx.Account.UpdateOneID(acct.ID).SetTierSince(now).Exec(ctx); err != nil {
				return false, fmt.Errorf("keeping tier of member %d: %w", memberID, err)
			}
			return false, nil
		}
		lower := ladder[i-1]
		reason := fmt.Sprintf("保级评审：近%d个月成长值%d，未达到%s保级门槛%d", windowMonths, growth, current.Name, current.Threshold)
		if _, err := s.change(ctx, tx, acct, m, current, lower, tierchange.DirectionDOWN, reason, now); err != nil {
			return false, err
		}
		return true, nil
	})
}
