package ledger

import (
	"context"
	"errors"
	"strings"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/pointsentry"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/audit"
	"github.com/onemember/onemember/internal/auth"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

// ErrAdjustKeyReused is an idempotency key already used for another
// member's adjustment.
var ErrAdjustKeyReused = fault.New(fault.Conflict, "idempotencyKey was used for another adjustment")

// Adjust is a staff points adjustment in its own transaction, idempotent
// on key (a retry returns the first entry) and audited.
func (s *Service) Adjust(ctx context.Context, memberID int, delta int64, reason, key string) (*ent.PointsEntry, error) {
	var errs []error
	if strings.TrimSpace(reason) == "" {
		errs = append(errs, fault.Invalidf("reason", "is required"))
	}
	if strings.TrimSpace(key) == "" {
		errs = append(errs, fault.Invalidf("idempotencyKey", "is required"))
	}
	if delta == 0 {
		errs = append(errs, fault.Invalidf("amount", "must not be 0"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	k := "adjust:" + key
	if e, err := s.db.PointsEntry.Query().Where(pointsentry.IdempotencyKey(k)).Only(ctx); err == nil {
		if e.MemberID != memberID {
			return nil, ErrAdjustKeyReused
		}
		return e, nil
	}
	e, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (*ent.PointsEntry, error) {
		acct, err := account.Lock(ctx, tx, memberID)
		if err != nil {
			return nil, err
		}
		e, err := s.AdjustPoints(ctx, tx, acct, delta, Entry{Source: SourceAdjustment, Reason: reason, Key: &k})
		if err != nil {
			return nil, err
		}
		return e, audit.Record(ctx, tx.Client(), audit.Entry{
			Actor: auth.ViewerFrom(ctx).Actor(), Action: "points.adjust", SubjectType: "Member", SubjectID: memberID,
			Detail: map[string]any{"delta": delta, "reason": reason, "key": key},
		})
	})
	return database.Detach(e), err
}
