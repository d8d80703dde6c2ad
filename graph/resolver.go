// Package graph is the GraphQL layer: thin resolvers that authorize (through
// the @auth directive), call one service of internal/, and map the result.
package graph

import (
	"context"
	"log/slog"
	"time"

	"github.com/99designs/gqlgen/graphql"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/analytics"
	"github.com/onemember/onemember/internal/audience"
	"github.com/onemember/onemember/internal/auth"
	"github.com/onemember/onemember/internal/behavior"
	"github.com/onemember/onemember/internal/campaign"
	"github.com/onemember/onemember/internal/coupon"
	"github.com/onemember/onemember/internal/dashboard"
	"github.com/onemember/onemember/internal/eventbus"
	"github.com/onemember/onemember/internal/identity"
	"github.com/onemember/onemember/internal/jobqueue"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/marketing"
	"github.com/onemember/onemember/internal/member"
	"github.com/onemember/onemember/internal/membercard"
	"github.com/onemember/onemember/internal/membership"
	"github.com/onemember/onemember/internal/order"
	"github.com/onemember/onemember/internal/prediction"
	"github.com/onemember/onemember/internal/programme"
	"github.com/onemember/onemember/internal/tier"
)

// Resolver holds the services the resolvers call.
type Resolver struct {
	DB              *ent.Client
	Log             *slog.Logger
	Sessions        *auth.Sessions
	Accounts        *auth.Accounts
	Identity        *identity.Service
	MemberService   *member.Service
	Ledger          *ledger.Service
	TierService     *tier.Service
	Orders          *order.Service
	Membership      *membership.Service
	Programme       *programme.Service
	Zone            *time.Location
	Bus             *eventbus.Bus
	Coupons         *coupon.Service
	Marketing       *marketing.Service
	Behavior        *behavior.Service
	AudienceService *audience.Service
	Analytics       *analytics.Service
	Jobs            *jobqueue.Queue
	Dashboard       *dashboard.Service
	Predictions     *prediction.Service
	CampaignService *campaign.Service
	// Cards reads the signed-in member's card (MemberHome) in one statement.
	Cards *membercard.Reader
}

// NewSchema builds the executable schema with its directives.
func NewSchema(r *Resolver) graphql.ExecutableSchema {
	return NewExecutableSchema(Config{
		Resolvers:  r,
		Directives: DirectiveRoot{Auth: authDirective},
	})
}

// authDirective applies auth.Authorize: the one place where access to a
// field is decided.
func authDirective(ctx context.Context, _ any, next graphql.Resolver, member *bool, staff []enum.StaffRole, scope *enum.APIScope) (any, error) {
	rule := auth.Rule{Member: member != nil && *member, Staff: staff, Scope: scope}
	if err := auth.Authorize(ctx, rule); err != nil {
		return nil, err
	}
	return next(ctx)
}
