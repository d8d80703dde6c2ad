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

	"github.com/onemember/onemember/ent/schema/enum"
)

// readOnlyNode is the entgql annotation of entities the API lists and
// resolves as nodes but writes only through its own mutations.
func readOnlyNode(connection bool) []schema.Annotation {
	a := []schema.Annotation{entgql.Skip(entgql.SkipWhereInput, entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput)}
	if connection {
		a = append(a, entgql.RelayConnection())
	}
	return a
}

// MallItem is something members buy with points (积分商城). stock is what
// is left; it is taken under the item's row lock.
type MallItem struct{ ent.Schema }

func (MallItem) Fields() []ent.Field {
	return []ent.Field{
		field.String("title").NotEmpty(),
		field.String("image_url").Optional().Nillable().Annotations(entgql.MapsTo("imageUrl")),
		field.Int("points_price").Positive(),
		field.Int("stock").NonNegative(),
		field.Int("per_member_limit").Optional().Nillable(),
		field.Int("coupon_template_id").Optional().Nillable().Annotations(hidden()),
		field.Bool("active").Default(true).Annotations(hidden()),
	}
}

func (MallItem) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

func (MallItem) Annotations() []schema.Annotation { return readOnlyNode(true) }

// MallRedemption is one purchase in the points mall, idempotent on the
// member's key.
type MallRedemption struct{ ent.Schema }

func (MallRedemption) Fields() []ent.Field {
	return []ent.Field{
		field.Int("item_id").Immutable().Annotations(hidden()),
		field.Int("member_id").Immutable().Annotations(hidden()),
		field.Int("quantity").Immutable(),
		field.Int64("points_spent").Immutable(),
		field.Enum("status").Values("COMPLETED", "REFUNDED").Default("COMPLETED"),
		field.String("idempotency_key").Immutable().Annotations(hidden()),
		field.Ints("coupon_ids").Optional().Annotations(hidden()),
		field.Time("created_at").Default(time.Now).Immutable(),
	}
}

func (MallRedemption) Edges() []ent.Edge {
	return []ent.Edge{edge.To("item", MallItem.Type).Field("item_id").Unique().Required().Immutable()}
}

func (MallRedemption) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("member_id", "idempotency_key").Unique(),
		index.Fields("item_id", "member_id"),
	}
}

func (MallRedemption) Annotations() []schema.Annotation { return readOnlyNode(false) }

// Lottery is a prize wheel (幸运转盘): each draw costs points and a member
// may draw daily_draw_limit times a business day.
type Lottery struct{ ent.Schema }

func (Lottery) Fields() []ent.Field {
	return []ent.Field{
		field.String("title").NotEmpty(),
		field.Int("cost_points").NonNegative(),
		field.Int("daily_draw_limit").Positive(),
		field.Time("starts_at"),
		field.Time("ends_at"),
	}
}

func (Lottery) Edges() []ent.Edge {
	return []ent.Edge{edge.To("prizes", LotteryPrize.Type).Annotations(entgql.Skip(entgql.SkipAll))}
}

func (Lottery) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

func (Lottery) Annotations() []schema.Annotation { return readOnlyNode(false) }

// LotteryPrize is one slot of a lottery. stock is what is left (nil:
// unlimited); a prize without stock is never won.
type LotteryPrize struct{ ent.Schema }

func (LotteryPrize) Fields() []ent.Field {
	return []ent.Field{
		field.Int("lottery_id").Immutable().Annotations(hidden()),
		field.String("name").NotEmpty(),
		field.Enum("kind").GoType(enum.LotteryPrizeKind("")).Annotations(sharedEnum("LotteryPrizeKind")),
		field.Int("weight").Positive(),
		field.Int("stock").Optional().Nillable(),
		field.Int("coupon_template_id").Optional().Nillable().Annotations(hidden()),
		field.Int("points").Optional().Nillable().Annotations(hidden()),
		field.Int("position").Default(0).Annotations(hidden()),
	}
}

func (LotteryPrize) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("lottery", Lottery.Type).Ref("prizes").Field("lottery_id").Unique().Required().Immutable().
			Annotations(entgql.Skip(entgql.SkipAll)),
	}
}

func (LotteryPrize) Annotations() []schema.Annotation { return readOnlyNode(false) }

// LotteryDraw records every draw, won or not, idempotent on the member's key.
type LotteryDraw struct{ ent.Schema }

func (LotteryDraw) Fields() []ent.Field {
	return []ent.Field{
		field.Int("lottery_id").Immutable(),
		field.Int("member_id").Immutable(),
		field.Int("prize_id").Optional().Nillable().Immutable(),
		field.Bool("won").Immutable(),
		field.Int64("points_spent").Immutable(),
		field.Int64("points_awarded").Default(0).Immutable(),
		field.Int("coupon_id").Optional().Nillable().Immutable(),
		field.String("idempotency_key").Immutable(),
		field.Time("drawn_at").Default(time.Now).Immutable(),
	}
}

func (LotteryDraw) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("member_id", "idempotency_key").Unique(),
		index.Fields("lottery_id", "member_id", "drawn_at"),
	}
}

