package token

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
)

func TestNewOpaque(t *testing.T) {
	tests := []struct {
		name   string
		prefix string
	}{
		{name: "refresh token", prefix: PrefixRefreshToken},
		{name: "api client secret", prefix: PrefixAPIClientSecret},
		{name: "no prefix", prefix: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret, hash, err := NewOpaque(tt.prefix)
			if err != nil {
				t.Fatalf("NewOpaque: %v", err)
			}
			body, ok := strings.CutPrefix(secret, tt.prefix)
			if !ok {
				t.Fatalf("secret %q lacks prefix %q", secret, tt.prefix)
			}
			raw, err := base64.RawURLEncoding.DecodeString(body)
			if err != nil {
				t.Fatalf("secret body is not unpadded base64url: %v", err)
			}
			if len(raw) != 32 {
				t.Errorf("secret carries %d random bytes; want 32", len(raw))
			}
			if !bytes.Equal(hash, HashOpaque(secret)) {
				t.Error("returned hash differs from HashOpaque(secret)")
			}
		})
	}
}

func TestNewOpaqueUnique(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		s, _, err := NewOpaque(PrefixRefreshToken)
		if err != nil {
			t.Fatal(err)
		}
		if seen[s] {
			t.Fatalf("duplicate secret %q", s)
		}
		seen[s] = true
	}
}

func TestHashOpaque(t *testing.T) {
	want := sha256.Sum256([]byte("omr_abc"))
	tests := []struct {
		name   string
		secret string
		same   bool
	}{
		{name: "same secret", secret: "omr_abc", same: true},
		{name: "other prefix", secret: "oms_abc", same: false},
		{name: "other body", secret: "omr_abd", same: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := HashOpaque(tt.secret)
			if len(got) != sha256.Size {
				t.Fatalf("len = %d", len(got))
			}
			if bytes.Equal(got, want[:]) != tt.same {
				t.Errorf("HashOpaque(%q) equality with SHA-256(\"omr_abc\") = %v; want %v", tt.secret, !tt.same, tt.same)
			}
		})
	}
}
