// Package password owns the hashing and verification of secrets that humans
// choose: staff login passwords and members' 6-digit pay passwords. Hashes
// are argon2id in the PHC string format, so the parameters travel with each
// hash and can be raised later (see NeedsRehash) without a migration.
package password

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/argon2"
)

var (
	// ErrMalformedHash reports an encoded hash that is not a supported
	// argon2id PHC string.
	ErrMalformedHash = errors.New("password: malformed hash")
	// ErrInvalidParams reports Params outside the accepted bounds.
	ErrInvalidParams = errors.New("password: invalid parameters")
)

// Bounds on parameters. The upper bounds matter most when verifying: the
// parameters come from the stored string, and a corrupted or planted hash
// must not make a login allocate gigabytes or spin for minutes.
const (
	minMemory  = 8       // KiB; argon2 requires at least 8*Threads
	maxMemory  = 1 << 20 // KiB = 1 GiB
	maxTime    = 64      // passes
	minSaltLen = 8       // bytes, RFC 9106 minimum
	maxSaltLen = 64      // bytes
	minKeyLen  = 16      // bytes
	maxKeyLen  = 128     // bytes
)

// Params are the argon2id cost parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32 // passes over memory
	Threads uint8  // lanes
	SaltLen uint32 // bytes of random salt
	KeyLen  uint32 // bytes of derived key
}

// DefaultParams returns the parameters used by Hash: m=19 MiB, t=2, p=1,
// OWASP's first recommended argon2id configuration. OWASP lists
// equivalent trade-offs; this one keeps peak memory low, which matters
// because member pay-password checks arrive in bursts (many tills at
// opening hours) and each concurrent verification holds Memory KiB.
//
// It is a function, not a variable, so no caller can change the default for
// everybody else.
func DefaultParams() Params {
	return Params{
		Memory:  19 * 1024,
		Time:    2,
		Threads: 1,
		SaltLen: 16,
		KeyLen:  32,
	}
}

// Hash hashes password with DefaultParams.
//
// A 6-digit pay password has only 10^6 values, so no hash can stop an
// attacker who holds the stored hash from finding it offline; argon2id only
// makes that cost a few hours instead of milliseconds. What protects pay
// passwords is keeping hashes out of reach and limiting online attempts,
// which is the caller's job.
func Hash(password string) (string, error) {
	return DefaultParams().Hash(password)
}

// Hash hashes password with p and returns a PHC string:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>
//
// with salt and hash in unpadded standard base64.
func (p Params) Hash(password string) (string, error) {
	if err := p.validate(); err != nil {
		return "", err
	}
	salt := make([]byte, p.SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("password: salt: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt),
		base64.RawStdEncoding.EncodeToString(key),
	), nil
}

// Verify reports whether password matches encoded. The parameters are read
// from encoded, not from DefaultParams, so hashes made with older
// parameters keep working. A mismatch is (false, nil); an encoded value that
// cannot be parsed is (false, ErrMalformedHash).
func Verify(password, encoded string) (bool, error) {
	p, salt, want, err := decode(encoded)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	// Constant-time so that response timing reveals nothing about how
	// much of the derived key matched.
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// NeedsRehash reports whether encoded was made with parameters other than p
// (or cannot be parsed). Call it after a successful Verify and, if true,
// store Hash of the password the user just proved to know.
func NeedsRehash(encoded string, p Params) bool {
	got, _, _, err := decode(encoded)
	return err != nil || got != p
}

func (p Params) validate() error {
	switch {
	case p.Threads < 1:
		return fmt.Errorf("threads %d: %w", p.Threads, ErrInvalidParams)
	case p.Memory < minMemory*uint32(p.Threads) || p.Memory > maxMemory:
		return fmt.Errorf("memory %d KiB: %w", p.Memory, ErrInvalidParams)
	case p.Time < 1 || p.Time > maxTime:
		return fmt.Errorf("time %d: %w", p.Time, ErrInvalidParams)
	case p.SaltLen < minSaltLen || p.SaltLen > maxSaltLen:
		return fmt.Errorf("salt length %d: %w", p.SaltLen, ErrInvalidParams)
	case p.KeyLen < minKeyLen || p.KeyLen > maxKeyLen:
		return fmt.Errorf("key length %d: %w", p.KeyLen, ErrInvalidParams)
	}
	return nil
}

// decode parses a PHC argon2id string. It is strict (exact field order, no
// padding, canonical numbers) because a stored hash is only ever produced by
// Params.Hash; anything else is corruption or tampering.
func decode(encoded string) (Params, []byte, []byte, error) {
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return Params{}, nil, nil, fmt.Errorf("not an argon2id PHC string: %w", ErrMalformedHash)
	}
	if parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return Params{}, nil, nil, fmt.Errorf("version %q: %w", parts[2], ErrMalformedHash)
	}

	var p Params
	fields := strings.Split(parts[3], ",")
	if len(fields) != 3 {
		return Params{}, nil, nil, fmt.Errorf("parameters %q: %w", parts[3], ErrMalformedHash)
	}
	var err error
	if p.Memory, err = param(fields[0], "m=", 32); err != nil {
		return Params{}, nil, nil, err
	}
	if p.Time, err = param(fields[1], "t=", 32); err != nil {
		return Params{}, nil, nil, err
	}
	threads, err := param(fields[2], "p=", 8)
	if err != nil {
		return Params{}, nil, nil, err
	}
	p.Threads = uint8(threads)

	salt, err := base64.RawStdEncoding.Strict().DecodeString(parts[4])
	if err != nil {
		return Params{}, nil, nil, fmt.Errorf("%w: salt: %v", ErrMalformedHash, err)
	}
	key, err := base64.RawStdEncoding.Strict().DecodeString(parts[5])
	if err != nil {
		return Params{}, nil, nil, fmt.Errorf("%w: hash: %v", ErrMalformedHash, err)
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))

	if err := p.validate(); err != nil {
		return Params{}, nil, nil, fmt.Errorf("%w: %w", ErrMalformedHash, err)
	}
	return p, salt, key, nil
}

// param parses "<name><decimal>" with no sign and no leading zeros.
func param(field, name string, bits int) (uint32, error) {
	digits, ok := strings.CutPrefix(field, name)
	if !ok || digits == "" || (len(digits) > 1 && digits[0] == '0') || digits[0] == '+' {
		return 0, fmt.Errorf("parameter %q: %w", field, ErrMalformedHash)
	}
	v, err := strconv.ParseUint(digits, 10, bits)
	if err != nil {
		return 0, fmt.Errorf("parameter %q: %w", field, ErrMalformedHash)
	}
	return uint32(v), nil
}
