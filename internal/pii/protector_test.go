package pii

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"testing"
)

func testKeys() (enc, idx []byte) {
	enc = bytes.Repeat([]byte{0x11}, KeySize)
	idx = bytes.Repeat([]byte{0x22}, KeySize)
	return enc, idx
}

func newTestProtector(t testing.TB) *Protector {
	t.Helper()
	enc, idx := testKeys()
	p, err := NewProtector(enc, idx)
	if err != nil {
		t.Fatalf("NewProtector: %v", err)
	}
	return p
}

func TestNewProtector(t *testing.T) {
	enc, idx := testKeys()
	tests := []struct {
		name     string
		enc, idx []byte
		wantErr  error
		wantMsg  string
	}{
		{name: "ok", enc: enc, idx: idx},
		{name: "short enc", enc: enc[:31], idx: idx, wantErr: ErrKeySize, wantMsg: "encryption key"},
		{name: "long enc", enc: append(enc, 0), idx: idx, wantErr: ErrKeySize, wantMsg: "encryption key"},
		{name: "nil enc", enc: nil, idx: idx, wantErr: ErrKeySize, wantMsg: "encryption key"},
		{name: "short idx", enc: enc, idx: idx[:16], wantErr: ErrKeySize, wantMsg: "index key"},
		{name: "same keys", enc: enc, idx: enc, wantErr: ErrKeyReuse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewProtector(tt.enc, tt.idx)
			if tt.wantErr == nil {
				if err != nil || p == nil {
					t.Fatalf("NewProtector() = %v, %v; want protector", p, err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("NewProtector() error = %v; want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("error %q does not name %q", err, tt.wantMsg)
			}
		})
	}
}

func TestNewProtectorCopiesIndexKey(t *testing.T) {
	enc, idx := testKeys()
	p, err := NewProtector(enc, idx)
	if err != nil {
		t.Fatal(err)
	}
	before := p.BlindIndex("phone", "13812341234")
	idx[0] ^= 0xff
	if after := p.BlindIndex("phone", "13812341234"); !bytes.Equal(before, after) {
		t.Error("mutating the caller's key changed the blind index")
	}
}

func TestEncryptDecryptRoundTrip(t *testing.T) {
	p := newTestProtector(t)
	tests := []struct {
		name      string
		plaintext string
		aad       string
	}{
		{name: "phone", plaintext: "13812341234", aad: "member.phone"},
		{name: "chinese name", plaintext: "欧阳娜娜", aad: "member.name"},
		{name: "empty aad", plaintext: "13900001111", aad: ""},
		{name: "long", plaintext: strings.Repeat("长", 4096), aad: "member.note"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct, err := p.Encrypt(tt.plaintext, tt.aad)
			if err != nil {
				t.Fatalf("Encrypt: %v", err)
			}
			if got, want := len(ct), 1+nonceSize+len(tt.plaintext)+tagSize; got != want {
				t.Errorf("len(ct) = %d; want %d", got, want)
			}
			if ct[0] != 0x01 {
				t.Errorf("version byte = %#x; want 0x01", ct[0])
			}
			// Every plaintext here is long enough (≥ 11 bytes) that random
			// ciphertext cannot contain it by chance.
			if bytes.Contains(ct, []byte(tt.plaintext)) {
				t.Error("ciphertext contains the plaintext")
			}
			got, err := p.Decrypt(ct, tt.aad)
			if err != nil {
				t.Fatalf("Decrypt: %v", err)
			}
			if got != tt.plaintext {
				t.Errorf("Decrypt() = %q; want %q", got, tt.plaintext)
			}
		})
	}
}

func TestEncryptIsRandomized(t *testing.T) {
	p := newTestProtector(t)
	a, err := p.Encrypt("13812341234", "member.phone")
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Encrypt("13812341234", "member.phone")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, b) {
		t.Error("two encryptions of the same value are equal; nonce is not random")
	}
}

func TestEmptyValues(t *testing.T) {
	p := newTestProtector(t)
	ct, err := p.Encrypt("", "member.phone")
	if err != nil || ct != nil {
		t.Fatalf("Encrypt(\"\") = %v, %v; want nil, nil", ct, err)
	}
	for _, in := range [][]byte{nil, {}} {
		got, err := p.Decrypt(in, "member.phone")
		if err != nil || got != "" {
			t.Errorf("Decrypt(%v) = %q, %v; want \"\", nil", in, got, err)
		}
	}
}

