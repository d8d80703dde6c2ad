package coupon

// SetCodeSource replaces the code generator, so that tests can force
// collisions.
func SetCodeSource(s *Service, f func() (string, error)) { s.newCode = f }

// ClaimBatches is how many batches of claims s has served: fewer than the
// claims when group commit combines them.
func ClaimBatches(s *Service) int64 { return s.claims.batches.Load() }

// ClaimRunners is how many batches of one template run at once.
const ClaimRunners = claimRunners
