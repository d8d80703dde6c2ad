package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"

	"github.com/onemember/onemember/ent/schema/enum"
)

// ApiClient is a till or e-commerce integration. It authenticates with a
// secret shown once at creation; only its SHA-256 is stored. No stores
// means every store.
type ApiClient struct{ ent.Schema }

func (ApiClient) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").NotEmpty(),
		field.Bytes("secret_hash").Unique().Sensitive().Annotations(hidden()),
		field.JSON("scopes", []enum.APIScope{}).Annotations(entgql.Type("[ApiScope!]")),
		field.Int("created_by_id").Optional().Nillable().Annotations(hidden()),
		field.Time("revoked_at").Optional().Nillable(),
		field.Time("last_used_at").Optional().Nillable().Annotations(hidden()),
	}
}

func (ApiClient) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("stores", Store.Type).Annotations(entgql.Skip(entgql.SkipWhereInput)),
	}
}

func (ApiClient) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

func (ApiClient) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipWhereInput, entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)}
}
