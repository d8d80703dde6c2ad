// Package ledger owns a member's three ledgers and the balances projected
// from them: points (积分) with their expiring lots and the allocations that
// trace every debit to the lots it took from, growth value (成长值), and
// stored value (储值) split into principal and bonus, with its pay password
// and lockout. Every movement appends an entry whose amount is signed and
// whose balance_after is the account balance after it; the balance columns
// of the member's account row change only in the transaction that appends
// the entry, under that row's lock (account.Lock). Verify checks the whole
// database against these rules.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/pointsentry"
	"github.com/onemember/onemember/internal/auth/password"
	"github.com/onemember/onemember/internal/events"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Errors. Each wraps the fault kind its extensions.code comes from.
var (
	ErrInsufficientPoints      = fault.New(fault.InsufficientBalance, "not enough points")
	ErrInsufficientStoredValue = fault.New(fault.InsufficientBalance, "not enough stored value")
	// The pay-password refusals are FORBIDDEN: the caller (a till, the app)
	// is authenticated, so UNAUTHENTICATED would wrongly tell it to sign in
	// again; what is missing is the member's consent to this payment.
	ErrPayPasswordRequired = fault.New(fault.Forbidden, "this payment needs the pay password")
	ErrPayPasswordWrong    = fault.New(fault.Forbidden, "wrong pay password")
	ErrPayPasswordNotSet   = fault.New(fault.Forbidden, "this payment needs a pay password and none is set")
	ErrPayLocked           = fault.New(fault.RateLimited, "too many wrong pay passwords: stored-value payments are locked for a while")
	ErrMemberFrozen        = fault.New(fault.Forbidden, "the member is frozen")
	ErrPaymentNotFound     = fault.New(fault.NotFound, "stored-value payment not found")
	ErrBurnNotFound        = fault.New(fault.NotFound, "points payment not found")
	// ErrRefundExceedsPayment is a stored-value refund larger than what the
	// payment has left to refund.
	ErrRefundExceedsPayment = fault.New(fault.BadUserInput, "refund exceeds what the payment has left to refund")
	// ErrRestoreExceedsBurn is a points restore larger than what the burn
	// has left to restore.
	ErrRestoreExceedsBurn = fault.New(fault.BadUserInput, "restore exceeds what the points payment has left to restore")
	// ErrIdempotencyConflict is an idempotency key already used for another
	// member: a retry would otherwise answer with someone else's entry.
	ErrIdempotencyConflict = fault.New(fault.Conflict, "idempotency key already used for another member")
)

// Policy holds the ledger rules that operators can change.
type Policy struct {
	Zone                 *time.Location // business time zone
	PointsLifetimeMonths int            // a lot earned in month M expires at the first instant of month M+1+PointsLifetimeMonths
	PasswordFreeLimit    int64          // fen: payments above it need the pay password
	PayMaxAttempts       int            // wrong pay passwords in a row that ...
	PayLockout           time.Duration  // ... lock stored-value payments this long
	MaxTopUp, MaxPayment int64          // per-call limits in fen
}

// DefaultPolicy returns the defaults of the product documents in zone.
func DefaultPolicy(zone *time.Location) Policy {
	return Policy{
		Zone:                 zone,
		PointsLifetimeMonths: 12,
		PasswordFreeLimit:    20_000,
		PayMaxAttempts:       5,
		PayLockout:           30 * time.Minute,
		MaxTopUp:             5_000_000,
		MaxPayment:           5_000_000,
	}
}

// LotExpiry is when a lot earned at earned expires: the end of the
// PointsLifetimeMonths-th month after the month of earning, in the business
// zone, i.e. the first instant of the month after that (returned in UTC).
// Reckoning in the business zone matters around midnight: 23:30 UTC on the
// last day of a month is already the next month in Shanghai.
func (p Policy) LotExpiry(earned time.Time) time.Time {
	t := earned.In(p.Zone)
	// time.Date normalises month overflow, so December + 13 is January
	// of the year after next.
	return time.Date(t.Year(), t.Month()+time.Month(p.PointsLifetimeMonths)+1, 1, 0, 0, 0, 0, p.Zone).UTC()
}

