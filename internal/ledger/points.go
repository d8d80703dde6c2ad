package ledger

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/ent/pointsallocation"
	"github.com/onemember/onemember/ent/pointsentry"
	"github.com/onemember/onemember/ent/pointslot"
	"github.com/onemember/onemember/ent/predicate"
	"github.com/onemember/onemember/internal/platform/fault"
)

// allocationChunk bounds the rows of one bulk insert, far below
// PostgreSQL's 65535 bind parameters.
const allocationChunk = 1000

// EarnPoints credits e.Amount points and creates the lot they expire with
// (business unit where earned, expiry per Policy.LotExpiry of e.At). When
// the balance is negative (a debt left by an earlier reversal), the
// earning pays the debt first and the lot gets only the rest, so that the
// lots always hold exactly the positive part of the balance.
func (s *Service) EarnPoints(ctx context.Context, tx *ent.Tx, acct *ent.Account, e Entry) (*ent.PointsEntry, error) {
	e = s.withDefaults(e, "")
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return s.creditPoints(ctx, tx, acct, pointsentry.KindEARN, e.Amount, e)
}

// BurnPoints debits e.Amount points, taking from the lots that expire
// first. Lots already past their expiry are expired first (see
// expireDue), so a member never spends points that have expired but that
// the expiry job has not reached yet.
func (s *Service) BurnPoints(ctx context.Context, tx *ent.Tx, acct *ent.Account, e Entry) (*ent.PointsEntry, error) {
	e = s.withDefaults(e, "")
	if err := e.Validate(); err != nil {
		return nil, err
	}
	return s.debitPoints(ctx, tx, acct, pointsentry.KindBURN, e.Amount, e)
}

// AdjustPoints applies a staff adjustment of delta points (e.Amount is
// ignored; e.Source defaults to ADJUSTMENT). A credit creates a lot like
// an earning; a debit is checked and taken like a burn.
func (s *Service) AdjustPoints(ctx context.Context, tx *ent.Tx, acct *ent.Account, delta int64, e Entry) (*ent.PointsEntry, error) {
	e = s.withDefaults(e, SourceAdjustment)
	e.Amount = max(delta, -delta)
	if err := e.Validate(); err != nil {
		if delta == 0 {
			// Name the caller's argument, not the field it was copied to.
			err = errors.Join(fault.Invalidf("delta", "must not be 0"), withoutField(err, "amount"))
		}
		return nil, err
	}
	if delta > 0 {
		return s.creditPoints(ctx, tx, acct, pointsentry.KindADJUST, delta, e)
	}
	return s.debitPoints(ctx, tx, acct, pointsentry.KindADJUST, -delta, e)
}

// ReverseEarnedPoints takes back e.Amount points a refunded purchase
// earned (kind REVERSAL). It takes from the lots, earliest expiry first,
// what they still hold; points already spent cannot be taken back from a
// lot, so any shortfall leaves the balance negative: a debt that the next
// credits pay first. Lots never go below zero.
func (s *Service) ReverseEarnedPoints(ctx context.Context, tx *ent.Tx, acct *ent.Account, e Entry) (*ent.PointsEntry, error) {
	e = s.withDefaults(e, SourceRefund)
	if err := e.Validate(); err != nil {
		return nil, err
	}
	if pe, err := existingPoints(ctx, tx, acct, e.Key); pe != nil || err != nil {
		return pe, err
	}
	// Without this, whether a refund leaves a debt would depend on
	// whether the expiry job ran before it.
	if _, err := s.expireDue(ctx, tx, acct, s.now()); err != nil {
		return nil, err
	}
	lots, err := lockLots(ctx, tx, acct.MemberID)
	if err != nil {
		return nil, err
	}
	pe, err := appendPoints(ctx, tx, acct, pointsentry.KindREVERSAL, -e.Amount, e, nil)
	if err != nil {
		return nil, err
	}
	if _, err := consumeLots(ctx, tx, lots, pe.ID, e.Amount); err != nil {
		return nil, err
	}
	return pe, nil
}

