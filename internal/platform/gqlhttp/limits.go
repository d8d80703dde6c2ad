package gqlhttp

import (
	"context"

	"github.com/99designs/gqlgen/graphql"
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
	switch n := v.(type) {
	case int:
		return max(n, 0), true
	case *int:
		if n != nil {
			return max(*n, 0), true
		}
	}
	return defaultPage, true
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
