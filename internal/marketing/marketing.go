// Package marketing owns the marketing tools of DOMAIN.md "Coupons and
// marketing tools" other than coupons themselves: the points mall
// (积分商城), lotteries (幸运转盘), promo codes (口令), activities with
// registration, waitlist and signed tickets (活动报名), and referrals (裂变).
//
// Every write is one transaction. Anything that moves a member's ledgers
// first locks the member's account (account.Lock), so that the checks that
// decide a write (per-member limits, daily draws, idempotency keys) are
// exact for that member. Shared stock (mall items, lottery prizes, promo
// code usage, coupon templates) is taken with a single conditional UPDATE
// whose row lock lasts until commit, so it is never oversold.
//
// Lock order, the same in every path so that two of them cannot deadlock:
// member account → that member's points lots (the ledger) → the shared row
// (mall item, lottery prize, promo code, activity) → coupon templates in
// ascending id order. Referral rewards are the one path that locks a second
// account; see RewardFirstPaidOrder.
package marketing

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"entgo.io/ent/dialect/sql"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/auth/signedcode"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/tier"
)

// Ledger is what the marketing tools need of the ledgers.
type Ledger interface {
	BurnPoints(ctx context.Context, tx *ent.Tx, acct *ent.Account, e ledger.Entry) (*ent.PointsEntry, error)
	EarnPoints(ctx context.Context, tx *ent.Tx, acct *ent.Account, e ledger.Entry) (*ent.PointsEntry, error)
	EarnGrowth(ctx context.Context, tx *ent.Tx, acct *ent.Account, e ledger.Entry) (*ent.GrowthEntry, error)
}

// Tiers re-evaluates a member's tier after their growth or referrals
// changed.
type Tiers interface {
	Reevaluate(ctx context.Context, tx *ent.Tx, acct *ent.Account, reason string) (*ent.TierChange, error)
}

// CouponIssuer issues one coupon of a template to the member of acct,
// taking the template's stock (an error of kind OUT_OF_STOCK when none is
// left) and checking its per-member limit (LIMIT_EXCEEDED). acct is locked
// in tx.
type CouponIssuer interface {
	IssueInTx(ctx context.Context, tx *ent.Tx, acct *ent.Account, templateID int, source string) (*ent.Coupon, error)
}

var (
	_ Ledger = (*ledger.Service)(nil)
	_ Tiers  = (*tier.Service)(nil)
)

// Coupon sources: why a coupon was issued, as recorded on the coupon.
const (
	couponSourceMall     = "MALL"
	couponSourceLottery  = "LOTTERY"
	couponSourcePromo    = "PROMO_CODE"
	couponSourceReferral = "REFERRAL"
)

// maxKeyLen bounds idempotency keys; clients send UUIDs or similar.
const maxKeyLen = 128

// Errors shared by the tools.
var (
	// ErrIdempotencyConflict is a key the member already used for a
	// different request: answering with the first result would hide that
	// the second was never carried out.
	ErrIdempotencyConflict = fault.New(fault.Conflict, "idempotency key already used for a different request")
	// ErrMemberNotFound is a member that does not exist or no longer acts
	// on its own (merged into another, erased).
	ErrMemberNotFound = account.ErrMemberNotFound
	// ErrMemberFrozen is the ledger's refusal: a frozen member cannot
	// spend points (mall, paid lottery draws).
	ErrMemberFrozen = ledger.ErrMemberFrozen
)

// ReferralReward is what a referrer gets when a referee completes a first
// paid order.
type ReferralReward struct {
	Growth           int64 // growth value; DOMAIN.md: 50
	Points           int64 // points; 0 for none
	CouponTemplateID *int  // a coupon; nil for none
}

type options struct {
	referral ReferralReward
	randIntn func(n int64) (int64, error)
}

// Option configures a Service.
type Option func(*options)

// WithReferralReward replaces the default referral reward (growth 50, no
// points, no coupon).
func WithReferralReward(r ReferralReward) Option {
	return func(o *options) { o.referral = r }
}

// Service runs the marketing tools.
type Service struct {
	db      *ent.Client
	ledger  Ledger
	tiers   Tiers
	coupons CouponIssuer
	tickets *signedcode.Signer
	zone    *time.Location
	now     func() time.Time
	opts    options
}

