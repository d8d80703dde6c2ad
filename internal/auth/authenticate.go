package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"entgo.io/ent/dialect/sql"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/apiclient"
	"github.com/onemember/onemember/ent/businessunit"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/ent/store"
	"github.com/onemember/onemember/internal/auth/token"
)

// APIClientSecretPrefix marks API client secrets, which are opaque rather
// than JWTs.
const APIClientSecretPrefix = "oms_"

// maxMergeHops bounds how far a merged member's token is followed to its
// survivor (a survivor may itself have been merged later).
const maxMergeHops = 8

// Authenticator turns a bearer credential into a Viewer.
type Authenticator struct {
	db      *ent.Client
	tokens  *token.Issuer
	members *memberCache
}

// maxCachedMembers bounds the authentication cache.
const maxCachedMembers = 100_000

// NewAuthenticator builds an Authenticator. cacheTTL > 0 caches
// authenticated members (see memberCache): the cached rows' versions are
// checked every cacheTTL/2, so that a change made on another replica is
// seen within cacheTTL/2 plus a statement's time (at most cacheTTL), and an
// entry unused for idle (at least cacheTTL) is evicted. 0 disables the
// cache. now must follow real time: the checks run on timers.
//
// The two bound different things. cacheTTL bounds staleness. idle bounds
// memory and the checks' work (about a microsecond of PostgreSQL per entry
// per check), which an entry repays with every request of its member that
// it serves without loading the member: a statement of its own, a few
// hundred microseconds of CPU between the server and PostgreSQL. A
// member's requests come in bursts (a page and the pages it leads to);
// with an idle expiry as short as the 2 s staleness bound, 2,000 members
// sharing 2,500 requests a second still reloaded one request in twelve
// (e^-2.5; docs/BENCHMARKS.md).
func NewAuthenticator(db *ent.Client, tokens *token.Issuer, cacheTTL, idle time.Duration, now func() time.Time) *Authenticator {
	return newAuthenticator(db, tokens, max(idle, cacheTTL), cacheTTL/2, now)
}

// newAuthenticator is NewAuthenticator with the check interval chosen
// (tests check more often).
func newAuthenticator(db *ent.Client, tokens *token.Issuer, ttl, check time.Duration, now func() time.Time) *Authenticator {
	return &Authenticator{
		db: db, tokens: tokens,
		members: newMemberCache(ttl, check, maxCachedMembers, now, rowVersions(db)),
	}
}

// Forget drops members from the authentication cache (after a merge,
// erasure or freeze).
func (a *Authenticator) Forget(memberIDs ...int) { a.members.forget(memberIDs...) }

// Authenticate resolves an Authorization header value ("Bearer ...").
// An empty header gives the anonymous viewer; a rejected credential gives
// an anonymous viewer whose Err says why, so that public operations (sign
// in, refresh) still work with a stale token while protected fields report
// UNAUTHENTICATED. Only infrastructure failures are returned as errors.
func (a *Authenticator) Authenticate(ctx context.Context, header string) (Viewer, error) {
	header = strings.TrimSpace(header)
	if header == "" {
		return Viewer{}, nil
	}
	scheme, cred, ok := strings.Cut(header, " ")
	cred = strings.TrimSpace(cred)
	if !ok || !strings.EqualFold(scheme, "Bearer") || cred == "" {
		return Viewer{Err: ErrBadCredentials}, nil
	}
	if strings.HasPrefix(cred, APIClientSecretPrefix) {
		return a.apiClient(ctx, cred)
	}
	claims, err := a.tokens.Verify(cred)
	switch {
	case errors.Is(err, token.ErrExpiredToken):
		return Viewer{Err: ErrTokenExpired}, nil
	case err != nil:
		return Viewer{Err: ErrBadCredentials}, nil
	}
	var v Viewer
	switch claims.Kind {
	case token.KindMember:
		v, err = a.member(ctx, claims)
	case token.KindStaff:
		v, err = a.staff(ctx, claims)
	default:
		return Viewer{Err: ErrBadCredentials}, nil
	}
	if v.Kind != "" {
		v.ExpiresAt = claims.ExpiresAt
	}
	return v, err
}

