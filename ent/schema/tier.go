package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// Tier is one level of the membership ladder (等级). Growth thresholds are
// whole growth points; monthly spend is fen. The points multiplier is kept
// in permille so that ledger arithmetic stays integral.
type Tier struct{ ent.Schema }

func (Tier) Fields() []ent.Field {
	return []ent.Field{
		field.String("code").NotEmpty().Unique(),
		field.String("name").NotEmpty(),
		field.Int("rank").Unique(),
		field.Int64("threshold").NonNegative(),
		field.Int64("monthly_spend_required").Default(0).NonNegative().Annotations(hidden()),
		field.Int("referrals_required").Default(0).NonNegative(),
		field.Int("retention_months").Default(12).Positive(),
		field.Int("points_multiplier_permille").Default(1000).Positive().Annotations(hidden()),
	}
}

func (Tier) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("benefits", Benefit.Type).Annotations(entgql.Skip(entgql.SkipWhereInput)),
	}
}

func (Tier) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

func (Tier) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipWhereInput, entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)}
}
