package identity

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/coupon"
	"github.com/onemember/onemember/ent/identity"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/ent/order"
	"github.com/onemember/onemember/ent/paidmembership"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/ent/tierchange"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/audit"
	"github.com/onemember/onemember/internal/auth"
	"github.com/onemember/onemember/internal/auth/token"
	"github.com/onemember/onemember/internal/events"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Errors of One ID administration.
var (
	ErrSelfMerge     = fault.Invalidf("mergedId", "must differ from survivorId")
	ErrNotMergeable  = fault.New(fault.Conflict, "a merged or erased member cannot take part in a merge")
	ErrAlreadyErased = fault.New(fault.Conflict, "the member is already erased")
)

// LedgerMerger moves balances between accounts.
type LedgerMerger interface {
	MergeInTx(ctx context.Context, tx *ent.Tx, from, to *ent.Account, at time.Time, reason string) (ledger.MergeResult, error)
}

// MergePreview is what a merge would do.
type MergePreview struct {
	Survivor, Merged   *ent.Member
	ResultingTier      *ent.Tier
	PointsBalance      int64
	StoredValueBalance int64
	GrowthValue        int64
	CouponsMoved       int
	IdentitiesMoved    int
}

// PreviewMerge tells what merging mergedID into survivorID would give,
// changing nothing.
func (s *Service) PreviewMerge(ctx context.Context, survivorID, mergedID int) (MergePreview, error) {
	sv, mg, err := s.mergePair(ctx, s.db, survivorID, mergedID)
	if err != nil {
		return MergePreview{}, err
	}
	a, err := account.Get(ctx, s.db, sv.ID)
	if err != nil {
		return MergePreview{}, err
	}
	b, err := account.Get(ctx, s.db, mg.ID)
	if err != nil {
		return MergePreview{}, err
	}
	coupons, err := s.db.Coupon.Query().Where(coupon.MemberID(mg.ID)).Count(ctx)
	if err != nil {
		return MergePreview{}, err
	}
	ids, err := s.db.Identity.Query().Where(identity.MemberID(mg.ID), identity.UnboundAtIsNil()).Count(ctx)
	if err != nil {
		return MergePreview{}, err
	}
	t, err := s.higherTier(ctx, s.db, sv, mg)
	if err != nil {
		return MergePreview{}, err
	}
	return MergePreview{
		Survivor: sv, Merged: mg, ResultingTier: t,
		PointsBalance:      a.PointsBalance + b.PointsBalance,
		StoredValueBalance: a.StoredPrincipal + a.StoredBonus + b.StoredPrincipal + b.StoredBonus,
		GrowthValue:        a.GrowthValue + b.GrowthValue,
		CouponsMoved:       coupons, IdentitiesMoved: ids,
	}, nil
}

func (s *Service) mergePair(ctx context.Context, db *ent.Client, survivorID, mergedID int) (*ent.Member, *ent.Member, error) {
	if survivorID == mergedID {
		return nil, nil, ErrSelfMerge
	}
	sv, err := db.Member.Get(ctx, survivorID)
	if ent.IsNotFound(err) {
		return nil, nil, ErrMemberNotFound
	}
	if err != nil {
		return nil, nil, err
	}
	mg, err := db.Member.Get(ctx, mergedID)
	if ent.IsNotFound(err) {
		return nil, nil, ErrMemberNotFound
	}
	if err != nil {
		return nil, nil, err
	}
	return sv, mg, nil
}

func (s *Service) higherTier(ctx context.Context, db *ent.Client, a, b *ent.Member) (*ent.Tier, error) {
	var best *ent.Tier
	for _, m := range []*ent.Member{a, b} {
		if m.TierID == nil {
			continue
		}
		t, err := db.Tier.Get(ctx, *m.TierID)
		if err != nil {
			return nil, err
		}
		if best == nil || t.Rank > best.Rank {
			best = t
		}
	}
	return best, nil
}

