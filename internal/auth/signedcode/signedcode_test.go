package signedcode

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onemember/onemember/internal/platform/testkit"
)

func testKey() []byte { return bytes.Repeat([]byte{0x5a}, MinKeySize) }

// t0 has a sub-second part to exercise rounding of the expiry.
func t0() time.Time { return time.Date(2025, 3, 1, 10, 0, 0, 250_000_000, time.UTC) }

func newTestSigner(t *testing.T, purpose string) (*Signer, *testkit.Clock) {
	t.Helper()
	c := testkit.NewClock(t0())
	s, err := NewSigner(testKey(), purpose, c.Now)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	return s, c
}

func TestNewSigner(t *testing.T) {
	tests := []struct {
		name    string
		key     []byte
		purpose string
		ok      bool
	}{
		{name: "ok", key: testKey(), purpose: "member_qr", ok: true},
		{name: "long key", key: bytes.Repeat([]byte{1}, 64), purpose: "ticket", ok: true},
		{name: "short key", key: testKey()[:31], purpose: "member_qr"},
		{name: "nil key", key: nil, purpose: "member_qr"},
		{name: "empty purpose", key: testKey(), purpose: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewSigner(tt.key, tt.purpose, nil)
			if tt.ok {
				if err != nil || s == nil {
					t.Fatalf("NewSigner() = %v, %v", s, err)
				}
				return
			}
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("NewSigner() error = %v; want ErrConfig", err)
			}
		})
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	tests := []struct {
		name      string
		subjectID int64
		ttl       time.Duration
		maxLen    int
	}{
		{name: "member qr", subjectID: 1_234_567, ttl: 60 * time.Second, maxLen: 31},
		{name: "small id", subjectID: 1, ttl: 60 * time.Second, maxLen: 26},
		{name: "ticket", subjectID: 98_765, ttl: 0, maxLen: 23},
		{name: "zero id", subjectID: 0, ttl: time.Minute, maxLen: 26},
		{name: "negative id", subjectID: -5, ttl: time.Minute, maxLen: 26},
		{name: "max id", subjectID: math.MaxInt64, ttl: time.Hour, maxLen: 40},
		{name: "min id", subjectID: math.MinInt64, ttl: 0, maxLen: 34},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestSigner(t, "member_qr")
			code, _ := s.Sign(tt.subjectID, tt.ttl)
			if len(code) > tt.maxLen {
				t.Errorf("len(%q) = %d; want at most %d", code, len(code), tt.maxLen)
			}
			if strings.Trim(code, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") != "" {
				t.Errorf("code %q has characters outside uppercase base32", code)
			}
			got, err := s.Verify(code)
			if err != nil {
				t.Fatalf("Verify(%q): %v", code, err)
			}
			if got != tt.subjectID {
				t.Errorf("Verify() = %d; want %d", got, tt.subjectID)
			}
		})
	}
}

