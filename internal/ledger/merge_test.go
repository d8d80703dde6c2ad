package ledger_test

import (
	"strings"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/growthentry"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/ent/pointsentry"
	"github.com/onemember/onemember/ent/pointslot"
	"github.com/onemember/onemember/ent/storedvalueentry"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/platform/database"
)

// merge locks both accounts, lower member id first, and merges.
func (e *env) merge(t *testing.T, from, to int) ledger.MergeResult {
	t.Helper()
	res, err := database.WithTx(t.Context(), e.db, func(tx *ent.Tx) (ledger.MergeResult, error) {
		ids := []int{from, to}
		if to < from {
			ids = []int{to, from}
		}
		accts := map[int]*ent.Account{}
		for _, id := range ids {
			a, err := ledger.LockAccount(t.Context(), tx, id)
			if err != nil {
				return ledger.MergeResult{}, err
			}
			accts[id] = a
		}
		return e.svc.MergeInTx(t.Context(), tx, accts[from], accts[to], e.clock.Now(), "phone bound")
	})
	if err != nil {
		t.Fatalf("MergeInTx: %v", err)
	}
	return res
}

func TestMergeMovesBalancesAndLots(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	from, to := e.member(t), e.member(t)
	bu, _ := e.store(t)
	jan := e.earn(t, from, 50, time.Date(2025, 1, 20, 0, 0, 0, 0, e.zone), &bu)
	e.earn(t, from, 30, time.Date(2025, 2, 20, 0, 0, 0, 0, e.zone), nil)
	mustTx(t, e, from, func(tx *ent.Tx, acct *ent.Account) (*ent.PointsEntry, error) {
		return e.svc.BurnPoints(t.Context(), tx, acct, ledger.Entry{Amount: 60, Source: ledger.SourceMall})
	}) // empties the January lot, leaves 20 of February's
	mustTx(t, e, from, func(tx *ent.Tx, acct *ent.Account) (*ent.GrowthEntry, error) {
		return e.svc.EarnGrowth(t.Context(), tx, acct, ledger.Entry{Amount: 300, Source: ledger.SourceOrder})
	})
	e.topUp(t, from, 2_000, 300)
	e.earn(t, to, 10, e.clock.Now(), nil)
	e.topUp(t, to, 100, 0)

	res := e.merge(t, from, to)
	if want := (ledger.MergeResult{Points: 20, Growth: 300, StoredPrincipal: 2_000, StoredBonus: 300}); res != want {
		t.Errorf("MergeResult = %+v, want %+v", res, want)
	}
	f, o := e.account(t, from), e.account(t, to)
	if f.PointsBalance != 0 || f.GrowthValue != 0 || f.StoredPrincipal != 0 || f.StoredBonus != 0 {
		t.Errorf("from keeps %+v", f)
	}
	if o.PointsBalance != 30 || o.GrowthValue != 300 || o.StoredPrincipal != 2_100 || o.StoredBonus != 300 {
		t.Errorf("to has points %d growth %d stored %d + %d", o.PointsBalance, o.GrowthValue, o.StoredPrincipal, o.StoredBonus)
	}
	// The emptied lot stays; the one holding points moves with its
	// expiry and earning BU.
	janLot := e.db.PointsLot.Query().Where(pointslot.EntryID(jan.ID)).OnlyX(t.Context())
	if janLot.MemberID != from {
		t.Errorf("emptied lot moved to %d", janLot.MemberID)
	}
	moved := e.db.PointsLot.Query().Where(pointslot.MemberID(to), pointslot.ExpiresAtEQ(time.Date(2026, 3, 1, 0, 0, 0, 0, e.zone))).OnlyX(t.Context())
	if moved.Remaining != 20 || moved.Amount != 30 {
		t.Errorf("moved lot = %d of %d, want 20 of 30", moved.Remaining, moved.Amount)
	}
	for _, side := range []struct {
		member int
		kind   string
		amount int64
	}{{from, "MERGE_OUT", -20}, {to, "MERGE_IN", 20}} {
		pe, err := e.db.PointsEntry.Query().Where(pointsentry.MemberID(side.member), pointsentry.KindEQ(pointsentry.Kind(side.kind))).Only(t.Context())
		if err != nil || pe.Amount != side.amount || pe.Source != pointsentry.SourceMERGE || pe.Reason != "phone bound" {
			t.Errorf("%s points entry of %d: %+v, %v", side.kind, side.member, pe, err)
		}
		ge, err := e.db.GrowthEntry.Query().Where(growthentry.MemberID(side.member), growthentry.KindEQ(growthentry.Kind(side.kind))).Only(t.Context())
		if err != nil || ge.Amount != side.amount*15 {
			t.Errorf("%s growth entry of %d: %+v, %v", side.kind, side.member, ge, err)
		}
		sv, err := e.db.StoredValueEntry.Query().Where(storedvalueentry.MemberID(side.member), storedvalueentry.KindEQ(storedvalueentry.Kind(side.kind))).Only(t.Context())
		sign := side.amount / 20
		if err != nil || sv.PrincipalAmount != sign*2_000 || sv.BonusAmount != sign*300 {
			t.Errorf("%s stored-value entry of %d: %+v, %v", side.kind, side.member, sv, err)
		}
	}
	// The survivor spends the merged points: earliest expiry first.
	burn := mustTx(t, e, to, func(tx *ent.Tx, acct *ent.Account) (*ent.PointsEntry, error) {
		return e.svc.BurnPoints(t.Context(), tx, acct, ledger.Entry{Amount: 25, Source: ledger.SourceMall})
	})
	if burn.BalanceAfter != 5 {
		t.Errorf("balance after burning 25 of 30 = %d", burn.BalanceAfter)
	}
	e.verifyClean(t)
}

