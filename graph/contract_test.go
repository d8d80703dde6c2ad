package graph_test

import (
	"sort"
	"testing"

	"github.com/vektah/gqlparser/v2"

	"github.com/onemember/onemember/graph"
	"github.com/onemember/onemember/internal/apptest"
)

// pending lists the client operations the schema does not serve yet, with
// the issue that brings them. Every other operation of shared/clients must
// validate; a pending one that starts validating must leave this list.
var pending = map[string]string{}

func TestClientOperationsValidate(t *testing.T) {
	schema := graph.NewSchema(&graph.Resolver{}).Schema()
	ops := apptest.Operations(t)
	if len(ops) < 60 {
		t.Fatalf("loaded only %d client operations", len(ops))
	}
	var names []string
	for n := range ops {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		op := ops[name]
		_, errs := gqlparser.LoadQueryWithRules(schema, op.Source, nil)
		issue, isPending := pending[name]
		switch {
		case isPending && len(errs) == 0:
			t.Errorf("%s (%s) validates now: remove it from the pending list (%s)", name, op.File, issue)
		case !isPending && len(errs) > 0:
			t.Errorf("%s (%s) does not validate: %v", name, op.File, errs)
		}
	}
	for name := range pending {
		if _, ok := ops[name]; !ok {
			t.Errorf("pending lists %s, which shared/clients does not have", name)
		}
	}
}
