package coupon

// SetCodeSource replaces the code generator, so that tests can force
// collisions.
func SetCodeSource(s *Service, f func() (string, error)) { s.newCode = f }
