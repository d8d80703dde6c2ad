package token

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/onemember/onemember/internal/platform/testkit"
)

const testIssuer = "onemember-test"

func testKey() []byte { return bytes.Repeat([]byte("k"), MinKeySize) }

// t0 is a fixed instant with a sub-second part, to exercise truncation.
func t0() time.Time { return time.Date(2025, 3, 1, 10, 0, 0, 700_000_000, time.UTC) }

func newTestIssuer(t *testing.T) (*Issuer, *testkit.Clock) {
	t.Helper()
	c := testkit.NewClock(t0())
	i, err := NewIssuer(testKey(), testIssuer, 15*time.Minute, c.Now)
	if err != nil {
		t.Fatalf("NewIssuer: %v", err)
	}
	return i, c
}

// validClaims are the claims Issue would produce at t0, as a map so tests can
// alter any of them.
func validClaims() jwt.MapClaims {
	now := t0().Truncate(time.Second)
	return jwt.MapClaims{
		"iss": testIssuer,
		"sub": "42",
		"aud": []string{"onemember:member"},
		"exp": now.Add(15 * time.Minute).Unix(),
		"nbf": now.Unix(),
		"iat": now.Unix(),
		"jti": "test-jti",
		"sid": "sess-1",
	}
}

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return s
}

func TestNewIssuer(t *testing.T) {
	tests := []struct {
		name   string
		key    []byte
		issuer string
		ttl    time.Duration
		ok     bool
	}{
		{name: "ok", key: testKey(), issuer: testIssuer, ttl: time.Minute, ok: true},
		{name: "long key", key: bytes.Repeat([]byte("k"), 64), issuer: testIssuer, ttl: time.Minute, ok: true},
		{name: "short key", key: testKey()[:31], issuer: testIssuer, ttl: time.Minute},
		{name: "nil key", key: nil, issuer: testIssuer, ttl: time.Minute},
		{name: "empty issuer", key: testKey(), issuer: "", ttl: time.Minute},
		{name: "zero ttl", key: testKey(), issuer: testIssuer, ttl: 0},
		{name: "negative ttl", key: testKey(), issuer: testIssuer, ttl: -time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i, err := NewIssuer(tt.key, tt.issuer, tt.ttl, nil)
			if tt.ok {
				if err != nil || i == nil {
					t.Fatalf("NewIssuer() = %v, %v", i, err)
				}
				return
			}
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("NewIssuer() error = %v; want ErrConfig", err)
			}
		})
	}
}

func TestIssueVerifyRoundTrip(t *testing.T) {
	tests := []struct {
		kind      Kind
		subjectID int
		sessionID string
		wantAud   string
	}{
		{kind: KindMember, subjectID: 42, sessionID: "sess-1", wantAud: "onemember:member"},
		{kind: KindStaff, subjectID: 7, sessionID: "sess-2", wantAud: "onemember:staff"},
		{kind: KindAPIClient, subjectID: 3, sessionID: "", wantAud: "onemember:api_client"},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			i, _ := newTestIssuer(t)
			raw, exp, err := i.Issue(tt.kind, tt.subjectID, tt.sessionID)
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			wantExp := time.Date(2025, 3, 1, 10, 15, 0, 0, time.UTC)
			if !exp.Equal(wantExp) {
				t.Errorf("expiresAt = %v; want %v", exp, wantExp)
			}

			c, err := i.Verify(raw)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.Kind != tt.kind || c.SubjectID != tt.subjectID || c.SessionID != tt.sessionID || !c.ExpiresAt.Equal(exp) || c.ID == "" {
				t.Errorf("Verify() = %+v", c)
			}

			// Inspect the wire claims.
			var mc jwt.MapClaims
			if _, _, err := jwt.NewParser().ParseUnverified(raw, &mc); err != nil {
				t.Fatal(err)
			}
			aud, _ := mc.GetAudience()
			if len(aud) != 1 || aud[0] != tt.wantAud {
				t.Errorf("aud = %v; want [%s]", aud, tt.wantAud)
			}
			if mc["iss"] != testIssuer || mc["sub"] != strconv.Itoa(tt.subjectID) {
				t.Errorf("iss/sub = %v/%v", mc["iss"], mc["sub"])
			}
			for _, k := range []string{"exp", "iat", "nbf", "jti"} {
				if _, ok := mc[k]; !ok {
					t.Errorf("claim %q missing", k)
				}
			}
			if got := mc["sid"]; tt.sessionID != "" && got != tt.sessionID {
				t.Errorf("sid = %v; want %q", got, tt.sessionID)
			}
		})
	}
}

