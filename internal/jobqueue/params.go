package jobqueue

import (
	"encoding/json"
	"math"

	"github.com/onemember/onemember/internal/platform/fault"
)

// maxExactFloat is 2^53: every integer up to it is exact in a float64.
const maxExactFloat = 1 << 53

// IntParam reads params[name] as an int. Parameters come back from the
// jobs table as JSON, where numbers decode as float64: a whole float64 up
// to 2^53 in magnitude is accepted, as are int, int64 and json.Number
// holding an integer. Anything else (missing, fractional, out of range,
// another type) is a Permanent BAD_USER_INPUT error naming the parameter:
// retrying cannot fix it.
func IntParam(params map[string]any, name string) (int, error) {
	bad := func(format string, args ...any) (int, error) {
		return 0, Permanent(fault.Invalidf(name, format, args...))
	}
	v, ok := params[name]
	if !ok || v == nil {
		return bad("is required")
	}
	switch n := v.(type) {
	case int:
		return n, nil
	case int64:
		if n < math.MinInt || n > math.MaxInt {
			return bad("is out of range")
		}
		return int(n), nil
	case float64:
		if n != math.Trunc(n) || math.Abs(n) > maxExactFloat {
			return bad("must be a whole number, got %v", n)
		}
		return int(n), nil
	case json.Number:
		i, err := n.Int64()
		if err != nil {
			return bad("must be a whole number, got %s", n)
		}
		return IntParam(map[string]any{name: i}, name)
	default:
		return bad("must be a number, got %T", v)
	}
}
