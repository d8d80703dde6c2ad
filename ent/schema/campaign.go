package schema

import (
	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/edge"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/campaign/spec"
)

// Campaign is event-triggered marketing (营销策略 / 事件营销): a trigger,
// an optional audience, actions, a window, guards (caps, budget, consent)
// and a holdout group to measure lift. internal/campaign runs it.
type Campaign struct{ ent.Schema }

func (Campaign) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").NotEmpty(),
		field.Enum("status").GoType(enum.CampaignStatus("")).Default(string(enum.CampaignDraft)).
			Annotations(sharedEnum("CampaignStatus")),
		field.Enum("trigger_kind").GoType(enum.CampaignTriggerKind("")).Immutable().Annotations(hidden()),
		field.JSON("trigger", spec.Trigger{}).Annotations(hidden()),
		field.JSON("actions", []*spec.Action{}).Annotations(hidden()),
		field.Int("audience_id").Optional().Nillable().Immutable().Annotations(hidden()),
		field.Time("starts_at"),
		field.Time("ends_at").Optional().Nillable(),
		field.Int("max_per_member").Optional().Nillable(),
		field.Int("frequency_cap_days").Optional().Nillable(),
		field.Int64("budget").Optional().Nillable().Annotations(entgql.Type("Money")),
		// spent is the cost committed by the executions so far (fen).
		field.Int64("spent").Default(0).Annotations(entgql.Type("Money")),
		field.Int("holdout_percent").Default(0),
		field.Int("attribution_days").Default(7),
		field.Int("priority").Default(0),
		// cursor is how far an event trigger has read its source (its own
		// meaning per trigger kind; see internal/campaign).
		field.JSON("cursor", map[string]any{}).Optional().Annotations(hidden()),
		// next_run_at is when a time trigger next runs.
		field.Time("next_run_at").Optional().Nillable().Annotations(hidden()),
		field.Time("activated_at").Optional().Nillable(),
		field.Int("created_by_staff_id").Optional().Nillable().Immutable().Annotations(hidden()),
	}
}

func (Campaign) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

func (Campaign) Edges() []ent.Edge {
	return []ent.Edge{
		edge.To("audience", Audience.Type).Field("audience_id").Unique().Immutable(),
		edge.To("executions", CampaignExecution.Type).Annotations(entgql.RelayConnection()),
	}
}

func (Campaign) Indexes() []ent.Index {
	return []ent.Index{index.Fields("status", "trigger_kind")}
}

func (Campaign) Annotations() []schema.Annotation { return readOnlyNode(true) }

// CampaignExecution records what a campaign did for one member at one
// occurrence of its trigger (the ONE_OFF run, a birthday's year, an
// order, a tier change ...). The unique (campaign, member, occurrence)
// makes every execution happen at most once, also after a crash or on
// several replicas.
type CampaignExecution struct{ ent.Schema }

func (CampaignExecution) Fields() []ent.Field {
	return []ent.Field{
		field.Int("campaign_id").Immutable().Annotations(hidden()),
		field.Int("member_id").Immutable().Annotations(hidden()),
		field.String("occurrence").Immutable().Annotations(hidden()),
		field.Enum("status").GoType(enum.CampaignExecutionStatus("")).Immutable().
			Annotations(sharedEnum("CampaignExecutionStatus")),
		// action is the first action that ran (REACHED), or the campaign's
		// first action for an execution that did not reach the member.
		field.Enum("action").GoType(enum.CampaignActionKind("")).Immutable().
			Annotations(sharedEnum("CampaignActionKind")),
		// cost is what the execution committed of the budget (fen).
		field.Int64("cost").Default(0).Immutable().Annotations(entgql.Type("Money")),
		// coupon_id is the coupon an ISSUE_COUPON action issued: an order
		// that redeems it is attributed to the campaign.
		field.Int("coupon_id").Optional().Nillable().Immutable().Annotations(hidden()),
		field.Time("executed_at").Immutable().Annotations(entgql.OrderField("EXECUTED_AT")),
	}
}

func (CampaignExecution) Edges() []ent.Edge {
	return []ent.Edge{
		edge.From("campaign", Campaign.Type).Ref("executions").Field("campaign_id").Unique().Required().Immutable(),
		edge.To("member", Member.Type).Field("member_id").Unique().Required().Immutable(),
	}
}

func (CampaignExecution) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("campaign_id", "member_id", "occurrence").Unique(),
		index.Fields("member_id", "executed_at"),
		index.Fields("campaign_id", "status"),
		index.Fields("coupon_id"),
	}
}

func (CampaignExecution) Annotations() []schema.Annotation { return readOnlyNode(true) }
