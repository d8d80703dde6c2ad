// Package coupon owns coupons (优惠券): their templates (kind, discount,
// validity, stock, per-member limit, applicable business units and stores),
// issuing them to members (self-claim in the mini-program, and IssueInTx for
// promo codes, lottery prizes, mall items, referrals and campaigns), locking
// them for one basket at a till, redeeming them with the order, returning
// them on a full refund, the expiry and reminder jobs, and each template's
// statistics.
//
// # Life of a coupon
//
//	AVAILABLE ─Lock→ LOCKED ─RedeemLocked→ REDEEMED ─ReturnForRefund→ AVAILABLE (or EXPIRED when past expires_at)
//	    ↑              │
//	    └──Release, or the lock is 15 minutes old (LockTTL)
//	AVAILABLE ─Expire (past expires_at)→ EXPIRED;  VOID is set by staff tools.
//
// A coupon is usable while now < expires_at. expires_at is the template's
// valid_to, or, for "N days after issue" templates, the end of the N-th
// business day after the day of issue (00:00 of the following day in the
// business zone): a coupon of a 7-day template issued on 10 March at any
// hour is usable until 17 March 23:59:59.999999 Shanghai time. Coupons of a
// window template may be issued before valid_from (campaigns announcing a
// sale) but cannot be locked before it; members self-claim only inside the
// window.
//
// # Stacking and discount rules (Lock)
//
//   - A basket takes at most one discount coupon (FIXED_AMOUNT, THRESHOLD or
//     PERCENT_OFF) plus any number of GIFT coupons.
//   - No two coupons of the same template in one basket.
//   - Every coupon's min_spend is compared with the basket amount as sent by
//     the till (before any coupon): basket ≥ min_spend.
//   - FIXED_AMOUNT and THRESHOLD take their face value off, capped at the
//     basket. PERCENT_OFF with discount_percent p (the percent of the price
//     TO PAY: 80 is 20% off) takes floor(basket × (100−p) / 100) fen off, in
//     integer arithmetic. GIFT takes nothing off (the gift is handed over at
//     the till).
//   - A coupon applies at a store when its template lists neither business
//     units nor stores (everywhere), or lists the store, or lists the
//     store's business unit.
//
// Lock sets the coupons of an order reference: locking again with the same
// orderRef and the same codes answers the same discount (for the same
// basket) and refreshes the lock time; coupons that orderRef locked before
// and that are not listed again are released in the same transaction. An
// orderRef is expected to be unique across tills (the till prefixes it with
// its store or client); an orderRef holding fresh locks of another member is
// a CONFLICT. The discount of each coupon is stored at lock time and kept
// when it is redeemed.
//
// # Concurrency
//
// Everything one member owns changes under the member's account lock
// (account.Lock): issuing (per-member limit counted under it), redeeming,
// returning, reminders. Stock is taken with one conditional UPDATE on the
// template row (issued_count < total_stock), so it can never be oversold.
// Members' claims of one template are combined by group commit (Claim): one
// transaction serves the claims that queued while the previous one ran,
// locking their accounts in ascending member id and then the template's
// row, in the statement that writes the coupons (IssueBatchInTx).
// Locking at the till takes row locks on the coupons in id order (SELECT
// … FOR UPDATE), so two tills locking the same coupon meet on its row: one
// wins, the other sees it LOCKED and gets CONFLICT. Set-based jobs lock
// their rows with SKIP LOCKED and never wait on a till.
package coupon

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Kinds of coupon templates (the values of enum.CouponKind).
const (
	KindFixedAmount enum.CouponKind = "FIXED_AMOUNT"
	KindPercentOff  enum.CouponKind = "PERCENT_OFF"
	KindThreshold   enum.CouponKind = "THRESHOLD"
	KindGift        enum.CouponKind = "GIFT"
)

// SourceClaim is the source of a coupon a member claimed; other issuers
// (promo codes, lottery, mall, referral, campaigns) pass their own.
const SourceClaim = "CLAIM"

const (
	// LockTTL is how long a till's lock holds: older locks count as
	// released (Lock takes such coupons over; ReleaseExpiredLocks frees
	// them).
	LockTTL = 15 * time.Minute
	// ExpiringWithin is how far ahead NotifyExpiring reminds members.
	ExpiringWithin = 3 * 24 * time.Hour
	// MaxCodesPerLock bounds the codes of one Lock call.
	MaxCodesPerLock = 20

	jobBatch        = 1000 // rows per statement of the set-based jobs
	maxJobErrors    = 20   // member failures NotifyExpiring collects before it stops
	maxCodeAttempts = 5    // fresh codes tried when one is taken
)

