package prediction

import (
	"math/rand/v2"

	"gonum.org/v1/gonum/stat/distuv"
)

// CDNOWBG and CDNOWGG are the CDNOW estimates of Fader, Hardie and Lee
// (2005): BG/NBD in weeks, Gamma-Gamma in dollars.
var (
	CDNOWBG = BGNBD{R: 0.243, Alpha: 4.414, A: 0.793, B: 2.426}
	CDNOWGG = GammaGamma{P: 6.25, Q: 3.74, V: 15.44}
)

// Simulated is one simulated member: the calibration summary and the
// purchases made in the holdout that follows it.
type Simulated struct {
	RFT    RFT
	Future int
}

// Simulate draws n members from bg and gg with the seed: each joins at a
// uniform time so that its age T lies in [minT, maxT] weeks, buys as a
// Poisson process of rate λ ~ Gamma(r, α) and, after each repeat
// purchase, drops out with probability p ~ Beta(a, b); purchases in the
// holdout weeks after T are counted in future. A member's purchase values
// are Gamma(p, ν) with ν ~ Gamma(q, v); MeanValue is over the repeats.
func Simulate(seed uint64, n int, bg BGNBD, gg GammaGamma, minT, maxT, holdout float64) []Simulated {
	src := rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)
	rnd := rand.New(src)
	lambda := distuv.Gamma{Alpha: bg.R, Beta: bg.Alpha, Src: src}
	drop := distuv.Beta{Alpha: bg.A, Beta: bg.B, Src: src}
	nu := distuv.Gamma{Alpha: gg.Q, Beta: gg.V, Src: src}
	out := make([]Simulated, n)
	for i := range out {
		l, p := lambda.Rand(), drop.Rand()
		T := minT + (maxT-minT)*rnd.Float64()
		var s Simulated
		s.RFT.T = T
		var sum float64
		spend := distuv.Gamma{Alpha: gg.P, Beta: nu.Rand(), Src: src}
		for t := 0.0; ; {
			t += rnd.ExpFloat64() / l
			if t > T+holdout {
				break
			}
			if t <= T {
				s.RFT.X++
				s.RFT.TX = t
				sum += spend.Rand()
			} else {
				s.Future++
			}
			if rnd.Float64() < p {
				break
			}
		}
		if s.RFT.X > 0 {
			s.RFT.MeanValue = sum / s.RFT.X
		}
		out[i] = s
	}
	return out
}

// RFTs returns the calibration summaries of sim.
func RFTs(sim []Simulated) []RFT {
	out := make([]RFT, len(sim))
	for i, s := range sim {
		out[i] = s.RFT
	}
	return out
}
