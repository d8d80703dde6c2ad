// Package gqlmodel holds hand-written GraphQL object types whose fields
// resolve lazily (history pages, expiring points): they carry the member id
// the field resolvers need. gqlgen.yml binds them.
package gqlmodel

import "github.com/onemember/onemember/ent"

// Growth is a member's growth value.
type Growth struct {
	MemberID   int
	Value      int64
	ToNextTier int64
	NextTier   *ent.Tier
}

// Points is a member's points balance.
type Points struct {
	MemberID int
	Balance  int64
}

// StoredValue is a member's stored-value balance.
type StoredValue struct {
	MemberID       int
	Balance        int64
	Principal      int64
	Bonus          int64
	HasPayPassword bool
}
