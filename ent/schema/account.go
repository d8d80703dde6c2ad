package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
)

// Account holds a member's balances: points, growth value and stored value
// (principal and bonus). Each balance is a projection of its entry table
// and changes only in the transaction that appends the entry, under this
// row's lock: the row is the member's one serialization point for money,
// events (event_seq) and tier changes.
type Account struct{ ent.Schema }

func (Account) Fields() []ent.Field {
	return []ent.Field{
		field.Int("member_id").Unique().Immutable(),
		field.Int64("points_balance").Default(0),
		field.Int64("growth_value").Default(0),
		field.Int64("stored_principal").Default(0),
		field.Int64("stored_bonus").Default(0),
		// event_seq numbers the member's events gap-free (outbox).
		field.Int64("event_seq").Default(0),
		field.String("pay_password_hash").Default("").Sensitive(),
		field.Int("pay_failed_attempts").Default(0),
		field.Time("pay_locked_until").Optional().Nillable(),
		field.Int("successful_referrals").Default(0),
		field.Int("checkin_streak").Default(0),
		field.String("last_checkin_date").Default("").Comment("YYYY-MM-DD, business time zone"),
		field.Bool("profile_growth_awarded").Default(false),
		field.Time("tier_since").Optional().Nillable().Comment("last tier change; the review runs retention_months after it"),
	}
}

func (Account) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("member", Member.Type).Ref("account").Field("member_id").Unique().Required().Immutable(),
	}
}

func (Account) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

func (Account) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipAll)}
}