func TestIssueUniqueJTI(t *testing.T) {
	i, _ := newTestIssuer(t)
	seen := map[string]bool{}
	for range 100 {
		raw, _, err := i.Issue(KindMember, 1, "s")
		if err != nil {
			t.Fatal(err)
		}
		c, err := i.Verify(raw)
		if err != nil {
			t.Fatal(err)
		}
		if seen[c.ID] {
			t.Fatalf("duplicate jti %q", c.ID)
		}
		seen[c.ID] = true
	}
}

func TestIssueRejects(t *testing.T) {
	i, _ := newTestIssuer(t)
	tests := []struct {
		name      string
		kind      Kind
		subjectID int
		wantErr   error
	}{
		{name: "unknown kind", kind: Kind("admin"), subjectID: 1, wantErr: ErrUnknownKind},
		{name: "empty kind", kind: Kind(""), subjectID: 1, wantErr: ErrUnknownKind},
		{name: "zero subject", kind: KindMember, subjectID: 0, wantErr: ErrInvalidSubject},
		{name: "negative subject", kind: KindMember, subjectID: -1, wantErr: ErrInvalidSubject},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, _, err := i.Issue(tt.kind, tt.subjectID, "s")
			if !errors.Is(err, tt.wantErr) || raw != "" {
				t.Errorf("Issue() = %q, %v; want %v", raw, err, tt.wantErr)
			}
		})
	}
}

