package identity

import (
	"context"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/otpchallenge"
	"github.com/onemember/onemember/internal/auth/otp"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Purpose is what a one-time code is for; a code of one purpose never
// serves another.
type Purpose string

// Purposes.
const (
	PurposeLogin       Purpose = "LOGIN"
	PurposeBindPhone   Purpose = "BIND_PHONE"
	PurposePayPassword Purpose = "PAY_PASSWORD"
)

// OTP errors.
var (
	ErrOTPInvalid  = fault.New(fault.BadUserInput, "the code is wrong or has expired")
	ErrOTPLocked   = fault.New(fault.RateLimited, "too many wrong codes: request a new one")
	ErrOTPTooSoon  = fault.New(fault.RateLimited, "a code was sent moments ago: wait before asking again")
	ErrOTPTooMany  = fault.New(fault.RateLimited, "too many codes requested: try again later")
	ErrInvalidCode = fault.Invalidf("otp", "must be 6 digits")
)

// OTPPolicy sets lifetimes and limits of one-time codes.
type OTPPolicy struct {
	TTL          time.Duration
	MaxAttempts  int
	PerPhoneHour int
	PerIPHour    int
	ResendAfter  time.Duration
}

// RateLimitError is a rate-limit refusal that says when to retry.
type RateLimitError struct {
	Err        *fault.Error
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string { return e.Err.Error() }
func (e *RateLimitError) Unwrap() error { return e.Err }

// RequestOTP creates and sends a code for phone. Per-phone work is
// serialized with an advisory lock so that concurrent requests cannot slip
// past the limits; the limits are counted from stored challenges, so they
// hold across replicas.
func (s *Service) RequestOTP(ctx context.Context, rawPhone string, purpose Purpose, clientIP string) (time.Duration, error) {
	phone, err := normalizePhone(rawPhone)
	if err != nil {
		return 0, err
	}
	idx := s.pii.BlindIndex(identityPhone, phone)
	code, err := otp.Generate()
	if err != nil {
		return 0, err
	}
	now := s.now()
	_, err = database.WithTx(ctx, s.db, func(tx *ent.Tx) (struct{}, error) {
		if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey("otp", idx)); err != nil {
			return struct{}{}, fmt.Errorf("locking phone: %w", err)
		}
		last, err := tx.OtpChallenge.Query().
			Where(otpchallenge.PhoneIndex(idx), otpchallenge.Purpose(string(purpose))).
			Order(ent.Desc(otpchallenge.FieldCreatedAt)).First(ctx)
		if err != nil && !ent.IsNotFound(err) {
			return struct{}{}, fmt.Errorf("loading last code: %w", err)
		}
		if last != nil && now.Sub(last.CreatedAt) < s.otp.ResendAfter {
			return struct{}{}, &RateLimitError{Err: ErrOTPTooSoon, RetryAfter: s.otp.ResendAfter - now.Sub(last.CreatedAt)}
		}
		hourAgo := now.Add(-time.Hour)
		perPhone, err := tx.OtpChallenge.Query().
			Where(otpchallenge.PhoneIndex(idx), otpchallenge.CreatedAtGT(hourAgo)).Count(ctx)
		if err != nil {
			return struct{}{}, fmt.Errorf("counting codes: %w", err)
		}
		perIP := 0
		if clientIP != "" {
			if perIP, err = tx.OtpChallenge.Query().
				Where(otpchallenge.ClientIP(clientIP), otpchallenge.CreatedAtGT(hourAgo)).Count(ctx); err != nil {
				return struct{}{}, fmt.Errorf("counting codes: %w", err)
			}
		}
		if perPhone >= s.otp.PerPhoneHour || (clientIP != "" && perIP >= s.otp.PerIPHour) {
			return struct{}{}, &RateLimitError{Err: ErrOTPTooMany, RetryAfter: time.Hour}
		}
		return struct{}{}, tx.OtpChallenge.Create().
			SetPhoneIndex(idx).SetPurpose(string(purpose)).
			SetCodeHash(otp.HashCode(s.otpKey, otpScope(idx, purpose), code)).
			SetClientIP(clientIP).SetCreatedAt(now).SetExpiresAt(now.Add(s.otp.TTL)).
			Exec(ctx)
	})
	if err != nil {
		return 0, err
	}
	// Sent after commit: a code is never delivered that was not stored.
	if err := s.sms.SendOTP(ctx, phone, code, string(purpose)); err != nil {
		return 0, fmt.Errorf("sending code: %w", err)
	}
	return s.otp.ResendAfter, nil
}

// VerifyOTP consumes the latest live code of phone and purpose. A wrong
// guess is counted in its own committed transaction, so failed attempts
// add up whatever the caller does next; after MaxAttempts the code is dead.
func (s *Service) VerifyOTP(ctx context.Context, phone string, purpose Purpose, code string) error {
	if len(code) != 6 {
		return ErrInvalidCode
	}
	idx := s.pii.BlindIndex(identityPhone, phone)
	now := s.now()
	var wrong bool
	_, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (struct{}, error) {
		ch, err := tx.OtpChallenge.Query().
			Where(otpchallenge.PhoneIndex(idx), otpchallenge.Purpose(string(purpose)),
				otpchallenge.ConsumedAtIsNil(), otpchallenge.ExpiresAtGT(now)).
			Order(ent.Desc(otpchallenge.FieldCreatedAt)).ForUpdate().First(ctx)
		if ent.IsNotFound(err) {
			return struct{}{}, ErrOTPInvalid
		}
		if err != nil {
			return struct{}{}, fmt.Errorf("loading code: %w", err)
		}
		if ch.Attempts >= s.otp.MaxAttempts {
			return struct{}{}, ErrOTPLocked
		}
		if !otp.Equal(ch.CodeHash, otp.HashCode(s.otpKey, otpScope(idx, purpose), code)) {
			wrong = true
			return struct{}{}, tx.OtpChallenge.UpdateOne(ch).AddAttempts(1).Exec(ctx)
		}
		return struct{}{}, tx.OtpChallenge.UpdateOne(ch).SetConsumedAt(now).Exec(ctx)
	})
	if err != nil {
		return err
	}
	if wrong {
		return ErrOTPInvalid
	}
	return nil
}

func otpScope(phoneIndex []byte, p Purpose) string {
	return hex.EncodeToString(phoneIndex) + ":" + string(p)
}

// lockKey maps a namespace and key to an advisory lock id.
func lockKey(ns string, key []byte) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(ns))
	_, _ = h.Write(key)
	return int64(h.Sum64())
}

// ErrNoPhone is a member-scoped code asked of a member without a phone.
var ErrNoPhone = fault.Invalidf("phone", "bind a phone first")

// VerifyMemberOTP checks a code sent to the member's own bound phone (for
// setting the pay password).
func (s *Service) VerifyMemberOTP(ctx context.Context, m *ent.Member, purpose Purpose, code string) error {
	if len(m.PhoneEnc) == 0 {
		return ErrNoPhone
	}
	phone, err := s.pii.Decrypt(m.PhoneEnc, "member.phone")
	if err != nil {
		return fmt.Errorf("decrypting phone of member %d: %w", m.ID, err)
	}
	return s.VerifyOTP(ctx, phone, purpose, code)
}