func TestSignExpiresAt(t *testing.T) {
	tests := []struct {
		name string
		ttl  time.Duration
		want time.Time
	}{
		// 10:00:00.25 + 60s rounds up to 10:01:01, never down.
		{name: "60s", ttl: 60 * time.Second, want: time.Date(2025, 3, 1, 10, 1, 1, 0, time.UTC)},
		{name: "750ms lands on a second", ttl: 750 * time.Millisecond, want: time.Date(2025, 3, 1, 10, 0, 1, 0, time.UTC)},
		{name: "no expiry", ttl: 0, want: time.Time{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newTestSigner(t, "member_qr")
			_, got := s.Sign(1, tt.ttl)
			if !got.Equal(tt.want) {
				t.Errorf("expiresAt = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestVerifyExpiry(t *testing.T) {
	s, c := newTestSigner(t, "member_qr")
	code, exp := s.Sign(42, 60*time.Second)
	ticket, _ := s.Sign(42, 0)
	stale, _ := s.Sign(42, -time.Second)

	tests := []struct {
		name    string
		code    string
		now     time.Time
		wantErr error
	}{
		{name: "immediately", code: code, now: t0()},
		{name: "after 60s", code: code, now: t0().Add(60 * time.Second)},
		{name: "1ns before expiry", code: code, now: exp.Add(-time.Nanosecond)},
		{name: "at expiry", code: code, now: exp, wantErr: ErrExpiredCode},
		{name: "a day later", code: code, now: t0().Add(24 * time.Hour), wantErr: ErrExpiredCode},
		{name: "ticket years later", code: ticket, now: t0().AddDate(10, 0, 0)},
		{name: "negative ttl", code: stale, now: t0(), wantErr: ErrExpiredCode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c.Set(tt.now)
			got, err := s.Verify(tt.code)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Verify() = %d, %v; want %v", got, err, tt.wantErr)
			}
			if tt.wantErr == nil && got != 42 {
				t.Errorf("Verify() = %d; want 42", got)
			}
		})
	}
}

func TestVerifyLenientInput(t *testing.T) {
	s, _ := newTestSigner(t, "ticket")
	code, _ := s.Sign(777, 0)
	grouped := code[:4] + "-" + code[4:8] + " " + code[8:]
	for _, in := range []string{code, strings.ToLower(code), grouped, " " + code + " "} {
		got, err := s.Verify(in)
		if err != nil || got != 777 {
			t.Errorf("Verify(%q) = %d, %v; want 777, nil", in, got, err)
		}
	}
}

func TestVerifyRejectsOtherPurposeAndKey(t *testing.T) {
	qr, _ := newTestSigner(t, "member_qr")
	code, _ := qr.Sign(42, time.Minute)

	ticket, _ := newTestSigner(t, "ticket")
	otherKey, err := NewSigner(bytes.Repeat([]byte{0x5b}, MinKeySize), "member_qr", nil)
	if err != nil {
		t.Fatal(err)
	}
	// The label/purpose boundary must not be shiftable.
	shifted, err := NewSigner(testKey(), "member_q", nil)
	if err != nil {
		t.Fatal(err)
	}

	for name, s := range map[string]*Signer{"other purpose": ticket, "other key": otherKey, "prefix purpose": shifted} {
		t.Run(name, func(t *testing.T) {
			if got, err := s.Verify(code); !errors.Is(err, ErrInvalidCode) {
				t.Errorf("Verify() = %d, %v; want ErrInvalidCode", got, err)
			}
		})
	}
}

// TestVerifyRejectsTamper flips every bit of the decoded code in turn; none
// of the results may verify.
func TestVerifyRejectsTamper(t *testing.T) {
	s, _ := newTestSigner(t, "member_qr")
	code, _ := s.Sign(1_234_567, time.Minute)
	raw, err := encoding().DecodeString(code)
	if err != nil {
		t.Fatal(err)
	}
	for i := range raw {
		for bit := range 8 {
			mod := bytes.Clone(raw)
			mod[i] ^= 1 << bit
			tampered := encoding().EncodeToString(mod)
			if got, err := s.Verify(tampered); !errors.Is(err, ErrInvalidCode) {
				t.Fatalf("byte %d bit %d: Verify() = %d, %v; want ErrInvalidCode", i, bit, got, err)
			}
		}
	}
}

func TestVerifyRejectsMalformed(t *testing.T) {
	s, _ := newTestSigner(t, "member_qr")
	code, _ := s.Sign(42, time.Minute)
	raw, err := encoding().DecodeString(code)
	if err != nil {
		t.Fatal(err)
	}

	// forge builds a correctly tagged code around an arbitrary payload, to
	// reach the parsing checks that come after the signature check.
	forge := func(payload []byte) string {
		return encoding().EncodeToString(append(bytes.Clone(payload), s.tag(payload)...))
	}
	withTrailing := binary.AppendUvarint(binary.AppendVarint(nil, 42), 0)
	withTrailing = append(withTrailing, 0x00)
	hugeExpiry := binary.AppendUvarint(binary.AppendVarint(nil, 42), math.MaxUint64)

	// The last character of a 16-byte code carries unused bits; changing
	// them decodes to the same bytes but is not the canonical spelling.
	nonCanonical := func() string {
		if len(raw)*8%5 == 0 {
			t.Fatalf("test needs a code with unused trailing bits, got %d bytes", len(raw))
		}
		last := code[len(code)-1]
		alphabet := "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
		idx := strings.IndexByte(alphabet, last)
		return code[:len(code)-1] + string(alphabet[idx^1])
	}()

	tests := []struct {
		name string
		code string
	}{
		{name: "empty", code: ""},
		{name: "spaces only", code: "   "},
		{name: "not base32", code: "HELLO-WORLD-1890"},
		{name: "padding", code: code + "===="},
		{name: "truncated", code: code[:len(code)-2]},
		{name: "extended", code: code + "AA"},
		{name: "tag only", code: encoding().EncodeToString(raw[len(raw)-tagSize:])},
		{name: "char swapped", code: swapFirst(code)},
		{name: "non-canonical trailing bits", code: nonCanonical},
		{name: "trailing payload bytes", code: forge(withTrailing)},
		{name: "expiry beyond int64", code: forge(hugeExpiry)},
		{name: "empty payload", code: forge(nil)},
		{name: "subject only", code: forge(binary.AppendVarint(nil, 42))},
		{name: "unterminated varint", code: forge([]byte{0xff, 0xff})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Verify(tt.code)
			if !errors.Is(err, ErrInvalidCode) {
				t.Errorf("Verify(%q) = %d, %v; want ErrInvalidCode", tt.code, got, err)
			}
			if got != 0 {
				t.Errorf("Verify() returned subject %d alongside an error", got)
			}
		})
	}
}

func swapFirst(code string) string {
	b := []byte(code)
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	return string(b)
}

func TestSignerConcurrentUse(t *testing.T) {
	s, _ := newTestSigner(t, "member_qr")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				id := int64(g*1000 + i)
				code, _ := s.Sign(id, time.Minute)
				if got, err := s.Verify(code); err != nil || got != id {
					t.Errorf("Verify() = %d, %v; want %d", got, err, id)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkSignVerify(b *testing.B) {
	s, err := NewSigner(testKey(), "member_qr", nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		code, _ := s.Sign(1_234_567, time.Minute)
		if _, err := s.Verify(code); err != nil {
			b.Fatal(err)
		}
	}
}
