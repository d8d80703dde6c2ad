// Package identity owns One ID sign-in: members signing in with WeChat or
// with a phone and SMS code, registration of new members on first sign-in
// (member number, identities, source channel), and the one-time codes
// behind phone sign-in and binding.
package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/identity"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/ent/tier"
	"github.com/onemember/onemember/internal/auth"
	"github.com/onemember/onemember/internal/auth/signedcode"
	"github.com/onemember/onemember/internal/auth/token"
	"github.com/onemember/onemember/internal/behavior"
	"github.com/onemember/onemember/internal/pii"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

const identityPhone = string(identity.KindPHONE)

// Service signs members in.
type Service struct {
	db        *ent.Client
	pii       *pii.Protector
	sessions  *auth.Sessions
	wechat    WeChat
	sms       SMSSender
	otp       OTPPolicy
	otpKey    []byte
	codes     *signedcode.Signer
	ledger    LedgerMerger
	referrals Referrals
	forget    func(memberIDs ...int)
	log       *slog.Logger
	now       func() time.Time
}

// Deps are the collaborators of a Service.
type Deps struct {
	DB       *ent.Client
	PII      *pii.Protector
	Sessions *auth.Sessions
	WeChat   WeChat
	SMS      SMSSender
	OTP      OTPPolicy
	OTPKey   []byte
	// Codes signs member QR codes.
	Codes *signedcode.Signer
	// Ledger moves balances when members merge.
	Ledger LedgerMerger
	// Referrals links a new member to the member whose invite code they
	// registered with (nil: invite codes are ignored).
	Referrals Referrals
	// Forget drops members from the authentication cache.
	Forget func(memberIDs ...int)
	Log    *slog.Logger
	Now    func() time.Time
}

// Referrals records who invited a new member, in the registering
// transaction.
type Referrals interface {
	LinkReferral(ctx context.Context, tx *ent.Tx, refereeID int, inviteCode string) error
}

// NewService builds a Service.
func NewService(d Deps) *Service {
	return &Service{db: d.DB, pii: d.PII, sessions: d.Sessions, wechat: d.WeChat, sms: d.SMS,
		otp: d.OTP, otpKey: d.OTPKey, codes: d.Codes, ledger: d.Ledger, referrals: d.Referrals, forget: d.Forget, log: d.Log, now: d.Now}
}

// Login is a signed-in member.
type Login struct {
	auth.Tokens
	Member      *ent.Member
	IsNewMember bool
}

// LoginWithWeChat signs in (registering on first use) the member behind a
// mini-program login code. The unionid, when WeChat gives one, identifies
// the person across the group's mini-programs; the openid is per app.
func (s *Service) LoginWithWeChat(ctx context.Context, appID, code string) (Login, error) {
	var errs []error
	if appID == "" {
		errs = append(errs, fault.Invalidf("appId", "is required"))
	}
	if code == "" {
		errs = append(errs, fault.Invalidf("code", "is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return Login{}, err
	}
	ws, err := s.wechat.Code2Session(ctx, appID, code)
	if err != nil {
		return Login{}, err
	}
	ids := []newIdentity{}
	if ws.UnionID != "" {
		ids = append(ids, newIdentity{kind: identity.KindWECHAT_UNIONID, value: ws.UnionID})
	}
	ids = append(ids, newIdentity{kind: identity.KindWECHAT_OPENID, appID: appID, value: ws.OpenID})
	return s.login(ctx, ids, registration{channel: enum.ChannelMiniProgram})
}

// LoginWithPhone signs in (registering on first use) the member holding a
// phone, after checking the SMS code.
// inviteCode, when this sign-in registers the member, links the referrer.
func (s *Service) LoginWithPhone(ctx context.Context, rawPhone, code string, channel enum.Channel, inviteCode string) (Login, error) {
	phone, err := normalizePhone(rawPhone)
	if err != nil {
		return Login{}, err
	}
	if err := s.VerifyOTP(ctx, phone, PurposeLogin, code); err != nil {
		return Login{}, err
	}
	if channel == "" {
		channel = enum.ChannelMiniProgram
	}
	return s.login(ctx, []newIdentity{{kind: identity.KindPHONE, value: phone}}, registration{channel: channel, phone: phone, inviteCode: inviteCode})
}

type newIdentity struct {
	kind  identity.Kind
	appID string
	value string
}

type registration struct {
	channel    enum.Channel
	phone      string
	inviteCode string
}

// login finds the member holding the first of ids that is bound, binding
// the others to it, or registers a new member with all of them. Two first
// sign-ins racing with one identity meet at the partial unique index; the
// loser retries and signs in to the winner's member.
func (s *Service) login(ctx context.Context, ids []newIdentity, reg registration) (Login, error) {
	for attempt := 0; ; attempt++ {
		out, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (Login, error) {
			m, err := s.findMember(ctx, tx, ids)
			if err != nil {
				return Login{}, err
			}
			isNew := m == nil
			if isNew {
				if m, err = s.register(ctx, tx, reg); err != nil {
					return Login{}, err
				}
				if err := s.linkReferral(ctx, tx, m.ID, reg.inviteCode); err != nil {
					return Login{}, err
				}
			}
			// A new member binds every identity unconditionally: if another
			// first sign-in bound one meanwhile, the unique index fails this
			// transaction and the retry signs in to that member instead.
			bind := s.bindMissing
			if isNew {
				bind = s.bindAll
			}
			if err := bind(ctx, tx, m.ID, ids); err != nil {
				return Login{}, err
			}
			t, err := s.sessions.Start(ctx, tx, token.KindMember, m.ID)
			if err != nil {
				return Login{}, err
			}
			return Login{Tokens: t, Member: m, IsNewMember: isNew}, nil
		})
		if database.IsUniqueViolation(err) && attempt < 2 {
			continue
		}
		out.Member = database.Detach(out.Member)
		return out, err
	}
}

func (s *Service) lookup(id newIdentity) []byte {
	return LookupKey(s.pii, id.kind, id.appID, id.value)
}

// LookupKey is the blind index an identity is found by. A phone's equals
// the member's phone_index.
func LookupKey(p *pii.Protector, kind identity.Kind, appID, value string) []byte {
	if appID == "" {
		return p.BlindIndex(string(kind), value)
	}
	return p.BlindIndex(string(kind), appID+"\x00"+value)
}

// findMember returns the member holding the first bound identity of ids.
func (s *Service) findMember(ctx context.Context, tx *ent.Tx, ids []newIdentity) (*ent.Member, error) {
	for _, id := range ids {
		found, err := tx.Identity.Query().
			Where(identity.KindEQ(id.kind), identity.AppID(id.appID), identity.Lookup(s.lookup(id)), identity.UnboundAtIsNil()).
			QueryMember().Only(ctx)
		if ent.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("finding member by %s: %w", id.kind, err)
		}
		return found, nil
	}
	return nil, nil
}