// New builds a Service. tickets signs activity tickets (purpose
// "activity-ticket"); zone is the business time zone (a lottery's daily
// draws count per business day); a nil zone means UTC and a nil now
// time.Now.
func New(db *ent.Client, l Ledger, tiers Tiers, coupons CouponIssuer, tickets *signedcode.Signer,
	zone *time.Location, now func() time.Time, opts ...Option,
) *Service {
	if zone == nil {
		zone = time.UTC
	}
	if now == nil {
		now = time.Now
	}
	o := options{referral: ReferralReward{Growth: 50}, randIntn: cryptoIntn}
	for _, opt := range opts {
		opt(&o)
	}
	return &Service{db: db, ledger: l, tiers: tiers, coupons: coupons, tickets: tickets, zone: zone, now: now, opts: o}
}

// cryptoIntn returns a uniform random number in [0, n).
func cryptoIntn(n int64) (int64, error) {
	v, err := rand.Int(rand.Reader, big.NewInt(n))
	if err != nil {
		return 0, fmt.Errorf("drawing a random number: %w", err)
	}
	return v.Int64(), nil
}

// validKey checks an idempotency key.
func validKey(key string) error {
	switch {
	case strings.TrimSpace(key) == "":
		return fault.Invalidf("idempotencyKey", "is required")
	case len(key) > maxKeyLen:
		return fault.Invalidf("idempotencyKey", "must be at most %d bytes", maxKeyLen)
	}
	return nil
}

// liveMember checks, inside tx, that the member exists and acts on its
// own; spending also refuses a frozen member.
func liveMember(ctx context.Context, tx *ent.Tx, memberID int, spending bool) error {
	m, err := tx.Member.Query().Where(member.ID(memberID)).Select(member.FieldStatus).Only(ctx)
	if ent.IsNotFound(err) {
		return ErrMemberNotFound
	}
	if err != nil {
		return fmt.Errorf("reading member %d: %w", memberID, err)
	}
	switch m.Status {
	case member.StatusMERGED, member.StatusERASED:
		return ErrMemberNotFound
	case member.StatusFROZEN:
		if spending {
			return ErrMemberFrozen
		}
	}
	return nil
}

// lockAccount locks the member's account after checking the member.
func lockAccount(ctx context.Context, tx *ent.Tx, memberID int, spending bool) (*ent.Account, error) {
	acct, err := account.Lock(ctx, tx, memberID)
	if err != nil {
		return nil, err
	}
	// Read after the lock: a freeze committed while we waited counts.
	if err := liveMember(ctx, tx, memberID, spending); err != nil {
		return nil, err
	}
	return acct, nil
}

// soft reports whether err is a refusal a client could act on (no stock,
// a limit, a bad template): a refusal that leaves the transaction usable
// once rolled back to a savepoint. Anything else is a failure.
func soft(err error) bool { return fault.CodeOf(err) != fault.Internal }

// trySavepoint runs fn inside a savepoint. When fn fails softly the
// savepoint is rolled back, acct is re-read (fn may have advanced it in
// memory: balances, event_seq) and tried is false with a nil error; other
// failures are returned and doom the transaction anyway.
func trySavepoint(ctx context.Context, tx *ent.Tx, acct *ent.Account, fn func() error) (tried bool, err error) {
	if _, err := tx.ExecContext(ctx, "SAVEPOINT marketing_try"); err != nil {
		return false, fmt.Errorf("setting savepoint: %w", err)
	}
	ferr := fn()
	if ferr == nil {
		if _, err := tx.ExecContext(ctx, "RELEASE SAVEPOINT marketing_try"); err != nil {
			return false, fmt.Errorf("releasing savepoint: %w", err)
		}
		return true, nil
	}
	if !soft(ferr) {
		return false, ferr
	}
	if _, err := tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT marketing_try"); err != nil {
		return false, errors.Join(ferr, fmt.Errorf("rolling back to savepoint: %w", err))
	}
	if acct != nil {
		fresh, err := tx.Account.Get(ctx, acct.ID)
		if err != nil {
			return false, fmt.Errorf("re-reading account of member %d: %w", acct.MemberID, err)
		}
		*acct = *fresh
	}
	return false, nil
}

// coalescedSum is SUM that gives 0, not NULL, over no rows.
func coalescedSum(field string) ent.AggregateFunc {
	return func(s *sql.Selector) string {
		return fmt.Sprintf("COALESCE(SUM(%s), 0)", s.C(field))
	}
}

// dayBounds is the business day containing t: [start, end).
func (s *Service) dayBounds(t time.Time) (time.Time, time.Time) {
	l := t.In(s.zone)
	start := time.Date(l.Year(), l.Month(), l.Day(), 0, 0, 0, 0, s.zone)
	return start, start.AddDate(0, 0, 1)
}

func ptr[T any](v T) *T { return &v }
