package gqlhttp

import (
	"context"
	"encoding/json"
	"math"

	"github.com/99designs/gqlgen/complexity"
	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/onemember/onemember/internal/platform/fault"
)

// defaultPage is the page size assumed, for complexity, of a list field
// called without first/last.
const defaultPage = 20

// pagedComplexity makes every paginated field cost its page size times
// its selection: a document asking for 1,000 members each with 1,000 orders
// is priced as the million rows it is. Fields with a complexity function of
// their own keep it.
type pagedComplexity struct{ graphql.ExecutableSchema }

func (p pagedComplexity) Complexity(ctx context.Context, typeName, field string, child int, args map[string]any) (int, bool) {
	if c, ok := p.ExecutableSchema.Complexity(ctx, typeName, field, child, args); ok {
		return c, true
	}
	n, paged := pageSize(args, "first")
	if m, ok := pageSize(args, "last"); ok && (!paged || m > n) {
		n, paged = m, true
	}
	if !paged {
		return 0, false
	}
	return 1 + n*max(child, 1), true
}

func pageSize(args map[string]any, name string) (int, bool) {
	v, ok := args[name]
	if !ok {
		return 0, false
	}
	// Literals arrive as int64 and variables as json.Number (gqlgen decodes
	// requests with UseNumber); an absent or null size is the default page.
	var n int64
	switch x := v.(type) {
	case int64:
		n = x
	case int:
		n = int64(x)
	case json.Number:
		var err error
		if n, err = x.Int64(); err != nil {
			return defaultPage, true
		}
	default:
		return defaultPage, true
	}
	return int(min(max(n, 0), math.MaxInt32)), true
}

// complexityLimit rejects operations costing more than max, like gqlgen's
// extension.FixedComplexityLimit, and remembers the cost of operations
// without variables: it is then a function of the parsed operation alone,
// and the query cache hands out the same parsed operation for the same
// text, so a client's fixed operations (MemberHome) are priced once rather
// than walked on every request. Operations with variables are priced every
// time, with their values.
type complexityLimit struct {
	max   int
	es    graphql.ExecutableSchema
	costs *lru.Cache[*ast.OperationDefinition, int]
}

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = (*complexityLimit)(nil)

// errComplexityLimit is the code of gqlgen's own complexity extension,
// which clients may already know.
const errComplexityLimit = "COMPLEXITY_LIMIT_EXCEEDED"

func newComplexityLimit(limit int) *complexityLimit {
	costs, err := lru.New[*ast.OperationDefinition, int](1000) // the query cache's size
	if err != nil {
		panic(err) // only for a non-positive size
	}
	return &complexityLimit{max: limit, costs: costs}
}

func (*complexityLimit) ExtensionName() string { return "ComplexityLimit" }

func (c *complexityLimit) Validate(es graphql.ExecutableSchema) error {
	c.es = es
	return nil
}

func (c *complexityLimit) MutateOperationContext(ctx context.Context, op *graphql.OperationContext) *gqlerror.Error {
	if op.Operation == nil {
		return nil
	}
	cost, ok := 0, false
	fixed := len(op.Operation.VariableDefinitions) == 0
	if fixed {
		cost, ok = c.costs.Get(op.Operation)
	}
	if !ok {
		cost = complexity.Calculate(ctx, c.es, op.Operation, op.Variables)
		if fixed {
			c.costs.Add(op.Operation, cost)
		}
	}
	if cost > c.max {
		err := gqlerror.Errorf("operation has complexity %d, which exceeds the limit of %d", cost, c.max)
		errcode.Set(err, errComplexityLimit)
		return err
	}
	return nil
}

// depthLimit rejects documents nested deeper than Max selection levels
// (fragments included), before anything executes.
type depthLimit struct{ Max int }

var _ interface {
	graphql.HandlerExtension
	graphql.OperationContextMutator
} = depthLimit{}

func (depthLimit) ExtensionName() string                   { return "DepthLimit" }
func (depthLimit) Validate(graphql.ExecutableSchema) error { return nil }

func (d depthLimit) MutateOperationContext(_ context.Context, op *graphql.OperationContext) *gqlerror.Error {
	if op.Operation == nil {
		return nil
	}
	if depth := selectionDepth(op.Operation.SelectionSet, 0); depth > d.Max {
		err := gqlerror.Errorf("operation is nested %d levels deep, more than the limit of %d", depth, d.Max)
		err.Extensions = map[string]any{"code": string(fault.BadUserInput)}
		return err
	}
	return nil
}

func selectionDepth(set ast.SelectionSet, depth int) int {
	deepest := depth
	for _, sel := range set {
		var d int
		switch s := sel.(type) {
		case *ast.Field:
			if len(s.SelectionSet) == 0 {
				d = depth + 1
			} else {
				d = selectionDepth(s.SelectionSet, depth+1)
			}
		case *ast.InlineFragment:
			d = selectionDepth(s.SelectionSet, depth)
		case *ast.FragmentSpread:
			if s.Definition != nil {
				d = selectionDepth(s.Definition.SelectionSet, depth)
			}
		}
		deepest = max(deepest, d)
	}
	return deepest
}