// RestoreBurnedPoints gives back e.Amount points of a refunded POINTS
// payment (the BURN entry burnEntryID) to the lots that burn took from,
// latest expiry first, so a partial refund returns the longest-lived
// points; kind REVERSAL. It restores at most what the burn took minus what
// was already restored.
//
// The data model has no column linking a restore to its burn, so restores
// are tracked by order: the restore entry carries the burn's order_id and
// "already restored" is the sum of positive REVERSAL entries of that order
// (per lot: their negative allocations). That is exact for the one
// POINTS payment an order has; if an order ever burned twice, the limit
// becomes the order's total, still never more than was burned. A burn
// without an order cannot be restored (ErrBurnNotFound).
//
// A lot past its expiry gets its points back too, and the next expiry
// (the job, or the member's next debit) takes them: the same outcome as if
// they had never been spent.
//
// The burn may belong to a member since merged into acct's member; its
// emptied lots then stayed with the merged member and move to acct's
// member as they receive points.
func (s *Service) RestoreBurnedPoints(ctx context.Context, tx *ent.Tx, acct *ent.Account, burnEntryID int, e Entry) (*ent.PointsEntry, error) {
	e = s.withDefaults(e, SourceRefund)
	if err := e.Validate(); err != nil {
		return nil, err
	}
	if pe, err := existingPoints(ctx, tx, acct, e.Key); pe != nil || err != nil {
		return pe, err
	}
	burn, err := tx.PointsEntry.Get(ctx, burnEntryID)
	if ent.IsNotFound(err) {
		return nil, ErrBurnNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("loading points payment %d: %w", burnEntryID, err)
	}
	if burn.Kind != pointsentry.KindBURN || burn.OrderID == nil {
		return nil, ErrBurnNotFound
	}
	ok, err := mergedInto(ctx, tx, burn.MemberID, acct.MemberID)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrBurnNotFound
	}
	if e.OrderID != nil && *e.OrderID != *burn.OrderID {
		return nil, fault.Invalidf("orderId", "the points payment belongs to order %d, not %d", *burn.OrderID, *e.OrderID)
	}
	e.OrderID = burn.OrderID

	restorable, caps, err := restorable(ctx, tx, burn)
	if err != nil {
		return nil, err
	}
	if e.Amount > restorable {
		return nil, fmt.Errorf("%w: %d points left to restore, asked %d", ErrRestoreExceedsBurn, restorable, e.Amount)
	}
	lotIDs := make([]int, 0, len(caps))
	for id := range caps {
		lotIDs = append(lotIDs, id)
	}
	lots, err := tx.PointsLot.Query().Where(pointslot.IDIn(lotIDs...)).
		Order(pointslot.ByExpiresAt(), pointslot.ByID()).ForUpdate().All(ctx)
	if err != nil {
		return nil, fmt.Errorf("locking lots of points payment %d: %w", burn.ID, err)
	}
	slices.Reverse(lots)

	// A debt is paid before any lot is refilled (as in creditPoints).
	toLots := e.Amount - min(e.Amount, max(-acct.PointsBalance, 0))
	pe, err := appendPoints(ctx, tx, acct, pointsentry.KindREVERSAL, e.Amount, e, nil)
	if err != nil {
		return nil, err
	}
	var allocs []*ent.PointsAllocationCreate
	for _, l := range lots {
		if toLots == 0 {
			break
		}
		n := min(toLots, caps[l.ID], l.Amount-l.Remaining)
		if n <= 0 {
			continue
		}
		toLots -= n
		upd := tx.PointsLot.UpdateOneID(l.ID).SetRemaining(l.Remaining + n)
		if l.MemberID != acct.MemberID {
			upd.SetMemberID(acct.MemberID)
		}
		if err := upd.Exec(ctx); err != nil {
			return nil, fmt.Errorf("refilling lot %d: %w", l.ID, err)
		}
		allocs = append(allocs, tx.PointsAllocation.Create().SetEntryID(pe.ID).SetLotID(l.ID).SetAmount(-n))
	}
	if toLots > 0 {
		// The entry-level limit passed but the lots cannot take it all:
		// only possible when an order burned more than once.
		return nil, fmt.Errorf("%w: the lots of the payment can take %d points fewer", ErrRestoreExceedsBurn, toLots)
	}
	if err := createAllocations(ctx, tx, allocs); err != nil {
		return nil, err
	}
	return pe, nil
}

