// Package otp owns the one-time codes sent by SMS for member login and
// sensitive actions: generating them uniformly and hashing them for storage
// so that a database leak does not reveal live codes.
package otp

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

const (
	// Digits is the length of a code.
	Digits = 6
	// space is the number of distinct codes, 10^Digits.
	space = 1_000_000
	// limit is the largest multiple of space that fits in a uint32. Random
	// values at or above it are rejected, because folding them into
	// [0, space) with % would make low codes slightly more likely.
	limit = (1 << 32) / space * space
)

// Generate returns a uniformly random 6-digit code, zero-padded ("004217").
func Generate() (string, error) {
	var b [4]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("otp: random: %w", err)
		}
		// Rejection happens with probability ~0.02%, so the loop almost
		// never repeats.
		if v := binary.BigEndian.Uint32(b[:]); v < limit {
			return fmt.Sprintf("%0*d", Digits, v%space), nil
		}
	}
}

// HashCode returns HMAC-SHA256(secretKey, len(scope) | scope | code).
//
// A code has only 10^6 values, so a plain hash could be reversed offline in
// milliseconds; keying it with a server-side secret (at least 32 bytes, kept
// outside the database) means a leaked table alone reveals nothing. scope
// binds the code to what it was sent for, e.g. the phone's blind index plus
// the purpose ("login", "change_phone"), so a code issued for one number or
// action cannot be replayed for another. The scope is length-prefixed so
// that no (scope, code) pair can be re-split into another.
func HashCode(secretKey []byte, scope, code string) []byte {
	m := hmac.New(sha256.New, secretKey)
	m.Write(binary.AppendUvarint(nil, uint64(len(scope))))
	m.Write([]byte(scope))
	m.Write([]byte(code))
	return m.Sum(nil)
}

// Equal reports whether two code hashes are equal in constant time, so that
// the time taken to reject a guess reveals nothing about the stored hash.
// Empty inputs never match: a missing stored hash (NULL column) must not
// accept anything.
func Equal(a, b []byte) bool {
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	return hmac.Equal(a, b)
}
