package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// BusinessUnit is one business of the group (业态): a mall, a supermarket,
// a restaurant chain, a bookstore.
type BusinessUnit struct{ ent.Schema }

func (BusinessUnit) Fields() []ent.Field {
	return []ent.Field{
		field.String("code").NotEmpty().Unique().Annotations(entgql.OrderField("CODE")),
		field.String("name").NotEmpty(),
		field.Enum("kind").Values("MALL", "SUPERMARKET", "RESTAURANT", "BOOKSTORE", "OTHER").
			Annotations(entgql.Type("BusinessUnitKind")),
	}
}

func (BusinessUnit) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("stores", Store.Type).Annotations(entgql.Skip(entgql.SkipWhereInput)),
		edge.From("staff", Staff.Type).Ref("business_units").Annotations(entgql.Skip(entgql.SkipAll)),
		edge.From("benefits", Benefit.Type).Ref("business_units").Annotations(entgql.Skip(entgql.SkipAll)),
		edge.From("coupon_templates", CouponTemplate.Type).Ref("business_units").Annotations(entgql.Skip(entgql.SkipAll)),
	}
}

func (BusinessUnit) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

func (BusinessUnit) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)}
}
