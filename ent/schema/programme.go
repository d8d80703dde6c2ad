package schema

import (
	"time"

	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/onemember/onemember/ent/schema/enum"
)

// TierChange records a move on the ladder with its reason (tierHistory).
type TierChange struct{ ent.Schema }

func (TierChange) Fields() []ent.Field {
	return []ent.Field{
		field.Int("member_id").Comment("moves to the survivor when members merge"),
		field.Int("from_tier_id").Optional().Nillable().Immutable(),
		field.Int("to_tier_id").Immutable(),
		field.Enum("direction").Values("UP", "DOWN").Immutable().Annotations(entgql.Type("TierDirection")),
		field.String("reason").Immutable(),
		field.Time("changed_at").Default(time.Now).Immutable(),
	}
}

func (TierChange) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("from", Tier.Type).Field("from_tier_id").Unique().Immutable(),
		edge.To("to", Tier.Type).Field("to_tier_id").Unique().Required().Immutable(),
	}
}

func (TierChange) Indexes() []ent.Index { return []ent.Index{index.Fields("member_id", "changed_at")} }

func (TierChange) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipWhereInput, entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)}
}

// EarningRule sets a business unit's earning rates, in permille per yuan
// (1000 = one point per yuan) so that earning stays integral.
type EarningRule struct{ ent.Schema }

func (EarningRule) Fields() []ent.Field {
	return []ent.Field{
		field.Int("business_unit_id").Unique(),
		field.Int("points_per_yuan_permille").Default(1000).NonNegative().Annotations(hidden()),
		field.Int("growth_per_yuan_permille").Default(1000).NonNegative().Annotations(hidden()),
	}
}

func (EarningRule) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("business_unit", BusinessUnit.Type).Field("business_unit_id").Unique().Required(),
	}
}

func (EarningRule) Indexes() []ent.Index {
	return []ent.Index{index.Fields("business_unit_id").Unique()}
}

func (EarningRule) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

func (EarningRule) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipWhereInput, entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)}
}

// PaidMembershipPlan is a paid card (付费会员卡) sold by period.
type PaidMembershipPlan struct{ ent.Schema }

func (PaidMembershipPlan) Fields() []ent.Field {
	return []ent.Field{
		field.String("code").NotEmpty().Unique(),
		field.String("name").NotEmpty(),
		field.Enum("period").GoType(enum.PlanPeriod("")).Annotations(sharedEnum("PlanPeriod")),
		field.Int64("price").NonNegative(),
		field.Bool("active").Default(true),
	}
}

func (PaidMembershipPlan) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("benefits", Benefit.Type).Annotations(entgql.Skip(entgql.SkipWhereInput)),
		edge.From("memberships", PaidMembership.Type).Ref("plan").Annotations(entgql.Skip(entgql.SkipAll)),
	}
}

func (PaidMembershipPlan) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

func (PaidMembershipPlan) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipWhereInput, entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)}
}

// PaidMembership is a member's subscription to a plan; buying again while
// active extends expires_at.
type PaidMembership struct{ ent.Schema }

func (PaidMembership) Fields() []ent.Field {
	return []ent.Field{
		field.Int("member_id"),
		field.Int("plan_id"),
		field.Enum("status").Values("ACTIVE", "EXPIRED", "CANCELLED").Default("ACTIVE").
			Annotations(entgql.Type("PaidMembershipStatus")),
		field.Time("started_at"),
		field.Time("expires_at"),
		field.Bool("auto_renew").Default(false),
	}
}

func (PaidMembership) Edges() []ent.Edge {
	return []ent.Edge{edge.To("plan", PaidMembershipPlan.Type).Field("plan_id").Unique().Required()}
}

func (PaidMembership) Indexes() []ent.Index {
	return []ent.Index{index.Fields("member_id", "plan_id").Unique(), index.Fields("status", "expires_at")}
}

func (PaidMembership) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

func (PaidMembership) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipWhereInput, entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)}
}

// PaidMembershipPurchase is one payment for a plan; the payment reference
// makes recording it idempotent.
type PaidMembershipPurchase struct{ ent.Schema }

func (PaidMembershipPurchase) Fields() []ent.Field {
	return []ent.Field{
		field.String("payment_ref").NotEmpty().Unique().Immutable(),
		field.Int("membership_id").Immutable(),
		field.Int64("amount").Immutable(),
		field.Time("period_start").Immutable(),
		field.Time("period_end").Immutable(),
		field.Time("created_at").Default(time.Now).Immutable(),
	}
}

// Indexes: the sales aggregates ask which paid periods cover an order.
func (PaidMembershipPurchase) Indexes() []ent.Index {
	return []ent.Index{index.Fields("membership_id", "period_start")}
}

func (PaidMembershipPurchase) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipAll)}
}

// Consent is a member's current answer for one kind of consent (PIPL).
type Consent struct{ ent.Schema }

func (Consent) Fields() []ent.Field {
	return []ent.Field{
		field.Int("member_id"),
		field.Enum("kind").GoType(enum.ConsentKind("")).Annotations(sharedEnum("ConsentKind")),
		field.Bool("granted"),
		field.Time("updated_at").Default(time.Now),
	}
}

func (Consent) Indexes() []ent.Index { return []ent.Index{index.Fields("member_id", "kind").Unique()} }

func (Consent) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipWhereInput, entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)}
}