// member loads the member of a token. A merged member's token resolves to
// the member it was merged into (One ID): the app keeps working after a
// merge without signing in again.
func (a *Authenticator) member(ctx context.Context, c token.Claims) (Viewer, error) {
	if m, version, ok := a.members.get(c.SubjectID); ok {
		return Viewer{Kind: token.KindMember, SessionID: c.SessionID, Member: m, Version: version, Cached: true}, nil
	}
	id := c.SubjectID
	for range maxMergeHops {
		loaded := a.members.now()
		m, version, err := a.loadMember(ctx, id)
		if ent.IsNotFound(err) {
			return Viewer{Err: ErrBadCredentials}, nil
		}
		if err != nil {
			return Viewer{}, fmt.Errorf("loading member %d: %w", id, err)
		}
		switch {
		case m.Status == member.StatusMERGED && m.MergedIntoID != nil:
			id = *m.MergedIntoID
			continue
		case m.Status == member.StatusERASED:
			return Viewer{Err: ErrAccountDisabled}, nil
		}
		a.members.put(c.SubjectID, m, version, loaded)
		return Viewer{Kind: token.KindMember, SessionID: c.SessionID, Member: m, Version: version}, nil
	}
	return Viewer{Err: ErrBadCredentials}, nil
}

// loadMember reads a member with its row version (see memberCache), in one
// statement.
func (a *Authenticator) loadMember(ctx context.Context, id int) (*ent.Member, int64, error) {
	q := a.db.Member.Query().Where(member.ID(id))
	q.Modify(func(s *sql.Selector) {
		s.AppendSelectExprAs(sql.Raw(s.C("xmin")+"::text::bigint"), rowVersionColumn)
	})
	m, err := q.Only(ctx)
	if err != nil {
		return nil, 0, err
	}
	v, err := m.Value(rowVersionColumn)
	if err != nil {
		return nil, 0, fmt.Errorf("member %d row version: %w", id, err)
	}
	version, ok := v.(int64)
	if !ok {
		return nil, 0, fmt.Errorf("member %d row version: %w: %T", id, errRowVersionType, v)
	}
	return m, version, nil
}

func (a *Authenticator) staff(ctx context.Context, c token.Claims) (Viewer, error) {
	s, err := a.db.Staff.Get(ctx, c.SubjectID)
	if ent.IsNotFound(err) {
		return Viewer{Err: ErrBadCredentials}, nil
	}
	if err != nil {
		return Viewer{}, fmt.Errorf("loading staff %d: %w", c.SubjectID, err)
	}
	if !s.Active {
		return Viewer{Err: ErrAccountDisabled}, nil
	}
	bus, err := s.QueryBusinessUnits().Select(businessunit.FieldID).Ints(ctx)
	if err != nil {
		return Viewer{}, fmt.Errorf("loading staff scope: %w", err)
	}
	return Viewer{Kind: token.KindStaff, SessionID: c.SessionID, Staff: s, StaffBusinessUnits: bus}, nil
}

func (a *Authenticator) apiClient(ctx context.Context, secret string) (Viewer, error) {
	c, err := a.db.ApiClient.Query().
		Where(apiclient.SecretHash(token.HashOpaque(secret))).
		WithStores(func(q *ent.StoreQuery) { q.Select(store.FieldID) }).
		Only(ctx)
	if ent.IsNotFound(err) {
		return Viewer{Err: ErrBadCredentials}, nil
	}
	if err != nil {
		return Viewer{}, fmt.Errorf("loading api client: %w", err)
	}
	if c.RevokedAt != nil {
		return Viewer{Err: ErrAccountDisabled}, nil
	}
	stores := make([]int, len(c.Edges.Stores))
	for i, s := range c.Edges.Stores {
		stores[i] = s.ID
	}
	return Viewer{Kind: token.KindAPIClient, Client: c, ClientStores: stores}, nil
}