func (LotteryDraw) Annotations() []schema.Annotation { return []schema.Annotation{entgql.Skip(entgql.SkipAll)} }

// PromoCode (口令) grants coupons and/or points. code is stored upper-case
// and matched case-insensitively; used_count is taken under the row lock.
type PromoCode struct{ ent.Schema }

func (PromoCode) Fields() []ent.Field {
	return []ent.Field{
		field.String("code").NotEmpty().Unique().Immutable(),
		field.Ints("coupon_template_ids").Optional().Annotations(hidden()),
		field.Int("points").Default(0).Annotations(hidden()),
		field.Int("usage_limit").Positive(),
		field.Int("used_count").Default(0),
		field.Int("per_member_limit").Positive(),
		field.Time("valid_from").Optional().Nillable(),
		field.Time("valid_to").Optional().Nillable(),
	}
}

func (PromoCode) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

func (PromoCode) Annotations() []schema.Annotation { return readOnlyNode(false) }

// PromoRedemption is one use of a promo code by a member.
type PromoRedemption struct{ ent.Schema }

func (PromoRedemption) Fields() []ent.Field {
	return []ent.Field{
		field.Int("promo_code_id").Immutable(),
		field.Int("member_id").Immutable(),
		field.Ints("coupon_ids").Optional().Immutable(),
		field.Int64("points").Default(0).Immutable(),
		field.Time("created_at").Default(time.Now).Immutable(),
	}
}

func (PromoRedemption) Indexes() []ent.Index {
	return []ent.Index{index.Fields("promo_code_id", "member_id")}
}

func (PromoRedemption) Annotations() []schema.Annotation { return []schema.Annotation{entgql.Skip(entgql.SkipAll)} }

// Activity is an event members sign up for (活动报名). The counters are
// kept under the activity's row lock with the registrations they count.
type Activity struct{ ent.Schema }

func (Activity) Fields() []ent.Field {
	return []ent.Field{
		field.String("title").NotEmpty(),
		field.String("description").Optional().Nillable(),
		field.String("location").Optional().Nillable(),
		field.Time("starts_at").Annotations(entgql.OrderField("STARTS_AT")),
		field.Time("ends_at"),
		field.Int("capacity").Positive(),
		field.Int("min_tier_id").Optional().Nillable().Annotations(hidden()),
		field.Int("business_unit_id").Optional().Nillable().Annotations(hidden()),
		field.Int("registered_count").Default(0),
		field.Int("waitlisted_count").Default(0),
		field.Int("checked_in_count").Default(0),
	}
}

func (Activity) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

func (Activity) Indexes() []ent.Index { return []ent.Index{index.Fields("starts_at")} }

func (Activity) Annotations() []schema.Annotation { return readOnlyNode(true) }

// ActivityRegistration is a member's place at an activity. A member holds
// at most one live (not cancelled) registration per activity; the waitlist
// is promoted in id order.
type ActivityRegistration struct{ ent.Schema }

func (ActivityRegistration) Fields() []ent.Field {
	return []ent.Field{
		field.Int("activity_id").Immutable().Annotations(hidden()),
		field.Int("member_id").Immutable().Annotations(hidden()),
		field.Enum("status").GoType(enum.RegistrationStatus("")).Annotations(sharedEnum("RegistrationStatus")),
		field.Time("created_at").Default(time.Now).Immutable(),
		field.Time("cancelled_at").Optional().Nillable(),
		field.Time("checked_in_at").Optional().Nillable(),
		field.Int("checked_in_by").Optional().Nillable().Annotations(hidden()),
	}
}

func (ActivityRegistration) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("activity", Activity.Type).Field("activity_id").Unique().Required().Immutable().
			Annotations(entgql.Skip(entgql.SkipAll)),
		edge.To("member", Member.Type).Field("member_id").Unique().Required().Immutable().
			Annotations(entgql.Skip(entgql.SkipAll)),
	}
}

func (ActivityRegistration) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("activity_id", "member_id").Unique().
			Annotations(entsql.IndexWhere("status <> 'CANCELLED'")),
		index.Fields("activity_id", "status"),
		index.Fields("member_id"),
	}
}

func (ActivityRegistration) Annotations() []schema.Annotation { return readOnlyNode(false) }

// Referral links a referee to the member whose code they registered with.
// One reward per referee: rewarded_at is set once, with the first paid order.
type Referral struct{ ent.Schema }

func (Referral) Fields() []ent.Field {
	return []ent.Field{
		field.Int("referrer_id").Immutable(),
		field.Int("referee_id").Immutable(),
		field.Time("created_at").Default(time.Now).Immutable(),
		field.Time("rewarded_at").Optional().Nillable(),
		field.Int("order_id").Optional().Nillable(),
	}
}

func (Referral) Indexes() []ent.Index {
	return []ent.Index{index.Fields("referee_id").Unique(), index.Fields("referrer_id")}
}

func (Referral) Annotations() []schema.Annotation { return []schema.Annotation{entgql.Skip(entgql.SkipAll)} }
