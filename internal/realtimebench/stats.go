package realtimebench

import (
	"math"
	"slices"
	"time"
)

// Percentiles returns the nearest-rank percentiles ps (0 < p ≤ 1) of d,
// zero for an empty d. d is not modified.
func Percentiles(d []time.Duration, ps ...float64) []time.Duration {
	out := make([]time.Duration, len(ps))
	if len(d) == 0 {
		return out
	}
	s := slices.Clone(d)
	slices.Sort(s)
	for i, p := range ps {
		k := int(math.Ceil(p*float64(len(s)))) - 1
		out[i] = s[min(max(k, 0), len(s)-1)]
	}
	return out
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }
