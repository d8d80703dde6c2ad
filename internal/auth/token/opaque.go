package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// Prefixes for opaque secrets. They make a leaked secret recognisable in
// logs and to secret scanners, and tell support staff what kind it is.
const (
	PrefixRefreshToken    = "omr_"
	PrefixAPIClientSecret = "oms_"
)

// opaqueSize is 256 bits of entropy.
const opaqueSize = 32

// NewOpaque returns a new secret, prefix followed by 32 random bytes in
// unpadded base64url, and its HashOpaque hash. Hand the secret to the client
// once and store only the hash.
func NewOpaque(prefix string) (string, []byte, error) {
	b := make([]byte, opaqueSize)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("token: opaque secret: %w", err)
	}
	secret := prefix + base64.RawURLEncoding.EncodeToString(b)
	return secret, HashOpaque(secret), nil
}

// HashOpaque returns SHA-256 of the whole secret, prefix included, for
// storage and lookup.
//
// A fast hash is right here, unlike for passwords: the secret has 256 bits of
// entropy, so an attacker holding the hash cannot enumerate candidates no
// matter how cheap each guess is, and a slow hash such as argon2 would only
// add latency and memory to every refresh and every till API call. Being
// unsalted and deterministic also lets the hash be a unique, indexed column,
// so the lookup itself is by hash and needs no constant-time comparison.
func HashOpaque(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}