// restorable returns how many points of burn can still be restored and,
// per lot it took from, how many that lot can still get back.
func restorable(ctx context.Context, tx *ent.Tx, burn *ent.PointsEntry) (int64, map[int]int64, error) {
	orderEntries, err := tx.PointsEntry.Query().
		Where(pointsentry.OrderID(*burn.OrderID), pointsentry.KindIn(pointsentry.KindBURN, pointsentry.KindREVERSAL)).
		All(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("loading points entries of order %d: %w", *burn.OrderID, err)
	}
	var burned, restored int64
	var restoreIDs []int
	for _, oe := range orderEntries {
		switch {
		case oe.Kind == pointsentry.KindBURN:
			burned -= oe.Amount
		case oe.Amount > 0: // a restore; a negative REVERSAL takes back earned points
			restored += oe.Amount
			restoreIDs = append(restoreIDs, oe.ID)
		}
	}
	left := min(-burn.Amount, burned-restored)

	taken, err := tx.PointsAllocation.Query().Where(pointsallocation.EntryID(burn.ID)).All(ctx)
	if err != nil {
		return 0, nil, fmt.Errorf("loading allocations of points payment %d: %w", burn.ID, err)
	}
	caps := make(map[int]int64, len(taken))
	for _, a := range taken {
		caps[a.LotID] += a.Amount
	}
	if len(restoreIDs) > 0 {
		given, err := tx.PointsAllocation.Query().
			Where(pointsallocation.EntryIDIn(restoreIDs...), pointsallocation.AmountLT(0)).All(ctx)
		if err != nil {
			return 0, nil, fmt.Errorf("loading earlier restores of order %d: %w", *burn.OrderID, err)
		}
		for _, a := range given {
			if _, ok := caps[a.LotID]; ok {
				caps[a.LotID] += a.Amount
			}
		}
	}
	return max(left, 0), caps, nil
}

// creditPoints appends a credit of amount and creates its lot with
// whatever the debt leaves.
func (s *Service) creditPoints(ctx context.Context, tx *ent.Tx, acct *ent.Account, kind pointsentry.Kind, amount int64, e Entry) (*ent.PointsEntry, error) {
	if pe, err := existingPoints(ctx, tx, acct, e.Key); pe != nil || err != nil {
		return pe, err
	}
	toLot := amount - min(amount, max(-acct.PointsBalance, 0))
	var expires *time.Time
	if toLot > 0 {
		t := s.policy.LotExpiry(e.At)
		expires = &t
	}
	pe, err := appendPoints(ctx, tx, acct, kind, amount, e, expires)
	if err != nil {
		return nil, err
	}
	if toLot > 0 {
		err := tx.PointsLot.Create().SetMemberID(acct.MemberID).SetEntryID(pe.ID).
			SetNillableBusinessUnitID(e.BusinessUnitID).SetAmount(toLot).SetRemaining(toLot).
			SetEarnedAt(e.At).SetExpiresAt(*expires).Exec(ctx)
		if err != nil {
			return nil, fmt.Errorf("creating points lot: %w", err)
		}
	}
	return pe, nil
}

// debitPoints appends a debit of amount that the balance must cover and
// takes it from the lots.
func (s *Service) debitPoints(ctx context.Context, tx *ent.Tx, acct *ent.Account, kind pointsentry.Kind, amount int64, e Entry) (*ent.PointsEntry, error) {
	if pe, err := existingPoints(ctx, tx, acct, e.Key); pe != nil || err != nil {
		return pe, err
	}
	if _, err := s.expireDue(ctx, tx, acct, s.now()); err != nil {
		return nil, err
	}
	if acct.PointsBalance < amount {
		return nil, fmt.Errorf("%w: balance %d, needed %d", ErrInsufficientPoints, acct.PointsBalance, amount)
	}
	lots, err := lockLots(ctx, tx, acct.MemberID)
	if err != nil {
		return nil, err
	}
	pe, err := appendPoints(ctx, tx, acct, kind, -amount, e, nil)
	if err != nil {
		return nil, err
	}
	took, err := consumeLots(ctx, tx, lots, pe.ID, amount)
	if err != nil {
		return nil, err
	}
	if took != amount {
		// The balance covered it, so the lots must have: refuse to
		// deepen an inconsistency that Verify will report.
		return nil, fmt.Errorf("points lots of member %d hold %d but the balance says %d", acct.MemberID, took, acct.PointsBalance+amount)
	}
	return pe, nil
}

