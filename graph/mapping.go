package graph

import (
	"github.com/onemember/onemember/graph/model"
	"github.com/onemember/onemember/internal/identity"
)

func memberAuthPayload(l identity.Login) *model.MemberAuthPayload {
	return &model.MemberAuthPayload{
		AccessToken: l.Access, RefreshToken: l.Refresh, ExpiresAt: l.ExpiresAt,
		IsNewMember: l.IsNewMember, Member: l.Member,
	}
}
