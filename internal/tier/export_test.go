package tier

// SetReviewBatch makes Review scan n members a pass, so that tests cover
// several passes without thousands of members.
func SetReviewBatch(s *Service, n int) { s.reviewBatch = n }
