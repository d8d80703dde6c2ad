package password

import (
	"errors"
	"strings"
	"testing"
)

// testParams keep tests fast; production uses DefaultParams.
func testParams() Params {
	return Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
}

func TestHashVerifyRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		params   Params
		password string
	}{
		{name: "staff password", params: testParams(), password: "correct horse battery staple"},
		{name: "pay password", params: testParams(), password: "123456"},
		{name: "unicode", params: testParams(), password: "密码🔑"},
		{name: "empty", params: testParams(), password: ""},
		{name: "more threads", params: Params{Memory: 256, Time: 2, Threads: 4, SaltLen: 8, KeyLen: 16}, password: "pw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			encoded, err := tt.params.Hash(tt.password)
			if err != nil {
				t.Fatalf("Hash: %v", err)
			}
			ok, err := Verify(tt.password, encoded)
			if err != nil || !ok {
				t.Fatalf("Verify(right password) = %v, %v; want true, nil", ok, err)
			}
			ok, err = Verify(tt.password+"x", encoded)
			if err != nil || ok {
				t.Fatalf("Verify(wrong password) = %v, %v; want false, nil", ok, err)
			}
		})
	}
}

func TestHashDefault(t *testing.T) {
	encoded, err := Hash("654321")
	if err != nil {
		t.Fatal(err)
	}
	if want := "$argon2id$v=19$m=19456,t=2,p=1$"; !strings.HasPrefix(encoded, want) {
		t.Errorf("Hash() = %q; want prefix %q", encoded, want)
	}
	if ok, err := Verify("654321", encoded); err != nil || !ok {
		t.Errorf("Verify() = %v, %v; want true, nil", ok, err)
	}
	if NeedsRehash(encoded, DefaultParams()) {
		t.Error("NeedsRehash(default hash, DefaultParams()) = true")
	}
}

func TestHashFormatAndSalt(t *testing.T) {
	a, err := testParams().Hash("123456")
	if err != nil {
		t.Fatal(err)
	}
	b, err := testParams().Hash("123456")
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Error("two hashes of the same password are equal; salt is not random")
	}
	parts := strings.Split(a, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != "v=19" || parts[3] != "m=64,t=1,p=1" {
		t.Fatalf("unexpected format %q", a)
	}
	if len(parts[4]) != 22 || len(parts[5]) != 43 { // 16 and 32 bytes, unpadded
		t.Errorf("salt/hash encoding lengths = %d/%d; want 22/43", len(parts[4]), len(parts[5]))
	}
	if strings.ContainsRune(parts[4]+parts[5], '=') {
		t.Errorf("hash %q contains base64 padding", a)
	}
}

// TestVerifyReferenceVectors checks interoperability with hashes produced by
// the reference C implementation (libargon2 argon2id_hash_encoded), so
// hashes imported from or exported to other systems verify.
func TestVerifyReferenceVectors(t *testing.T) {
	tests := []struct {
		password, encoded string
	}{
		{"correct horse battery staple", "$argon2id$v=19$m=64,t=2,p=1$MDEyMzQ1Njc4OWFiY2RlZg$gAwJW5vx5itn2V9KHlEUjyUCrpDYgKyQf0gMaHGx1h4"},
		{"123456", "$argon2id$v=19$m=256,t=1,p=2$MDEyMzQ1Njc4OWFiY2RlZg$Rf6Dt3YEUs7Z8vqkDZ3Cdw"},
		{"密码🔑", "$argon2id$v=19$m=32,t=3,p=4$MDEyMzQ1Njc4OWFiY2RlZg$af7knKag2bW+pUEWsktV6L1Yiw3t+koiyuhYqDyHeRo"},
	}
	for _, tt := range tests {
		t.Run(tt.password, func(t *testing.T) {
			ok, err := Verify(tt.password, tt.encoded)
			if err != nil || !ok {
				t.Errorf("Verify() = %v, %v; want true, nil", ok, err)
			}
			ok, err = Verify("not"+tt.password, tt.encoded)
			if err != nil || ok {
				t.Errorf("Verify(wrong) = %v, %v; want false, nil", ok, err)
			}
		})
	}
}

