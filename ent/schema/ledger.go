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

// ledgerSources are why a ledger entry exists.
var ledgerSources = []string{"ORDER", "REFUND", "ADJUSTMENT", "MERGE", "EXPIRY", "ACTIVITY", "LOTTERY",
	"PROMO_CODE", "MALL", "CHECK_IN", "REFERRAL", "PROFILE", "SHARE", "TOP_UP", "PAYMENT", "CAMPAIGN"}

// ledgerEntryFields are shared by every ledger: who, why, where, when, and
// the idempotency key that makes a retried write a no-op.
func ledgerEntryFields() []ent.Field {
	return []ent.Field{
		field.Int("member_id").Immutable(),
		field.Enum("source").Values(ledgerSources...).Immutable().Annotations(entgql.Type("LedgerSource")),
		field.Int64("amount").Immutable().Comment("signed: credit > 0, debit < 0"),
		field.Int64("balance_after").Immutable(),
		field.String("reason").Default("").Immutable(),
		field.Int("business_unit_id").Optional().Nillable().Immutable(),
		field.Int("store_id").Optional().Nillable().Immutable(),
		field.Int("order_id").Optional().Nillable().Immutable().Annotations(hidden()),
		field.String("idempotency_key").Optional().Nillable().Immutable().Annotations(hidden()),
		field.Time("occurred_at").Default(time.Now).Immutable().Annotations(entgql.OrderField("OCCURRED_AT")),
	}
}

func ledgerEntryIndexes() []ent.Index {
	return []ent.Index{
		index.Fields("member_id", "occurred_at"),
		index.Fields("idempotency_key").Unique().Annotations(entsql.IndexWhere("idempotency_key IS NOT NULL")),
		index.Fields("order_id"),
	}
}

func ledgerEntryEdges() []ent.Edge {
	return []ent.Edge{
		edge.To("business_unit", BusinessUnit.Type).Field("business_unit_id").Unique().Immutable(),
		edge.To("store", Store.Type).Field("store_id").Unique().Immutable(),
	}
}

func ledgerAnnotations() []schema.Annotation {
	return []schema.Annotation{
		entgql.RelayConnection(),
		entgql.Skip(entgql.SkipWhereInput, entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput),
	}
}

// PointsEntry is one line of the points ledger (积分流水). Earnings create
// a lot; burns and expiries consume lots (PointsAllocation).
type PointsEntry struct{ ent.Schema }

func (PointsEntry) Fields() []ent.Field {
	return append(ledgerEntryFields(),
		field.Enum("kind").Values("EARN", "BURN", "EXPIRE", "ADJUST", "REVERSAL", "MERGE_IN", "MERGE_OUT").
			Immutable().Annotations(entgql.Type("PointsEntryKind")),
		field.Time("expires_at").Optional().Nillable().Immutable().Comment("expiry of the lot an earning created"),
	)
}
func (PointsEntry) Edges() []ent.Edge { return ledgerEntryEdges() }

// Indexes: the ledger's, and burns and reversals by time for the cross-BU
// settlement (internal/dashboard).
func (PointsEntry) Indexes() []ent.Index {
	return append(ledgerEntryIndexes(), index.Fields("kind", "occurred_at"))
}
func (PointsEntry) Annotations() []schema.Annotation { return ledgerAnnotations() }

// PointsLot is points earned together, expiring together. Spending takes
// the lots that expire first.
type PointsLot struct{ ent.Schema }

func (PointsLot) Fields() []ent.Field {
	return []ent.Field{
		field.Int("member_id"),
		field.Int("entry_id").Immutable().Comment("the earning entry"),
		field.Int("business_unit_id").Optional().Nillable().Immutable().Comment("where the points were earned"),
		field.Int64("amount").Immutable(),
		field.Int64("remaining"),
		field.Time("earned_at").Immutable(),
		field.Time("expires_at"),
	}
}

func (PointsLot) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("member_id", "expires_at").Annotations(entsql.IndexWhere("remaining > 0")),
		index.Fields("expires_at").Annotations(entsql.IndexWhere("remaining > 0")),
	}
}

func (PointsLot) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipAll)}
}

// PointsAllocation records which lots a debit took points from (or a
// reversal gave back to), so expiry, refunds and cross-BU settlement can be
// traced to the earning BU.
type PointsAllocation struct{ ent.Schema }

func (PointsAllocation) Fields() []ent.Field {
	return []ent.Field{
		field.Int("entry_id").Immutable(),
		field.Int("lot_id").Immutable(),
		field.Int64("amount").Immutable().Comment("points taken from the lot (negative when given back)"),
	}
}

func (PointsAllocation) Indexes() []ent.Index {
	return []ent.Index{index.Fields("entry_id"), index.Fields("lot_id")}
}

func (PointsAllocation) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipAll)}
}

// GrowthEntry is one line of the growth-value ledger (成长值).
type GrowthEntry struct{ ent.Schema }

func (GrowthEntry) Fields() []ent.Field {
	return append(ledgerEntryFields(),
		field.Enum("kind").Values("EARN", "REVERSAL", "ADJUST", "MERGE_IN", "MERGE_OUT").
			Immutable().Annotations(entgql.Type("GrowthEntryKind")),
	)
}
func (GrowthEntry) Edges() []ent.Edge                { return ledgerEntryEdges() }
func (GrowthEntry) Indexes() []ent.Index             { return ledgerEntryIndexes() }
func (GrowthEntry) Annotations() []schema.Annotation { return ledgerAnnotations() }

// StoredValueEntry is one line of the stored-value ledger (储值). amount is
// principal_amount + bonus_amount.
type StoredValueEntry struct{ ent.Schema }

func (StoredValueEntry) Fields() []ent.Field {
	return append(ledgerEntryFields(),
		field.Enum("kind").Values("TOP_UP", "PAYMENT", "REFUND", "ADJUST", "MERGE_IN", "MERGE_OUT").
			Immutable().Annotations(entgql.Type("StoredValueEntryKind")),
		field.Int64("principal_amount").Immutable(),
		field.Int64("bonus_amount").Immutable(),
		field.String("order_ref").Default("").Immutable().Annotations(hidden()),
		field.Int("payment_entry_id").Optional().Nillable().Immutable().Annotations(hidden()).
			Comment("for a REFUND: the PAYMENT it restores"),
	)
}
func (StoredValueEntry) Edges() []ent.Edge                { return ledgerEntryEdges() }
func (StoredValueEntry) Indexes() []ent.Index             { return ledgerEntryIndexes() }
func (StoredValueEntry) Annotations() []schema.Annotation { return ledgerAnnotations() }