// expireDue expires the lots of acct's member whose expiry is at or before
// now: one EXPIRE entry for their sum, allocations, lots emptied. acct
// must be locked. It returns the points expired.
func (s *Service) expireDue(ctx context.Context, tx *ent.Tx, acct *ent.Account, now time.Time) (int64, error) {
	lots, err := lockLots(ctx, tx, acct.MemberID, pointslot.ExpiresAtLTE(now))
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, l := range lots {
		sum += l.Remaining
	}
	if sum == 0 {
		return 0, nil
	}
	e := Entry{Source: SourceExpiry, Reason: "points expired", At: now}
	pe, err := appendPoints(ctx, tx, acct, pointsentry.KindEXPIRE, -sum, e, nil)
	if err != nil {
		return 0, err
	}
	if _, err := consumeLots(ctx, tx, lots, pe.ID, sum); err != nil {
		return 0, err
	}
	return sum, nil
}

// appendPoints writes a points entry of the signed amount, moves the
// balance (in memory and in the row) and emits PointsChanged.
func appendPoints(ctx context.Context, tx *ent.Tx, acct *ent.Account, kind pointsentry.Kind, amount int64, e Entry, expires *time.Time) (*ent.PointsEntry, error) {
	balance := acct.PointsBalance + amount
	pe, err := tx.PointsEntry.Create().
		SetMemberID(acct.MemberID).
		SetSource(pointsentry.Source(e.Source)).
		SetKind(kind).
		SetAmount(amount).
		SetBalanceAfter(balance).
		SetReason(e.Reason).
		SetNillableBusinessUnitID(e.BusinessUnitID).
		SetNillableStoreID(e.StoreID).
		SetNillableOrderID(e.OrderID).
		SetNillableIdempotencyKey(e.Key).
		SetOccurredAt(e.At).
		SetNillableExpiresAt(expires).
		Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("writing points entry: %w", err)
	}
	if err := tx.Account.UpdateOneID(acct.ID).SetPointsBalance(balance).Exec(ctx); err != nil {
		return nil, fmt.Errorf("updating points balance: %w", err)
	}
	acct.PointsBalance = balance
	if err := emitPoints(ctx, tx, acct, e.At, amount, e.reason()); err != nil {
		return nil, err
	}
	return pe, nil
}

// existingPoints returns the entry already written under key, if any.
func existingPoints(ctx context.Context, tx *ent.Tx, acct *ent.Account, key *string) (*ent.PointsEntry, error) {
	if key == nil {
		return nil, nil
	}
	pe, err := tx.PointsEntry.Query().Where(pointsentry.IdempotencyKey(*key)).Only(ctx)
	if ent.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up points entry %q: %w", *key, err)
	}
	if pe.MemberID != acct.MemberID {
		return nil, ErrIdempotencyConflict
	}
	return pe, nil
}

// lockLots returns the member's lots that hold points, earliest expiry
// first, locked FOR UPDATE. Callers hold the account lock, so the lock on
// the lots guards against writers that reach lots without it, and
// re-reading them here sees every change committed before.
func lockLots(ctx context.Context, tx *ent.Tx, memberID int, where ...predicate.PointsLot) ([]*ent.PointsLot, error) {
	lots, err := tx.PointsLot.Query().
		Where(append([]predicate.PointsLot{pointslot.MemberID(memberID), pointslot.RemainingGT(0)}, where...)...).
		Order(pointslot.ByExpiresAt(), pointslot.ByID()).
		ForUpdate().
		All(ctx)
	if err != nil {
		return nil, fmt.Errorf("locking points lots of member %d: %w", memberID, err)
	}
	return lots, nil
}

// consumeLots takes up to want points from lots in their order, recording
// allocations on entryID, and returns how many it took.
func consumeLots(ctx context.Context, tx *ent.Tx, lots []*ent.PointsLot, entryID int, want int64) (int64, error) {
	var (
		took    int64
		emptied []int
		allocs  []*ent.PointsAllocationCreate
	)
	for _, l := range lots {
		if took == want {
			break
		}
		n := min(l.Remaining, want-took)
		took += n
		allocs = append(allocs, tx.PointsAllocation.Create().SetEntryID(entryID).SetLotID(l.ID).SetAmount(n))
		if n == l.Remaining {
			emptied = append(emptied, l.ID)
			continue
		}
		if err := tx.PointsLot.UpdateOneID(l.ID).SetRemaining(l.Remaining - n).Exec(ctx); err != nil {
			return 0, fmt.Errorf("taking from lot %d: %w", l.ID, err)
		}
	}
	if len(emptied) > 0 {
		if err := tx.PointsLot.Update().Where(pointslot.IDIn(emptied...)).SetRemaining(0).Exec(ctx); err != nil {
			return 0, fmt.Errorf("emptying lots: %w", err)
		}
	}
	if err := createAllocations(ctx, tx, allocs); err != nil {
		return 0, err
	}
	return took, nil
}