func TestMergeSettlesDebts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	owes, has, alsoOwes := e.member(t), e.member(t), e.member(t)
	indebt := func(m int, earned, spent int64) {
		e.earn(t, m, earned, e.clock.Now(), nil)
		mustTx(t, e, m, func(tx *ent.Tx, acct *ent.Account) (*ent.PointsEntry, error) {
			return e.svc.BurnPoints(t.Context(), tx, acct, ledger.Entry{Amount: spent, Source: ledger.SourceMall})
		})
		mustTx(t, e, m, func(tx *ent.Tx, acct *ent.Account) (*ent.PointsEntry, error) {
			return e.svc.ReverseEarnedPoints(t.Context(), tx, acct, ledger.Entry{Amount: earned})
		})
	}
	indebt(owes, 100, 40) // -40
	e.earn(t, has, 100, e.clock.Now(), nil)
	indebt(alsoOwes, 50, 50) // -50

	// A debt arriving takes from the survivor's lots.
	if res := e.merge(t, owes, has); res.Points != -40 {
		t.Errorf("moved %d points, want -40", res.Points)
	}
	if got := e.account(t, has).PointsBalance; got != 60 {
		t.Errorf("survivor balance = %d, want 60", got)
	}
	e.verifyClean(t)
	// Points arriving pay the survivor's debt first.
	if res := e.merge(t, has, alsoOwes); res.Points != 60 {
		t.Errorf("moved %d points, want 60", res.Points)
	}
	if got := e.account(t, alsoOwes).PointsBalance; got != 10 {
		t.Errorf("survivor balance = %d, want 10", got)
	}
	e.verifyClean(t)
}

func TestRefundsAfterMergeReachTheSurvivor(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	from, to := e.member(t), e.member(t)
	_, store := e.store(t)
	e.earn(t, from, 100, e.clock.Now(), nil)
	orderID := 7
	burn := mustTx(t, e, from, func(tx *ent.Tx, acct *ent.Account) (*ent.PointsEntry, error) {
		return e.svc.BurnPoints(t.Context(), tx, acct, ledger.Entry{Amount: 100, Source: ledger.SourceOrder, OrderID: &orderID})
	})
	e.topUp(t, from, 1_000, 0)
	pay, _, err := e.svc.Pay(t.Context(), ledger.PayInput{MemberID: from, Amount: 1_000, StoreID: store, OrderRef: "o-7", IdempotencyKey: "k-7"})
	if err != nil {
		t.Fatal(err)
	}
	e.merge(t, from, to)
	if _, err := e.db.Member.UpdateOneID(from).SetMergedIntoID(to).SetStatus(member.StatusMERGED).Save(t.Context()); err != nil {
		t.Fatal(err)
	}
	mustTx(t, e, to, func(tx *ent.Tx, acct *ent.Account) (*ent.PointsEntry, error) {
		return e.svc.RestoreBurnedPoints(t.Context(), tx, acct, burn.ID, ledger.Entry{Amount: 100})
	})
	mustTx(t, e, to, func(tx *ent.Tx, acct *ent.Account) (*ent.StoredValueEntry, error) {
		return e.svc.RefundStoredValue(t.Context(), tx, acct, pay.ID, 1_000, ledger.Entry{})
	})
	if a := e.account(t, to); a.PointsBalance != 100 || a.StoredPrincipal != 1_000 {
		t.Errorf("survivor has %d points and %d fen", a.PointsBalance, a.StoredPrincipal)
	}
	e.verifyClean(t)
}

func TestVerifyDetectsTampering(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.member(t)
	e.earn(t, m, 100, e.clock.Now(), nil)
	mustTx(t, e, m, func(tx *ent.Tx, acct *ent.Account) (*ent.PointsEntry, error) {
		return e.svc.BurnPoints(t.Context(), tx, acct, ledger.Entry{Amount: 30, Source: ledger.SourceMall})
	})
	e.topUp(t, m, 500, 50)
	if rep := e.verifyClean(t); rep.Accounts != 1 {
		t.Errorf("Accounts = %d, want 1", rep.Accounts)
	}
	exec := func(q string) {
		t.Helper()
		if _, err := e.db.ExecContext(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(what string, wants ...string) {
		t.Helper()
		rep, err := ledger.Verify(t.Context(), e.db)
		if err != nil {
			t.Fatal(err)
		}
		all := strings.Join(rep.Problems, "\n")
		for _, w := range wants {
			if !strings.Contains(all, w) {
				t.Errorf("%s: problems %q lack %q", what, rep.Problems, w)
			}
		}
		if len(rep.Problems) == 0 {
			t.Errorf("%s: Verify found nothing", what)
		}
	}

	exec(`UPDATE accounts SET points_balance = points_balance + 1`)
	expect("tampered balance", "points_balance 71 (entries 70, lots hold 70)")
	exec(`UPDATE accounts SET points_balance = points_balance - 1`)
	e.verifyClean(t)

	exec(`UPDATE points_lots SET remaining = remaining + 5`)
	expect("tampered lot", "points lot", "remaining 75 (want 70", "lots hold 75")
	exec(`UPDATE points_lots SET remaining = remaining - 5`)
	e.verifyClean(t)

	exec(`UPDATE accounts SET stored_bonus = stored_bonus - 1`)
	expect("tampered bonus", "stored_bonus 49 (entries 50)")
	exec(`UPDATE accounts SET stored_bonus = stored_bonus + 1`)

	exec(`UPDATE points_entries SET balance_after = balance_after + 2 WHERE kind = 'BURN'`)
	expect("tampered entry", "balance_after 72, running sum 70")
}
