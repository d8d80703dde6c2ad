package ledger

import (
	"context"
	"errors"
	"fmt"
	"github.com/onemember/onemember/internal/account"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/pointslot"
	"github.com/onemember/onemember/internal/platform/database"
)

// expiryBatch is how many members one pass of ExpirePoints reads.
const expiryBatch = 500

// maxExpiryErrors bounds the errors ExpirePoints collects before it
// stops: a few failing members should not stop the others, a broken
// database should not be tried a million times.
const maxExpiryErrors = 20

// ExpirePoints expires every lot that still holds points and whose expiry
// has passed: per member, in its own transaction under the account lock,
// one EXPIRE entry for the sum, with allocations, and the lots emptied.
// The lots are re-read FOR UPDATE under the lock, so a member that a
// concurrent burn or another ExpirePoints already handled is skipped
// without writing anything. A member that fails is skipped and reported in
// the joined error; the others proceed.
func (s *Service) ExpirePoints(ctx context.Context) (int64, error) {
	now := s.now() // fixed for the run, so a long run does not chase a moving target
	var (
		expired int64
		errs    []error
		after   int
	)
	for {
		members, err := s.db.PointsLot.Query().
			Where(pointslot.RemainingGT(0), pointslot.ExpiresAtLTE(now), pointslot.MemberIDGT(after)).
			Order(pointslot.ByMemberID()).
			Unique(true).
			Limit(expiryBatch).
			Select(pointslot.FieldMemberID).
			Ints(ctx)
		if err != nil {
			return expired, errors.Join(append(errs, fmt.Errorf("listing members with expired points: %w", err))...)
		}
		for _, memberID := range members {
			n, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (int64, error) {
				acct, err := account.Lock(ctx, tx, memberID)
				if err != nil {
					return 0, err
				}
				return s.expireDue(ctx, tx, acct, now)
			})
			if err != nil {
				errs = append(errs, fmt.Errorf("expiring points of member %d: %w", memberID, err))
				if ctx.Err() != nil || len(errs) >= maxExpiryErrors {
					return expired, errors.Join(errs...)
				}
				continue
			}
			expired += n
		}
		if len(members) < expiryBatch {
			return expired, errors.Join(errs...)
		}
		after = members[len(members)-1]
	}
}
