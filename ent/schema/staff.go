package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"

	"github.com/onemember/onemember/ent/schema/enum"
)

// Staff is an account of the admin front-end. Roles apply within the
// business units the account is scoped to; no business unit means the
// whole group.
type Staff struct{ ent.Schema }

func (Staff) Fields() []ent.Field {
	return []ent.Field{
		field.String("email").NotEmpty().Unique(),
		field.String("display_name").NotEmpty(),
		field.String("password_hash").Sensitive().Annotations(hidden()),
		field.JSON("roles", []enum.StaffRole{}).Annotations(entgql.Type("[StaffRole!]")),
		field.Bool("active").Default(true),
		field.Time("last_login_at").Optional().Nillable(),
	}
}

func (Staff) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("business_units", BusinessUnit.Type).Annotations(entgql.Skip(entgql.SkipWhereInput)),
	}
}

func (Staff) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

func (Staff) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipWhereInput, entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)}
}
