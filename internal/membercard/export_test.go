package membercard

// UsedSQLWindow reports whether c's tier status was finished from the
// retention window cardSQL computed (rather than read again by StatusOf).
func UsedSQLWindow(c *Card) bool { return !c.ruleWindow }

// LotGroups is how many expiry instants a card reads.
const LotGroups = lotGroups

// Statements is how many statements r has run to read cards.
func Statements(r *Reader) int64 { return r.batcher.statements.Load() }
