package otp

import (
	"bytes"
	"encoding/hex"
	"math"
	"testing"
)

func TestGenerateFormat(t *testing.T) {
	for range 2000 {
		code, err := Generate()
		if err != nil {
			t.Fatal(err)
		}
		if len(code) != Digits {
			t.Fatalf("code %q has %d characters; want %d", code, len(code), Digits)
		}
		for _, c := range code {
			if c < '0' || c > '9' {
				t.Fatalf("code %q contains %q", code, c)
			}
		}
	}
}

// TestGenerateDistribution is a coarse chi-squared check that every digit
// position is uniform. With 9 degrees of freedom the 99.99th percentile is
// about 33.7; 40 leaves room so the test is not flaky while still catching a
// stuck or badly biased generator.
func TestGenerateDistribution(t *testing.T) {
	const n = 20000
	var counts [Digits][10]int
	for range n {
		code, err := Generate()
		if err != nil {
			t.Fatal(err)
		}
		for i, c := range code {
			counts[i][c-'0']++
		}
	}
	const expected = n / 10.0
	for pos, row := range counts {
		var chi2 float64
		for _, got := range row {
			d := float64(got) - expected
			chi2 += d * d / expected
		}
		if chi2 > 40 || math.IsNaN(chi2) {
			t.Errorf("position %d: chi² = %.1f, counts %v", pos, chi2, row)
		}
	}
}

func TestLimitIsMultipleOfSpace(t *testing.T) {
	if limit%space != 0 || limit > math.MaxUint32 || math.MaxUint32-limit >= space {
		t.Errorf("limit %d is not the largest multiple of %d below 2^32", limit, space)
	}
}

func TestHashCode(t *testing.T) {
	key := bytes.Repeat([]byte{0x42}, 32)
	otherKey := bytes.Repeat([]byte{0x43}, 32)
	base := HashCode(key, "phoneidx|login", "123456")
	if len(base) != 32 {
		t.Fatalf("len = %d; want 32", len(base))
	}

	tests := []struct {
		name string
		hash []byte
		same bool
	}{
		{name: "same inputs", hash: HashCode(key, "phoneidx|login", "123456"), same: true},
		{name: "other code", hash: HashCode(key, "phoneidx|login", "123457"), same: false},
		{name: "other purpose", hash: HashCode(key, "phoneidx|change_phone", "123456"), same: false},
		{name: "other phone", hash: HashCode(key, "phoneidy|login", "123456"), same: false},
		{name: "other key", hash: HashCode(otherKey, "phoneidx|login", "123456"), same: false},
		// Moving characters across the scope/code boundary must change the
		// hash.
		{name: "shifted boundary", hash: HashCode(key, "phoneidx|login1", "23456"), same: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Equal(base, tt.hash); got != tt.same {
				t.Errorf("Equal() = %v; want %v", got, tt.same)
			}
		})
	}
}

// TestHashCodeVector pins the construction so stored hashes stay valid.
func TestHashCodeVector(t *testing.T) {
	// python3 -c 'import hmac,hashlib;print(hmac.new(b"\x42"*32,bytes([5])+b"login"+b"123456",hashlib.sha256).hexdigest())'
	const want = "f576a74e7434146361f41f41d5eb38fb984cf8557253934e17b7a1a241572aba"
	got := hex.EncodeToString(HashCode(bytes.Repeat([]byte{0x42}, 32), "login", "123456"))
	if got != want {
		t.Errorf("HashCode() = %s; want %s", got, want)
	}
}

func TestEqual(t *testing.T) {
	tests := []struct {
		name string
		a, b []byte
		want bool
	}{
		{name: "equal", a: []byte{1, 2, 3}, b: []byte{1, 2, 3}, want: true},
		{name: "differ", a: []byte{1, 2, 3}, b: []byte{1, 2, 4}, want: false},
		{name: "prefix", a: []byte{1, 2, 3}, b: []byte{1, 2}, want: false},
		{name: "empty vs nil", a: []byte{}, b: nil, want: false},
		{name: "both nil", a: nil, b: nil, want: false},
		{name: "nil vs hash", a: nil, b: []byte{1}, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Equal(tt.a, tt.b); got != tt.want {
				t.Errorf("Equal(%v, %v) = %v; want %v", tt.a, tt.b, got, tt.want)
			}
		})
	}
}
