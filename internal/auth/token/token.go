// Package token owns the bearer credentials the platform hands out: short
// lived HS256 JWT access tokens for members, staff and API clients, and the
// opaque high-entropy secrets (refresh tokens, API client secrets) that are
// stored only as hashes.
package token

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
	lru "github.com/hashicorp/golang-lru/v2"
)

// Kind is the kind of principal a token was issued to.
type Kind string

// Principal kinds. Each maps to its own audience, so a member token can never
// be replayed against a staff-only API.
const (
	KindMember = Kind("member")
	KindStaff  = Kind("staff")
	// KindAPIClient exists for completeness: till integrations normally
	// authenticate with opaque client secrets, not JWTs.
	KindAPIClient = Kind("api_client")
)

const (
	// MinKeySize is the smallest accepted HMAC key: HS256 needs a key at
	// least as long as its output to keep its full strength (RFC 7518 §3.2).
	MinKeySize = 32
	// leeway tolerates clock skew between the API servers.
	leeway = 30 * time.Second
	// verifiedTokens bounds the cache of tokens whose signature and claims
	// were checked: a member's app sends the same access token with every
	// request until it expires.
	verifiedTokens = 10_000
	// audiencePrefix namespaces our audiences so tokens from other systems
	// that share a key by mistake still do not verify.
	audiencePrefix = "onemember:"
)

var (
	// ErrInvalidToken reports a token that is malformed, wrongly signed, for
	// another issuer or audience, or not yet valid.
	ErrInvalidToken = errors.New("token: invalid token")
	// ErrExpiredToken reports a token that is authentic but expired, so the
	// client should refresh rather than log in again. It is only returned
	// when every other check passed.
	ErrExpiredToken = errors.New("token: expired token")
	// ErrUnknownKind reports a Kind that is not one of the constants.
	ErrUnknownKind = errors.New("token: unknown kind")
	// ErrInvalidSubject reports a non-positive subject id passed to Issue.
	ErrInvalidSubject = errors.New("token: invalid subject id")
	// ErrConfig reports invalid arguments to NewIssuer.
	ErrConfig = errors.New("token: invalid issuer configuration")
)

// Audience returns the JWT audience for k, e.g. "onemember:member".
func (k Kind) Audience() (string, error) {
	switch k {
	case KindMember, KindStaff, KindAPIClient:
		return audiencePrefix + string(k), nil
	}
	return "", fmt.Errorf("%q: %w", string(k), ErrUnknownKind)
}

// kindFromAudience is the inverse of Kind.Audience.
func kindFromAudience(aud string) (Kind, bool) {
	for _, k := range []Kind{KindMember, KindStaff, KindAPIClient} {
		if aud == audiencePrefix+string(k) {
			return k, true
		}
	}
	return "", false
}

// Claims is what a verified access token says.
type Claims struct {
	Kind      Kind
	SubjectID int
	// SessionID is the refresh-token family the token was issued under; it
	// lets a logout or a detected refresh-token reuse revoke live access
	// tokens too.
	SessionID string
	ExpiresAt time.Time
	// ID is the token's unique jti.
	ID string
}

// jwtClaims is the wire form.
type jwtClaims struct {
	jwt.RegisteredClaims
	SessionID string `json:"sid,omitempty"`
}

// Issuer issues and verifies access tokens. It is safe for concurrent use.
type Issuer struct {
	key    []byte
	issuer string
	ttl    time.Duration
	now    func() time.Time
	parser *jwt.Parser
	// verified holds tokens that passed every check but the times, which
	// Verify applies on every call; only authentic tokens get in.
	verified *lru.Cache[string, verified]
}

// verified is a token whose signature, issuer, audience and subject were
// checked, with the times Verify checks on every use.
type verified struct {
	Claims
	notBefore, issuedAt time.Time // zero when absent
}

// NewIssuer returns an Issuer signing with key (at least MinKeySize bytes)
// under the given iss claim. now is the clock; nil means time.Now.
func NewIssuer(key []byte, issuer string, accessTTL time.Duration, now func() time.Time) (*Issuer, error) {
	switch {
	case len(key) < MinKeySize:
		return nil, fmt.Errorf("key has %d bytes, want at least %d: %w", len(key), MinKeySize, ErrConfig)
	case issuer == "":
		return nil, fmt.Errorf("empty issuer: %w", ErrConfig)
	case accessTTL < time.Second:
		// Expiry is stored in whole seconds.
		return nil, fmt.Errorf("access TTL %v below 1s: %w", accessTTL, ErrConfig)
	}
	if now == nil {
		now = time.Now
	}
	cache, err := lru.New[string, verified](verifiedTokens)
	if err != nil {
		return nil, err
	}
	return &Issuer{
		verified: cache,
		key:      append([]byte(nil), key...),
		issuer:   issuer,
		ttl:      accessTTL,
		now:      now,
		// Claims are validated by hand in Verify so that the order of the
		// checks (and hence which error wins) is ours, not the library's.
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithoutClaimsValidation(),
			jwt.WithStrictDecoding(),
		),
	}, nil
}

