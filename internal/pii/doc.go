// Package pii owns the protection of members' personal data at rest and on
// screen: authenticated encryption of stored columns (phone, name, openid,
// ...), keyed blind indexes that allow equality lookups without keeping the
// value in clear, normalisation of mainland China mobile numbers so that the
// blind index is stable, and the masking rules applied when staff with the
// ANALYST role look at member records.
//
// The package holds no keys of its own; callers load them from the secret
// store and pass them to NewProtector.
package pii
