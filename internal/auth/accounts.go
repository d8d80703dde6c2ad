package auth

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/businessunit"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/ent/staff"
	"github.com/onemember/onemember/ent/store"
	"github.com/onemember/onemember/internal/audit"
	"github.com/onemember/onemember/internal/auth/password"
	"github.com/onemember/onemember/internal/auth/token"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

// MinPasswordLength is the shortest staff password accepted.
const MinPasswordLength = 10

// Account errors.
var (
	ErrEmailTaken = fault.New(fault.Conflict, "a staff account with this e-mail exists")
	ErrBadLogin   = fault.New(fault.Unauthenticated, "wrong e-mail or password")
)

// Accounts manages staff and API client credentials.
type Accounts struct {
	db       *ent.Client
	sessions *Sessions
	hasher   password.Params
	// dummyHash is verified against when an e-mail is unknown, so that the
	// response time does not tell which e-mails have accounts.
	dummyHash string
	now       func() time.Time
}

// NewAccounts builds Accounts. hasher sets the argon2id cost (tests use a
// cheap one).
func NewAccounts(db *ent.Client, sessions *Sessions, hasher password.Params, now func() time.Time) (*Accounts, error) {
	dummy, err := hasher.Hash("not a real password")
	if err != nil {
		return nil, fmt.Errorf("preparing password hasher: %w", err)
	}
	return &Accounts{db: db, sessions: sessions, hasher: hasher, dummyHash: dummy, now: now}, nil
}

// StaffLogin is a signed-in staff account.
type StaffLogin struct {
	Tokens
	Staff *ent.Staff
}

// AdminLogin checks a staff e-mail and password and opens a session.
func (a *Accounts) AdminLogin(ctx context.Context, email, pw string) (StaffLogin, error) {
	s, err := a.db.Staff.Query().Where(staff.Email(normalizeEmail(email))).Only(ctx)
	if err != nil && !ent.IsNotFound(err) {
		return StaffLogin{}, fmt.Errorf("loading staff: %w", err)
	}
	hash := a.dummyHash
	if s != nil {
		hash = s.PasswordHash
	}
	ok, err := password.Verify(pw, hash)
	if err != nil {
		return StaffLogin{}, fmt.Errorf("verifying password: %w", err)
	}
	if s == nil || !ok || !s.Active {
		return StaffLogin{}, ErrBadLogin
	}
	if err := a.db.Staff.UpdateOne(s).SetLastLoginAt(a.now()).Exec(ctx); err != nil {
		return StaffLogin{}, fmt.Errorf("recording login: %w", err)
	}
	t, err := a.sessions.Start(ctx, nil, token.KindStaff, s.ID)
	if err != nil {
		return StaffLogin{}, err
	}
	return StaffLogin{Tokens: t, Staff: s}, nil
}

// CreateStaffInput describes a new staff account.
type CreateStaffInput struct {
	Email             string
	DisplayName       string
	Password          string
	Roles             []enum.StaffRole
	BusinessUnitCodes []string
}

// Validate reports every problem at once.
func (in CreateStaffInput) Validate() error {
	var errs []error
	if _, err := mail.ParseAddress(in.Email); err != nil || !strings.Contains(in.Email, "@") {
		errs = append(errs, fault.Invalidf("email", "is not an e-mail address"))
	}
	if strings.TrimSpace(in.DisplayName) == "" {
		errs = append(errs, fault.Invalidf("displayName", "is required"))
	}
	if len([]rune(in.Password)) < MinPasswordLength {
		errs = append(errs, fault.Invalidf("password", "must have at least %d characters", MinPasswordLength))
	}
	if len(in.Roles) == 0 {
		errs = append(errs, fault.Invalidf("roles", "at least one role is required"))
	}
	return errors.Join(errs...)
}