// Errors. Each wraps the fault kind its extensions.code comes from; errors
// about one coupon name its code ("coupon 7K3M…: …").
var (
	ErrTemplateNotFound = fault.New(fault.NotFound, "coupon template not found")
	ErrNotClaimable     = fault.New(fault.Forbidden, "this coupon is not offered for members to claim")
	ErrNotStarted       = fault.New(fault.BadUserInput, "the coupon's validity window has not started yet")
	ErrEnded            = fault.New(fault.BadUserInput, "the coupon's validity window has ended")
	ErrOutOfStock       = fault.New(fault.OutOfStock, "the coupon is out of stock")
	ErrLimitExceeded    = fault.New(fault.LimitExceeded, "the member already holds as many of this coupon as allowed")
	ErrCouponNotFound   = fault.New(fault.NotFound, "no such coupon")
	// ErrCouponConflict is a coupon locked for another order, already
	// redeemed or void, or an order reference in use for another member.
	ErrCouponConflict = fault.New(fault.Conflict, "locked for another order or already used")
	// ErrOrderRefInUse is an order reference holding fresh locks on
	// another member's coupons.
	ErrOrderRefInUse  = fault.New(fault.Conflict, "order reference in use for another member's coupons")
	ErrCouponExpired  = fault.New(fault.BadUserInput, "expired")
	ErrMixedMembers   = fault.New(fault.BadUserInput, "coupons of different members cannot be used together")
	ErrNotApplicable  = fault.New(fault.BadUserInput, "not valid at this store")
	ErrBelowMinSpend  = fault.New(fault.BadUserInput, "basket below the coupon's minimum spend")
	ErrStacking       = fault.New(fault.BadUserInput, "these coupons cannot be used together")
	ErrUnknownStore   = fault.New(fault.BadUserInput, "unknown store")
	ErrStoreForbidden = fault.New(fault.Forbidden, "this client may not act for that store")
)

// Issuer issues coupons inside a caller's transaction (promo codes,
// lottery, mall, referral, campaigns).
type Issuer interface {
	IssueInTx(ctx context.Context, tx *ent.Tx, acct *ent.Account, templateID int, source string) (*ent.Coupon, error)
}

// Redeemer is what order ingestion and refunds need of coupons.
type Redeemer interface {
	RedeemLocked(ctx context.Context, tx *ent.Tx, memberID int, orderRef string, o *ent.Order) ([]*ent.Coupon, error)
	ReturnForRefund(ctx context.Context, tx *ent.Tx, o *ent.Order) (int, error)
}

var (
	_ Issuer   = (*Service)(nil)
	_ Redeemer = (*Service)(nil)
)

// Service enforces the coupon rules.
type Service struct {
	db      *ent.Client
	zone    *time.Location
	now     func() time.Time
	newCode func() (string, error)
	claims  *claimer
}

// New builds a Service; zone is the business time zone, now the clock.
func New(db *ent.Client, zone *time.Location, now func() time.Time) *Service {
	return &Service{db: db, zone: zone, now: now, newCode: randomCode, claims: newClaimer()}
}

// crockford is Crockford's base32 alphabet: no I, L, O, U, so a code read
// aloud or typed at a till is hard to get wrong.
const crockford = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// codeLength characters of 5 random bits each: 60 bits, unguessable.
const codeLength = 12

// randomCode returns a fresh coupon code from crypto/rand. 256 is a
// multiple of 32, so taking 5 bits of each byte is unbiased.
func randomCode() (string, error) {
	var b [codeLength]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("reading random code: %w", err)
	}
	for i := range b {
		b[i] = crockford[b[i]&31]
	}
	return string(b[:]), nil
}

// NormalizeCode turns a code as typed (spaces, lower case, the letters
// Crockford's base32 reads as digits) into its canonical form.
func NormalizeCode(code string) string {
	out := make([]byte, 0, len(code))
	for i := 0; i < len(code); i++ {
		c := code[i]
		switch {
		case c == ' ' || c == '-' || c == '\t':
			continue
		case c >= 'a' && c <= 'z':
			c -= 'a' - 'A'
		}
		switch c {
		case 'O':
			c = '0'
		case 'I', 'L':
			c = '1'
		}
		out = append(out, c)
	}
	return string(out)
}

// fieldError is bad input naming a field (what forms and fault.Message
// use) that also matches a sentinel of this package (for errors.Is).
type fieldError struct {
	invalid  *fault.Invalid
	sentinel error
}

func (e *fieldError) Error() string   { return e.invalid.Error() }
func (e *fieldError) Unwrap() []error { return []error{e.invalid, e.sentinel} }

func invalid(sentinel error, field, format string, args ...any) error {
	return &fieldError{invalid: fault.Invalidf(field, format, args...), sentinel: sentinel}
}

// expiresAt is when a coupon of t issued at issued expires.
func (s *Service) expiresAt(t *ent.CouponTemplate, issued time.Time) (time.Time, error) {
	switch {
	case t.ValidTo != nil:
		return t.ValidTo.UTC(), nil
	case t.DaysAfterIssue != nil:
		d := issued.In(s.zone)
		return time.Date(d.Year(), d.Month(), d.Day()+*t.DaysAfterIssue+1, 0, 0, 0, 0, s.zone).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("coupon template %d has neither valid_to nor days_after_issue", t.ID)
}
