package schema

import (
	"time"

	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// AuditLog records who did what to which object: staff actions, merges,
// erasures, credential changes. Rows are only ever inserted.
type AuditLog struct{ ent.Schema }

func (AuditLog) Fields() []ent.Field {
	return []ent.Field{
		field.String("actor_kind").NotEmpty(),
		field.Int("actor_id").Optional(),
		field.String("action").NotEmpty(),
		field.String("subject_type").Default(""),
		field.Int("subject_id").Optional(),
		field.JSON("detail", map[string]any{}).Optional().Annotations(entgql.Type("Map")),
		field.String("request_id").Default(""),
		field.Time("created_at").Default(time.Now).Immutable().Annotations(entgql.OrderField("CREATED_AT")),
	}
}

func (AuditLog) Indexes() []ent.Index {
	return []ent.Index{index.Fields("subject_type", "subject_id"), index.Fields("created_at")}
}

func (AuditLog) Annotations() []schema.Annotation {
	return []schema.Annotation{
		entgql.RelayConnection(),
		entgql.Skip(entgql.SkipMutationCreateInput, entgql.SkipMutationUpdateInput),
	}
}