// Issue signs an access token for the subject. It returns the token and its
// expiry (whole seconds, as in the token).
func (i *Issuer) Issue(kind Kind, subjectID int, sessionID string) (string, time.Time, error) {
	aud, err := kind.Audience()
	if err != nil {
		return "", time.Time{}, err
	}
	if subjectID <= 0 {
		return "", time.Time{}, fmt.Errorf("%d: %w", subjectID, ErrInvalidSubject)
	}
	jti, err := randomID()
	if err != nil {
		return "", time.Time{}, err
	}
	// JWT times have second precision; truncate here so the returned
	// expiry equals the one a verifier will see.
	now := i.now().Truncate(time.Second)
	exp := now.Add(i.ttl).Truncate(time.Second)
	claims := jwtClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    i.issuer,
			Subject:   strconv.Itoa(subjectID),
			Audience:  jwt.ClaimStrings{aud},
			ExpiresAt: jwt.NewNumericDate(exp),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        jti,
		},
		SessionID: sessionID,
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(i.key)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("token: sign: %w", err)
	}
	return signed, exp, nil
}

// Verify checks raw and returns its claims. Only HS256 with this Issuer's
// key is accepted ("none" and every other alg are rejected before any key is
// used). The issuer, audience and subject are checked before the times, so
// ErrExpiredToken always means "authentic, ours, but too old". A token seen
// before is not parsed again: its signature and identity cannot change, and
// its times are checked against the clock on every call.
func (i *Issuer) Verify(raw string) (Claims, error) {
	v, ok := i.verified.Get(raw)
	if !ok {
		var err error
		if v, err = i.authenticate(raw); err != nil {
			return Claims{}, err
		}
		i.verified.Add(raw, v)
	}
	now := i.now()
	if !v.notBefore.IsZero() && now.Add(leeway).Before(v.notBefore) {
		return Claims{}, fmt.Errorf("%w: not valid before %v", ErrInvalidToken, v.notBefore)
	}
	if !v.issuedAt.IsZero() && now.Add(leeway).Before(v.issuedAt) {
		return Claims{}, fmt.Errorf("%w: issued in the future at %v", ErrInvalidToken, v.issuedAt)
	}
	if !now.Add(-leeway).Before(v.ExpiresAt) {
		return Claims{}, fmt.Errorf("%w: expired at %v", ErrExpiredToken, v.ExpiresAt)
	}
	return v.Claims, nil
}

// authenticate checks raw's signature and every claim but the times.
func (i *Issuer) authenticate(raw string) (verified, error) {
	var c jwtClaims
	_, err := i.parser.ParseWithClaims(raw, &c, func(t *jwt.Token) (any, error) {
		// WithValidMethods already restricts the alg; checking the
		// concrete method too guards against a future option change.
		if t.Method != jwt.SigningMethodHS256 {
			return nil, fmt.Errorf("unexpected signing method %v", t.Header["alg"])
		}
		return i.key, nil
	})
	if err != nil {
		return verified{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}

	if c.Issuer != i.issuer {
		return verified{}, fmt.Errorf("%w: issuer %q", ErrInvalidToken, c.Issuer)
	}
	if len(c.Audience) != 1 {
		return verified{}, fmt.Errorf("%w: %d audiences", ErrInvalidToken, len(c.Audience))
	}
	kind, ok := kindFromAudience(c.Audience[0])
	if !ok {
		return verified{}, fmt.Errorf("%w: audience %q", ErrInvalidToken, c.Audience[0])
	}
	subjectID, err := strconv.Atoi(c.Subject)
	if err != nil || subjectID <= 0 || strconv.Itoa(subjectID) != c.Subject {
		return verified{}, fmt.Errorf("%w: subject %q", ErrInvalidToken, c.Subject)
	}
	if c.ID == "" {
		return verified{}, fmt.Errorf("%w: missing jti", ErrInvalidToken)
	}
	if c.ExpiresAt == nil {
		return verified{}, fmt.Errorf("%w: missing exp", ErrInvalidToken)
	}

	v := verified{Claims: Claims{
		Kind:      kind,
		SubjectID: subjectID,
		SessionID: c.SessionID,
		ExpiresAt: c.ExpiresAt.Time,
		ID:        c.ID,
	}}
	if c.NotBefore != nil {
		v.notBefore = c.NotBefore.Time
	}
	if c.IssuedAt != nil {
		v.issuedAt = c.IssuedAt.Time
	}
	return v, nil
}

// randomID returns a 128-bit random jti, enough that ids never collide and
// can key a deny-list.
func randomID() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("token: jti: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}
