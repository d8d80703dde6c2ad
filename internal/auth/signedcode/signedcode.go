// Package signedcode owns short, signed, optionally expiring codes that name
// a subject: the member QR code shown in the mini-program (valid 60 s) and
// activity tickets (no expiry). A code is verified by its signature alone,
// with no database lookup, and is short enough for a QR code or for a
// cashier to type at the till.
//
// Codes are bearer credentials: anyone holding one can present it until it
// expires. Callers that need single use (tickets) must record redemption
// themselves.
package signedcode

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
)

const (
	// MinKeySize is the smallest accepted key.
	MinKeySize = 32
	// tagSize is the truncated HMAC length: 80 bits make forging a code
	// by online guessing hopeless while keeping codes short.
	tagSize = 10
	// keyLabel separates subkeys derived here from any other HMAC use of
	// the same master key.
	keyLabel = "onemember/signedcode\x00"
)

var (
	// ErrInvalidCode reports a code that is malformed, tampered with, or
	// signed for another purpose or with another key.
	ErrInvalidCode = errors.New("signedcode: invalid code")
	// ErrExpiredCode reports an authentic code past its expiry.
	ErrExpiredCode = errors.New("signedcode: expired code")
	// ErrConfig reports invalid arguments to NewSigner.
	ErrConfig = errors.New("signedcode: invalid signer configuration")
)

// encoding is RFC 4648 base32 without padding: uppercase letters and digits
// 2-7 only, which QR codes store in their compact alphanumeric mode.
func encoding() *base32.Encoding {
	return base32.StdEncoding.WithPadding(base32.NoPadding)
}

// Signer signs and verifies codes for one purpose. It is safe for concurrent
// use.
type Signer struct {
	// subKey = HMAC-SHA256(key, keyLabel | purpose): each purpose gets its
	// own key, so a member QR code never verifies as a ticket or the
	// other way round, even though both name an integer subject.
	subKey []byte
	now    func() time.Time
}

// NewSigner returns a Signer for purpose (e.g. "member_qr", "ticket"). key
// must have at least MinKeySize bytes; now is the clock (nil means
// time.Now).
func NewSigner(key []byte, purpose string, now func() time.Time) (*Signer, error) {
	if len(key) < MinKeySize {
		return nil, fmt.Errorf("key has %d bytes, want at least %d: %w", len(key), MinKeySize, ErrConfig)
	}
	if purpose == "" {
		return nil, fmt.Errorf("empty purpose: %w", ErrConfig)
	}
	if now == nil {
		now = time.Now
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(keyLabel))
	m.Write([]byte(purpose))
	return &Signer{subKey: m.Sum(nil), now: now}, nil
}

// Sign returns a code for subjectID that expires after ttl, rounded up to the
// next whole second, and that expiry. A ttl of 0 means the code never expires
// (expiresAt is then the zero time); a negative ttl yields an already
// expired code.
//
// Layout before base32: varint(subjectID) | uvarint(expiry unix seconds, 0 =
// never) | first 10 bytes of HMAC-SHA256(subKey, the preceding bytes). For
// a member id around 10^6 a 60-second code is 31 characters and a ticket 23.
func (s *Signer) Sign(subjectID int64, ttl time.Duration) (string, time.Time) {
	var expiresAt time.Time
	var expiry uint64
	if ttl != 0 {
		t := s.now().Add(ttl)
		sec := t.Unix()
		if t.Nanosecond() > 0 {
			sec++ // never shorten the promised lifetime
		}
		// 0 means "never", so an expiry at or before the epoch (only
		// possible with a broken clock) is clamped to 1: still expired.
		sec = max(sec, 1)
		expiry = uint64(sec)
		expiresAt = time.Unix(sec, 0)
	}

	buf := make([]byte, 0, 2*binary.MaxVarintLen64+tagSize)
	buf = binary.AppendVarint(buf, subjectID)
	buf = binary.AppendUvarint(buf, expiry)
	buf = append(buf, s.tag(buf)...)
	return encoding().EncodeToString(buf), expiresAt
}

// Verify checks code and returns its subject. It accepts lowercase and
// ignores spaces and dashes, as typed at a till. The signature is checked
// before the expiry, so ErrExpiredCode always means "authentic but too old".
func (s *Signer) Verify(code string) (int64, error) {
	norm := strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, strings.ToUpper(code))

	raw, err := encoding().DecodeString(norm)
	// Re-encoding rejects the non-canonical spellings base32 allows (unused
	// trailing bits), so each code has exactly one accepted string and can
	// be used as a redemption key.
	if err != nil || encoding().EncodeToString(raw) != norm {
		return 0, fmt.Errorf("%w: not canonical base32", ErrInvalidCode)
	}
	if len(raw) < 2+tagSize {
		return 0, fmt.Errorf("%w: %d bytes", ErrInvalidCode, len(raw))
	}
	payload, tag := raw[:len(raw)-tagSize], raw[len(raw)-tagSize:]
	if !hmac.Equal(tag, s.tag(payload)) {
		return 0, fmt.Errorf("%w: signature", ErrInvalidCode)
	}

	subjectID, n := binary.Varint(payload)
	if n <= 0 {
		return 0, fmt.Errorf("%w: subject", ErrInvalidCode)
	}
	expiry, m := binary.Uvarint(payload[n:])
	if m <= 0 || n+m != len(payload) || expiry > math.MaxInt64 {
		return 0, fmt.Errorf("%w: expiry", ErrInvalidCode)
	}
	if expiry != 0 {
		expiresAt := time.Unix(int64(expiry), 0)
		if !s.now().Before(expiresAt) {
			return 0, fmt.Errorf("%w: at %v", ErrExpiredCode, expiresAt)
		}
	}
	return subjectID, nil
}

func (s *Signer) tag(payload []byte) []byte {
	m := hmac.New(sha256.New, s.subKey)
	m.Write(payload)
	return m.Sum(nil)[:tagSize]
}