func TestVerifyRejects(t *testing.T) {
	key := testKey()
	otherKey := bytes.Repeat([]byte("x"), MinKeySize)
	with := func(k string, v any) jwt.MapClaims {
		c := validClaims()
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
		return c
	}
	valid := sign(t, jwt.SigningMethodHS256, key, validClaims())
	parts := strings.Split(valid, ".")

	// Forge: keep header and signature, swap the payload for sub=1.
	forgedPayload := base64.RawURLEncoding.EncodeToString([]byte(
		`{"iss":"onemember-test","sub":"1","aud":["onemember:member"],"exp":4102444800,"jti":"x"}`))
	forged := parts[0] + "." + forgedPayload + "." + parts[2]

	// Flip one bit of the signature.
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		t.Fatal(err)
	}
	sig[0] ^= 1
	badSig := parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)

	past := t0().Add(-time.Hour).Unix()
	future := t0().Add(time.Hour).Unix()

	tests := []struct {
		name    string
		raw     string
		wantErr error
	}{
		{name: "empty", raw: "", wantErr: ErrInvalidToken},
		{name: "garbage", raw: "not.a.jwt", wantErr: ErrInvalidToken},
		{name: "two segments", raw: parts[0] + "." + parts[1], wantErr: ErrInvalidToken},
		{name: "forged payload", raw: forged, wantErr: ErrInvalidToken},
		{name: "flipped signature bit", raw: badSig, wantErr: ErrInvalidToken},
		{name: "stripped signature", raw: parts[0] + "." + parts[1] + ".", wantErr: ErrInvalidToken},
		{name: "other key", raw: sign(t, jwt.SigningMethodHS256, otherKey, validClaims()), wantErr: ErrInvalidToken},
		{name: "alg none", raw: sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, validClaims()), wantErr: ErrInvalidToken},
		{name: "alg HS384", raw: sign(t, jwt.SigningMethodHS384, key, validClaims()), wantErr: ErrInvalidToken},
		{name: "alg HS512", raw: sign(t, jwt.SigningMethodHS512, key, validClaims()), wantErr: ErrInvalidToken},
		{name: "wrong issuer", raw: sign(t, jwt.SigningMethodHS256, key, with("iss", "someone-else")), wantErr: ErrInvalidToken},
		{name: "missing issuer", raw: sign(t, jwt.SigningMethodHS256, key, with("iss", nil)), wantErr: ErrInvalidToken},
		{name: "wrong audience", raw: sign(t, jwt.SigningMethodHS256, key, with("aud", []string{"onemember:admin"})), wantErr: ErrInvalidToken},
		{name: "foreign audience", raw: sign(t, jwt.SigningMethodHS256, key, with("aud", []string{"member"})), wantErr: ErrInvalidToken},
		{name: "two audiences", raw: sign(t, jwt.SigningMethodHS256, key, with("aud", []string{"onemember:member", "onemember:staff"})), wantErr: ErrInvalidToken},
		{name: "missing audience", raw: sign(t, jwt.SigningMethodHS256, key, with("aud", nil)), wantErr: ErrInvalidToken},
		{name: "non-numeric subject", raw: sign(t, jwt.SigningMethodHS256, key, with("sub", "abc")), wantErr: ErrInvalidToken},
		{name: "zero subject", raw: sign(t, jwt.SigningMethodHS256, key, with("sub", "0")), wantErr: ErrInvalidToken},
		{name: "non-canonical subject", raw: sign(t, jwt.SigningMethodHS256, key, with("sub", "+42")), wantErr: ErrInvalidToken},
		{name: "missing jti", raw: sign(t, jwt.SigningMethodHS256, key, with("jti", nil)), wantErr: ErrInvalidToken},
		{name: "missing exp", raw: sign(t, jwt.SigningMethodHS256, key, with("exp", nil)), wantErr: ErrInvalidToken},
		{name: "not yet valid", raw: sign(t, jwt.SigningMethodHS256, key, with("nbf", future)), wantErr: ErrInvalidToken},
		{name: "issued in future", raw: sign(t, jwt.SigningMethodHS256, key, with("iat", future)), wantErr: ErrInvalidToken},
		{name: "expired", raw: sign(t, jwt.SigningMethodHS256, key, with("exp", past)), wantErr: ErrExpiredToken},
		// Expiry must not mask a more serious failure.
		{name: "expired and forged", raw: sign(t, jwt.SigningMethodHS256, otherKey, with("exp", past)), wantErr: ErrInvalidToken},
		{name: "expired and wrong issuer", raw: func() string {
			c := with("exp", past)
			c["iss"] = "someone-else"
			return sign(t, jwt.SigningMethodHS256, key, c)
		}(), wantErr: ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i, _ := newTestIssuer(t)
			c, err := i.Verify(tt.raw)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify() = %+v, %v; want %v", c, err, tt.wantErr)
			}
			if tt.wantErr == ErrInvalidToken && errors.Is(err, ErrExpiredToken) {
				t.Errorf("error %v is also ErrExpiredToken", err)
			}
			if c != (Claims{}) {
				t.Errorf("Verify() returned claims %+v alongside an error", c)
			}
		})
	}

	// Sanity: the unmodified token is accepted, so the rejections above are
	// due to the modification.
	i, _ := newTestIssuer(t)
	if _, err := i.Verify(valid); err != nil {
		t.Fatalf("Verify(valid) = %v", err)
	}
}

func TestVerifyOtherIssuerInstance(t *testing.T) {
	// Same key, different iss: e.g. staging and production sharing a key by
	// mistake.
	c := testkit.NewClock(t0())
	prod, err := NewIssuer(testKey(), "onemember-prod", time.Minute, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	staging, err := NewIssuer(testKey(), "onemember-staging", time.Minute, c.Now)
	if err != nil {
		t.Fatal(err)
	}
	raw, _, err := staging.Issue(KindStaff, 1, "s")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prod.Verify(raw); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("Verify() error = %v; want ErrInvalidToken", err)
	}
}

