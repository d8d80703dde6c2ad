package prediction_test

import (
	"math"
	"testing"

	"github.com/onemember/onemember/internal/prediction"
)

// expectedByIntegral is E[Y(t) | x, tx, T] computed independently of the
// hypergeometric series: given alive, λ ~ Gamma(r+x, α+T) and p ~ Beta(a,
// b+x) independently, and a member of rate λ and dropout p buys
// (1 − e^(−λpt))/p times on average; integrating λ out leaves
//
//	E[Y(t) | alive] = ∫₀¹ (1 − (1 + pt/(α+T))^(−(r+x))) / p · Beta(p; a, b+x) dp,
//
// taken here by tanh-sinh quadrature, which copes with the Beta density's
// endpoint singularities.
func expectedByIntegral(m prediction.BGNBD, t, x, tx, T float64) float64 {
	k, tau := m.R+x, t/(m.Alpha+T)
	a, b := m.A, m.B+x
	lb, _ := math.Lgamma(a)
	lb2, _ := math.Lgamma(b)
	lab, _ := math.Lgamma(a + b)
	logB := lb + lb2 - lab
	g := func(p float64) float64 {
		if p*tau < 1e-8 {
			return k * tau * (1 - (k+1)*p*tau/2)
		}
		return -math.Expm1(-k*math.Log1p(p*tau)) / p
	}
	const h = 1.0 / 256
	var sum float64
	for i := -8 * 256; i <= 8*256; i++ {
		s := float64(i) * h
		u := math.Pi / 2 * math.Sinh(s)
		// p = 1/(1+e^(−2u)), 1−p = 1/(1+e^(2u)), both without cancellation.
		p, q := 1/(1+math.Exp(-2*u)), 1/(1+math.Exp(2*u))
		if p == 0 || q == 0 {
			continue
		}
		// dp/ds = π/2 cosh(s) · 2 p q.
		logw := math.Log(math.Pi*math.Cosh(s)) + math.Log(p) + math.Log(q)
		f := g(p) * math.Exp((a-1)*math.Log(p)+(b-1)*math.Log(q)+logw-logB)
		sum += f * h
	}
	return sum * m.ProbabilityAlive(x, tx, T)
}

func TestExpectedPurchasesMatchesIntegral(t *testing.T) {
	worst := 0.0
	for _, r := range []float64{0.05, 0.7, 3, 9.5, 30} {
		for _, alpha := range []float64{0.05, 0.5, 5, 60} {
			for _, a := range []float64{0.2, 1, 4, 19, 50} {
				for _, b := range []float64{0.4, 3, 200, 1e5} {
					m := prediction.BGNBD{R: r, Alpha: alpha, A: a, B: b}
					for _, c := range []struct{ t, x, tx, T float64 }{
						{prediction.Horizon90Days, 0, 0, 0}, {prediction.Horizon12Months, 0, 0, 0},
						{prediction.Horizon12Months, 0, 0, 30}, {prediction.Horizon90Days, 2, 10, 40},
						{prediction.Horizon12Months, 12, 50, 52}, {prediction.Horizon12Months, 150, 103, 104},
					} {
						got := m.ExpectedPurchases(c.t, c.x, c.tx, c.T)
						want := expectedByIntegral(m, c.t, c.x, c.tx, c.T)
						rel := math.Abs(got-want) / math.Max(want, 1e-12)
						worst = max(worst, rel)
						if !(rel < 1e-6) {
							t.Errorf("%+v %+v: series %.10g, integral %.10g", m, c, got, want)
						}
					}
				}
			}
		}
	}
	t.Logf("worst relative difference %.2g", worst)
}