func TestVerifyMalformed(t *testing.T) {
	const salt, key = "MDEyMzQ1Njc4OWFiY2RlZg", "Rf6Dt3YEUs7Z8vqkDZ3Cdw"
	tests := []struct {
		name    string
		encoded string
	}{
		{name: "empty", encoded: ""},
		{name: "bcrypt", encoded: "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"},
		{name: "argon2i", encoded: "$argon2i$v=19$m=256,t=1,p=2$" + salt + "$" + key},
		{name: "argon2d", encoded: "$argon2d$v=19$m=256,t=1,p=2$" + salt + "$" + key},
		{name: "old version", encoded: "$argon2id$v=16$m=256,t=1,p=2$" + salt + "$" + key},
		{name: "no version", encoded: "$argon2id$m=256,t=1,p=2$" + salt + "$" + key},
		{name: "missing hash", encoded: "$argon2id$v=19$m=256,t=1,p=2$" + salt},
		{name: "extra field", encoded: "$argon2id$v=19$m=256,t=1,p=2$" + salt + "$" + key + "$x"},
		{name: "no leading $", encoded: "argon2id$v=19$m=256,t=1,p=2$" + salt + "$" + key},
		{name: "params reordered", encoded: "$argon2id$v=19$t=1,m=256,p=2$" + salt + "$" + key},
		{name: "param missing", encoded: "$argon2id$v=19$m=256,t=1$" + salt + "$" + key},
		{name: "param extra", encoded: "$argon2id$v=19$m=256,t=1,p=2,k=1$" + salt + "$" + key},
		{name: "param not a number", encoded: "$argon2id$v=19$m=abc,t=1,p=2$" + salt + "$" + key},
		{name: "param negative", encoded: "$argon2id$v=19$m=-256,t=1,p=2$" + salt + "$" + key},
		{name: "param plus", encoded: "$argon2id$v=19$m=+256,t=1,p=2$" + salt + "$" + key},
		{name: "param leading zero", encoded: "$argon2id$v=19$m=0256,t=1,p=2$" + salt + "$" + key},
		{name: "param empty", encoded: "$argon2id$v=19$m=,t=1,p=2$" + salt + "$" + key},
		{name: "threads overflow", encoded: "$argon2id$v=19$m=256,t=1,p=256$" + salt + "$" + key},
		{name: "zero threads", encoded: "$argon2id$v=19$m=256,t=1,p=0$" + salt + "$" + key},
		{name: "zero time", encoded: "$argon2id$v=19$m=256,t=0,p=2$" + salt + "$" + key},
		{name: "memory below 8*p", encoded: "$argon2id$v=19$m=15,t=1,p=2$" + salt + "$" + key},
		{name: "memory too large", encoded: "$argon2id$v=19$m=4294967295,t=1,p=2$" + salt + "$" + key},
		{name: "time too large", encoded: "$argon2id$v=19$m=256,t=100000,p=2$" + salt + "$" + key},
		{name: "padded salt", encoded: "$argon2id$v=19$m=256,t=1,p=2$" + salt + "==$" + key},
		{name: "bad salt base64", encoded: "$argon2id$v=19$m=256,t=1,p=2$!!!!$" + key},
		{name: "short salt", encoded: "$argon2id$v=19$m=256,t=1,p=2$c2FsdA$" + key},
		{name: "short hash", encoded: "$argon2id$v=19$m=256,t=1,p=2$" + salt + "$c2hvcnQ"},
		{name: "empty hash", encoded: "$argon2id$v=19$m=256,t=1,p=2$" + salt + "$"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, err := Verify("123456", tt.encoded)
			if !errors.Is(err, ErrMalformedHash) || ok {
				t.Errorf("Verify() = %v, %v; want false, ErrMalformedHash", ok, err)
			}
			if !NeedsRehash(tt.encoded, testParams()) {
				t.Error("NeedsRehash(malformed) = false; want true")
			}
		})
	}
}

func TestParamsHashRejectsInvalid(t *testing.T) {
	tests := []struct {
		name string
		p    Params
	}{
		{name: "zero value", p: Params{}},
		{name: "zero threads", p: Params{Memory: 64, Time: 1, Threads: 0, SaltLen: 16, KeyLen: 32}},
		{name: "memory below 8*p", p: Params{Memory: 31, Time: 1, Threads: 4, SaltLen: 16, KeyLen: 32}},
		{name: "zero time", p: Params{Memory: 64, Time: 0, Threads: 1, SaltLen: 16, KeyLen: 32}},
		{name: "short salt", p: Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 4, KeyLen: 32}},
		{name: "short key", p: Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 8}},
		{name: "huge memory", p: Params{Memory: 1<<20 + 1, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.p.Hash("123456")
			if !errors.Is(err, ErrInvalidParams) || got != "" {
				t.Errorf("Hash() = %q, %v; want \"\", ErrInvalidParams", got, err)
			}
		})
	}
}

func TestNeedsRehash(t *testing.T) {
	encoded, err := testParams().Hash("123456")
	if err != nil {
		t.Fatal(err)
	}
	with := func(f func(*Params)) Params {
		p := testParams()
		f(&p)
		return p
	}
	tests := []struct {
		name string
		p    Params
		want bool
	}{
		{name: "same params", p: testParams(), want: false},
		{name: "more memory", p: with(func(p *Params) { p.Memory = 128 }), want: true},
		{name: "more time", p: with(func(p *Params) { p.Time = 2 }), want: true},
		{name: "more threads", p: with(func(p *Params) { p.Threads = 2 }), want: true},
		{name: "longer salt", p: with(func(p *Params) { p.SaltLen = 32 }), want: true},
		{name: "longer key", p: with(func(p *Params) { p.KeyLen = 64 }), want: true},
		{name: "defaults", p: DefaultParams(), want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := NeedsRehash(encoded, tt.p); got != tt.want {
				t.Errorf("NeedsRehash() = %v; want %v", got, tt.want)
			}
		})
	}
}

func TestDefaultParamsIsACopy(t *testing.T) {
	p := DefaultParams()
	p.Memory = 1
	if DefaultParams().Memory == 1 {
		t.Error("changing a returned Params changed the default")
	}
}

func BenchmarkHashDefault(b *testing.B) {
	for b.Loop() {
		if _, err := Hash("123456"); err != nil {
			b.Fatal(err)
		}
	}
}
