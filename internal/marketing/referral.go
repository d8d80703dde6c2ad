package marketing

import (
	"context"
	"crypto/rand"
	stdsql "database/sql"
	"errors"
	"fmt"
	"strings"

	"entgo.io/ent/dialect/sql"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/ent/referral"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/behavior"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Referral codes: 8 characters of an alphabet without look-alikes (no 0/O,
// 1/I/L): 31 symbols, 31^8 ≈ 8.5e11 codes.
const (
	referralAlphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
	referralCodeLen  = 8
	// referralAttempts bounds the draws on unique collisions: with 32^8
	// codes a collision is rare, several in a row mean something else.
	referralAttempts = 8
	// maxMergeHops bounds following merged_into (chains are short).
	maxMergeHops = 16
)

// Errors of referrals. LinkReferral's refusals are returned for the caller
// to log: a bad invite code must never fail a registration.
var (
	ErrUnknownInviteCode = fault.Invalidf("inviteCode", "is not a member's invite code")
	ErrSelfReferral      = fault.Invalidf("inviteCode", "is the member's own code")
)

// ReferralCode returns the member's invite code, drawing it on first use.
// Concurrent first calls agree: the code is set only while still NULL and
// every caller returns what the row then holds.
func (s *Service) ReferralCode(ctx context.Context, memberID int) (string, error) {
	for range referralAttempts {
		m, err := s.db.Member.Query().Where(member.ID(memberID)).Select(member.FieldReferralCode).Only(ctx)
		if ent.IsNotFound(err) {
			return "", ErrMemberNotFound
		}
		if err != nil {
			return "", fmt.Errorf("reading referral code of member %d: %w", memberID, err)
		}
		if m.ReferralCode != nil {
			return *m.ReferralCode, nil
		}
		code, err := randomReferralCode()
		if err != nil {
			return "", err
		}
		_, err = s.db.Member.Update().Where(member.ID(memberID), member.ReferralCodeIsNil()).
			SetReferralCode(code).Save(ctx)
		if err != nil && !database.IsUniqueViolation(err) {
			return "", fmt.Errorf("setting referral code of member %d: %w", memberID, err)
		}
		// Taken by another member, set by a concurrent call, or set by
		// us: the next read tells.
	}
	return "", fmt.Errorf("drawing a referral code for member %d: %d collisions", memberID, referralAttempts)
}

// referralAlphabet has 31 symbols; 256 % 31 != 0, so bytes at or above
// the largest multiple of 31 are rejected to keep the draw uniform.
func randomReferralCode() (string, error) {
	n := len(referralAlphabet)
	limit := byte(256 - 256%n)
	out := make([]byte, 0, referralCodeLen)
	buf := make([]byte, 2*referralCodeLen)
	for len(out) < referralCodeLen {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("drawing a referral code: %w", err)
		}
		for _, b := range buf {
			if b < limit && len(out) < referralCodeLen {
				out = append(out, referralAlphabet[int(b)%n])
			}
		}
	}
	return string(out), nil
}

// ReferralStats counts the members the member invited and how many of
// them completed a first paid order.
func (s *Service) ReferralStats(ctx context.Context, memberID int) (invited, rewarded int, err error) {
	invited, err = s.db.Referral.Query().Where(referral.ReferrerID(memberID)).Count(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("counting referrals of member %d: %w", memberID, err)
	}
	rewarded, err = s.db.Referral.Query().Where(referral.ReferrerID(memberID), referral.RewardedAtNotNil()).Count(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("counting rewarded referrals of member %d: %w", memberID, err)
	}
	return invited, rewarded, nil
}

// LinkReferral records that the new member refereeID registered with
// inviteCode, inside the registration's transaction. An empty code does
// nothing. An unknown code (or one of a merged or erased member) is
// ErrUnknownInviteCode and the member's own code ErrSelfReferral: both
// leave tx usable, and the caller should log them and go on registering.
// A referee already linked keeps the first link (nil error), so a retried
// registration step is harmless.
func (s *Service) LinkReferral(ctx context.Context, tx *ent.Tx, refereeID int, inviteCode string) error {
	code := strings.ToUpper(strings.TrimSpace(inviteCode))
	if code == "" {
		return nil
	}
	ref, err := tx.Member.Query().Where(member.ReferralCode(code)).Select(member.FieldStatus).Only(ctx)
	if ent.IsNotFound(err) {
		return ErrUnknownInviteCode
	}
	if err != nil {
		return fmt.Errorf("looking up invite code: %w", err)
	}
	if ref.Status == member.StatusMERGED || ref.Status == member.StatusERASED {
		return ErrUnknownInviteCode
	}
	if ref.ID == refereeID {
		return ErrSelfReferral
	}
	// ON CONFLICT DO NOTHING rather than a unique violation, which would
	// abort the caller's transaction; no row back means already linked.
	now := s.now()
	id, err := tx.Referral.Create().SetReferrerID(ref.ID).SetRefereeID(refereeID).SetCreatedAt(now).
		OnConflict(sql.ConflictColumns(referral.FieldRefereeID)).DoNothing().
		ID(ctx)
	if errors.Is(err, stdsql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("linking referral of member %d: %w", refereeID, err)
	}
	// The referrer's share brought a member in: their SHARE behaviour.
	return behavior.Record(ctx, tx, behavior.Event{MemberID: ref.ID, Kind: enum.BehaviorShare,
		OccurredAt: now, Channel: enum.ChannelMiniProgram, Key: fmt.Sprintf("SHARE:%d", id)})
}

// RewardFirstPaidOrder rewards the referrer of the member of refereeAcct
// for the referee's first paid order. Order ingestion calls it inside its
// transaction, with refereeAcct locked, for every paid order with an
// amount above 0; all but the first (per referee) do nothing. The reward:
// growth (default 50, Source REFERRAL, key "referral:<refereeID>"),
// successful_referrals + 1, the configured points and coupon, then the
// referrer's tier is re-evaluated (DIAMOND needs a referral).
//
// Exactly once: the referral row is claimed with a conditional UPDATE
// (rewarded_at IS NULL) before anything is given; a concurrent first
// order of the same referee waits on the referee's account lock (or on
// that row) and then finds it claimed. The growth's idempotency key
// backs this up.
//
// Locks and deadlocks. This is the one place that locks a second account
// (the referrer's) while holding one (the referee's), in the order
// referee → referral row → referrer. Two reward transactions can only
// deadlock if each waits for the other's referee, i.e. if two members
// referred each other. Links are made only when the referee registers,
// with the code of a member who already exists, so the referrals form a
// forest pointing from newer to older members and a reward waits only
// "upwards": no cycle, no deadlock. An ordinary order of the referrer
// (holding the referrer's account, waiting for nobody or for its own
// referrer, further up) cannot close a cycle either. The residual risk
// is merges, which lock two accounts lowest id first and through which a
// referrer is followed (merged_into): a merge of a referee with their
// own referrer racing the referee's first order, or merges that bend the
// forest into a cycle. PostgreSQL then detects the deadlock and aborts
// one transaction (40P01, database.IsDeadlock); order ingestion is
// idempotent on its external id, so its caller retries. We accept that
// rather than move the reward to a second transaction, which could be
// lost between the two commits.
//
// The coupon is best effort: if the template cannot issue one (out of
// stock, limit), the reward goes on without it, in a savepoint, because
// a referrer's coupon must never fail the referee's order.
func (s *Service) RewardFirstPaidOrder(ctx context.Context, tx *ent.Tx, refereeAcct *ent.Account, o *ent.Order) error {
	if o == nil || o.Amount <= 0 {
		return nil
	}
	refereeID := refereeAcct.MemberID
	now := s.now()
	n, err := tx.Referral.Update().
		Where(referral.RefereeID(refereeID), referral.RewardedAtIsNil()).
		SetRewardedAt(now).SetOrderID(o.ID).Save(ctx)
	if err != nil {
		return fmt.Errorf("claiming referral reward of member %d: %w", refereeID, err)
	}
	if n == 0 {
		return nil // no referrer, or already rewarded
	}
	ref, err := tx.Referral.Query().Where(referral.RefereeID(refereeID)).Only(ctx)
	if err != nil {
		return fmt.Errorf("loading referral of member %d: %w", refereeID, err)
	}
	referrerID, ok, err := survivor(ctx, tx, ref.ReferrerID)
	if err != nil {
		return err
	}
	if !ok || referrerID == refereeID {
		return nil // the referrer was erased, or merged into the referee
	}
	acct, err := account.Lock(ctx, tx, referrerID)
	if err != nil {
		return err
	}
	r := s.opts.referral
	key := fmt.Sprintf("referral:%d", refereeID)
	if r.Growth > 0 {
		if _, err := s.ledger.EarnGrowth(ctx, tx, acct, ledger.Entry{
			Amount: r.Growth, Source: ledger.SourceReferral, Reason: "邀请好友完成首单", Key: &key, At: now,
		}); err != nil {
			return err
		}
	}
	if err := tx.Account.UpdateOneID(acct.ID).AddSuccessfulReferrals(1).Exec(ctx); err != nil {
		return fmt.Errorf("counting referral of member %d: %w", referrerID, err)
	}
	acct.SuccessfulReferrals++
	if r.Points > 0 {
		pointsKey := key + ":points"
		if _, err := s.ledger.EarnPoints(ctx, tx, acct, ledger.Entry{
			Amount: r.Points, Source: ledger.SourceReferral, Reason: "邀请好友完成首单", Key: &pointsKey, At: now,
		}); err != nil {
			return err
		}
	}
	if r.CouponTemplateID != nil {
		if _, err := trySavepoint(ctx, tx, acct, func() error {
			_, err := s.coupons.IssueInTx(ctx, tx, acct, *r.CouponTemplateID, couponSourceReferral)
			return err
		}); err != nil {
			return err
		}
	}
	if _, err := s.tiers.Reevaluate(ctx, tx, acct, "referral"); err != nil {
		return err
	}
	return nil
}

// survivor follows merges from memberID to the member that now stands for
// it; ok is false when that member is erased or the chain is broken.
func survivor(ctx context.Context, tx *ent.Tx, memberID int) (int, bool, error) {
	for range maxMergeHops {
		m, err := tx.Member.Query().Where(member.ID(memberID)).
			Select(member.FieldStatus, member.FieldMergedIntoID).Only(ctx)
		if ent.IsNotFound(err) {
			return 0, false, nil
		}
		if err != nil {
			return 0, false, fmt.Errorf("reading member %d: %w", memberID, err)
		}
		switch {
		case m.Status == member.StatusERASED:
			return 0, false, nil
		case m.Status == member.StatusMERGED && m.MergedIntoID != nil:
			memberID = *m.MergedIntoID
		default:
			return memberID, true, nil
		}
	}
	return 0, false, nil
}
