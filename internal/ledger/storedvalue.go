package ledger

import (
	"context"
	"errors"
	"fmt"
	"github.com/onemember/onemember/internal/account"
	"math/big"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/storedvalueentry"
	"github.com/onemember/onemember/internal/auth/password"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Idempotency-key namespaces of the own-transaction operations, so that a
// payment reference can never collide with a caller's keys.
const (
	topUpKeyPrefix = "topup:"
	payKeyPrefix   = "pay:"
)

// TopUpInput is a stored-value top-up: Amount paid in (principal) and Bonus
// given on top, both in fen.
type TopUpInput struct {
	MemberID      int
	Amount, Bonus int64
	StoreID       *int
	// PaymentRef identifies the payment that funded the top-up; a retry
	// with the same reference is a duplicate.
	PaymentRef string
}

// Validate reports every problem of in at once, limits from p.
func (in TopUpInput) Validate(p Policy) error {
	var errs []error
	if in.MemberID <= 0 {
		errs = append(errs, fault.Invalidf("memberId", "is required"))
	}
	if in.Amount <= 0 {
		errs = append(errs, fault.Invalidf("amount", "must be greater than 0, got %d", in.Amount))
	} else if in.Amount > p.MaxTopUp {
		errs = append(errs, fault.Invalidf("amount", "must be at most %d fen, got %d", p.MaxTopUp, in.Amount))
	}
	if in.Bonus < 0 {
		errs = append(errs, fault.Invalidf("bonus", "must not be negative, got %d", in.Bonus))
	} else if in.Bonus > p.MaxTopUp {
		errs = append(errs, fault.Invalidf("bonus", "must be at most %d fen, got %d", p.MaxTopUp, in.Bonus))
	}
	if in.PaymentRef == "" {
		errs = append(errs, fault.Invalidf("paymentRef", "is required"))
	}
	return errors.Join(errs...)
}

// TopUp credits a top-up (kind TOP_UP, principal Amount, bonus Bonus). It is
// idempotent on PaymentRef: a retry returns the original entry with
// duplicate true, also when retries race each other.
func (s *Service) TopUp(ctx context.Context, in TopUpInput) (*ent.StoredValueEntry, bool, error) {
	if err := in.Validate(s.policy); err != nil {
		return nil, false, err
	}
	key := topUpKeyPrefix + in.PaymentRef
	type result struct {
		entry *ent.StoredValueEntry
		dup   bool
	}
	r, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (result, error) {
		acct, err := account.Lock(ctx, tx, in.MemberID)
		if err != nil {
			return result{}, err
		}
		// Retries for one member queue on the account lock, so the
		// ones after the first find its entry here.
		if sv, err := existingStoredValue(ctx, tx.StoredValueEntry, acct.MemberID, key); sv != nil || err != nil {
			return result{entry: sv, dup: sv != nil}, err
		}
		e := Entry{Source: SourceTopUp, Reason: "top-up", StoreID: in.StoreID, Key: &key, At: s.now()}
		if in.StoreID != nil {
			if e.BusinessUnitID, err = storeBusinessUnit(ctx, tx, *in.StoreID); err != nil {
				return result{}, err
			}
		}
		sv, err := appendStoredValue(ctx, tx, acct, storedvalueentry.KindTOP_UP, in.Amount, in.Bonus, e, "", nil)
		return result{entry: sv}, err
	})
	if database.IsUniqueViolation(err) {
		// Another transaction committed the key after our check (only
		// possible across members, which do not share a lock): the
		// failed transaction is rolled back, read what won.
		sv, rerr := existingStoredValue(ctx, s.db.StoredValueEntry, in.MemberID, key)
		if rerr != nil {
			return nil, false, rerr
		}
		if sv != nil {
			return sv, true, nil
		}
	}
	if err != nil {
		return nil, false, err
	}
	return database.Detach(r.entry), r.dup, nil
}