func TestDecryptRejects(t *testing.T) {
	p := newTestProtector(t)
	ct, err := p.Encrypt("13812341234", "member.phone")
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) []byte {
		c := bytes.Clone(ct)
		c[i] ^= 0x01
		return c
	}
	enc, idx := testKeys()
	enc[0] ^= 0xff
	other, err := NewProtector(enc, idx)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		p    *Protector
		ct   []byte
		aad  string
	}{
		{name: "other column", p: p, ct: ct, aad: "member.name"},
		{name: "other key", p: other, ct: ct, aad: "member.phone"},
		{name: "version byte", p: p, ct: flip(0), aad: "member.phone"},
		{name: "nonce", p: p, ct: flip(1), aad: "member.phone"},
		{name: "body", p: p, ct: flip(1 + nonceSize), aad: "member.phone"},
		{name: "tag", p: p, ct: flip(len(ct) - 1), aad: "member.phone"},
		{name: "truncated", p: p, ct: ct[:len(ct)-1], aad: "member.phone"},
		{name: "too short", p: p, ct: ct[:1+nonceSize+tagSize-1], aad: "member.phone"},
		{name: "version only", p: p, ct: []byte{0x01}, aad: "member.phone"},
		{name: "appended byte", p: p, ct: append(bytes.Clone(ct), 0), aad: "member.phone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.p.Decrypt(tt.ct, tt.aad)
			if !errors.Is(err, ErrCiphertext) {
				t.Fatalf("Decrypt() = %q, %v; want ErrCiphertext", got, err)
			}
			if got != "" {
				t.Errorf("Decrypt() returned plaintext %q alongside an error", got)
			}
		})
	}
}

func TestBlindIndex(t *testing.T) {
	p := newTestProtector(t)
	enc, idx := testKeys()
	idx[0] ^= 0xff
	other, err := NewProtector(enc, idx)
	if err != nil {
		t.Fatal(err)
	}

	base := p.BlindIndex("phone", "13812341234")
	if len(base) != 32 {
		t.Fatalf("len = %d; want 32", len(base))
	}
	if !bytes.Equal(base, p.BlindIndex("phone", "13812341234")) {
		t.Error("blind index is not deterministic")
	}

	tests := []struct {
		name  string
		index []byte
	}{
		{name: "other value", index: p.BlindIndex("phone", "13812341235")},
		{name: "other kind", index: p.BlindIndex("email", "13812341234")},
		// The 0x00 separator keeps ("phone1", "3812341234") apart from
		// ("phone", "13812341234").
		{name: "shifted boundary", index: p.BlindIndex("phone1", "3812341234")},
		{name: "other key", index: other.BlindIndex("phone", "13812341234")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if bytes.Equal(base, tt.index) {
				t.Error("blind index collides")
			}
		})
	}
}

// TestBlindIndexVector pins the construction so a refactor cannot silently
// change every stored index.
func TestBlindIndexVector(t *testing.T) {
	enc := bytes.Repeat([]byte{0x11}, KeySize)
	idx := make([]byte, KeySize)
	for i := range idx {
		idx[i] = byte(i)
	}
	p, err := NewProtector(enc, idx)
	if err != nil {
		t.Fatal(err)
	}
	// Computed independently with:
	// python3 -c 'import hmac,hashlib;print(hmac.new(bytes(range(32)),b"phone\x0013812341234",hashlib.sha256).hexdigest())'
	const want = "5ac63df9505f6e64ae46de9292be8242e43922229f992e4de98de1f85fd934ca"
	if got := hex.EncodeToString(p.BlindIndex("phone", "13812341234")); got != want {
		t.Errorf("BlindIndex = %s; want %s", got, want)
	}
}

func TestProtectorConcurrentUse(t *testing.T) {
	p := newTestProtector(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				ct, err := p.Encrypt("13812341234", "member.phone")
				if err != nil {
					t.Error(err)
					return
				}
				if got, err := p.Decrypt(ct, "member.phone"); err != nil || got != "13812341234" {
					t.Errorf("Decrypt() = %q, %v", got, err)
					return
				}
				_ = p.BlindIndex("phone", "13812341234")
			}
		})
	}
	wg.Wait()
}

func BenchmarkEncrypt(b *testing.B) {
	p := newTestProtector(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Encrypt("13812341234", "member.phone"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecrypt(b *testing.B) {
	p := newTestProtector(b)
	ct, err := p.Encrypt("13812341234", "member.phone")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Decrypt(ct, "member.phone"); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBlindIndex(b *testing.B) {
	p := newTestProtector(b)
	b.ReportAllocs()
	for b.Loop() {
		_ = p.BlindIndex("phone", "13812341234")
	}
}
