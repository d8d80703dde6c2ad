package schema

import (
	"time"

	"entgo.io/ent/dialect/entsql"

	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/onemember/onemember/ent/schema/enum"
)

// CouponTemplate defines a kind of coupon: its discount, validity, stock
// and limits. issued_count is taken under the template's row lock so that
// stock is never oversold.
type CouponTemplate struct{ ent.Schema }

func (CouponTemplate) Fields() []ent.Field {
	return []ent.Field{
		field.String("title").NotEmpty(),
		field.Enum("kind").GoType(enum.CouponKind("")).Annotations(sharedEnum("CouponKind")),
		field.Int64("face_value").Default(0).Annotations(entgql.Type("Money")),
		field.Int("discount_percent").Optional().Nillable(),
		field.Int64("min_spend").Default(0).Annotations(entgql.Type("Money")),
		field.Time("valid_from").Optional().Nillable().Annotations(hidden()),
		field.Time("valid_to").Optional().Nillable().Annotations(hidden()),
		field.Int("days_after_issue").Optional().Nillable().Annotations(hidden()),
		field.Int("total_stock"),
		field.Int("issued_count").Default(0).Annotations(hidden()),
		field.Int("per_member_limit"),
		field.Bool("claimable").Default(false),
	}
}

func (CouponTemplate) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("business_units", BusinessUnit.Type).Annotations(entgql.Skip(entgql.SkipAll)),
		edge.To("stores", Store.Type).Annotations(entgql.Skip(entgql.SkipAll)),
	}
}

func (CouponTemplate) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

func (CouponTemplate) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipWhereInput, entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)}
}

// Coupon is one coupon held by a member.
type Coupon struct{ ent.Schema }

func (Coupon) Fields() []ent.Field {
	return []ent.Field{
		field.String("code").NotEmpty().Unique().Immutable(),
		field.Int("template_id").Immutable().Annotations(hidden()),
		field.Int("member_id").Annotations(hidden()),
		field.Enum("status").GoType(enum.CouponStatus("")).Default(string(enum.CouponAvailable)).
			Annotations(sharedEnum("CouponStatus")),
		field.Time("issued_at").Default(time.Now).Immutable().Annotations(entgql.OrderField("ISSUED_AT")),
		field.Time("expires_at").Annotations(entgql.OrderField("EXPIRES_AT")),
		field.String("locked_order_ref").Optional().Nillable().Annotations(hidden()),
		field.Time("locked_at").Optional().Nillable().Annotations(hidden()),
		field.Time("redeemed_at").Optional().Nillable(),
		field.Int("order_id").Optional().Nillable().Annotations(hidden()),
		field.String("source").Default("").Annotations(hidden()),
		// discount is what the coupon took off the basket it was redeemed on.
		field.Int64("discount").Default(0).Annotations(hidden()),
		// expiring_notified_at marks the CouponExpiring event as sent.
		field.Time("expiring_notified_at").Optional().Nillable().Annotations(hidden()),
		// issue_job_id is the ISSUE_COUPONS job that issued the coupon: a job
		// issues at most one coupon per member (unique index), even when it
		// is resumed after a crash.
		field.Int("issue_job_id").Optional().Nillable().Immutable().Annotations(hidden()),
	}
}

func (Coupon) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("template", CouponTemplate.Type).Field("template_id").Unique().Required().Immutable(),
	}
}

func (Coupon) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("member_id", "status", "expires_at"),
		index.Fields("template_id", "member_id"),
		// Partial: most coupons are never locked, redeemed by an order or
		// issued by a job, and every issue would otherwise add a NULL
		// entry to each of these (claims of a hot template write thousands
		// a second).
		index.Fields("locked_order_ref").Annotations(entsql.IndexWhere("locked_order_ref IS NOT NULL")),
		index.Fields("order_id").Annotations(entsql.IndexWhere("order_id IS NOT NULL")),
		index.Fields("status", "expires_at"),
		index.Fields("issue_job_id", "member_id").Unique().Annotations(entsql.IndexWhere("issue_job_id IS NOT NULL")),
	}
}

func (Coupon) Annotations() []schema.Annotation {
	return []schema.Annotation{
		entgql.RelayConnection(),
		entgql.Skip(entgql.SkipWhereInput, entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput),
	}
}
