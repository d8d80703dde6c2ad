package identity

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/identity"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/internal/auth/signedcode"
	"github.com/onemember/onemember/internal/platform/fault"
)

// MemberCodeTTL is how long a member's QR code is valid.
const MemberCodeTTL = 60 * time.Second

// Errors of member resolution.
var (
	ErrMemberNotFound = fault.New(fault.NotFound, "member not found")
	ErrMemberCode     = fault.New(fault.BadUserInput, "member code is invalid or expired: ask the member to refresh it")
)

// MemberRef names a member the way a till or back end knows it; exactly
// one field is set.
type MemberRef struct {
	MemberID   *int
	MemberNo   *string
	MemberCode *string
	Phone      *string
}

// Validate reports a reference with none or several fields set.
func (r MemberRef) Validate(field string) error {
	n := 0
	for _, set := range []bool{r.MemberID != nil, r.MemberNo != nil, r.MemberCode != nil, r.Phone != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return fault.Invalidf(field, "set exactly one of memberId, memberNo, memberCode, phone")
	}
	return nil
}

// MemberCode signs a rotating code for the member's QR.
func (s *Service) MemberCode(memberID int) (string, time.Time) {
	return s.codes.Sign(int64(memberID), MemberCodeTTL)
}

// Resolve finds the member a reference names, following merges to the
// surviving member. Erased members are not found.
func (s *Service) Resolve(ctx context.Context, db *ent.Client, ref MemberRef, field string) (*ent.Member, error) {
	if err := ref.Validate(field); err != nil {
		return nil, err
	}
	var q *ent.MemberQuery
	switch {
	case ref.MemberID != nil:
		q = db.Member.Query().Where(member.ID(*ref.MemberID))
	case ref.MemberNo != nil:
		q = db.Member.Query().Where(member.MemberNo(*ref.MemberNo))
	case ref.MemberCode != nil:
		id, err := s.codes.Verify(*ref.MemberCode)
		if err != nil {
			if errors.Is(err, signedcode.ErrExpiredCode) || errors.Is(err, signedcode.ErrInvalidCode) {
				return nil, ErrMemberCode
			}
			return nil, err
		}
		q = db.Member.Query().Where(member.ID(int(id)))
	default:
		phone, err := normalizePhone(*ref.Phone)
		if err != nil {
			return nil, fault.Invalidf(field+".phone", "is not a mainland China mobile number")
		}
		q = db.Identity.Query().
			Where(identity.KindEQ(identity.KindPHONE), identity.AppID(""),
				identity.Lookup(LookupKey(s.pii, identity.KindPHONE, "", phone)), identity.UnboundAtIsNil()).
			QueryMember()
	}
	m, err := q.Only(ctx)
	if ent.IsNotFound(err) {
		return nil, ErrMemberNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("resolving member: %w", err)
	}
	return s.survivor(ctx, db, m)
}

// survivor follows merged_into links to the live member.
func (s *Service) survivor(ctx context.Context, db *ent.Client, m *ent.Member) (*ent.Member, error) {
	for hops := 0; m.Status == member.StatusMERGED && m.MergedIntoID != nil; hops++ {
		if hops > 8 {
			return nil, fmt.Errorf("merge chain of member %d too long", m.ID)
		}
		next, err := db.Member.Get(ctx, *m.MergedIntoID)
		if err != nil {
			return nil, fmt.Errorf("following merge of member %d: %w", m.ID, err)
		}
		m = next
	}
	if m.Status == member.StatusERASED {
		return nil, ErrMemberNotFound
	}
	return m, nil
}