func TestVerifyTimeWindow(t *testing.T) {
	issued := t0().Truncate(time.Second)
	exp := issued.Add(15 * time.Minute)
	tests := []struct {
		name    string
		now     time.Time
		wantErr error
	}{
		{name: "at issue", now: issued},
		{name: "just before expiry", now: exp.Add(-time.Second)},
		{name: "at expiry within leeway", now: exp},
		{name: "leeway end minus 1ns", now: exp.Add(30*time.Second - time.Nanosecond)},
		{name: "leeway end", now: exp.Add(30 * time.Second), wantErr: ErrExpiredToken},
		{name: "long expired", now: exp.Add(24 * time.Hour), wantErr: ErrExpiredToken},
		{name: "server clock 30s behind", now: issued.Add(-30 * time.Second)},
		{name: "server clock 31s behind", now: issued.Add(-31 * time.Second), wantErr: ErrInvalidToken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i, c := newTestIssuer(t)
			raw, _, err := i.Issue(KindMember, 42, "s")
			if err != nil {
				t.Fatal(err)
			}
			c.Set(tt.now)
			_, err = i.Verify(raw)
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Verify() error = %v; want %v", err, tt.wantErr)
			}
		})
	}
}

// TestVerifyRemembersOnlyIdentity verifies one token again and again on one
// issuer, so every call after the first takes the remembered path: the time
// checks must still apply on each call, and a token differing only in its
// signature must not ride on the remembered one.
func TestVerifyRemembersOnlyIdentity(t *testing.T) {
	i, c := newTestIssuer(t)
	raw, exp, err := i.Issue(KindMember, 42, "s")
	if err != nil {
		t.Fatal(err)
	}
	issued := c.Now().Truncate(time.Second)
	steps := []struct {
		now     time.Time
		wantErr error
	}{
		{issued, nil},
		{issued.Add(-31 * time.Second), ErrInvalidToken}, // clock went back: not yet valid
		{exp.Add(-time.Second), nil},
		{exp.Add(30 * time.Second), ErrExpiredToken},
		{issued, nil}, // the remembered entry survives a rejection by time
	}
	for n, s := range steps {
		c.Set(s.now)
		got, err := i.Verify(raw)
		if !errors.Is(err, s.wantErr) {
			t.Fatalf("step %d at %v: Verify() error = %v; want %v", n, s.now, err, s.wantErr)
		}
		if err == nil && (got.SubjectID != 42 || got.Kind != KindMember || got.SessionID != "s") {
			t.Fatalf("step %d: claims %+v", n, got)
		}
	}
	parts := strings.Split(raw, ".")
	sig := []byte(parts[2])
	sig[0] ^= 1
	forged := parts[0] + "." + parts[1] + "." + string(sig)
	if _, err := i.Verify(forged); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("Verify(forged signature) error = %v; want ErrInvalidToken", err)
	}
}

func TestIssuerCopiesKey(t *testing.T) {
	key := testKey()
	i, err := NewIssuer(key, testIssuer, time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, _, err := i.Issue(KindMember, 1, "s")
	if err != nil {
		t.Fatal(err)
	}
	key[0] ^= 0xff
	if _, err := i.Verify(raw); err != nil {
		t.Errorf("Verify() after mutating caller's key = %v", err)
	}
}

func TestKindAudience(t *testing.T) {
	tests := []struct {
		kind    Kind
		want    string
		wantErr error
	}{
		{KindMember, "onemember:member", nil},
		{KindStaff, "onemember:staff", nil},
		{KindAPIClient, "onemember:api_client", nil},
		{Kind("admin"), "", ErrUnknownKind},
	}
	for _, tt := range tests {
		got, err := tt.kind.Audience()
		if got != tt.want || !errors.Is(err, tt.wantErr) {
			t.Errorf("%q.Audience() = %q, %v; want %q, %v", tt.kind, got, err, tt.want, tt.wantErr)
		}
	}
}
