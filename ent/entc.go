//go:build ignore

// Command entc generates the ent client, the GraphQL schema of the ent types
// (graph/ent.graphql) and their gqlgen glue. Run through `go generate ./...`.
package main

import (
	"fmt"
	"log"

	"entgo.io/contrib/entgql"
	"entgo.io/ent/entc"
	"entgo.io/ent/entc/gen"
	"github.com/vektah/gqlparser/v2/ast"
)

func main() {
	ex, err := entgql.NewExtension(
		entgql.WithConfigPath("./gqlgen.yml"),
		entgql.WithSchemaGenerator(),
		entgql.WithSchemaPath("./graph/ent.graphql"),
		entgql.WithWhereInputs(true),
		entgql.WithNodeDescriptor(true),
		entgql.WithSchemaHook(staffOnlyNodeLookup),
	)
	if err != nil {
		log.Fatalf("creating entgql extension: %v", err)
	}
	err = entc.Generate("./ent/schema", &gen.Config{
		Target:  "./ent",
		Package: "github.com/onemember/onemember/ent",
		Features: []gen.Feature{
			gen.FeatureVersionedMigration,
			gen.FeatureGlobalID,
			gen.FeatureLock,
			gen.FeatureUpsert,
			gen.FeatureModifier,
			gen.FeatureExecQuery,
			gen.FeatureNamedEdges,
		},
	}, entc.Extensions(ex))
	if err != nil {
		log.Fatalf("running ent codegen: %v", err)
	}
}

// staffOnlyNodeLookup puts node and nodes behind the @auth directive: a
// global id can name any object, so only staff may look one up (members
// reach their own data through `me`).
func staffOnlyNodeLookup(_ *gen.Graph, s *ast.Schema) error {
	q := s.Types["Query"]
	if q == nil {
		return fmt.Errorf("generated schema has no Query type")
	}
	for _, name := range []string{"node", "nodes"} {
		f := q.Fields.ForName(name)
		if f == nil {
			return fmt.Errorf("generated Query has no %s field", name)
		}
		f.Directives = append(f.Directives, &ast.Directive{
			Name: "auth",
			Arguments: ast.ArgumentList{{
				Name:  "staff",
				Value: &ast.Value{Kind: ast.ListValue},
			}},
		})
	}
	return nil
}