// PayInput is a stored-value payment at a store.
type PayInput struct {
	MemberID    int
	Amount      int64
	StoreID     int
	OrderRef    string
	PayPassword string
	// IdempotencyKey makes a retried payment a duplicate; required, so
	// that a till retrying after a timeout never charges twice.
	IdempotencyKey string
	// MemberFrozen is the member's status as the caller read it.
	MemberFrozen bool
}

// Validate reports every problem of in at once, limits from p.
func (in PayInput) Validate(p Policy) error {
	var errs []error
	if in.MemberID <= 0 {
		errs = append(errs, fault.Invalidf("memberId", "is required"))
	}
	if in.Amount <= 0 {
		errs = append(errs, fault.Invalidf("amount", "must be greater than 0, got %d", in.Amount))
	} else if in.Amount > p.MaxPayment {
		errs = append(errs, fault.Invalidf("amount", "must be at most %d fen, got %d", p.MaxPayment, in.Amount))
	}
	if in.StoreID <= 0 {
		errs = append(errs, fault.Invalidf("storeId", "is required"))
	}
	if in.OrderRef == "" {
		errs = append(errs, fault.Invalidf("orderRef", "is required"))
	}
	if in.IdempotencyKey == "" {
		errs = append(errs, fault.Invalidf("idempotencyKey", "is required"))
	}
	return errors.Join(errs...)
}

// payOutcome carries a refusal out of a transaction that must still
// commit: the pay-password bookkeeping it wrote is the whole point.
type payOutcome struct {
	entry   *ent.StoredValueEntry
	dup     bool
	refusal error
}

// Pay debits a stored-value payment (kind PAYMENT), principal first, then
// bonus. It is idempotent on IdempotencyKey: a retry returns the original
// entry with duplicate true, whatever the account looks like now.
//
// While payments are locked (PayMaxAttempts wrong pay passwords, for
// PayLockout) every payment is refused, including those under the
// password-free limit, so a stolen phone cannot drain the card in small
// amounts. A wrong password is counted and committed although the payment
// fails: the refusal is returned from a transaction that commits, and it
// has written nothing but the counter. The password is checked under the
// account lock so that concurrent guesses cannot outrun the counter.
func (s *Service) Pay(ctx context.Context, in PayInput) (*ent.StoredValueEntry, bool, error) {
	if err := in.Validate(s.policy); err != nil {
		return nil, false, err
	}
	key := payKeyPrefix + in.IdempotencyKey
	out, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (payOutcome, error) {
		acct, err := account.Lock(ctx, tx, in.MemberID)
		if err != nil {
			return payOutcome{}, err
		}
		if sv, err := existingStoredValue(ctx, tx.StoredValueEntry, acct.MemberID, key); sv != nil || err != nil {
			return payOutcome{entry: sv, dup: sv != nil}, err
		}
		if in.MemberFrozen {
			return payOutcome{refusal: ErrMemberFrozen}, nil
		}
		now := s.now()
		if refusal, err := s.checkPayPassword(ctx, tx, acct, in, now); refusal != nil || err != nil {
			return payOutcome{refusal: refusal}, err
		}
		if balance := acct.StoredPrincipal + acct.StoredBonus; balance < in.Amount {
			return payOutcome{refusal: fmt.Errorf("%w: balance %d fen, payment %d fen", ErrInsufficientStoredValue, balance, in.Amount)}, nil
		}
		bu, err := storeBusinessUnit(ctx, tx, in.StoreID)
		if err != nil {
			var invalid *fault.Invalid
			if errors.As(err, &invalid) {
				return payOutcome{refusal: err}, nil
			}
			return payOutcome{}, err
		}
		principal := min(in.Amount, acct.StoredPrincipal)
		e := Entry{Source: SourcePayment, Reason: "stored-value payment", BusinessUnitID: bu, StoreID: &in.StoreID, Key: &key, At: now}
		sv, err := appendStoredValue(ctx, tx, acct, storedvalueentry.KindPAYMENT, -principal, -(in.Amount - principal), e, in.OrderRef, nil)
		return payOutcome{entry: sv}, err
	})
	if database.IsUniqueViolation(err) {
		sv, rerr := existingStoredValue(ctx, s.db.StoredValueEntry, in.MemberID, key)
		if rerr != nil {
			return nil, false, rerr
		}
		if sv != nil {
			return sv, true, nil
		}
	}
	if err != nil {
		return nil, false, err
	}
	if out.refusal != nil {
		return nil, false, out.refusal
	}
	return database.Detach(out.entry), out.dup, nil
}

