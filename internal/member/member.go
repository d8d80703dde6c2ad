// Package member owns what a member manages about themselves and what staff
// look up: profile (growth for completing it, once; a birthday set once),
// consents, daily check-in, the notification inbox, and member search.
package member

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"entgo.io/contrib/entgql"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/consent"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/ent/notification"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/ent/tier"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/identity"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/pii"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Growth awarded by the rules of DOMAIN.md.
const (
	ProfileGrowth = 10
	CheckInGrowth = 5
)

// Errors.
var (
	ErrBirthdaySet = fault.Invalidf("birthday", "is already set and cannot change")
)

// Ledger is what this package needs of the ledgers.
type Ledger interface {
	EarnGrowth(ctx context.Context, tx *ent.Tx, acct *ent.Account, e ledger.Entry) (*ent.GrowthEntry, error)
	SetPayPassword(ctx context.Context, memberID int, pw string) error
}

// Tiers re-evaluates a tier after growth changed.
type Tiers interface {
	Reevaluate(ctx context.Context, tx *ent.Tx, acct *ent.Account, reason string) (*ent.TierChange, error)
}

// OTP verifies codes sent to a member's own phone.
type OTP interface {
	VerifyMemberOTP(ctx context.Context, m *ent.Member, purpose identity.Purpose, code string) error
}

// SetPayPassword sets the member's stored-value pay password after the SMS
// code sent to their phone (purpose PAY_PASSWORD). The password is checked
// first, so a malformed one does not use up the code.
func (s *Service) SetPayPassword(ctx context.Context, m *ent.Member, code, pw string) error {
	if err := ledger.ValidatePayPassword(pw); err != nil {
		return err
	}
	if err := s.otp.VerifyMemberOTP(ctx, m, identity.PurposePayPassword, code); err != nil {
		return err
	}
	return s.ledger.SetPayPassword(ctx, m.ID, pw)
}

// Service serves members' own data.
type Service struct {
	db     *ent.Client
	pii    *pii.Protector
	ledger Ledger
	tiers  Tiers
	otp    OTP
	forget func(memberIDs ...int)
	zone   *time.Location
	now    func() time.Time
}

// New builds a Service. forget drops a member from the authentication
// cache after a profile change, so that the next request sees it.
func New(db *ent.Client, p *pii.Protector, l Ledger, t Tiers, otp OTP, forget func(memberIDs ...int), zone *time.Location, now func() time.Time) *Service {
	return &Service{db: db, pii: p, ledger: l, tiers: t, otp: otp, forget: forget, zone: zone, now: now}
}

// ProfileInput changes the member's profile; nil fields stay as they are.
type ProfileInput struct {
	DisplayName *string
	Gender      *enum.Gender
	Birthday    *calendar.Date
	RegionCode  *string
	AvatarURL   *string
}

var regionCode = regexp.MustCompile(`^[1-8]\d{5}$`)

