// Command gqlgen generates graph/ from gqlgen.yml, as `gqlgen generate`
// does, with one plugin: the objects listed in sequential resolve their
// fields one after another on the request's goroutine.
//
// gqlgen runs every resolver field of an object in a goroutine of its own.
// That pays when the fields wait on separate reads, and costs a goroutine,
// its stack growth and a scheduling round trip when they do not. A Coupon's
// resolver fields (title, kind, faceValue, discountPercent, minSpend) all
// read its one template, eager-loaded or through the template dataloader,
// so they gain nothing from running at once: a MemberHome with ten coupons
// started 62 goroutines, 50 of them for these fields, and starts 22 now
// (TestMemberHomeIsBatched checks that a coupon adds one). Coupons of a list still resolve
// side by side, one goroutine per element, which is what lets their
// dataloader calls share one batch.
//
// This is the mechanism gqlgen itself uses for Mutation (whose fields must
// run in order): codegen.Object.DisableConcurrency.
package main

import (
	"fmt"
	"os"

	"github.com/99designs/gqlgen/api"
	"github.com/99designs/gqlgen/codegen"
	"github.com/99designs/gqlgen/codegen/config"
)

// sequential lists the objects whose fields read only what one read (or one
// dataloader call) of the object already brings.
var sequential = []string{"Coupon"}

func main() {
	cfg, err := config.LoadConfigFromDefaultLocations()
	if err != nil {
		fail(err)
	}
	if err := api.Generate(cfg, api.AddPlugin(sequentialFields(sequential))); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "gqlgen:", err)
	os.Exit(1)
}

// sequentialFields is a gqlgen plugin; it runs after the schema is bound
// to Go types and before the code is written.
type sequentialFields []string

func (sequentialFields) Name() string { return "sequentialfields" }

func (s sequentialFields) GenerateCode(data *codegen.Data) error {
	for _, name := range s {
		obj := data.Objects.ByName(name)
		if obj == nil {
			return fmt.Errorf("sequential object %s is not in the schema", name)
		}
		obj.DisableConcurrency = true
	}
	return nil
}