// checkPayPassword applies the lockout and, above the password-free limit,
// the pay password, writing the attempt counter to acct's row. It returns
// the refusal, if any; err is reserved for failures.
func (s *Service) checkPayPassword(ctx context.Context, tx *ent.Tx, acct *ent.Account, in PayInput, now time.Time) (refusal, err error) {
	if acct.PayLockedUntil != nil {
		if now.Before(*acct.PayLockedUntil) {
			return fmt.Errorf("%w (until %s)", ErrPayLocked, acct.PayLockedUntil.In(s.policy.Zone).Format("15:04")), nil
		}
		// The lockout is over: counting starts afresh.
		if err := s.setPayAttempts(ctx, tx, acct, 0, nil); err != nil {
			return nil, err
		}
	}
	if in.Amount <= s.policy.PasswordFreeLimit {
		return nil, nil
	}
	if acct.PayPasswordHash == "" {
		return ErrPayPasswordNotSet, nil
	}
	if in.PayPassword == "" {
		return ErrPayPasswordRequired, nil
	}
	ok, err := password.Verify(in.PayPassword, acct.PayPasswordHash)
	if err != nil {
		return nil, fmt.Errorf("checking pay password of member %d: %w", acct.MemberID, err)
	}
	if ok {
		if acct.PayFailedAttempts > 0 {
			return nil, s.setPayAttempts(ctx, tx, acct, 0, nil)
		}
		return nil, nil
	}
	attempts := acct.PayFailedAttempts + 1
	if attempts >= s.policy.PayMaxAttempts {
		until := now.Add(s.policy.PayLockout)
		if err := s.setPayAttempts(ctx, tx, acct, attempts, &until); err != nil {
			return nil, err
		}
		return fmt.Errorf("%w (until %s)", ErrPayLocked, until.In(s.policy.Zone).Format("15:04")), nil
	}
	if err := s.setPayAttempts(ctx, tx, acct, attempts, nil); err != nil {
		return nil, err
	}
	return fmt.Errorf("%w: %d attempts left", ErrPayPasswordWrong, s.policy.PayMaxAttempts-attempts), nil
}

func (s *Service) setPayAttempts(ctx context.Context, tx *ent.Tx, acct *ent.Account, attempts int, lockedUntil *time.Time) error {
	upd := tx.Account.UpdateOneID(acct.ID).SetPayFailedAttempts(attempts)
	if lockedUntil == nil {
		upd.ClearPayLockedUntil()
	} else {
		upd.SetPayLockedUntil(*lockedUntil)
	}
	if err := upd.Exec(ctx); err != nil {
		return fmt.Errorf("recording pay password attempts: %w", err)
	}
	acct.PayFailedAttempts, acct.PayLockedUntil = attempts, lockedUntil
	return nil
}

