// Package auth owns who is calling and what they may do: the Viewer carried
// in the request context, authentication of bearer credentials (member and
// staff JWTs, API client secrets), sign-in sessions with rotating refresh
// tokens, staff and API client accounts, and the one authorization rule
// that the GraphQL @auth directive applies.
package auth

import (
	"context"
	"slices"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/audit"
	"github.com/onemember/onemember/internal/auth/token"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Errors of authentication and authorization.
var (
	ErrNoCredentials   = fault.New(fault.Unauthenticated, "sign in required")
	ErrBadCredentials  = fault.New(fault.Unauthenticated, "invalid credentials")
	ErrTokenExpired    = fault.New(fault.Unauthenticated, "access token expired")
	ErrForbidden       = fault.New(fault.Forbidden, "not allowed for this caller")
	ErrSessionRevoked  = fault.New(fault.Unauthenticated, "session revoked")
	ErrRefreshReuse    = fault.New(fault.Unauthenticated, "refresh token already used: session revoked")
	ErrAccountDisabled = fault.New(fault.Unauthenticated, "account disabled")
)

// Viewer is the authenticated caller of one request (or websocket).
type Viewer struct {
	Kind      token.Kind // empty when anonymous
	SessionID string
	Member    *ent.Member
	Staff     *ent.Staff
	Client    *ent.ApiClient
	// StaffBusinessUnits are the BUs a staff account is scoped to; empty
	// means the whole group. ClientStores likewise for an API client.
	StaffBusinessUnits []int
	ClientStores       []int
	// Err is why presented credentials were rejected; the request then
	// runs as anonymous and every protected field reports Err.
	Err error
	// Cached says Member came from the authentication cache: good for
	// deciding who is calling, possibly a second behind for the rest (the
	// `me` field re-reads it, with the member's card when the operation
	// reads that: the card's statement checks Version).
	Cached bool
	// Version is the row version (xmin) Member was read with; 0 for none.
	Version int64
	// ExpiresAt is when the access token stops being valid (zero for API
	// client secrets): a websocket authenticated with it closes then.
	ExpiresAt time.Time
}

type viewerKey struct{}

// WithViewer stores v in ctx.
func WithViewer(ctx context.Context, v Viewer) context.Context {
	return context.WithValue(ctx, viewerKey{}, v)
}

// ViewerFrom returns the viewer of ctx (anonymous when none).
func ViewerFrom(ctx context.Context) Viewer {
	v, _ := ctx.Value(viewerKey{}).(Viewer)
	return v
}

// IsMember reports whether the caller is a member.
func (v Viewer) IsMember() bool { return v.Kind == token.KindMember && v.Member != nil }

// IsStaff reports whether the caller is a staff account.
func (v Viewer) IsStaff() bool { return v.Kind == token.KindStaff && v.Staff != nil }

// IsClient reports whether the caller is an API client.
func (v Viewer) IsClient() bool { return v.Kind == token.KindAPIClient && v.Client != nil }

// HasRole reports whether a staff caller holds one of roles.
func (v Viewer) HasRole(roles ...enum.StaffRole) bool {
	if !v.IsStaff() {
		return false
	}
	for _, r := range v.Staff.Roles {
		if slices.Contains(roles, r) {
			return true
		}
	}
	return false
}

// HasScope reports whether an API client caller was granted scope.
func (v Viewer) HasScope(scope enum.APIScope) bool {
	return v.IsClient() && slices.Contains(v.Client.Scopes, scope)
}

// SeesPersonalData reports whether personal data (phone, name, birthday)
// is shown in clear. Members see their own; staff other than analysts see
// it; ANALYST-only accounts see it masked.
func (v Viewer) SeesPersonalData() bool {
	switch {
	case v.IsMember(), v.IsClient():
		return true
	case v.IsStaff():
		return v.HasRole(enum.RoleAdmin, enum.RoleOperator, enum.RoleStoreClerk)
	}
	return false
}

// CanUseStore reports whether the caller may act for a store: an API client
// restricted to stores, or staff scoped to business units.
func (v Viewer) CanUseStore(store *ent.Store) bool {
	switch {
	case v.IsClient():
		return len(v.ClientStores) == 0 || slices.Contains(v.ClientStores, store.ID)
	case v.IsStaff():
		return v.CanUseBusinessUnit(store.BusinessUnitID)
	}
	return false
}

// CanUseBusinessUnit reports whether a staff caller's scope covers bu.
func (v Viewer) CanUseBusinessUnit(bu int) bool {
	return v.IsStaff() && (len(v.StaffBusinessUnits) == 0 || slices.Contains(v.StaffBusinessUnits, bu))
}

// Rule is what a field demands of its caller (the @auth directive).
type Rule struct {
	Member bool
	// Staff is nil when staff are not allowed; empty allows any staff.
	Staff []enum.StaffRole
	Scope *enum.APIScope
}

// Authorize checks rule against the viewer of ctx.
func Authorize(ctx context.Context, rule Rule) error {
	v := ViewerFrom(ctx)
	switch {
	case v.Err != nil:
		return v.Err
	case v.Kind == "":
		return ErrNoCredentials
	case rule.Member && v.IsMember():
		return nil
	case rule.Staff != nil && v.IsStaff() &&
		(len(rule.Staff) == 0 || v.HasRole(enum.RoleAdmin) || v.HasRole(rule.Staff...)):
		return nil
	case rule.Scope != nil && v.HasScope(*rule.Scope):
		return nil
	}
	return ErrForbidden
}

// Actor names the viewer in the audit trail.
func (v Viewer) Actor() audit.Actor {
	switch {
	case v.IsMember():
		return audit.Actor{Kind: "member", ID: v.Member.ID}
	case v.IsStaff():
		return audit.Actor{Kind: "staff", ID: v.Staff.ID}
	case v.IsClient():
		return audit.Actor{Kind: "api_client", ID: v.Client.ID}
	}
	return audit.System
}
