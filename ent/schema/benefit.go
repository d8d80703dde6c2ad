package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"

	"github.com/onemember/onemember/ent/schema/enum"
)

// Benefit is an entry of the group-wide benefit pool (权益). Tiers and paid
// plans grant benefits; business_units lists the BUs that honour it (none:
// all of them).
type Benefit struct{ ent.Schema }

func (Benefit) Fields() []ent.Field {
	return []ent.Field{
		field.String("code").NotEmpty().Unique(),
		field.String("name").NotEmpty(),
		field.String("description").Default(""),
		field.Enum("kind").GoType(enum.BenefitKind("")).Annotations(sharedEnum("BenefitKind")),
	}
}

func (Benefit) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("tiers", Tier.Type).Ref("benefits").Annotations(entgql.Skip(entgql.SkipAll)),
		edge.To("business_units", BusinessUnit.Type).Annotations(entgql.Skip(entgql.SkipAll)),
		edge.From("plans", PaidMembershipPlan.Type).Ref("benefits").Annotations(entgql.Skip(entgql.SkipAll)),
	}
}

func (Benefit) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

func (Benefit) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipWhereInput, entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)}
}