// Validate reports every problem at once.
func (in ProfileInput) Validate(today calendar.Date) error {
	var errs []error
	if in.DisplayName != nil && (strings.TrimSpace(*in.DisplayName) == "" || len([]rune(*in.DisplayName)) > 32) {
		errs = append(errs, fault.Invalidf("displayName", "must have 1 to 32 characters"))
	}
	if in.Gender != nil && !enum.Valid(*in.Gender) {
		errs = append(errs, fault.Invalidf("gender", "is not a gender"))
	}
	if in.Birthday != nil && (!in.Birthday.Before(today) || in.Birthday.Year < 1900) {
		errs = append(errs, fault.Invalidf("birthday", "must be a past date after 1900"))
	}
	if in.RegionCode != nil && !regionCode.MatchString(*in.RegionCode) {
		errs = append(errs, fault.Invalidf("regionCode", "must be a 6-digit GB/T 2260 code"))
	}
	if in.AvatarURL != nil && *in.AvatarURL != "" {
		if u, err := url.Parse(*in.AvatarURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || len(*in.AvatarURL) > 512 {
			errs = append(errs, fault.Invalidf("avatarUrl", "must be an http(s) URL"))
		}
	}
	return errors.Join(errs...)
}

// Completeness is the share of the profile filled in (0..100): display
// name, avatar, gender, birthday, region and a bound phone count equally.
func Completeness(m *ent.Member) int {
	filled := 0
	for _, ok := range []bool{m.DisplayName != "", m.AvatarURL != "", m.Gender != enum.GenderUnknown,
		len(m.BirthdayEnc) > 0, m.RegionCode != "", len(m.PhoneEnc) > 0} {
		if ok {
			filled++
		}
	}
	return filled * 100 / 6
}

// UpdateProfile applies in. Completing the profile awards growth once;
// the birthday can be set once only (it drives birthday benefits).
func (s *Service) UpdateProfile(ctx context.Context, memberID int, in ProfileInput) (*ent.Member, int64, error) {
	if err := in.Validate(calendar.In(s.now(), s.zone)); err != nil {
		return nil, 0, err
	}
	type out struct {
		m       *ent.Member
		awarded int64
	}
	r, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (out, error) {
		acct, err := account.Lock(ctx, tx, memberID)
		if err != nil {
			return out{}, err
		}
		m, err := tx.Member.Get(ctx, memberID)
		if err != nil {
			return out{}, err
		}
		up := tx.Member.UpdateOne(m)
		if in.DisplayName != nil {
			up.SetDisplayName(strings.TrimSpace(*in.DisplayName))
		}
		if in.Gender != nil {
			up.SetGender(*in.Gender)
		}
		if in.RegionCode != nil {
			up.SetRegionCode(*in.RegionCode)
		}
		if in.AvatarURL != nil {
			up.SetAvatarURL(*in.AvatarURL)
		}
		if in.Birthday != nil {
			if len(m.BirthdayEnc) > 0 {
				return out{}, ErrBirthdaySet
			}
			enc, err := s.pii.Encrypt(in.Birthday.String(), "member.birthday")
			if err != nil {
				return out{}, err
			}
			up.SetBirthdayEnc(enc).SetBirthYear(in.Birthday.Year).SetBirthMonth(int(in.Birthday.Month))
		}
		if m, err = up.Save(ctx); err != nil {
			return out{}, fmt.Errorf("updating profile: %w", err)
		}
		var awarded int64
		if Completeness(m) == 100 && !acct.ProfileGrowthAwarded {
			key := fmt.Sprintf("profile:%d", m.ID)
			if _, err := s.ledger.EarnGrowth(ctx, tx, acct, ledger.Entry{
				Amount: ProfileGrowth, Source: "PROFILE", Reason: "完善资料", Key: &key, At: s.now(),
			}); err != nil {
				return out{}, err
			}
			if err := tx.Account.UpdateOneID(acct.ID).SetProfileGrowthAwarded(true).Exec(ctx); err != nil {
				return out{}, err
			}
			if _, err := s.tiers.Reevaluate(ctx, tx, acct, "完善资料"); err != nil {
				return out{}, err
			}
			awarded = ProfileGrowth
		}
		return out{m, awarded}, nil
	})
	s.forget(memberID)
	return database.Detach(r.m), r.awarded, err
}

// CheckIn is the result of a daily check-in.
type CheckIn struct {
	Already       bool
	Streak        int
	GrowthAwarded int64
}

// CheckIn records today's check-in (business time zone) once; consecutive
// days make a streak.
func (s *Service) CheckIn(ctx context.Context, memberID int) (CheckIn, error) {
	today := calendar.In(s.now(), s.zone)
	return database.WithTx(ctx, s.db, func(tx *ent.Tx) (CheckIn, error) {
		acct, err := account.Lock(ctx, tx, memberID)
		if err != nil {
			return CheckIn{}, err
		}
		if acct.LastCheckinDate == today.String() {
			return CheckIn{Already: true, Streak: acct.CheckinStreak}, nil
		}
		streak := 1
		if acct.LastCheckinDate == today.AddDays(-1).String() {
			streak = acct.CheckinStreak + 1
		}
		if err := tx.Account.UpdateOneID(acct.ID).SetLastCheckinDate(today.String()).SetCheckinStreak(streak).Exec(ctx); err != nil {
			return CheckIn{}, err
		}
		key := fmt.Sprintf("checkin:%d:%s", memberID, today)
		if _, err := s.ledger.EarnGrowth(ctx, tx, acct, ledger.Entry{
			Amount: CheckInGrowth, Source: "CHECK_IN", Reason: "每日签到", Key: &key, At: s.now(),
		}); err != nil {
			return CheckIn{}, err
		}
		if _, err := s.tiers.Reevaluate(ctx, tx, acct, "每日签到"); err != nil {
			return CheckIn{}, err
		}
		return CheckIn{Streak: streak, GrowthAwarded: CheckInGrowth}, nil
	})
}

// ConsentState is a member's answer for one kind (updatedAt nil: never asked).
type ConsentState struct {
	Kind      enum.ConsentKind
	Granted   bool
	UpdatedAt *time.Time
}

