package ledger_test

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/storedvalueentry"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/testkit"
)

func (e *env) topUp(t *testing.T, m int, amount, bonus int64) *ent.StoredValueEntry {
	t.Helper()
	sv, dup, err := e.svc.TopUp(t.Context(), ledger.TopUpInput{MemberID: m, Amount: amount, Bonus: bonus, PaymentRef: fmt.Sprintf("wx-%d", e.seq.Add(1))})
	if err != nil || dup {
		t.Fatalf("TopUp: %v (duplicate %v)", err, dup)
	}
	return sv
}

func TestTopUpAndPayPrincipalFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.member(t)
	bu, store := e.store(t)
	sv, dup, err := e.svc.TopUp(t.Context(), ledger.TopUpInput{MemberID: m, Amount: 100_000, Bonus: 10_000, StoreID: &store, PaymentRef: "wx-1"})
	if err != nil || dup {
		t.Fatalf("TopUp: %v %v", err, dup)
	}
	if sv.Kind != storedvalueentry.KindTOP_UP || sv.Amount != 110_000 || sv.PrincipalAmount != 100_000 || sv.BonusAmount != 10_000 ||
		sv.BalanceAfter != 110_000 || sv.BusinessUnitID == nil || *sv.BusinessUnitID != bu {
		t.Errorf("top-up entry = %+v", sv)
	}
	pay, dup, err := e.svc.Pay(t.Context(), ledger.PayInput{MemberID: m, Amount: 15_000, StoreID: store, OrderRef: "o-1", IdempotencyKey: "k-1"})
	if err != nil || dup {
		t.Fatalf("Pay: %v %v", err, dup)
	}
	if pay.Amount != -15_000 || pay.PrincipalAmount != -15_000 || pay.BonusAmount != 0 || pay.OrderRef != "o-1" {
		t.Errorf("payment = %d (%d + %d)", pay.Amount, pay.PrincipalAmount, pay.BonusAmount)
	}
	again, dup, err := e.svc.Pay(t.Context(), ledger.PayInput{MemberID: m, Amount: 15_000, StoreID: store, OrderRef: "o-1", IdempotencyKey: "k-1"})
	if err != nil || !dup || again.ID != pay.ID {
		t.Errorf("retried Pay = %v, dup %v, %v; want the original, dup", again, dup, err)
	}
	a := e.account(t, m)
	if a.StoredPrincipal != 85_000 || a.StoredBonus != 10_000 {
		t.Errorf("balances = %d + %d, want 85000 + 10000", a.StoredPrincipal, a.StoredBonus)
	}
	e.verifyClean(t)
}

func TestStoredValueInputValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	_, _, err := e.svc.TopUp(t.Context(), ledger.TopUpInput{MemberID: 1, Amount: 5_000_001, Bonus: -1})
	if got := fieldNames(err); got != "amount,bonus,paymentRef" {
		t.Errorf("TopUp problems = %q (%v)", got, err)
	}
	_, _, err = e.svc.Pay(t.Context(), ledger.PayInput{Amount: 0})
	if got := fieldNames(err); got != "memberId,amount,storeId,orderRef,idempotencyKey" {
		t.Errorf("Pay problems = %q (%v)", got, err)
	}
	if fault.CodeOf(err) != fault.BadUserInput {
		t.Errorf("code = %s", fault.CodeOf(err))
	}
	_, _, err = e.svc.Pay(t.Context(), ledger.PayInput{MemberID: 1, Amount: 5_000_001, StoreID: 1, OrderRef: "o", IdempotencyKey: "k"})
	if got := fieldNames(err); got != "amount" {
		t.Errorf("Pay over MaxPayment = %q", got)
	}
}

func fieldNames(err error) string {
	var s string
	for i, f := range fault.Fields(err) {
		if i > 0 {
			s += ","
		}
		s += f.Field
	}
	return s
}

