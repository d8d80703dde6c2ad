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

// Member is one person across every business unit (集团大会员).
//
// Phone, real name and birthday are personal data: they are stored only as
// AES-256-GCM ciphertexts (internal/pii), the phone also as a keyed blind
// index for lookups. Birth year and month are kept in clear because age
// bands, birthday-month benefits and audience rules need them on every row;
// the full date is never stored in clear. display_name is the nickname the
// member chose to show (like a WeChat nickname) and is searchable.
type Member struct{ ent.Schema }

func (Member) Fields() []ent.Field {
	return []ent.Field{
		// Declared so that registration can draw the id first and derive
		// the member number from it in the same insert.
		field.Int("id").Immutable(),
		field.String("member_no").NotEmpty().Unique().Immutable().
			Annotations(entgql.OrderField("MEMBER_NO")),
		field.Enum("status").Values("ACTIVE", "FROZEN", "MERGED", "ERASED").Default("ACTIVE").
			Annotations(entgql.Type("MemberStatus")),
		field.String("display_name").Default(""),
		field.String("avatar_url").Default("").Annotations(entgql.MapsTo("avatarUrl")),
		field.Enum("gender").GoType(enum.Gender("")).Default(string(enum.GenderUnknown)).
			Annotations(sharedEnum("Gender")),
		field.Bytes("name_enc").Optional().Sensitive().Annotations(hidden()),
		field.Bytes("phone_enc").Optional().Sensitive().Annotations(hidden()),
		field.Bytes("phone_index").Optional().Sensitive().Annotations(hidden()),
		field.Bytes("birthday_enc").Optional().Sensitive().Annotations(hidden()),
		field.Int("birth_year").Optional().Nillable().Annotations(hidden()),
		field.Int("birth_month").Optional().Nillable().Annotations(hidden()),
		field.String("region_code").Default(""),
		field.Enum("source_channel").GoType(enum.Channel("")).Annotations(sharedEnum("Channel")),
		field.Int("source_business_unit_id").Optional().Nillable().Immutable(),
		field.Time("registered_at").Default(time.Now).Immutable().
			Annotations(entgql.OrderField("REGISTERED_AT")),
		field.Int("tier_id").Optional().Nillable().Annotations(hidden()),
		field.Int("merged_into_id").Optional().Nillable().Annotations(hidden()),
		field.Time("status_changed_at").Optional().Nillable().Annotations(hidden()),
		field.String("status_reason").Default("").Annotations(hidden()),
		// referral_code is drawn the first time the member asks for it.
		field.String("referral_code").Optional().Nillable().Unique().Annotations(hidden()),
	}
}

func (Member) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("source_business_unit", BusinessUnit.Type).Field("source_business_unit_id").
			Unique().Immutable(),
		// The API resolves tier from the ladder cache (tier.Service.Display).
		edge.To("tier", Tier.Type).Field("tier_id").Unique().Annotations(entgql.Skip(entgql.SkipAll)),
		edge.To("identities", Identity.Type).Annotations(entgql.Skip(entgql.SkipAll)),
		edge.To("account", Account.Type).Unique().Annotations(entgql.Skip(entgql.SkipAll)),
		edge.To("merged_into", Member.Type).Field("merged_into_id").Unique().
			Annotations(entgql.Skip(entgql.SkipAll)),
	}
}

func (Member) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("phone_index"),
		index.Fields("registered_at"),
	}
}

func (Member) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

// The admin member search takes the hand-written MemberWhereInput of the
// client contract (phone, tier codes, tags...), so entgql's generated filter
// input is skipped for Member.
func (Member) Annotations() []schema.Annotation {
	return []schema.Annotation{
		entgql.RelayConnection(),
		entgql.Skip(entgql.SkipWhereInput, entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput),
	}
}
