package prediction

import (
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/diff/fd"
)

func randomRFT(seed uint64, n int) []RFT {
	rnd := rand.New(rand.NewPCG(seed, 1))
	out := make([]RFT, n)
	for i := range out {
		T := 1 + 100*rnd.Float64()
		x := float64(rnd.IntN(8))
		tx := 0.0
		if x > 0 {
			tx = T * rnd.Float64()
		}
		out[i] = RFT{X: x, TX: tx, T: T, MeanValue: 100 + 10000*rnd.Float64()}
	}
	return out
}

// The analytic gradients agree with central differences of the
// log-likelihoods.
func TestGradients(t *testing.T) {
	data := randomRFT(1, 500)
	d, err := aggregateBG(data)
	if err != nil {
		t.Fatal(err)
	}
	ev := newBGEval(d)
	groups, _, err := aggregateGG(data)
	if err != nil {
		t.Fatal(err)
	}
	objectives := map[string]func(th, grad []float64) float64{
		"BG/NBD": func(th, grad []float64) float64 {
			return ev.logLik(BGNBD{R: math.Exp(th[0]), Alpha: math.Exp(th[1]), A: math.Exp(th[2]), B: math.Exp(th[3])}, grad)
		},
		"Gamma-Gamma": func(th, grad []float64) float64 {
			return ggLogLik(groups, GammaGamma{P: math.Exp(th[0]), Q: 1 + math.Exp(th[1]), V: math.Exp(th[2])}, grad)
		},
	}
	points := map[string][][]float64{
		"BG/NBD":      {{math.Log(0.24), math.Log(4.4), math.Log(0.79), math.Log(2.4)}, {0.5, 2, 0.3, -0.5}, {-2, -1, 1, 2}},
		"Gamma-Gamma": {{math.Log(6.25), math.Log(2.74), math.Log(1500)}, {0, 0, 8}, {2, -1, 5}},
	}
	for name, f := range objectives {
		for _, th := range points[name] {
			analytic := make([]float64, len(th))
			f(th, analytic)
			numeric := fd.Gradient(nil, func(x []float64) float64 { return f(x, nil) }, th,
				&fd.Settings{Formula: fd.Central, Step: 1e-5})
			for i := range th {
				if math.Abs(analytic[i]-numeric[i]) > 1e-5*math.Max(1, math.Abs(numeric[i])) {
					t.Errorf("%s at %v: d/dθ%d = %v, numerically %v", name, th, i, analytic[i], numeric[i])
				}
			}
		}
	}
}

// When BFGS cannot make progress (here: a gradient pointing the wrong
// way) Nelder-Mead still finds the optimum.
func TestMinimizeFallsBackToNelderMead(t *testing.T) {
	data := RFTs(Simulate(2, 5000, CDNOWBG, CDNOWGG, 26, 78, 0))
	d, err := aggregateBG(data)
	if err != nil {
		t.Fatal(err)
	}
	ev := newBGEval(d)
	unpack := func(th []float64) BGNBD {
		return BGNBD{R: math.Exp(th[0]), Alpha: math.Exp(th[1]), A: math.Exp(th[2]), B: math.Exp(th[3])}
	}
	f := func(th, grad []float64) float64 { return negMean(ev.logLik(unpack(th), grad), grad, d.members) }
	good, err := minimize(f, []float64{0, 0, 0, 0})
	if err != nil {
		t.Fatal(err)
	}
	bad, err := minimize(func(th, grad []float64) float64 {
		v := f(th, grad)
		for i := range grad {
			grad[i] = -grad[i] + 1
		}
		return v
	}, []float64{0, 0, 0, 0})
	if err != nil {
		t.Fatal(err)
	}
	for i := range good {
		if math.Abs(good[i]-bad[i]) > 1e-3 {
			t.Errorf("θ%d: BFGS %v, Nelder-Mead %v", i, good[i], bad[i])
		}
	}
}

func TestHyp2f1TailGuard(t *testing.T) {
	// z within 1e-7 of 1 hits the iteration guard; the geometric tail
	// estimate keeps the answer close to the one with a larger z margin.
	a := hyp2f1Tail(1.9, -0.2, 2.2, 1-1e-7)
	b := hyp2f1Tail(1.9, -0.2, 2.2, 1-1e-6)
	if math.IsNaN(a) || math.IsInf(a, 0) || a < b {
		t.Errorf("tail near z = 1: %v (at 1−1e-6: %v)", a, b)
	}
	if got := hyp2f1Tail(-2, 0.5, 3, 0.9); math.Abs(got-(-2*0.9/3+(-2*-1)*1.5*0.81/(3*4*2))) > 1e-15 {
		t.Errorf("terminating series = %v", got)
	}
}
