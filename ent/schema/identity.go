package schema

import (
	"time"

	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// Identity binds an external identifier (phone, WeChat unionid/openid, app
// account, e-mail, POS card) to a member. A value belongs to at most one
// member while the binding is live (unbound_at is null); the partial unique
// index enforces it. The value itself is stored encrypted; lookups use the
// keyed blind index.
type Identity struct{ ent.Schema }

func (Identity) Fields() []ent.Field {
	return []ent.Field{
		field.Enum("kind").Values("PHONE", "WECHAT_UNIONID", "WECHAT_OPENID", "APP_ACCOUNT", "EMAIL", "POS_CARD").
			Annotations(entgql.Type("IdentityKind")),
		field.String("app_id").Default("").Comment("the mini-program appId for WECHAT_OPENID"),
		field.Bytes("lookup").NotEmpty().Sensitive().Annotations(hidden()),
		field.Bytes("value_enc").Optional().Sensitive().Annotations(hidden()),
		field.String("masked_value").Default(""),
		field.Int("member_id"),
		field.Time("bound_at").Default(time.Now),
		field.Time("unbound_at").Optional().Nillable().Annotations(hidden()),
	}
}

func (Identity) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("member", Member.Type).Ref("identities").Field("member_id").Unique().Required(),
	}
}

func (Identity) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("kind", "app_id", "lookup").Unique().
			Annotations(entsql.IndexWhere("unbound_at IS NULL")),
		index.Fields("member_id"),
	}
}

func (Identity) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipWhereInput, entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)}
}