func TestRefundsRestoreInProportion(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.member(t)
	_, store := e.store(t)
	e.topUp(t, m, 5_000, 1_000)
	// Principal first: 5000 principal and 1000 of bonus.
	pay, _, err := e.svc.Pay(t.Context(), ledger.PayInput{MemberID: m, Amount: 6_000, StoreID: store, OrderRef: "o-9", IdempotencyKey: "k-9"})
	if err != nil {
		t.Fatal(err)
	}
	if pay.PrincipalAmount != -5_000 || pay.BonusAmount != -1_000 {
		t.Fatalf("payment took %d + %d", pay.PrincipalAmount, pay.BonusAmount)
	}
	// Cumulative principal after refunding R of 6000 is ceil(R*5000/6000);
	// each refund restores the growth of that since the one before.
	steps := []struct {
		amount, principal, bonus int64
	}{
		{1, 1, 0},           // R=1:    ceil(0.83)    = 1
		{1, 1, 0},           // R=2:    ceil(1.67)    = 2
		{1, 1, 0},           // R=3:    ceil(2.5)     = 3
		{1_000, 833, 167},   // R=1003: ceil(835.83)  = 836
		{2_995, 2_496, 499}, // R=3998: ceil(3331.67) = 3332
		{2_002, 1_668, 334}, // R=6000: 5000
	}
	var sumP, sumB int64
	for _, st := range steps {
		r := mustTx(t, e, m, func(tx *ent.Tx, acct *ent.Account) (*ent.StoredValueEntry, error) {
			return e.svc.RefundStoredValue(t.Context(), tx, acct, pay.ID, st.amount, ledger.Entry{OrderID: testkit.Ptr(9)})
		})
		if r.Kind != storedvalueentry.KindREFUND || r.PaymentEntryID == nil || *r.PaymentEntryID != pay.ID || r.OrderRef != "o-9" {
			t.Errorf("refund entry = %s payment %v order %q", r.Kind, r.PaymentEntryID, r.OrderRef)
		}
		if r.PrincipalAmount != st.principal || r.BonusAmount != st.bonus {
			t.Errorf("refund %d = %d + %d, want %d + %d", st.amount, r.PrincipalAmount, r.BonusAmount, st.principal, st.bonus)
		}
		sumP += r.PrincipalAmount
		sumB += r.BonusAmount
		if sumP > 5_000 || sumB > 1_000 {
			t.Fatalf("restored %d + %d, more than the payment took", sumP, sumB)
		}
	}
	if sumP != 5_000 || sumB != 1_000 {
		t.Errorf("restored %d + %d in all, want 5000 + 1000", sumP, sumB)
	}
	_, err = inTx(t.Context(), e, m, func(tx *ent.Tx, acct *ent.Account) (*ent.StoredValueEntry, error) {
		return e.svc.RefundStoredValue(t.Context(), tx, acct, pay.ID, 1, ledger.Entry{})
	})
	if !errors.Is(err, ledger.ErrRefundExceedsPayment) {
		t.Errorf("refunding past the payment: %v, want ErrRefundExceedsPayment", err)
	}
	other := e.member(t)
	_, err = inTx(t.Context(), e, other, func(tx *ent.Tx, acct *ent.Account) (*ent.StoredValueEntry, error) {
		return e.svc.RefundStoredValue(t.Context(), tx, acct, pay.ID, 1, ledger.Entry{})
	})
	if !errors.Is(err, ledger.ErrPaymentNotFound) {
		t.Errorf("refunding another member's payment: %v, want ErrPaymentNotFound", err)
	}
	a := e.account(t, m)
	if a.StoredPrincipal != 5_000 || a.StoredBonus != 1_000 {
		t.Errorf("balances = %d + %d, want 5000 + 1000", a.StoredPrincipal, a.StoredBonus)
	}
	e.verifyClean(t)
}

