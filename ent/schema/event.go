package schema

import (
	"time"

	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/dialect/entsql"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/onemember/onemember/ent/schema/enum"
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
		field.Enum("type").Values("TIER_CHANGED", "POINTS_CHANGED", "STORED_VALUE_CHANGED", "COUPON_ISSUED", "COUPON_EXPIRING", "MESSAGE").
			Immutable(),
		field.JSON("payload", map[string]any{}).Immutable(),
		field.Time("occurred_at").Default(time.Now).Immutable(),
		// tx_id is the writing transaction (pg_current_xact_id). Tailers pass
		// a row only once every transaction older than it has ended (ids below
		// pg_snapshot_xmin), so a late commit is never skipped.
		field.Int64("tx_id").Optional().Immutable().
			Annotations(entsql.DefaultExpr("(pg_current_xact_id()::text)::bigint")),
	}
}

func (MemberEvent) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("member_id", "seq").Unique(),
		// occurred_at serves only the retention prune (oldest first). Rows
		// arrive in time order, so a BRIN index finds the old block ranges
		// at a fraction of a B-tree's cost on every insert.
		index.Fields("occurred_at").Annotations(entsql.IndexType("BRIN")),
		index.Fields("tx_id"),
	}
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

// PushDelivery is one member event pushed through one outside channel
// (WeChat subscribe message, APNs/FCM). Its row is the delivery state: a
// restart resumes PENDING rows and never sends a SENT one again.
type PushDelivery struct{ ent.Schema }

func (PushDelivery) Fields() []ent.Field {
	return []ent.Field{
		field.Int("event_id").Immutable(),
		field.Int("member_id").Immutable(),
		field.Enum("channel").GoType(enum.PushChannel("")).Immutable(),
		field.Enum("status").Values("PENDING", "SENT", "FAILED", "SKIPPED").Default("PENDING"),
		field.Int("attempts").Default(0),
		field.Time("next_attempt_at").Default(time.Now),
		field.String("last_error").Default(""),
		field.Time("sent_at").Optional().Nillable(),
		field.Time("created_at").Default(time.Now).Immutable(),
	}
}

func (PushDelivery) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("event_id", "channel").Unique(),
		// The deliverer looks for due PENDING rows only; most rows are
		// SKIPPED (no consent, no device) or done, and stay out of it.
		index.Fields("next_attempt_at").Annotations(entsql.IndexWhere("status = 'PENDING'")),
	}
}

func (PushDelivery) Annotations() []schema.Annotation { return []schema.Annotation{entgql.Skip(entgql.SkipAll)} }

// PushDevice is an app installation's push token (APNs or FCM).
type PushDevice struct{ ent.Schema }

func (PushDevice) Fields() []ent.Field {
	return []ent.Field{
		field.Int("member_id"),
		field.Enum("platform").Values("IOS", "ANDROID"),
		field.String("token").NotEmpty().Unique(),
		field.Time("created_at").Default(time.Now).Immutable(),
		field.Time("disabled_at").Optional().Nillable(),
	}
}

func (PushDevice) Indexes() []ent.Index { return []ent.Index{index.Fields("member_id")} }

func (PushDevice) Annotations() []schema.Annotation { return []schema.Annotation{entgql.Skip(entgql.SkipAll)} }

// LogCursor is how far a named reader of the member event log has got
// (the push dispatcher, campaign triggers): a transaction-id horizon.
type LogCursor struct{ ent.Schema }

func (LogCursor) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").NotEmpty().Unique().Immutable(),
		field.Int64("position").Default(0),
		field.Time("updated_at").Default(time.Now).UpdateDefault(time.Now),
	}
}

func (LogCursor) Annotations() []schema.Annotation { return []schema.Annotation{entgql.Skip(entgql.SkipAll)} }
