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

// Order is a completed sale ingested from a till or an e-commerce back end.
// (channel, external_id) is unique: a retried ingestion finds the order
// instead of creating a second one.
type Order struct{ ent.Schema }

func (Order) Fields() []ent.Field {
	return []ent.Field{
		field.String("external_id").NotEmpty().Immutable().Annotations(entgql.MapsTo("externalId")),
		field.Enum("channel").GoType(enum.Channel("")).Immutable().Annotations(sharedEnum("Channel")),
		field.Int("member_id").Annotations(hidden()),
		field.Int("store_id").Immutable().Annotations(hidden()),
		field.Int("business_unit_id").Immutable().Annotations(hidden()),
		field.Enum("status").Values("PAID", "PARTIALLY_REFUNDED", "REFUNDED").Default("PAID").
			Annotations(entgql.Type("OrderStatus")),
		field.Int64("amount").Immutable(),
		field.Time("paid_at").Immutable().Annotations(entgql.OrderField("PAID_AT")),
		field.Int64("points_earned").Default(0),
		field.Int64("points_burned").Default(0),
		field.Int64("growth_earned").Default(0),
		field.Int64("refunded_amount").Default(0),
		field.String("coupon_order_ref").Default("").Annotations(hidden()),
		field.Int("campaign_id").Optional().Nillable().Annotations(hidden()),
		field.Time("created_at").Default(time.Now).Immutable().Annotations(hidden()),
	}
}

func (Order) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("store", Store.Type).Field("store_id").Unique().Required().Immutable(),
		edge.To("business_unit", BusinessUnit.Type).Field("business_unit_id").Unique().Required().Immutable(),
		edge.To("items", OrderItem.Type).Annotations(entgql.Skip(entgql.SkipWhereInput)),
		edge.To("payments", OrderPayment.Type).Annotations(entgql.Skip(entgql.SkipAll)),
		edge.To("refunds", Refund.Type).Annotations(entgql.Skip(entgql.SkipAll)),
	}
}

func (Order) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("channel", "external_id").Unique(),
		index.Fields("member_id", "paid_at"),
		index.Fields("paid_at"),
	}
}

func (Order) Annotations() []schema.Annotation {
	return []schema.Annotation{
		entgql.RelayConnection(),
		entgql.Skip(entgql.SkipWhereInput, entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput),
	}
}

// OrderItem is one line of an order; amount is after item discounts.
type OrderItem struct{ ent.Schema }

func (OrderItem) Fields() []ent.Field {
	return []ent.Field{
		field.Int("order_id").Immutable().Annotations(hidden()),
		field.String("sku").NotEmpty().Immutable(),
		field.String("name").Immutable(),
		field.String("category").Default("").Immutable(),
		field.String("brand").Default("").Immutable(),
		field.Int("quantity").Positive().Immutable(),
		field.Int64("unit_price").Immutable(),
		field.Int64("amount").Immutable(),
	}
}

func (OrderItem) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("order", Order.Type).Ref("items").Field("order_id").Unique().Required().Immutable(),
	}
}

func (OrderItem) Indexes() []ent.Index { return []ent.Index{index.Fields("order_id"), index.Fields("sku")} }

func (OrderItem) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipWhereInput, entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)}
}

// OrderPayment is one tender of an order.
type OrderPayment struct{ ent.Schema }

func (OrderPayment) Fields() []ent.Field {
	return []ent.Field{
		field.Int("order_id").Immutable(),
		field.Enum("method").GoType(enum.PaymentMethod("")).Immutable(),
		field.Int64("amount").Immutable(),
		field.Int64("points").Default(0).Immutable(),
		field.Int("stored_value_entry_id").Optional().Nillable().Immutable(),
	}
}

func (OrderPayment) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("order", Order.Type).Ref("payments").Field("order_id").Unique().Required().Immutable(),
	}
}

func (OrderPayment) Indexes() []ent.Index {
	return []ent.Index{index.Fields("order_id"), index.Fields("stored_value_entry_id").Unique()}
}

func (OrderPayment) Annotations() []schema.Annotation { return []schema.Annotation{entgql.Skip(entgql.SkipAll)} }

// Refund is a partial or full refund of an order; refund_id is unique per
// order so that a retried refund changes nothing.
type Refund struct{ ent.Schema }

func (Refund) Fields() []ent.Field {
	return []ent.Field{
		field.Int("order_id").Immutable(),
		field.String("refund_id").NotEmpty().Immutable(),
		field.Int64("amount").Immutable(),
		field.String("reason").Default("").Immutable(),
		field.Int64("points_reversed").Immutable(),
		field.Int64("points_restored").Default(0).Immutable().Comment("burned points given back"),
		field.Int64("growth_reversed").Immutable(),
		field.Int64("stored_value_restored").Immutable(),
		field.Time("created_at").Default(time.Now).Immutable(),
	}
}

func (Refund) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("order", Order.Type).Ref("refunds").Field("order_id").Unique().Required().Immutable(),
	}
}

func (Refund) Indexes() []ent.Index { return []ent.Index{index.Fields("order_id", "refund_id").Unique()} }

func (Refund) Annotations() []schema.Annotation { return []schema.Annotation{entgql.Skip(entgql.SkipAll)} }
