package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// Store is a physical or online shop of a business unit; tills and
// e-commerce back ends name it by code.
type Store struct{ ent.Schema }

func (Store) Fields() []ent.Field {
	return []ent.Field{
		field.String("code").NotEmpty().Unique().Annotations(entgql.OrderField("CODE")),
		field.String("name").NotEmpty(),
		field.String("city").Default(""),
		field.String("region_code").Default("").Comment("GB/T 2260 division code"),
		field.Int("business_unit_id").Immutable(),
	}
}

func (Store) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("business_unit", BusinessUnit.Type).Ref("stores").Field("business_unit_id").
			Unique().Required().Immutable(),
		edge.From("api_clients", ApiClient.Type).Ref("stores").Annotations(entgql.Skip(entgql.SkipAll)),
		edge.From("coupon_templates", CouponTemplate.Type).Ref("stores").Annotations(entgql.Skip(entgql.SkipAll)),
	}
}

func (Store) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }
