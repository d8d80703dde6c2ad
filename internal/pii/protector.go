package pii

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

const (
	// KeySize is the required length of both the encryption and the index
	// key: AES-256 and a full-strength HMAC-SHA256 key.
	KeySize = 32

	// version prefixes every ciphertext so that keys or algorithms can be
	// rotated later without guessing how an old value was produced.
	version   byte = 0x01
	nonceSize      = 12
	tagSize        = 16
)

var (
	// ErrKeySize reports a key that is not exactly KeySize bytes long.
	ErrKeySize = errors.New("pii: key must be 32 bytes")
	// ErrKeyReuse reports the same bytes passed as encryption and index key.
	ErrKeyReuse = errors.New("pii: encryption and index keys must differ")
	// ErrCiphertext reports a ciphertext that is truncated, has an unknown
	// version, was tampered with, or belongs to another column (aad).
	ErrCiphertext = errors.New("pii: invalid ciphertext")
)

// Protector encrypts personal data and derives blind indexes for it.
// It is safe for concurrent use.
type Protector struct {
	aead     cipher.AEAD
	indexKey []byte
}

// NewProtector returns a Protector. encKey encrypts values; indexKey keys the
// blind indexes. They must be different, independent 32-byte keys: the index
// key is used far more often (every lookup) and must not give access to the
// plaintext if it leaks.
func NewProtector(encKey, indexKey []byte) (*Protector, error) {
	if len(encKey) != KeySize {
		return nil, fmt.Errorf("encryption key has %d bytes: %w", len(encKey), ErrKeySize)
	}
	if len(indexKey) != KeySize {
		return nil, fmt.Errorf("index key has %d bytes: %w", len(indexKey), ErrKeySize)
	}
	if hmac.Equal(encKey, indexKey) {
		return nil, ErrKeyReuse
	}
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return nil, fmt.Errorf("pii: aes: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("pii: gcm: %w", err)
	}
	return &Protector{
		aead: aead,
		// Copy so that a caller zeroing or reusing its buffer cannot change
		// the key under us.
		indexKey: append([]byte(nil), indexKey...),
	}, nil
}

// Encrypt seals plaintext with AES-256-GCM and returns
// version(1) | nonce(12) | ciphertext+tag.
//
// aad names the column the value is stored in (e.g. "member.phone"). It is
// authenticated but not stored, so a ciphertext copied into another column
// (or another table) fails to decrypt there.
//
// An empty plaintext yields a nil ciphertext so that "no value" stays NULL in
// the database rather than becoming a 29-byte blob.
func (p *Protector) Encrypt(plaintext, aad string) ([]byte, error) {
	if plaintext == "" {
		return nil, nil
	}
	out := make([]byte, 1+nonceSize, 1+nonceSize+len(plaintext)+tagSize)
	out[0] = version
	// Random nonces are safe here: at 2^32 messages per key the collision
	// probability stays below NIST's 2^-32 bound, far above our volume.
	if _, err := rand.Read(out[1 : 1+nonceSize]); err != nil {
		return nil, fmt.Errorf("pii: nonce: %w", err)
	}
	return p.aead.Seal(out, out[1:1+nonceSize], []byte(plaintext), additionalData(aad)), nil
}

// Decrypt opens a ciphertext produced by Encrypt with the same aad.
// A nil or empty ciphertext decrypts to "".
func (p *Protector) Decrypt(ct []byte, aad string) (string, error) {
	if len(ct) == 0 {
		return "", nil
	}
	if len(ct) < 1+nonceSize+tagSize {
		return "", fmt.Errorf("ciphertext has %d bytes: %w", len(ct), ErrCiphertext)
	}
	if ct[0] != version {
		return "", fmt.Errorf("unknown version %#x: %w", ct[0], ErrCiphertext)
	}
	pt, err := p.aead.Open(nil, ct[1:1+nonceSize], ct[1+nonceSize:], additionalData(aad))
	if err != nil {
		// The GCM error carries no detail worth keeping; the sentinel is
		// what callers act on.
		return "", fmt.Errorf("authentication: %w", ErrCiphertext)
	}
	return string(pt), nil
}

// additionalData binds the version byte as well as the column name, so that a
// future version cannot be confused with this one by flipping the prefix.
func additionalData(aad string) []byte {
	b := make([]byte, 0, 1+len(aad))
	b = append(b, version)
	return append(b, aad...)
}

// BlindIndex returns HMAC-SHA256(indexKey, kind | 0x00 | normalized).
//
// kind separates the index spaces of different data ("phone", "email", ...)
// so that equal strings of different kinds do not produce equal indexes. The
// value must already be normalised (see NormalizePhone): the index only
// supports exact-match lookups.
func (p *Protector) BlindIndex(kind, normalized string) []byte {
	m := hmac.New(sha256.New, p.indexKey)
	m.Write([]byte(kind))
	m.Write([]byte{0})
	m.Write([]byte(normalized))
	return m.Sum(nil)
}
