// Package rule is the audience rule tree (AudienceRuleInput in the API):
// and / or / not over tags, attributes, RFM segments, AIPL stages,
// behaviour counts and saved audiences. The same tree defines previews,
// saved audiences and rule-based tags, and is stored as JSON with them.
// This package only describes and checks a tree; internal/audience
// evaluates it.
package rule

import (
	"errors"
	"fmt"

	"github.com/onemember/onemember/ent/schema/enum"
)

// MaxNodes bounds a tree, so that one request cannot ask for unbounded work.
const MaxNodes = 200

// Rule is one node: exactly one field is set.
type Rule struct {
	And       []*Rule        `json:"and,omitempty"`
	Or        []*Rule        `json:"or,omitempty"`
	Not       *Rule          `json:"not,omitempty"`
	Tag       *TagRule       `json:"tag,omitempty"`
	Attribute *AttributeRule `json:"attribute,omitempty"`
	Rfm       *RfmRule       `json:"rfm,omitempty"`
	Aipl      *AiplRule      `json:"aipl,omitempty"`
	Behavior  *BehaviorRule  `json:"behavior,omitempty"`
	// Audience names a saved audience: with and / or / not this gives
	// intersection, union and difference of saved audiences.
	Audience *int `json:"audience,omitempty"`
}

// TagRule matches members holding any or all of the tags.
type TagRule struct {
	TagIDs []int         `json:"tagIds"`
	Match  enum.TagMatch `json:"match"`
}

// AttributeRule compares one member attribute with values.
type AttributeRule struct {
	Field  enum.AttributeField `json:"field"`
	Op     enum.RuleOp         `json:"op"`
	Values []string            `json:"values"`
}

// RfmRule matches members in some segments of a computed RFM model.
type RfmRule struct {
	ModelID  int               `json:"modelId"`
	Segments []enum.RfmSegment `json:"segments"`
}

// AiplRule matches members at some stages of an AIPL model today.
type AiplRule struct {
	ModelID int              `json:"modelId"`
	Stages  []enum.AiplStage `json:"stages"`
}

// BehaviorRule matches members with at least MinCount events of Kind in
// the last WithinDays days (optionally in one business unit).
type BehaviorRule struct {
	Kind           enum.BehaviorKind `json:"kind"`
	WithinDays     int               `json:"withinDays"`
	MinCount       int               `json:"minCount"`
	BusinessUnitID *int              `json:"businessUnitId,omitempty"`
}

// ErrInvalid wraps every reason a tree is refused.
var ErrInvalid = errors.New("invalid audience rule")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Validate checks the shape of the tree: one field per node, known enum
// values, sensible numbers, at most MaxNodes nodes. It does not look
// anything up (tags, models and audiences are checked when evaluated).
func (r *Rule) Validate() error {
	n := 0
	return r.validate(&n, 0)
}

func (r *Rule) validate(n *int, depth int) error {
	if r == nil {
		return invalid("empty node")
	}
	*n++
	if *n > MaxNodes {
		return invalid("more than %d nodes", MaxNodes)
	}
	if depth > 32 {
		return invalid("nested deeper than 32")
	}
	set := 0
	for _, ok := range []bool{r.And != nil, r.Or != nil, r.Not != nil, r.Tag != nil, r.Attribute != nil,
		r.Rfm != nil, r.Aipl != nil, r.Behavior != nil, r.Audience != nil} {
		if ok {
			set++
		}
	}
	if set != 1 {
		return invalid("each node sets exactly one of and, or, not, tag, attribute, rfm, aipl, behavior, audience (this one sets %d)", set)
	}
	switch {
	case r.And != nil || r.Or != nil:
		kids := append(r.And, r.Or...)
		if len(kids) == 0 {
			return invalid("and / or need at least one rule")
		}
		for _, k := range kids {
			if err := k.validate(n, depth+1); err != nil {
				return err
			}
		}
	case r.Not != nil:
		return r.Not.validate(n, depth+1)
	case r.Tag != nil:
		if len(r.Tag.TagIDs) == 0 {
			return invalid("tag needs tagIds")
		}
		if !enum.Valid(r.Tag.Match) {
			return invalid("tag match %q", r.Tag.Match)
		}
	case r.Attribute != nil:
		return r.Attribute.validate()
	case r.Rfm != nil:
		if len(r.Rfm.Segments) == 0 {
			return invalid("rfm needs segments")
		}
		for _, s := range r.Rfm.Segments {
			if !enum.Valid(s) {
				return invalid("rfm segment %q", s)
			}
		}
	case r.Aipl != nil:
		if len(r.Aipl.Stages) == 0 {
			return invalid("aipl needs stages")
		}
		for _, s := range r.Aipl.Stages {
			if !enum.Valid(s) {
				return invalid("aipl stage %q", s)
			}
		}
	case r.Behavior != nil:
		b := r.Behavior
		if !enum.Valid(b.Kind) {
			return invalid("behavior kind %q", b.Kind)
		}
		if b.WithinDays < 1 || b.WithinDays > 3660 {
			return invalid("behavior withinDays must be 1..3660")
		}
		if b.MinCount < 1 {
			return invalid("behavior minCount must be at least 1")
		}
	}
	return nil
}

func (a *AttributeRule) validate() error {
	if !enum.Valid(a.Field) {
		return invalid("attribute field %q", a.Field)
	}
	if !enum.Valid(a.Op) {
		return invalid("attribute op %q", a.Op)
	}
	want := map[enum.RuleOp]int{enum.OpEq: 1, enum.OpBetween: 2, enum.OpGte: 1, enum.OpLte: 1}[a.Op]
	switch {
	case a.Op == enum.OpIn && len(a.Values) == 0:
		return invalid("%s IN needs at least one value", a.Field)
	case a.Op != enum.OpIn && len(a.Values) != want:
		return invalid("%s %s takes %d value(s), got %d", a.Field, a.Op, want, len(a.Values))
	}
	return nil
}

// Audiences returns the saved audiences the tree refers to, directly.
func (r *Rule) Audiences() []int {
	var out []int
	r.Walk(func(n *Rule) {
		if n.Audience != nil {
			out = append(out, *n.Audience)
		}
	})
	return out
}

// Walk calls fn for every node, parents first.
func (r *Rule) Walk(fn func(*Rule)) {
	if r == nil {
		return
	}
	fn(r)
	for _, k := range r.And {
		k.Walk(fn)
	}
	for _, k := range r.Or {
		k.Walk(fn)
	}
	r.Not.Walk(fn)
}
