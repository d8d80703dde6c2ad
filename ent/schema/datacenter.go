package schema

import (
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"

	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/audience/rule"
)

// The data centre's bulk tables are plain SQL, outside ent, because they
// are written set-based and read by the million (migrations
// 20261123..._datacenter_tables): behavior_events (partitioned by month),
// member_tags (member_id, tag_id), rfm_results (model_id, member_id) and
// member_changes (what the in-memory bitmap indexes replay).

// Tag labels members (标签): MANUAL tags are assigned by staff, RULE tags
// are recomputed from their audience rule by a REFRESH_TAG job.
type Tag struct{ ent.Schema }

func (Tag) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").NotEmpty(),
		field.String("category").Default(""),
		field.Enum("kind").Values("MANUAL", "RULE").Default("MANUAL"),
		field.JSON("rule", &rule.Rule{}).Optional().Annotations(hidden()),
		field.Time("refreshed_at").Optional().Nillable(),
	}
}

func (Tag) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

func (Tag) Indexes() []ent.Index { return []ent.Index{index.Fields("name").Unique()} }

func (Tag) Annotations() []schema.Annotation { return readOnlyNode(true) }

// Audience is a saved audience (人群): a rule or an uploaded list, with its
// members as a serialized roaring bitmap of member ids as of computed_at.
type Audience struct{ ent.Schema }

func (Audience) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").NotEmpty(),
		field.Enum("source").Values("RULE", "IMPORT").Default("RULE").Immutable(),
		field.JSON("rule", &rule.Rule{}).Optional().Annotations(hidden()),
		// depends_on lists the saved audiences the rule refers to, for the
		// cycle check and ON_CHANGE cascades.
		field.Ints("depends_on").Optional().Annotations(hidden()),
		field.Int("priority").Default(0),
		field.Enum("refresh").GoType(enum.AudienceRefresh("")).Default(string(enum.RefreshStatic)).
			Annotations(sharedEnum("AudienceRefresh")),
		field.Enum("status").Values("PENDING", "COMPUTING", "READY", "FAILED").Default("PENDING"),
		field.Int64("size").Default(0),
		field.Bytes("bitmap").Optional().Annotations(hidden()),
		field.Time("computed_at").Optional().Nillable(),
	}
}

func (Audience) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

func (Audience) Indexes() []ent.Index { return []ent.Index{index.Fields("name").Unique()} }

func (Audience) Annotations() []schema.Annotation { return readOnlyNode(true) }

// RfmModel is an RFM model (DOMAIN.md, Data centre): its window, scope and
// split; a COMPUTE_RFM job writes rfm_results and the thresholds used.
type RfmModel struct{ ent.Schema }

func (RfmModel) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").NotEmpty(),
		field.Int("window_days").Positive(),
		field.Ints("business_unit_ids").Optional().Annotations(hidden()),
		field.JSON("channels", []enum.Channel{}).Optional().Annotations(hidden()),
		field.Enum("split_mode").GoType(enum.RfmSplitMode("")).Annotations(sharedEnum("RfmSplitMode")),
		// Custom split values (CUSTOM only).
		field.Float("custom_recency_days").Optional().Nillable().Annotations(hidden()),
		field.Float("custom_frequency").Optional().Nillable().Annotations(hidden()),
		field.Int64("custom_monetary").Optional().Nillable().Annotations(hidden()),
		// The split values the last computation used.
		field.Float("threshold_recency_days").Optional().Nillable().Annotations(hidden()),
		field.Float("threshold_frequency").Optional().Nillable().Annotations(hidden()),
		field.Float("threshold_monetary").Optional().Nillable().Annotations(hidden()),
		field.Time("computed_at").Optional().Nillable(),
	}
}

func (RfmModel) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

func (RfmModel) Annotations() []schema.Annotation { return readOnlyNode(false) }

// AiplModel defines the AIPL funnel stages by behaviour kinds; stages are
// computed on read for any date (snapshot, trend, flow).
type AiplModel struct{ ent.Schema }

func (AiplModel) Fields() []ent.Field {
	return []ent.Field{
		field.String("name").NotEmpty(),
		field.Int("window_days").Positive(),
		field.JSON("channels", []enum.Channel{}).Optional().Annotations(hidden()),
		field.JSON("awareness", []enum.BehaviorKind{}).Annotations(hidden()),
		field.JSON("interest", []enum.BehaviorKind{}).Annotations(hidden()),
		field.JSON("purchase", []enum.BehaviorKind{}).Annotations(hidden()),
		field.Int("loyalty_min_purchases").Positive().Annotations(hidden()),
		field.Bool("loyalty_require_share").Default(false).Annotations(hidden()),
	}
}

func (AiplModel) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

func (AiplModel) Annotations() []schema.Annotation { return readOnlyNode(false) }

// Job is a durable background job (issue coupons to an audience, refresh
// an audience or a tag, compute an RFM model). Workers claim QUEUED jobs,
// or RUNNING jobs whose lease ran out, with FOR UPDATE SKIP LOCKED;
// checkpoint is how far a job got, written in the same transaction as the
// work, so a job resumed after a crash never does a member twice.
type Job struct{ ent.Schema }

func (Job) Fields() []ent.Field {
	return []ent.Field{
		field.Enum("kind").GoType(enum.JobKind("")).Immutable().Annotations(sharedEnum("JobKind")),
		field.Enum("status").GoType(enum.JobStatus("")).Default(string(enum.JobQueued)).
			Annotations(sharedEnum("JobStatus")),
		field.String("idempotency_key").Optional().Nillable().Immutable().Annotations(hidden()),
		field.JSON("params", map[string]any{}).Optional().Annotations(hidden()),
		field.Int64("total").Default(0),
		field.Int64("processed").Default(0),
		field.Int64("failed").Default(0),
		field.Int64("checkpoint").Default(0).Annotations(hidden()),
		field.String("error").Default(""),
		field.Int("attempts").Default(0).Annotations(hidden()),
		field.Time("lease_until").Optional().Nillable().Annotations(hidden()),
		field.Int("created_by_staff_id").Optional().Nillable().Immutable().Annotations(hidden()),
		field.Time("started_at").Optional().Nillable(),
		field.Time("finished_at").Optional().Nillable(),
	}
}

func (Job) Mixin() []ent.Mixin { return []ent.Mixin{TimeMixin{}} }

func (Job) Indexes() []ent.Index {
	return []ent.Index{
		index.Fields("idempotency_key").Unique(),
		index.Fields("status", "lease_until"),
	}
}

func (Job) Annotations() []schema.Annotation { return readOnlyNode(false) }