// Consents lists every consent kind with the member's current answer.
func (s *Service) Consents(ctx context.Context, memberID int) ([]ConsentState, error) {
	rows, err := s.db.Consent.Query().Where(consent.MemberID(memberID)).All(ctx)
	if err != nil {
		return nil, err
	}
	byKind := map[enum.ConsentKind]*ent.Consent{}
	for _, r := range rows {
		byKind[r.Kind] = r
	}
	var out []ConsentState
	for _, k := range enum.ConsentKind("").Values() {
		st := ConsentState{Kind: enum.ConsentKind(k)}
		if r, ok := byKind[st.Kind]; ok {
			st.Granted, st.UpdatedAt = r.Granted, &r.UpdatedAt
		}
		out = append(out, st)
	}
	return out, nil
}

// SetConsent records an answer with its time.
func (s *Service) SetConsent(ctx context.Context, memberID int, kind enum.ConsentKind, granted bool) (ConsentState, error) {
	if !enum.Valid(kind) {
		return ConsentState{}, fault.Invalidf("kind", "is not a consent kind")
	}
	now := s.now()
	err := s.db.Consent.Create().SetMemberID(memberID).SetKind(kind).SetGranted(granted).SetUpdatedAt(now).
		OnConflictColumns(consent.FieldMemberID, consent.FieldKind).UpdateGranted().UpdateUpdatedAt().
		Exec(ctx)
	if err != nil {
		return ConsentState{}, fmt.Errorf("recording consent: %w", err)
	}
	return ConsentState{Kind: kind, Granted: granted, UpdatedAt: &now}, nil
}

// Notifications pages through the member's inbox, newest first.
func (s *Service) Notifications(ctx context.Context, memberID int, first *int, after *entgql.Cursor[int], unreadOnly bool) (*ent.NotificationConnection, error) {
	q := s.db.Notification.Query().Where(notification.MemberID(memberID))
	if unreadOnly {
		q.Where(notification.ReadAtIsNil())
	}
	return q.Paginate(ctx, after, first, nil, nil, ent.WithNotificationOrder(&ent.NotificationOrder{
		Direction: entgql.OrderDirectionDesc, Field: ent.NotificationOrderFieldCreatedAt,
	}))
}

// MarkRead marks the member's own notifications read; others' ids are
// ignored.
func (s *Service) MarkRead(ctx context.Context, memberID int, ids []int) (int, error) {
	return s.db.Notification.Update().
		Where(notification.MemberID(memberID), notification.IDIn(ids...), notification.ReadAtIsNil()).
		SetReadAt(s.now()).Save(ctx)
}

// SearchInput filters the staff member search.
type SearchInput struct {
	Phone, MemberNo, NameContains *string
	TierCodes                     []string
	TagIDs                        []int
	RegisteredFrom, RegisteredTo  *calendar.Date
	BusinessUnitID                *int
}

// Search pages through members matching in.
func (s *Service) Search(ctx context.Context, in SearchInput, first, last *int, after, before *entgql.Cursor[int], order *ent.MemberOrder) (*ent.MemberConnection, error) {
	q := s.db.Member.Query().Where(member.StatusNEQ(member.StatusMERGED))
	if in.Phone != nil {
		p, err := pii.NormalizePhone(*in.Phone)
		if err != nil {
			return nil, fault.Invalidf("where.phone", "is not a mainland China mobile number")
		}
		q.Where(member.PhoneIndex(s.pii.BlindIndex("PHONE", p)))
	}
	if in.MemberNo != nil {
		q.Where(member.MemberNo(*in.MemberNo))
	}
	if in.NameContains != nil && *in.NameContains != "" {
		q.Where(member.DisplayNameContainsFold(*in.NameContains))
	}
	if len(in.TierCodes) > 0 {
		q.Where(member.HasTierWith(tier.CodeIn(in.TierCodes...)))
	}
	if len(in.TagIDs) > 0 {
		return nil, fault.Invalidf("where.tagIds", "tag filters arrive with the data centre")
	}
	if in.RegisteredFrom != nil {
		q.Where(member.RegisteredAtGTE(in.RegisteredFrom.Start(s.zone)))
	}
	if in.RegisteredTo != nil {
		q.Where(member.RegisteredAtLT(in.RegisteredTo.AddDays(1).Start(s.zone)))
	}
	if in.BusinessUnitID != nil {
		q.Where(member.SourceBusinessUnitID(*in.BusinessUnitID))
	}
	if order == nil {
		order = &ent.MemberOrder{Direction: entgql.OrderDirectionDesc, Field: ent.MemberOrderFieldRegisteredAt}
	}
	return q.Paginate(ctx, after, first, before, last, ent.WithMemberOrder(order))
}