// SetPayPassword sets the member's pay password (exactly 6 digits) and
// lifts any lockout. Checking that the member may set it (SMS code) is the
// caller's job.
func (s *Service) SetPayPassword(ctx context.Context, memberID int, pw string) error {
	if err := ValidatePayPassword(pw); err != nil {
		return err
	}
	// Hash before taking the lock: argon2 is deliberately slow.
	hash, err := s.hasher.Hash(pw)
	if err != nil {
		return fmt.Errorf("hashing pay password: %w", err)
	}
	_, err = database.WithTx(ctx, s.db, func(tx *ent.Tx) (struct{}, error) {
		acct, err := account.Lock(ctx, tx, memberID)
		if err != nil {
			return struct{}{}, err
		}
		err = tx.Account.UpdateOneID(acct.ID).SetPayPasswordHash(hash).
			SetPayFailedAttempts(0).ClearPayLockedUntil().Exec(ctx)
		if err != nil {
			return struct{}{}, fmt.Errorf("storing pay password: %w", err)
		}
		return struct{}{}, nil
	})
	return err
}

func sixDigits(pw string) bool {
	if len(pw) != 6 {
		return false
	}
	for i := range len(pw) {
		if pw[i] < '0' || pw[i] > '9' {
			return false
		}
	}
	return true
}

// RefundStoredValue gives back amount fen of the PAYMENT entry
// paymentEntryID (kind REFUND, payment_entry_id set; e.Amount is ignored,
// e.Source defaults to REFUND). The payment may belong to a member since
// merged into acct's member.
//
// Split rule: a payment that took p principal and b bonus (P = p + b) has,
// after refunds totalling R, restored ceil(R·p/P) principal and the rest,
// R − ceil(R·p/P), as bonus. Each refund restores the difference between
// that split after it and the principal and bonus already restored. Both
// cumulative amounts only grow with R and reach exactly p and b at R = P,
// so no sequence of partial refunds restores more principal or bonus than
// the payment took, and the parts add up to the same split as one full
// refund. Rounding goes to principal ("principal first"): principal is
// what the member paid in, bonus was given.
func (s *Service) RefundStoredValue(ctx context.Context, tx *ent.Tx, acct *ent.Account, paymentEntryID int, amount int64, e Entry) (*ent.StoredValueEntry, error) {
	e = s.withDefaults(e, SourceRefund)
	e.Amount = amount
	if err := e.Validate(); err != nil {
		return nil, err
	}
	if e.Key != nil {
		if sv, err := existingStoredValue(ctx, tx.StoredValueEntry, acct.MemberID, *e.Key); sv != nil || err != nil {
			return sv, err
		}
	}
	pay, err := tx.StoredValueEntry.Get(ctx, paymentEntryID)
	if ent.IsNotFound(err) {
		return nil, ErrPaymentNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("loading stored-value payment %d: %w", paymentEntryID, err)
	}
	if pay.Kind != storedvalueentry.KindPAYMENT {
		return nil, ErrPaymentNotFound
	}
	ok, err := mergedInto(ctx, tx, pay.MemberID, acct.MemberID)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, ErrPaymentNotFound
	}
	earlier, err := tx.StoredValueEntry.Query().
		Where(storedvalueentry.PaymentEntryID(pay.ID), storedvalueentry.KindEQ(storedvalueentry.KindREFUND)).
		All(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading refunds of payment %d: %w", pay.ID, err)
	}
	var doneP, doneB int64
	for _, r := range earlier {
		doneP += r.PrincipalAmount
		doneB += r.BonusAmount
	}
	principal, bonus, err := refundSplit(-pay.PrincipalAmount, -pay.BonusAmount, doneP, doneB, amount)
	if err != nil {
		return nil, err
	}
	return appendStoredValue(ctx, tx, acct, storedvalueentry.KindREFUND, principal, bonus, e, pay.OrderRef, &pay.ID)
}

