package pii

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidPhone reports a string that is not a mainland China mobile number.
var ErrInvalidPhone = errors.New("pii: invalid mainland China mobile number")

// NormalizePhone returns the 11-digit form of a mainland China mobile number
// (^1[3-9]\d{9}$). It accepts spaces and dashes as separators and an optional
// +86, 0086 or 86 country prefix, which is how members type numbers and how
// WeChat returns them. Normalising before BlindIndex is what makes
// "+86 138-1234-1234" and "13812341234" find the same member.
func NormalizePhone(s string) (string, error) {
	digits := strings.Map(func(r rune) rune {
		if r == ' ' || r == '-' {
			return -1
		}
		return r
	}, s)

	switch {
	case strings.HasPrefix(digits, "+86"):
		digits = digits[len("+86"):]
	case strings.HasPrefix(digits, "0086"):
		digits = digits[len("0086"):]
	case len(digits) == 13 && strings.HasPrefix(digits, "86"):
		// A bare "86" is only a prefix when it makes the number two digits
		// too long; an 11-digit number never starts with 8.
		digits = digits[len("86"):]
	}

	if !isMobile(digits) {
		return "", fmt.Errorf("%q: %w", s, ErrInvalidPhone)
	}
	return digits, nil
}

// isMobile reports whether s matches ^1[3-9]\d{9}$ (ASCII digits only, so
// full-width or other Unicode digits are rejected).
func isMobile(s string) bool {
	if len(s) != 11 || s[0] != '1' || s[1] < '3' || s[1] > '9' {
		return false
	}
	for i := 2; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
