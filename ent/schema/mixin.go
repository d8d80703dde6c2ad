package schema

import (
	"time"

	"entgo.io/contrib/entgql"
	"entgo.io/ent"
	"entgo.io/ent/schema"
	"entgo.io/ent/schema/field"
	"entgo.io/ent/schema/mixin"
)

// TimeMixin records when a row was created and last changed (UTC).
type TimeMixin struct{ mixin.Schema }

func (TimeMixin) Fields() []ent.Field {
	return []ent.Field{
		field.Time("created_at").Default(time.Now).Immutable().
			Annotations(entgql.OrderField("CREATED_AT")),
		field.Time("updated_at").Default(time.Now).UpdateDefault(time.Now).
			Annotations(entgql.Skip(entgql.SkipWhereInput)),
	}
}

// hidden keeps a field out of the GraphQL schema entirely: secrets,
// ciphertexts and bookkeeping that resolvers expose in another form.
func hidden() entgql.Annotation { return entgql.Skip(entgql.SkipAll) }

// sharedEnum names the GraphQL enum of a field whose Go type comes from the
// enum package; the enum itself is declared once in graph/schema.
func sharedEnum(name string) schema.Annotation {
	return entgql.Annotation{Type: name, Skip: entgql.SkipEnumField}
}
