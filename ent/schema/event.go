package schema

import (
	"time"

	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// MemberEvent is the outbox: every change a member should hear about,
// written in the same transaction as the change. seq numbers a member's
// events without gaps (drawn from Account.event_seq under the account's
// row lock), which is what lets a subscriber resume by cursor.
type MemberEvent struct{ ent.Schema }

func (MemberEvent) Fields() []ent.Field {
	return []ent.Field{
		field.Int("member_id").Immutable(),
		field.Int64("seq").Immutable(),
		field.Enum("type").Values("TIER_CHANGED", "POINTS_CHANGED", "STORED_VALUE_CHANGED", "COUPON_ISSUED", "COUPON_EXPIRING").
			Immutable(),
		field.JSON("payload", map[string]any{}).Immutable(),
		field.Time("occurred_at").Default(time.Now).Immutable(),
	}
}

func (MemberEvent) Indexes() []ent.Index {
	return []ent.Index{index.Fields("member_id", "seq").Unique(), index.Fields("occurred_at")}
}

func (MemberEvent) Annotations() []schema.Annotation { return []schema.Annotation{entgql.Skip(entgql.SkipAll)} }

// Notification is an in-app message to a member (the inbox).
type Notification struct{ ent.Schema }

func (Notification) Fields() []ent.Field {
	return []ent.Field{
		field.Int("member_id").Immutable().Annotations(hidden()),
		field.String("title").Immutable(),
		field.String("body").Immutable(),
		field.Int("event_id").Optional().Nillable().Immutable().Annotations(hidden()),
		field.Time("created_at").Default(time.Now).Immutable().Annotations(entgql.OrderField("CREATED_AT")),
		field.Time("read_at").Optional().Nillable(),
	}
}

func (Notification) Indexes() []ent.Index {
	return []ent.Index{index.Fields("member_id", "created_at")}
}

func (Notification) Annotations() []schema.Annotation {
	return []schema.Annotation{
		entgql.RelayConnection(),
		entgql.Skip(entgql.SkipWhereInput, entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput),
	}
}
