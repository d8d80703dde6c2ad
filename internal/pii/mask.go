package pii

import "strings"

// The masking functions decide what staff with the ANALYST role may see.
// They always work on runes, never bytes, because most names and many
// identifiers are Chinese. The hidden part is replaced by a fixed "****"
// (except in names) so that the mask does not reveal the value's length.

const stars = "****"

// MaskPhone keeps the first 3 and last 4 runes: "13812341234" → "138****1234".
// The carrier prefix and the last four digits are what staff use to confirm
// a member on the phone; values too short to hide anything are fully masked.
func MaskPhone(s string) string {
	return keepEnds(s, 3, 4, 8)
}

// MaskName keeps the first rune (usually the family name) and replaces every
// other rune with "*": "张三" → "张*", "欧阳娜娜" → "欧***". A single-rune
// name becomes "*".
func MaskName(s string) string {
	r := []rune(s)
	switch len(r) {
	case 0:
		return ""
	case 1:
		return "*"
	}
	return string(r[0]) + strings.Repeat("*", len(r)-1)
}

// MaskEmail keeps the first rune of the local part and the whole domain:
// "alice@example.com" → "a****@example.com". The domain is kept because it
// is rarely identifying and helps support staff spot typos. A value without
// a usable "@" is fully masked.
func MaskEmail(s string) string {
	if s == "" {
		return ""
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 {
		return stars
	}
	local := []rune(s[:at])
	return string(local[0]) + stars + s[at:]
}

// MaskIdentifier masks other identifiers (WeChat openid/unionid, card
// numbers, ...): it keeps the first 3 and last 2 runes, "oAbc…xyz9" →
// "oAb****z9". Values shorter than 8 runes are fully masked, because keeping
// five runes of them would reveal most of the value.
func MaskIdentifier(s string) string {
	return keepEnds(s, 3, 2, 8)
}

// keepEnds keeps head and tail runes around "****" when s has at least min
// runes, and returns "****" otherwise ("" stays "").
func keepEnds(s string, head, tail, min int) string {
	if s == "" {
		return ""
	}
	r := []rune(s)
	if len(r) < min {
		return stars
	}
	return string(r[:head]) + stars + string(r[len(r)-tail:])
}
