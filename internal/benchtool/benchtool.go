// Package benchtool is benchmark support: it hands scripts/bench.sh the
// credentials and member numbers its load scenarios need, straight from a
// seeded benchmark database, so that the load falls on the seeded members
// rather than on members signed up for the purpose.
//
// It is reached only through "server mint-tokens" and is never used by
// serve. It refuses to run with APP_ENV=production: it mints valid access
// tokens for arbitrary members, and an API client with write scope, without
// any sign-in, which is exactly what must never happen to real data.
//
//	server mint-tokens --count N [--seed S]            one member access token per line
//	server mint-tokens --member-numbers --count N [--seed S]   one memberNo per line
//	server mint-tokens --api-client                    one API client secret (ORDERS_WRITE)
//
// Members are picked at random among live (ACTIVE) members; the same seed
// over the same database picks the same members. --count 0 prints all of
// them, shuffled.
package benchtool

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/app"
	"github.com/onemember/onemember/internal/auth"
	"github.com/onemember/onemember/internal/auth/token"
	"github.com/onemember/onemember/internal/platform/config"
	"github.com/onemember/onemember/internal/seed"
)

// What Run prints.
type What int

// The outputs of mint-tokens.
const (
	MemberTokens What = iota
	MemberNumbers
	APIClient
)

// Options are the flags of mint-tokens.
type Options struct {
	What  What
	Count int   // members to pick; 0 means all live members
	Seed  int64 // random seed of the pick
	// WithHistory first seeds the picked members' history as server seed
	// does (seed.HistoryOf: two years of orders, top-ups, paid cards),
	// for a database seeded with --no-history.
	WithHistory bool
}

// ErrProduction is returned by Allowed in production.
var ErrProduction = errors.New("mint-tokens refuses to run with APP_ENV=production: it issues access tokens " +
	"for arbitrary members and creates an API client without any sign-in; it is for benchmark databases only")

// Allowed reports whether mint-tokens may run with cfg. Call it before
// opening the database (opening applies migrations).
func Allowed(cfg *config.Config) error {
	if cfg.IsProduction() {
		return ErrProduction
	}
	return nil
}

// ParseArgs parses the flags of mint-tokens.
func ParseArgs(args []string, usage io.Writer) (Options, error) {
	fs := flag.NewFlagSet("mint-tokens", flag.ContinueOnError)
	fs.SetOutput(usage)
	count := fs.Int("count", 200, "members to pick at random among live ones (0: all)")
	seed := fs.Int64("seed", 1, "random seed of the pick: the same seed picks the same members")
	numbers := fs.Bool("member-numbers", false, "print the picked members' memberNo instead of access tokens")
	client := fs.Bool("api-client", false, "create an API client with scope ORDERS_WRITE and print its secret")
	history := fs.Bool("with-history", false, "first seed the picked members' order history (for a database seeded with --no-history)")
	if err := fs.Parse(args); err != nil {
		return Options{}, err
	}
	if fs.NArg() > 0 {
		return Options{}, fmt.Errorf("mint-tokens: unexpected argument %q", fs.Arg(0))
	}
	o := Options{Count: *count, Seed: *seed, WithHistory: *history}
	switch {
	case *history && *client:
		return Options{}, errors.New("mint-tokens: --with-history picks members; --api-client does not")
	case *numbers && *client:
		return Options{}, errors.New("mint-tokens: --member-numbers and --api-client exclude each other")
	case *numbers:
		o.What = MemberNumbers
	case *client:
		o.What = APIClient
	}
	if o.Count < 0 {
		return Options{}, fmt.Errorf("mint-tokens: --count must not be negative, got %d", o.Count)
	}
	return o, nil
}

// Run prints what o asks for to w, one item per line.
//
// Member access tokens are issued by a.Sessions.Start, as at sign-in: the
// server's own token issuer (JWT key, issuer "onemember", ACCESS_TOKEN_TTL),
// kind member, and a new session (refresh-token family) per member, whose
// id the token carries as sid. The refresh token itself is not printed.
func Run(ctx context.Context, a *app.App, o Options, w io.Writer) error {
	if err := Allowed(a.Config); err != nil {
		return err
	}
	if o.What == APIClient {
		_, secret, err := a.Accounts.CreateAPIClient(ctx, auth.CreateAPIClientInput{
			Name: "bench till", Scopes: []enum.APIScope{enum.ScopeOrdersWrite},
		})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(w, secret)
		return err
	}
	picked, err := PickMembers(ctx, a.DB, o.Count, o.Seed)
	if err != nil {
		return err
	}
	if o.WithHistory {
		ids := make([]int, len(picked))
		for i, m := range picked {
			ids[i] = m.ID
		}
		if err := seed.HistoryOf(ctx, a, ids, o.Seed, time.Now()); err != nil {
			return fmt.Errorf("seeding the picked members' history: %w", err)
		}
	}
	for _, m := range picked {
		line := m.MemberNo
		if o.What == MemberTokens {
			t, err := a.Sessions.Start(ctx, nil, token.KindMember, m.ID)
			if err != nil {
				return fmt.Errorf("member %d: %w", m.ID, err)
			}
			line = t.Access
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return err
		}
	}
	return nil
}

// Member is a picked member.
type Member struct {
	ID       int    `json:"id"`
	MemberNo string `json:"member_no"`
}

// PickMembers returns n distinct live (ACTIVE) members chosen at random
// with seed (all of them, shuffled, when n is 0). It fails when fewer than
// n are live.
func PickMembers(ctx context.Context, db *ent.Client, n int, seed int64) ([]Member, error) {
	var all []Member
	err := db.Member.Query().Where(member.StatusEQ(member.StatusACTIVE)).
		Order(ent.Asc(member.FieldID)).
		Select(member.FieldID, member.FieldMemberNo).
		Scan(ctx, &all)
	if err != nil {
		return nil, fmt.Errorf("loading live members: %w", err)
	}
	if n == 0 {
		n = len(all)
	}
	if n > len(all) {
		return nil, fmt.Errorf("asked for %d members, the database has %d live ones (seed more with server seed --members)", n, len(all))
	}
	return Pick(all, n, seed), nil
}

// Pick returns n distinct elements of items chosen at random with seed: a
// partial Fisher–Yates shuffle of a copy, so that the same items and seed
// give the same answer. n must not exceed len(items).
func Pick[T any](items []T, n int, seed int64) []T {
	s := append([]T(nil), items...)
	rng := mrand.New(mrand.NewPCG(uint64(seed), uint64(seed)^0x9e3779b97f4a7c15))
	for i := 0; i < n; i++ {
		j := i + rng.IntN(len(s)-i)
		s[i], s[j] = s[j], s[i]
	}
	return s[:n]
}