// Service applies ledger movements.
type Service struct {
	db     *ent.Client
	policy Policy
	hasher password.Params
	now    func() time.Time
}

// New builds a Service. A nil p.Zone means UTC and a nil now means
// time.Now; other fields are used as given (see DefaultPolicy).
func New(db *ent.Client, p Policy, hasher password.Params, now func() time.Time) *Service {
	if p.Zone == nil {
		p.Zone = time.UTC
	}
	if now == nil {
		now = time.Now
	}
	return &Service{db: db, policy: p, hasher: hasher, now: now}
}

// Policy returns the rules the service applies.
func (s *Service) Policy() Policy { return s.policy }

// Sources: why an entry exists. They are the values of the source enum
// that every ledger table shares, so Entry.Source is one plain string,
// converted to each table's enum type when written.
const (
	SourceOrder      = "ORDER"
	SourceRefund     = "REFUND"
	SourceAdjustment = "ADJUSTMENT"
	SourceMerge      = "MERGE"
	SourceExpiry     = "EXPIRY"
	SourceActivity   = "ACTIVITY"
	SourceLottery    = "LOTTERY"
	SourcePromoCode  = "PROMO_CODE"
	SourceMall       = "MALL"
	SourceCheckIn    = "CHECK_IN"
	SourceReferral   = "REFERRAL"
	SourceProfile    = "PROFILE"
	SourceShare      = "SHARE"
	SourceTopUp      = "TOP_UP"
	SourcePayment    = "PAYMENT"
	SourceCampaign   = "CAMPAIGN"
)

// Entry describes one ledger movement. Amount is always > 0: the method
// gives the sign.
type Entry struct {
	Amount                           int64
	Source                           string // one of the Source constants
	Reason                           string
	BusinessUnitID, StoreID, OrderID *int
	// Key is an idempotency key, unique per entry table: when an entry
	// with it exists, the method returns that entry and changes nothing.
	Key *string
	// At is when the movement happened; zero means now.
	At time.Time
}

// Validate reports every problem of e at once.
func (e Entry) Validate() error {
	var errs []error
	if e.Amount <= 0 {
		errs = append(errs, fault.Invalidf("amount", "must be greater than 0, got %d", e.Amount))
	}
	if e.Source == "" {
		errs = append(errs, fault.Invalidf("source", "is required"))
	} else if pointsentry.SourceValidator(pointsentry.Source(e.Source)) != nil {
		errs = append(errs, fault.Invalidf("source", "unknown source %q", e.Source))
	}
	if e.Key != nil && *e.Key == "" {
		errs = append(errs, fault.Invalidf("key", "must not be empty when given"))
	}
	return errors.Join(errs...)
}

// withDefaults fills the source a method implies and the time.
func (s *Service) withDefaults(e Entry, src string) Entry {
	if e.Source == "" {
		e.Source = src
	}
	if e.At.IsZero() {
		e.At = s.now()
	}
	return e
}

// reason is what the member's event says: the caller's reason, else the
// source.
func (e Entry) reason() string {
	if e.Reason != "" {
		return e.Reason
	}
	return string(e.Source)
}

func emitPoints(ctx context.Context, tx *ent.Tx, acct *ent.Account, at time.Time, delta int64, reason string) error {
	_, err := events.Emit(ctx, tx, acct, at, events.Event{
		Type: events.PointsChanged,
		Payload: map[string]any{
			"pointsDelta":   delta,
			"pointsBalance": acct.PointsBalance,
			"reason":        reason,
		},
	})
	if err != nil {
		return fmt.Errorf("emitting points change: %w", err)
	}
	return nil
}

func emitStoredValue(ctx context.Context, tx *ent.Tx, acct *ent.Account, at time.Time, delta int64, reason string) error {
	_, err := events.Emit(ctx, tx, acct, at, events.Event{
		Type: events.StoredValueChanged,
		Payload: map[string]any{
			"amountDelta":        delta,
			"storedValueBalance": acct.StoredPrincipal + acct.StoredBonus,
			"reason":             reason,
		},
	})
	if err != nil {
		return fmt.Errorf("emitting stored value change: %w", err)
	}
	return nil
}