// bindMissing binds to member every identity of ids not bound yet, e.g. a
// second mini-program's openid of a person known by unionid.
func (s *Service) bindMissing(ctx context.Context, tx *ent.Tx, memberID int, ids []newIdentity) error {
	for _, id := range ids {
		exists, err := tx.Identity.Query().
			Where(identity.KindEQ(id.kind), identity.AppID(id.appID), identity.Lookup(s.lookup(id)), identity.UnboundAtIsNil()).
			Exist(ctx)
		if err != nil {
			return fmt.Errorf("checking identity: %w", err)
		}
		if exists {
			continue
		}
		if err := s.bind(ctx, tx, memberID, id); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) bindAll(ctx context.Context, tx *ent.Tx, memberID int, ids []newIdentity) error {
	for _, id := range ids {
		if err := s.bind(ctx, tx, memberID, id); err != nil {
			return err
		}
	}
	return nil
}

func (s *Service) bind(ctx context.Context, tx *ent.Tx, memberID int, id newIdentity) error {
	enc, err := s.pii.Encrypt(id.value, "identity.value")
	if err != nil {
		return err
	}
	masked := pii.MaskIdentifier(id.value)
	if id.kind == identity.KindPHONE {
		masked = pii.MaskPhone(id.value)
	}
	err = tx.Identity.Create().
		SetKind(id.kind).SetAppID(id.appID).SetLookup(s.lookup(id)).SetValueEnc(enc).
		SetMaskedValue(masked).SetMemberID(memberID).SetBoundAt(s.now()).
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("binding %s: %w", id.kind, err)
	}
	return nil
}

// register creates a member: the id is drawn first so that the member
// number, derived from it, is set in the same insert.
func (s *Service) register(ctx context.Context, tx *ent.Tx, reg registration) (*ent.Member, error) {
	id, err := nextMemberID(ctx, tx)
	if err != nil {
		return nil, err
	}
	create := tx.Member.Create().SetID(id).SetMemberNo(MemberNumber(id)).
		SetSourceChannel(reg.channel).SetRegisteredAt(s.now())
	if reg.phone != "" {
		enc, err := s.pii.Encrypt(reg.phone, "member.phone")
		if err != nil {
			return nil, err
		}
		create.SetPhoneEnc(enc).SetPhoneIndex(s.pii.BlindIndex(identityPhone, reg.phone))
	}
	entry, err := tx.Tier.Query().Order(ent.Asc(tier.FieldRank)).First(ctx)
	switch {
	case err == nil:
		create.SetTierID(entry.ID)
	case !ent.IsNotFound(err):
		return nil, fmt.Errorf("loading entry tier: %w", err)
	}
	m, err := create.Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("registering member: %w", err)
	}
	err = behavior.Record(ctx, tx, behavior.Event{MemberID: m.ID, Kind: enum.BehaviorRegister,
		OccurredAt: m.RegisteredAt, Channel: reg.channel, Key: fmt.Sprintf("REGISTER:%d", m.ID)})
	if err != nil {
		return nil, err
	}
	return m, nil
}

