// Package fault owns the error vocabulary shared by every domain: the kinds
// of failure a client can act on, each with the extensions.code the API
// reports. Domains declare their own sentinels wrapping one of these kinds
// (`ErrInsufficient = fault.New(fault.InsufficientBalance, "...")`); only
// the GraphQL error presenter turns kinds into codes.
package fault

import (
	"errors"
	"fmt"
	"strings"
)

// Code is the extensions.code of an error as clients see it.
type Code string

// The codes of shared/clients/README.md.
const (
	Unauthenticated     Code = "UNAUTHENTICATED"
	Forbidden           Code = "FORBIDDEN"
	NotFound            Code = "NOT_FOUND"
	BadUserInput        Code = "BAD_USER_INPUT"
	Conflict            Code = "CONFLICT"
	InsufficientBalance Code = "INSUFFICIENT_BALANCE"
	OutOfStock          Code = "OUT_OF_STOCK"
	LimitExceeded       Code = "LIMIT_EXCEEDED"
	RateLimited         Code = "RATE_LIMITED"
	EventsExpired       Code = "EVENTS_EXPIRED"
	Internal            Code = "INTERNAL"
)

// Error is a failure a client can act on.
type Error struct {
	Code    Code
	Message string
}

func (e *Error) Error() string { return e.Message }

// Is makes every *Error of a code match the bare kind sentinel, so
// errors.Is(err, fault.ErrNotFound) holds for any not-found error.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Message == "" && t.Code == e.Code
}

// New declares a sentinel of a kind.
func New(code Code, message string) *Error { return &Error{Code: code, Message: message} }

// Kind sentinels, for errors.Is checks on the kind alone.
var (
	ErrUnauthenticated     = &Error{Code: Unauthenticated}
	ErrForbidden           = &Error{Code: Forbidden}
	ErrNotFound            = &Error{Code: NotFound}
	ErrBadUserInput        = &Error{Code: BadUserInput}
	ErrConflict            = &Error{Code: Conflict}
	ErrInsufficientBalance = &Error{Code: InsufficientBalance}
	ErrOutOfStock          = &Error{Code: OutOfStock}
	ErrLimitExceeded       = &Error{Code: LimitExceeded}
	ErrRateLimited         = &Error{Code: RateLimited}
	ErrEventsExpired       = &Error{Code: EventsExpired}
)

// CodeOf returns the code of the first *Error in err's chain, or Internal.
func CodeOf(err error) Code {
	if f := (*Error)(nil); errors.As(err, &f) {
		return f.Code
	}
	if v := (*Invalid)(nil); errors.As(err, &v) {
		return BadUserInput
	}
	return Internal
}

// Invalid reports bad input naming the field, so that a form can point at
// it. Validate methods join several of them with errors.Join.
type Invalid struct {
	Field  string
	Reason string
}

func (e *Invalid) Error() string { return e.Field + ": " + e.Reason }

// Is makes Invalid match ErrBadUserInput.
func (e *Invalid) Is(target error) bool { return target == ErrBadUserInput }

// Invalidf builds an *Invalid.
func Invalidf(field, format string, args ...any) *Invalid {
	return &Invalid{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Fields lists every *Invalid joined into err, in order.
func Fields(err error) []*Invalid {
	var out []*Invalid
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if v, ok := e.(*Invalid); ok {
			out = append(out, v)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}

// Message renders the client-facing message of a classified error: the
// field problems joined, or the error's own text.
func Message(err error) string {
	if fs := Fields(err); len(fs) > 0 {
		parts := make([]string, len(fs))
		for i, f := range fs {
			parts[i] = f.Error()
		}
		return "invalid input: " + strings.Join(parts, "; ")
	}
	return err.Error()
}