// Merge folds mergedID into survivorID in one transaction: each ledger
// gets a MERGE entry on both sides, coupons, orders, identities, paid
// memberships and tier history move, the tier becomes the higher of the
// two, and the merged member stays as MERGED (its tokens then resolve to
// the survivor). Merging the same pair again changes nothing.
func (s *Service) Merge(ctx context.Context, survivorID, mergedID int, reason string) (*ent.Member, error) {
	if reason == "" {
		return nil, fault.Invalidf("reason", "is required")
	}
	m, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (*ent.Member, error) {
		return s.mergeInTx(ctx, tx, survivorID, mergedID, reason)
	})
	s.forgetCached(survivorID, mergedID)
	return database.Detach(m), err
}

func (s *Service) mergeInTx(ctx context.Context, tx *ent.Tx, survivorID, mergedID int, reason string) (*ent.Member, error) {
	// Lock in id order so two merges of one pair cannot deadlock.
	first, second := min(survivorID, mergedID), max(survivorID, mergedID)
	accts := map[int]*ent.Account{}
	for _, id := range []int{first, second} {
		a, err := account.Lock(ctx, tx, id)
		if err != nil {
			return nil, err
		}
		accts[id] = a
	}
	sv, mg, err := s.mergePair(ctx, tx.Client(), survivorID, mergedID)
	if err != nil {
		return nil, err
	}
	if mg.Status == member.StatusMERGED && mg.MergedIntoID != nil && *mg.MergedIntoID == sv.ID {
		return sv, nil // already done: idempotent
	}
	if sv.Status == member.StatusMERGED || sv.Status == member.StatusERASED ||
		mg.Status == member.StatusMERGED || mg.Status == member.StatusERASED {
		return nil, ErrNotMergeable
	}
	now := s.now()
	moved, err := s.ledger.MergeInTx(ctx, tx, accts[mg.ID], accts[sv.ID], now, reason)
	if err != nil {
		return nil, err
	}
	if err := tx.Coupon.Update().Where(coupon.MemberID(mg.ID)).SetMemberID(sv.ID).Exec(ctx); err != nil {
		return nil, fmt.Errorf("moving coupons: %w", err)
	}
	if err := tx.Order.Update().Where(order.MemberID(mg.ID)).SetMemberID(sv.ID).Exec(ctx); err != nil {
		return nil, fmt.Errorf("moving orders: %w", err)
	}
	if err := tx.Identity.Update().Where(identity.MemberID(mg.ID), identity.UnboundAtIsNil()).SetMemberID(sv.ID).Exec(ctx); err != nil {
		return nil, fmt.Errorf("moving identities: %w", err)
	}
	if err := tx.TierChange.Update().Where(tierchange.MemberID(mg.ID)).SetMemberID(sv.ID).Exec(ctx); err != nil {
		return nil, fmt.Errorf("moving tier history: %w", err)
	}
	if err := s.moveMemberships(ctx, tx, mg.ID, sv.ID); err != nil {
		return nil, err
	}
	best, err := s.higherTier(ctx, tx.Client(), sv, mg)
	if err != nil {
		return nil, err
	}
	if best != nil && (sv.TierID == nil || *sv.TierID != best.ID) {
		if err := s.raiseTier(ctx, tx, accts[sv.ID], sv, best, now); err != nil {
			return nil, err
		}
	}
	if err := tx.Member.UpdateOne(mg).SetStatus(member.StatusMERGED).SetMergedIntoID(sv.ID).
		SetStatusChangedAt(now).SetStatusReason(reason).Exec(ctx); err != nil {
		return nil, fmt.Errorf("marking merged: %w", err)
	}
	if err := audit.Record(ctx, tx.Client(), audit.Entry{
		Actor: auth.ViewerFrom(ctx).Actor(), Action: "member.merge", SubjectType: "Member", SubjectID: sv.ID,
		Detail: map[string]any{"merged": mg.ID, "reason": reason, "points": moved.Points, "growth": moved.Growth,
			"storedPrincipal": moved.StoredPrincipal, "storedBonus": moved.StoredBonus},
	}); err != nil {
		return nil, err
	}
	return tx.Member.Get(ctx, sv.ID)
}

