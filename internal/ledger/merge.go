package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/growthentry"
	"github.com/onemember/onemember/ent/pointsentry"
	"github.com/onemember/onemember/ent/pointslot"
	"github.com/onemember/onemember/ent/storedvalueentry"
	"github.com/onemember/onemember/internal/platform/fault"
)

// MergeResult is what a merge moved from one account to the other.
type MergeResult struct {
	Points, Growth, StoredPrincipal, StoredBonus int64
}

// MergeInTx moves every balance of from to to (One ID merge), with a
// MERGE_OUT entry on from and a MERGE_IN entry on to per ledger, source
// MERGE. Both accounts must be locked in tx (lower member id first). A
// ledger whose balance is 0 gets no entries.
//
// Points: from's lots that still hold points move to to unchanged (expiry
// and earning BU kept), so the points expire as they would have. A debt on
// either side is settled like any credit or debit would: to's debt is paid
// from the lots that arrive, from's debt takes from to's lots (earliest
// expiry first) and what they cannot cover stays a debt of to. Afterwards
// from's balances are 0.
func (s *Service) MergeInTx(ctx context.Context, tx *ent.Tx, from, to *ent.Account, at time.Time, reason string) (MergeResult, error) {
	if from.MemberID == to.MemberID {
		return MergeResult{}, fault.Invalidf("member", "cannot merge member %d into itself", from.MemberID)
	}
	if at.IsZero() {
		at = s.now()
	}
	out := MergeResult{
		Points:          from.PointsBalance,
		Growth:          from.GrowthValue,
		StoredPrincipal: from.StoredPrincipal,
		StoredBonus:     from.StoredBonus,
	}
	e := Entry{Source: SourceMerge, Reason: reason, At: at}
	if err := mergePoints(ctx, tx, from, to, e); err != nil {
		return MergeResult{}, err
	}
	if g := from.GrowthValue; g != 0 {
		if _, err := appendGrowth(ctx, tx, from, growthentry.KindMERGE_OUT, -g, e); err != nil {
			return MergeResult{}, err
		}
		if _, err := appendGrowth(ctx, tx, to, growthentry.KindMERGE_IN, g, e); err != nil {
			return MergeResult{}, err
		}
	}
	if p, b := from.StoredPrincipal, from.StoredBonus; p != 0 || b != 0 {
		if _, err := appendStoredValue(ctx, tx, from, storedvalueentry.KindMERGE_OUT, -p, -b, e, "", nil); err != nil {
			return MergeResult{}, err
		}
		if _, err := appendStoredValue(ctx, tx, to, storedvalueentry.KindMERGE_IN, p, b, e, "", nil); err != nil {
			return MergeResult{}, err
		}
	}
	return out, nil
}

func mergePoints(ctx context.Context, tx *ent.Tx, from, to *ent.Account, e Entry) error {
	moved := from.PointsBalance
	if moved == 0 {
		return nil
	}
	// Lots move rather than being consumed and re-created, so they need
	// no allocations: each lot's remaining still equals its amount less
	// its allocations.
	n, err := tx.PointsLot.Update().
		Where(pointslot.MemberID(from.MemberID), pointslot.RemainingGT(0)).
		SetMemberID(to.MemberID).
		Save(ctx)
	if err != nil {
		return fmt.Errorf("moving points lots of member %d: %w", from.MemberID, err)
	}
	if moved < 0 && n > 0 {
		return fmt.Errorf("member %d owes %d points but has %d lots holding points", from.MemberID, -moved, n)
	}
	if _, err := appendPoints(ctx, tx, from, pointsentry.KindMERGE_OUT, -moved, e, nil); err != nil {
		return err
	}
	// How much of to's lots (now including the moved ones) the balance no
	// longer covers: to's own debt when points arrive, from's debt when a
	// debt arrives.
	debtBefore := max(-to.PointsBalance, 0)
	in, err := appendPoints(ctx, tx, to, pointsentry.KindMERGE_IN, moved, e, nil)
	if err != nil {
		return err
	}
	var take int64
	if moved > 0 {
		take = min(moved, debtBefore)
	} else {
		take = -moved
	}
	if take == 0 {
		return nil
	}
	lots, err := lockLots(ctx, tx, to.MemberID)
	if err != nil {
		return err
	}
	_, err = consumeLots(ctx, tx, lots, in.ID, take)
	return err
}
