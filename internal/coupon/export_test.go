package coupon

import (
	"context"

	"github.com/onemember/onemember/ent"
)

// SetCodeSource replaces the code generator, so that tests can force
// collisions.
func SetCodeSource(s *Service, f func() (string, error)) { s.newCode = f }

// ClaimBatches is how many batches of claims s has served: fewer than the
// claims when group commit combines them.
func ClaimBatches(s *Service) int64 { return s.claims.batches.Load() }

// ClaimRunners is how many batches of one template run at once.
const ClaimRunners = claimRunners

// ServeClaims serves claims of members for tpl as one batch, tpl being the
// template as a runner last read it (possibly stale), and answers each
// claim's error.
func ServeClaims(ctx context.Context, s *Service, tpl *ent.CouponTemplate, members ...int) []error {
	batch := make([]*claimReq, len(members))
	for i, m := range members {
		batch[i] = &claimReq{ctx: ctx, member: m, done: make(chan claimResult, 1)}
	}
	res := s.serveClaims(ctx, tpl, batch)
	errs := make([]error, len(res))
	for i, r := range res {
		errs[i] = r.err
	}
	return errs
}