// moveMemberships hands the merged member's paid memberships over; where
// both hold the same plan, the survivor keeps the later end.
func (s *Service) moveMemberships(ctx context.Context, tx *ent.Tx, from, to int) error {
	ms, err := tx.PaidMembership.Query().Where(paidmembership.MemberID(from)).All(ctx)
	if err != nil {
		return err
	}
	for _, m := range ms {
		other, err := tx.PaidMembership.Query().Where(paidmembership.MemberID(to), paidmembership.PlanID(m.PlanID)).Only(ctx)
		switch {
		case ent.IsNotFound(err):
			err = tx.PaidMembership.UpdateOne(m).SetMemberID(to).Exec(ctx)
		case err == nil:
			if m.ExpiresAt.After(other.ExpiresAt) {
				err = tx.PaidMembership.UpdateOne(other).SetExpiresAt(m.ExpiresAt).SetStatus(m.Status).Exec(ctx)
			}
		}
		if err != nil {
			return fmt.Errorf("moving paid membership: %w", err)
		}
	}
	return nil
}

// raiseTier gives the survivor the merged member's higher tier, recorded
// and announced like any promotion.
func (s *Service) raiseTier(ctx context.Context, tx *ent.Tx, acct *ent.Account, sv *ent.Member, to *ent.Tier, at time.Time) error {
	var from *ent.Tier
	if sv.TierID != nil {
		t, err := tx.Tier.Get(ctx, *sv.TierID)
		if err != nil {
			return err
		}
		from = t
	}
	ch := tx.TierChange.Create().SetMemberID(sv.ID).SetToTierID(to.ID).SetDirection(tierchange.DirectionUP).
		SetReason("会员合并").SetChangedAt(at)
	payload := map[string]any{"direction": "UP", "toTierId": to.ID, "toCode": to.Code, "reason": "会员合并"}
	if from != nil {
		ch.SetFromTierID(from.ID)
		payload["fromTierId"], payload["fromCode"] = from.ID, from.Code
	}
	if err := ch.Exec(ctx); err != nil {
		return fmt.Errorf("recording tier change: %w", err)
	}
	if err := tx.Member.UpdateOne(sv).SetTierID(to.ID).Exec(ctx); err != nil {
		return err
	}
	if err := tx.Account.UpdateOneID(acct.ID).SetTierSince(at).Exec(ctx); err != nil {
		return err
	}
	_, err := events.Emit(ctx, tx, acct, at, events.Event{Type: events.TierChanged, Payload: payload,
		Title: "会员等级调整为" + to.Name, Body: "账户合并后，您的会员等级为" + to.Name})
	return err
}

// BindPhone binds a verified phone to the member. When another member
// holds the phone, the two become one: the holder survives (the phone is
// the unique key of a person) and the caller's member is merged into it.
func (s *Service) BindPhone(ctx context.Context, memberID int, rawPhone, code string) (*ent.Member, bool, error) {
	phone, err := normalizePhone(rawPhone)
	if err != nil {
		return nil, false, err
	}
	if err := s.VerifyOTP(ctx, phone, PurposeBindPhone, code); err != nil {
		return nil, false, err
	}
	id := newIdentity{kind: identity.KindPHONE, value: phone}
	type out struct {
		m      *ent.Member
		merged bool
	}
	r, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (out, error) {
		holder, err := s.findMember(ctx, tx, []newIdentity{id})
		if err != nil {
			return out{}, err
		}
		switch {
		case holder != nil && holder.ID == memberID:
			return out{m: holder}, nil
		case holder != nil:
			m, err := s.mergeInTx(ctx, tx, holder.ID, memberID, "绑定手机号合并")
			return out{m: m, merged: true}, err
		}
		if _, err := account.Lock(ctx, tx, memberID); err != nil {
			return out{}, err
		}
		// A member has one phone: a previous one is unbound.
		if err := tx.Identity.Update().Where(identity.MemberID(memberID), identity.KindEQ(identity.KindPHONE), identity.UnboundAtIsNil()).
			SetUnboundAt(s.now()).Exec(ctx); err != nil {
			return out{}, err
		}
		if err := s.bind(ctx, tx, memberID, id); err != nil {
			return out{}, err
		}
		enc, err := s.pii.Encrypt(phone, "member.phone")
		if err != nil {
			return out{}, err
		}
		m, err := tx.Member.UpdateOneID(memberID).SetPhoneEnc(enc).SetPhoneIndex(s.pii.BlindIndex(identityPhone, phone)).Save(ctx)
		return out{m: m}, err
	})
	if database.IsUniqueViolation(err) {
		return nil, false, fault.New(fault.Conflict, "the phone was bound by someone else at the same moment: try again")
	}
	s.forgetCached(memberID)
	return database.Detach(r.m), r.merged, err
}