func createAllocations(ctx context.Context, tx *ent.Tx, allocs []*ent.PointsAllocationCreate) error {
	for chunk := range slices.Chunk(allocs, allocationChunk) {
		if err := tx.PointsAllocation.CreateBulk(chunk...).Exec(ctx); err != nil {
			return fmt.Errorf("writing points allocations: %w", err)
		}
	}
	return nil
}

// mergedInto reports whether memberID is target or was merged, directly or
// through earlier merges, into target. Entries stay with the member that
// wrote them while orders move with a merge, so refunds of an order
// placed before a merge reach entries of the merged member.
func mergedInto(ctx context.Context, tx *ent.Tx, memberID, target int) (bool, error) {
	const maxHops = 16 // merge chains are short; this bounds a corrupted cycle
	for range maxHops {
		if memberID == target {
			return true, nil
		}
		m, err := tx.Member.Query().Where(member.ID(memberID)).Select(member.FieldMergedIntoID).Only(ctx)
		if ent.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("following merges of member %d: %w", memberID, err)
		}
		if m.MergedIntoID == nil {
			return false, nil
		}
		memberID = *m.MergedIntoID
	}
	return false, nil
}

// withoutField drops the *fault.Invalid of field from a joined error.
func withoutField(err error, field string) error {
	var keep []error
	for _, f := range fault.Fields(err) {
		if f.Field != field {
			keep = append(keep, f)
		}
	}
	return errors.Join(keep...)
}

// Expiring is points that expire together.
type Expiring struct {
	Amount    int64
	ExpiresAt time.Time
}

// ExpiringSoon lists, per expiry instant ascending, the points of the
// member's lots that expire in (now, now+within]. db may be a read replica
// or a transaction's client.
func (s *Service) ExpiringSoon(ctx context.Context, db *ent.Client, memberID int, within time.Duration) ([]Expiring, error) {
	now := s.now()
	var rows []struct {
		ExpiresAt time.Time `json:"expires_at"`
		Sum       int64     `json:"sum"`
	}
	err := db.PointsLot.Query().
		Where(pointslot.MemberID(memberID), pointslot.RemainingGT(0),
			pointslot.ExpiresAtGT(now), pointslot.ExpiresAtLTE(now.Add(within))).
		GroupBy(pointslot.FieldExpiresAt).
		Aggregate(ent.Sum(pointslot.FieldRemaining)).
		Scan(ctx, &rows)
	if err != nil {
		return nil, fmt.Errorf("summing expiring points of member %d: %w", memberID, err)
	}
	out := make([]Expiring, len(rows))
	for i, r := range rows {
		out[i] = Expiring{Amount: r.Sum, ExpiresAt: r.ExpiresAt.UTC()}
	}
	slices.SortFunc(out, func(a, b Expiring) int { return a.ExpiresAt.Compare(b.ExpiresAt) })
	return out, nil
}

// ExpiringIn is ExpiringSoon answered from lots the caller read already
// (the member's card reads them with the account): groups are the member's
// lots with points left and expiry after asOf, summed by expiry instant
// ascending, the first limit of them (every one when there are fewer). It
// lists those in (asOf, asOf+within]; ok is false when groups may not hold
// them all (limit groups, every one in the window), and the caller must
// then ask ExpiringSoon.
func ExpiringIn(groups []Expiring, limit int, asOf time.Time, within time.Duration) (out []Expiring, ok bool) {
	until := asOf.Add(within)
	out = make([]Expiring, 0, len(groups))
	for _, g := range groups {
		if g.ExpiresAt.After(until) {
			return out, true
		}
		out = append(out, g)
	}
	return out, len(groups) < limit
}