// TestConcurrentPays: 50 payments race for a balance that covers 10.
func TestConcurrentPays(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.member(t)
	_, store := e.store(t)
	const each = 1_000
	e.topUp(t, m, 8*each, 2*each)

	var ok, insufficient atomic.Int64
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Go(func() {
			_, dup, err := e.svc.Pay(t.Context(), ledger.PayInput{MemberID: m, Amount: each, StoreID: store,
				OrderRef: fmt.Sprintf("o-%d", i), IdempotencyKey: fmt.Sprintf("k-%d", i)})
			switch {
			case err == nil && !dup:
				ok.Add(1)
			case errors.Is(err, ledger.ErrInsufficientStoredValue):
				insufficient.Add(1)
			default:
				t.Errorf("Pay %d: %v (dup %v)", i, err, dup)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 10 || insufficient.Load() != 40 {
		t.Errorf("%d paid, %d refused; want 10 and 40", ok.Load(), insufficient.Load())
	}
	a := e.account(t, m)
	if a.StoredPrincipal != 0 || a.StoredBonus != 0 {
		t.Errorf("balance ends at %d + %d, want 0", a.StoredPrincipal, a.StoredBonus)
	}
	below, err := e.db.StoredValueEntry.Query().Where(storedvalueentry.MemberID(m), storedvalueentry.BalanceAfterLT(0)).Count(t.Context())
	if err != nil || below != 0 {
		t.Errorf("%d entries left the balance below 0 (%v)", below, err)
	}
	e.verifyClean(t)
}

// TestConcurrentTopUpRetries: 20 retries of one top-up race.
func TestConcurrentTopUpRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.member(t) // no account yet: the retries also race to create it
	var dups, created atomic.Int64
	ids := make([]int, 20)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			sv, dup, err := e.svc.TopUp(t.Context(), ledger.TopUpInput{MemberID: m, Amount: 10_000, Bonus: 500, PaymentRef: "wx-race"})
			if err != nil {
				t.Errorf("TopUp: %v", err)
				return
			}
			ids[i] = sv.ID
			if dup {
				dups.Add(1)
			} else {
				created.Add(1)
			}
		})
	}
	wg.Wait()
	if created.Load() != 1 || dups.Load() != 19 {
		t.Errorf("%d created, %d duplicates; want 1 and 19", created.Load(), dups.Load())
	}
	for _, id := range ids {
		if id != ids[0] {
			t.Errorf("answers name entries %v, want one", ids)
			break
		}
	}
	n, err := e.db.StoredValueEntry.Query().Where(storedvalueentry.MemberID(m)).Count(t.Context())
	if err != nil || n != 1 {
		t.Errorf("%d entries (%v), want 1", n, err)
	}
	if a := e.account(t, m); a.StoredPrincipal != 10_000 || a.StoredBonus != 500 {
		t.Errorf("balances = %d + %d", a.StoredPrincipal, a.StoredBonus)
	}
	// The same reference for another member is a conflict, not a
	// duplicate that would show this member's top-up.
	_, _, err = e.svc.TopUp(t.Context(), ledger.TopUpInput{MemberID: e.member(t), Amount: 1, PaymentRef: "wx-race"})
	if !errors.Is(err, ledger.ErrIdempotencyConflict) {
		t.Errorf("reference reused by another member: %v, want ErrIdempotencyConflict", err)
	}

	// Members do not share a lock, so racing members reach the unique
	// index: the losers roll back, re-read and see the conflict.
	var won, conflicts atomic.Int64
	for range 20 {
		other := e.member(t)
		wg.Go(func() {
			_, _, err := e.svc.TopUp(t.Context(), ledger.TopUpInput{MemberID: other, Amount: 100, PaymentRef: "wx-shared"})
			switch {
			case err == nil:
				won.Add(1)
			case errors.Is(err, ledger.ErrIdempotencyConflict):
				conflicts.Add(1)
			default:
				t.Errorf("TopUp: %v", err)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 || conflicts.Load() != 19 {
		t.Errorf("members racing for one reference: %d won, %d conflicts; want 1 and 19", won.Load(), conflicts.Load())
	}
	e.verifyClean(t)
}

func TestPayPassword(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.member(t)
	_, store := e.store(t)
	e.topUp(t, m, 1_000_000, 0)
	n := 0
	pay := func(amount int64, pw string) error {
		n++
		_, _, err := e.svc.Pay(t.Context(), ledger.PayInput{MemberID: m, Amount: amount, StoreID: store,
			OrderRef: fmt.Sprintf("o-%d", n), PayPassword: pw, IdempotencyKey: fmt.Sprintf("k-%d", n)})
		return err
	}
	over := e.svc.Policy().PasswordFreeLimit + 1

	if err := pay(over, ""); !errors.Is(err, ledger.ErrPayPasswordNotSet) {
		t.Errorf("no password set: %v, want ErrPayPasswordNotSet", err)
	}
	for _, bad := range []string{"12345", "1234567", "12a456", "１２３４５６"} {
		err := e.svc.SetPayPassword(t.Context(), m, bad)
		if fs := fault.Fields(err); len(fs) != 1 || fs[0].Field != "password" {
			t.Errorf("SetPayPassword(%q) = %v, want BAD_USER_INPUT naming password", bad, err)
		}
	}
	if err := e.svc.SetPayPassword(t.Context(), m, "246810"); err != nil {
		t.Fatal(err)
	}
	if err := pay(e.svc.Policy().PasswordFreeLimit, ""); err != nil {
		t.Errorf("payment at the free limit: %v", err)
	}
	err := pay(over, "")
	if !errors.Is(err, ledger.ErrPayPasswordRequired) || fault.CodeOf(err) != fault.Forbidden {
		t.Errorf("over the limit without password: %v, want ErrPayPasswordRequired (FORBIDDEN)", err)
	}
	if err := pay(over, "246810"); err != nil {
		t.Errorf("right password: %v", err)
	}
	for i := 1; i <= 4; i++ {
		if err := pay(over, "000000"); !errors.Is(err, ledger.ErrPayPasswordWrong) {
			t.Errorf("wrong password %d: %v, want ErrPayPasswordWrong", i, err)
		}
		// Counted although the payment failed.
		if got := e.account(t, m).PayFailedAttempts; got != i {
			t.Errorf("after %d wrong passwords the counter is %d", i, got)
		}
	}
	err = pay(over, "000000")
	if !errors.Is(err, ledger.ErrPayLocked) || fault.CodeOf(err) != fault.RateLimited {
		t.Errorf("fifth wrong password: %v, want ErrPayLocked (RATE_LIMITED)", err)
	}
	if err := pay(over, "246810"); !errors.Is(err, ledger.ErrPayLocked) {
		t.Errorf("right password while locked: %v, want ErrPayLocked", err)
	}
	if err := pay(100, ""); !errors.Is(err, ledger.ErrPayLocked) {
		t.Errorf("password-free payment while locked: %v, want ErrPayLocked", err)
	}
	e.clock.Advance(e.svc.Policy().PayLockout - time.Second)
	if err := pay(over, "246810"); !errors.Is(err, ledger.ErrPayLocked) {
		t.Errorf("a second before the lockout ends: %v, want ErrPayLocked", err)
	}
	e.clock.Advance(time.Second)
	if err := pay(over, "246810"); err != nil {
		t.Errorf("after the lockout: %v", err)
	}
	if a := e.account(t, m); a.PayFailedAttempts != 0 || a.PayLockedUntil != nil {
		t.Errorf("after a good payment: attempts %d, locked until %v", a.PayFailedAttempts, a.PayLockedUntil)
	}
	// A wrong password after the lockout starts a fresh count.
	if err := pay(over, "000000"); !errors.Is(err, ledger.ErrPayPasswordWrong) {
		t.Errorf("wrong password after the lockout: %v, want ErrPayPasswordWrong", err)
	}
	// Setting the password lifts a lockout.
	for range 5 {
		_ = pay(over, "000000")
	}
	if err := e.svc.SetPayPassword(t.Context(), m, "135790"); err != nil {
		t.Fatal(err)
	}
	if err := pay(over, "135790"); err != nil {
		t.Errorf("after setting a new password: %v", err)
	}
	e.verifyClean(t)
}

func TestPayRefusesFrozenMember(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.member(t)
	_, store := e.store(t)
	e.topUp(t, m, 1_000, 0)
	_, _, err := e.svc.Pay(t.Context(), ledger.PayInput{MemberID: m, Amount: 100, StoreID: store, OrderRef: "o", IdempotencyKey: "k", MemberFrozen: true})
	if !errors.Is(err, ledger.ErrMemberFrozen) || fault.CodeOf(err) != fault.Forbidden {
		t.Errorf("frozen: %v, want ErrMemberFrozen (FORBIDDEN)", err)
	}
	_, _, err = e.svc.Pay(t.Context(), ledger.PayInput{MemberID: m, Amount: 100, StoreID: store + 999, OrderRef: "o", IdempotencyKey: "k2"})
	if got := fieldNames(err); got != "storeId" {
		t.Errorf("unknown store: %v, want a problem naming storeId", err)
	}
	if a := e.account(t, m); a.StoredPrincipal != 1_000 {
		t.Errorf("balance = %d, want 1000", a.StoredPrincipal)
	}
}