// Freeze blocks the member's spending (points and stored value).
func (s *Service) Freeze(ctx context.Context, memberID int, reason string) (*ent.Member, error) {
	if reason == "" {
		return nil, fault.Invalidf("reason", "is required")
	}
	defer s.forgetCached(memberID)
	return detached(database.WithTx(ctx, s.db, func(tx *ent.Tx) (*ent.Member, error) {
		m, err := tx.Member.Get(ctx, memberID)
		if ent.IsNotFound(err) {
			return nil, ErrMemberNotFound
		}
		if err != nil {
			return nil, err
		}
		if m.Status != member.StatusACTIVE && m.Status != member.StatusFROZEN {
			return nil, ErrNotMergeable
		}
		m, err = tx.Member.UpdateOne(m).SetStatus(member.StatusFROZEN).SetStatusReason(reason).SetStatusChangedAt(s.now()).Save(ctx)
		if err != nil {
			return nil, err
		}
		return m, audit.Record(ctx, tx.Client(), audit.Entry{Actor: auth.ViewerFrom(ctx).Actor(), Action: "member.freeze",
			SubjectType: "Member", SubjectID: m.ID, Detail: map[string]any{"reason": reason}})
	}))
}

// Erase removes the member's personal data and identities (PIPL) while
// keeping ledger totals and orders, and ends their sessions.
func (s *Service) Erase(ctx context.Context, memberID int, reason string) (*ent.Member, error) {
	if reason == "" {
		return nil, fault.Invalidf("reason", "is required")
	}
	defer s.forgetCached(memberID)
	return detached(database.WithTx(ctx, s.db, func(tx *ent.Tx) (*ent.Member, error) {
		m, err := tx.Member.Get(ctx, memberID)
		if ent.IsNotFound(err) {
			return nil, ErrMemberNotFound
		}
		if err != nil {
			return nil, err
		}
		if m.Status == member.StatusERASED {
			return nil, ErrAlreadyErased
		}
		ids, err := tx.Identity.Query().Where(identity.MemberID(m.ID), identity.UnboundAtIsNil()).All(ctx)
		if err != nil {
			return nil, err
		}
		for _, id := range ids {
			// The blind index is still derived from personal data: replace it.
			junk := make([]byte, 32)
			_, _ = rand.Read(junk)
			if err := tx.Identity.UpdateOne(id).SetUnboundAt(s.now()).SetLookup(junk).ClearValueEnc().SetMaskedValue("").Exec(ctx); err != nil {
				return nil, err
			}
		}
		m, err = tx.Member.UpdateOne(m).SetStatus(member.StatusERASED).SetStatusReason(reason).SetStatusChangedAt(s.now()).
			ClearNameEnc().ClearPhoneEnc().ClearPhoneIndex().ClearBirthdayEnc().ClearBirthYear().ClearBirthMonth().
			SetDisplayName("").SetAvatarURL("").SetRegionCode("").SetGender(enum.GenderUnknown).Save(ctx)
		if err != nil {
			return nil, fmt.Errorf("erasing member: %w", err)
		}
		if err := s.sessions.RevokeSubject(ctx, tx.Client(), token.KindMember, m.ID); err != nil {
			return nil, err
		}
		return m, audit.Record(ctx, tx.Client(), audit.Entry{Actor: auth.ViewerFrom(ctx).Actor(), Action: "member.erase",
			SubjectType: "Member", SubjectID: m.ID, Detail: map[string]any{"reason": reason, "identities": len(ids)}})
	}))
}

func detached(m *ent.Member, err error) (*ent.Member, error) { return database.Detach(m), err }
