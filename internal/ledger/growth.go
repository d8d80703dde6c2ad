package ledger

import (
	"context"
	"fmt"
	"time"

	"entgo.io/ent/dialect/sql"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/growthentry"
)

// EarnGrowth credits e.Amount growth value. Growth changes emit no event:
// the member hears about the tier change they may cause instead.
func (s *Service) EarnGrowth(ctx context.Context, tx *ent.Tx, acct *ent.Account, e Entry) (*ent.GrowthEntry, error) {
	e = s.withDefaults(e, "")
	if err := e.Validate(); err != nil {
		return nil, err
	}
	if ge, err := existingGrowth(ctx, tx, acct, e.Key); ge != nil || err != nil {
		return ge, err
	}
	return appendGrowth(ctx, tx, acct, growthentry.KindEARN, e.Amount, e)
}

// ReverseGrowth takes back up to e.Amount growth value (kind REVERSAL),
// clamped so that growth never goes below 0: growth the member earned
// before is not owed back. It returns the entry with the amount actually
// reversed, or nil when there was nothing to take.
func (s *Service) ReverseGrowth(ctx context.Context, tx *ent.Tx, acct *ent.Account, e Entry) (*ent.GrowthEntry, error) {
	e = s.withDefaults(e, SourceRefund)
	if err := e.Validate(); err != nil {
		return nil, err
	}
	if ge, err := existingGrowth(ctx, tx, acct, e.Key); ge != nil || err != nil {
		return ge, err
	}
	n := min(e.Amount, max(acct.GrowthValue, 0))
	if n == 0 {
		return nil, nil
	}
	return appendGrowth(ctx, tx, acct, growthentry.KindREVERSAL, -n, e)
}

// GrowthBetween is the net growth of the member's entries that occurred in
// [from, to). db may be a read replica or a transaction's client.
func (s *Service) GrowthBetween(ctx context.Context, db *ent.Client, memberID int, from, to time.Time) (int64, error) {
	n, err := db.GrowthEntry.Query().
		Where(growthentry.MemberID(memberID), growthentry.OccurredAtGTE(from), growthentry.OccurredAtLT(to)).
		Aggregate(coalescedSum(growthentry.FieldAmount)).
		Int(ctx)
	if err != nil {
		return 0, fmt.Errorf("summing growth of member %d: %w", memberID, err)
	}
	return int64(n), nil
}

// coalescedSum is SUM that gives 0, not NULL, over no rows.
func coalescedSum(field string) ent.AggregateFunc {
	return func(s *sql.Selector) string {
		return fmt.Sprintf("COALESCE(SUM(%s), 0)", s.C(field))
	}
}

func appendGrowth(ctx context.Context, tx *ent.Tx, acct *ent.Account, kind growthentry.Kind, amount int64, e Entry) (*ent.GrowthEntry, error) {
	balance := acct.GrowthValue + amount
	ge, err := tx.GrowthEntry.Create().
		SetMemberID(acct.MemberID).
		SetSource(growthentry.Source(e.Source)).
		SetKind(kind).
		SetAmount(amount).
		SetBalanceAfter(balance).
		SetReason(e.Reason).
		SetNillableBusinessUnitID(e.BusinessUnitID).
		SetNillableStoreID(e.StoreID).
		SetNillableOrderID(e.OrderID).
		SetNillableIdempotencyKey(e.Key).
		SetOccurredAt(e.At).
		Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("writing growth entry: %w", err)
	}
	if err := tx.Account.UpdateOneID(acct.ID).SetGrowthValue(balance).Exec(ctx); err != nil {
		return nil, fmt.Errorf("updating growth value: %w", err)
	}
	acct.GrowthValue = balance
	return ge, nil
}

func existingGrowth(ctx context.Context, tx *ent.Tx, acct *ent.Account, key *string) (*ent.GrowthEntry, error) {
	if key == nil {
		return nil, nil
	}
	ge, err := tx.GrowthEntry.Query().Where(growthentry.IdempotencyKey(*key)).Only(ctx)
	if ent.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up growth entry %q: %w", *key, err)
	}
	if ge.MemberID != acct.MemberID {
		return nil, ErrIdempotencyConflict
	}
	return ge, nil
}
