package schema

import (
	"time"

	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/index"
)

// OtpChallenge is one SMS code sent to a phone. The code is stored only as
// a keyed hash; attempts count wrong guesses. Rows also serve the per-phone
// and per-address rate limits, so they work across replicas.
type OtpChallenge struct{ ent.Schema }

func (OtpChallenge) Fields() []ent.Field {
	return []ent.Field{
		field.Bytes("phone_index").Sensitive(),
		field.String("purpose").NotEmpty(),
		field.Bytes("code_hash").Sensitive(),
		field.String("client_ip").Default(""),
		field.Int("attempts").Default(0),
		field.Time("created_at").Default(time.Now).Immutable(),
		field.Time("expires_at"),
		field.Time("consumed_at").Optional().Nillable(),
	}
}

func (OtpChallenge) Indexes() []ent.Index {
	return []ent.Index{index.Fields("phone_index", "purpose", "created_at"), index.Fields("client_ip", "created_at")}
}

func (OtpChallenge) Annotations() []schema.Annotation {
	return []schema.Annotation{entgql.Skip(entgql.SkipAll)}
}