// nextMemberID draws the next member id from the table's identity
// sequence.
func nextMemberID(ctx context.Context, tx *ent.Tx) (int, error) {
	rows, err := tx.QueryContext(ctx, "SELECT nextval(pg_get_serial_sequence('members', 'id'))")
	if err != nil {
		return 0, fmt.Errorf("drawing member id: %w", err)
	}
	defer rows.Close()
	var id int
	if !rows.Next() {
		return 0, fmt.Errorf("drawing member id: no row")
	}
	if err := rows.Scan(&id); err != nil {
		return 0, fmt.Errorf("drawing member id: %w", err)
	}
	return id, rows.Err()
}

// MemberNumber derives the member number (会员号) from a member id: the
// id's ordinal within the members' id range, offset to eight digits, plus a
// Luhn check digit that catches a mistyped digit at a till. Ids are never
// reused, so neither are numbers.
func MemberNumber(id int) string {
	body := strconv.Itoa(10_000_000 + id&0xFFFFFFFF)
	return body + strconv.Itoa(luhn(body))
}

func luhn(digits string) int {
	sum := 0
	double := true
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			if d *= 2; d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return (10 - sum%10) % 10
}

func normalizePhone(raw string) (string, error) {
	p, err := pii.NormalizePhone(raw)
	if err != nil {
		return "", fault.Invalidf("phone", "is not a mainland China mobile number")
	}
	return p, nil
}

// Phone returns the member's phone as the viewer of ctx may see it: in
// clear for the member and most staff, masked for analysts.
func (s *Service) Phone(ctx context.Context, m *ent.Member) (*string, error) {
	return s.personal(ctx, m.PhoneEnc, "member.phone", pii.MaskPhone)
}

// Name returns the member's real name as the viewer of ctx may see it.
func (s *Service) Name(ctx context.Context, m *ent.Member) (*string, error) {
	return s.personal(ctx, m.NameEnc, "member.name", pii.MaskName)
}

// Birthday returns the member's birthday, or nil; analysts get nil.
func (s *Service) Birthday(ctx context.Context, m *ent.Member) (*calendar.Date, error) {
	if len(m.BirthdayEnc) == 0 || !auth.ViewerFrom(ctx).SeesPersonalData() {
		return nil, nil
	}
	v, err := s.pii.Decrypt(m.BirthdayEnc, "member.birthday")
	if err != nil {
		return nil, fmt.Errorf("decrypting birthday of member %d: %w", m.ID, err)
	}
	d, err := calendar.Parse(v)
	if err != nil {
		return nil, fmt.Errorf("stored birthday of member %d: %w", m.ID, err)
	}
	return &d, nil
}

func (s *Service) personal(ctx context.Context, ct []byte, aad string, mask func(string) string) (*string, error) {
	if len(ct) == 0 {
		return nil, nil
	}
	v, err := s.pii.Decrypt(ct, aad)
	if err != nil {
		return nil, fmt.Errorf("decrypting %s: %w", aad, err)
	}
	if !auth.ViewerFrom(ctx).SeesPersonalData() {
		v = mask(v)
	}
	return &v, nil
}

// Identities lists the live identities of a member.
func (s *Service) Identities(ctx context.Context, m *ent.Member) ([]*ent.Identity, error) {
	return m.QueryIdentities().Where(identity.UnboundAtIsNil()).
		Order(ent.Asc(identity.FieldBoundAt)).All(ctx)
}

// forgetCached drops members from the authentication cache after a change
// of status (merge, freeze, erasure).
func (s *Service) forgetCached(ids ...int) {
	if s.forget != nil {
		s.forget(ids...)
	}
}

// linkReferral links a new member to its referrer. A bad invite code never
// fails a registration: it is logged and ignored.
func (s *Service) linkReferral(ctx context.Context, tx *ent.Tx, memberID int, code string) error {
	if code == "" || s.referrals == nil {
		return nil
	}
	err := s.referrals.LinkReferral(ctx, tx, memberID, code)
	if err != nil && fault.CodeOf(err) != fault.Internal {
		s.log.InfoContext(ctx, "invite code ignored", "member", memberID, "reason", err)
		return nil
	}
	return err
}