// CreateStaff creates a staff account; the creator is audited.
func (a *Accounts) CreateStaff(ctx context.Context, in CreateStaffInput) (*ent.Staff, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	hash, err := a.hasher.Hash(in.Password)
	if err != nil {
		return nil, fmt.Errorf("hashing password: %w", err)
	}
	s, err := database.WithTx(ctx, a.db, func(tx *ent.Tx) (*ent.Staff, error) {
		bus, err := businessUnitsByCode(ctx, tx.Client(), in.BusinessUnitCodes)
		if err != nil {
			return nil, err
		}
		roles := slices.Compact(slices.Sorted(slices.Values(in.Roles)))
		s, err := tx.Staff.Create().
			SetEmail(normalizeEmail(in.Email)).SetDisplayName(strings.TrimSpace(in.DisplayName)).
			SetPasswordHash(hash).SetRoles(roles).AddBusinessUnitIDs(bus...).
			Save(ctx)
		if database.IsUniqueViolation(err) {
			return nil, ErrEmailTaken
		}
		if err != nil {
			return nil, fmt.Errorf("creating staff: %w", err)
		}
		return s, audit.Record(ctx, tx.Client(), audit.Entry{
			Actor: ViewerFrom(ctx).Actor(), Action: "staff.create", SubjectType: "Staff", SubjectID: s.ID,
			Detail: map[string]any{"email": s.Email, "roles": roles, "businessUnits": in.BusinessUnitCodes},
		})
	})
	return database.Detach(s), err
}

// CreateAPIClientInput describes a new integration.
type CreateAPIClientInput struct {
	Name       string
	Scopes     []enum.APIScope
	StoreCodes []string
}

// Validate reports every problem at once.
func (in CreateAPIClientInput) Validate() error {
	var errs []error
	if strings.TrimSpace(in.Name) == "" {
		errs = append(errs, fault.Invalidf("name", "is required"))
	}
	if len(in.Scopes) == 0 {
		errs = append(errs, fault.Invalidf("scopes", "at least one scope is required"))
	}
	return errors.Join(errs...)
}

// CreateAPIClient creates an integration and returns its secret, which is
// never stored and cannot be shown again.
func (a *Accounts) CreateAPIClient(ctx context.Context, in CreateAPIClientInput) (*ent.ApiClient, string, error) {
	if err := in.Validate(); err != nil {
		return nil, "", err
	}
	secret, hash, err := token.NewOpaque(APIClientSecretPrefix)
	if err != nil {
		return nil, "", err
	}
	creator := ViewerFrom(ctx).Actor()
	c, err := database.WithTx(ctx, a.db, func(tx *ent.Tx) (*ent.ApiClient, error) {
		stores, err := storesByCode(ctx, tx.Client(), in.StoreCodes)
		if err != nil {
			return nil, err
		}
		create := tx.ApiClient.Create().
			SetName(strings.TrimSpace(in.Name)).SetSecretHash(hash).
			SetScopes(slices.Compact(slices.Sorted(slices.Values(in.Scopes)))).
			AddStoreIDs(stores...)
		if creator.Kind == "staff" {
			create.SetCreatedByID(creator.ID)
		}
		c, err := create.Save(ctx)
		if err != nil {
			return nil, fmt.Errorf("creating api client: %w", err)
		}
		return c, audit.Record(ctx, tx.Client(), audit.Entry{
			Actor: creator, Action: "api_client.create", SubjectType: "ApiClient", SubjectID: c.ID,
			Detail: map[string]any{"name": c.Name, "scopes": c.Scopes, "stores": in.StoreCodes},
		})
	})
	if err != nil {
		return nil, "", err
	}
	return database.Detach(c), secret, nil
}

func normalizeEmail(e string) string { return strings.ToLower(strings.TrimSpace(e)) }

// businessUnitsByCode resolves codes to ids, naming unknown codes.
func businessUnitsByCode(ctx context.Context, db *ent.Client, codes []string) ([]int, error) {
	if len(codes) == 0 {
		return nil, nil
	}
	found, err := db.BusinessUnit.Query().Where(businessunit.CodeIn(codes...)).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading business units: %w", err)
	}
	ids := make([]int, 0, len(found))
	known := map[string]bool{}
	for _, b := range found {
		ids = append(ids, b.ID)
		known[b.Code] = true
	}
	for _, c := range codes {
		if !known[c] {
			return nil, fault.Invalidf("businessUnitCodes", "unknown business unit %q", c)
		}
	}
	return ids, nil
}

// storesByCode resolves store codes to ids, naming unknown codes.
func storesByCode(ctx context.Context, db *ent.Client, codes []string) ([]int, error) {
	if len(codes) == 0 {
		return nil, nil
	}
	found, err := db.Store.Query().Where(store.CodeIn(codes...)).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("loading stores: %w", err)
	}
	ids := make([]int, 0, len(found))
	known := map[string]bool{}
	for _, s := range found {
		ids = append(ids, s.ID)
		known[s.Code] = true
	}
	for _, c := range codes {
		if !known[c] {
			return nil, fault.Invalidf("storeCodes", "unknown store %q", c)
		}
	}
	return ids, nil
}