// refundSplit applies the split rule of RefundStoredValue: paidP and paidB
// are what the payment took, doneP and doneB what earlier refunds restored.
func refundSplit(paidP, paidB, doneP, doneB, amount int64) (principal, bonus int64, err error) {
	leftP, leftB := paidP-doneP, paidB-doneB
	if amount > leftP+leftB {
		return 0, 0, fmt.Errorf("%w: %d fen left to refund, asked %d", ErrRefundExceedsPayment, max(leftP+leftB, 0), amount)
	}
	paid, after := paidP+paidB, doneP+doneB+amount
	// ceil(after·paidP / paid) in big integers: the product of two
	// amounts in fen may exceed int64.
	num := new(big.Int).Mul(big.NewInt(after), big.NewInt(paidP))
	q, r := new(big.Int).QuoRem(num, big.NewInt(paid), new(big.Int))
	if r.Sign() > 0 {
		q.Add(q, big.NewInt(1))
	}
	principal = q.Int64() - doneP
	// Earlier refunds all follow the rule, so this clamp changes nothing;
	// it keeps the guarantee even if history was written otherwise.
	principal = max(principal, amount-leftB, 0)
	principal = min(principal, leftP, amount)
	return principal, amount - principal, nil
}

// appendStoredValue writes a stored-value entry of the signed principal
// and bonus, moves the balances and emits StoredValueChanged.
func appendStoredValue(ctx context.Context, tx *ent.Tx, acct *ent.Account, kind storedvalueentry.Kind, principal, bonus int64, e Entry, orderRef string, paymentID *int) (*ent.StoredValueEntry, error) {
	p, b := acct.StoredPrincipal+principal, acct.StoredBonus+bonus
	sv, err := tx.StoredValueEntry.Create().
		SetMemberID(acct.MemberID).
		SetSource(storedvalueentry.Source(e.Source)).
		SetKind(kind).
		SetAmount(principal + bonus).
		SetPrincipalAmount(principal).
		SetBonusAmount(bonus).
		SetBalanceAfter(p + b).
		SetReason(e.Reason).
		SetNillableBusinessUnitID(e.BusinessUnitID).
		SetNillableStoreID(e.StoreID).
		SetNillableOrderID(e.OrderID).
		SetNillableIdempotencyKey(e.Key).
		SetOrderRef(orderRef).
		SetNillablePaymentEntryID(paymentID).
		SetOccurredAt(e.At).
		Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("writing stored-value entry: %w", err)
	}
	if err := tx.Account.UpdateOneID(acct.ID).SetStoredPrincipal(p).SetStoredBonus(b).Exec(ctx); err != nil {
		return nil, fmt.Errorf("updating stored value: %w", err)
	}
	acct.StoredPrincipal, acct.StoredBonus = p, b
	if err := emitStoredValue(ctx, tx, acct, e.At, principal+bonus, e.reason()); err != nil {
		return nil, err
	}
	return sv, nil
}

// existingStoredValue returns the entry written under key, if any. c is a
// transaction's table, or the client's after a transaction failed.
func existingStoredValue(ctx context.Context, c *ent.StoredValueEntryClient, memberID int, key string) (*ent.StoredValueEntry, error) {
	sv, err := c.Query().Where(storedvalueentry.IdempotencyKey(key)).Only(ctx)
	if ent.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up stored-value entry %q: %w", key, err)
	}
	if sv.MemberID != memberID {
		return nil, ErrIdempotencyConflict
	}
	return sv, nil
}

// storeBusinessUnit returns the business unit of a store, which the entry
// records for cross-BU settlement.
func storeBusinessUnit(ctx context.Context, tx *ent.Tx, storeID int) (*int, error) {
	st, err := tx.Store.Get(ctx, storeID)
	if ent.IsNotFound(err) {
		return nil, fault.Invalidf("storeId", "no store %d", storeID)
	}
	if err != nil {
		return nil, fmt.Errorf("loading store %d: %w", storeID, err)
	}
	return &st.BusinessUnitID, nil
}

// ValidatePayPassword reports a pay password that is not 6 digits.
func ValidatePayPassword(pw string) error {
	if !sixDigits(pw) {
		return fault.Invalidf("password", "must be exactly 6 digits")
	}
	return nil
}
