package prediction_test

import (
	"errors"
	"math"
	"testing"

	"gonum.org/v1/gonum/mathext"

	"github.com/onemember/onemember/internal/prediction"
)

func near(t *testing.T, what string, got, want, relTol float64) {
	t.Helper()
	if math.IsNaN(got) || math.Abs(got-want) > relTol*math.Abs(want) {
		t.Errorf("%s = %.6g, want %.6g ± %.1f%%", what, got, want, 100*relTol)
	}
}

// The values Fader, Hardie and Lee published for CDNOW (the paper's
// worked example and Hardie's spreadsheet of E[X(t)], as checked by the
// lifetimes package's tests), from the rounded estimates.
func TestPublishedCDNOWValues(t *testing.T) {
	bg := prediction.CDNOWBG
	// The paper's customer: 2 repeat purchases, the last at week 30.43, in
	// 38.86 weeks; 1.226 purchases expected in the next 39 weeks.
	near(t, "E[Y(39) | 2, 30.43, 38.86]", bg.ExpectedPurchases(39, 2, 30.43, 38.86), 1.226, 0.001)
	// P(alive) by hand: 1 / (1 + 0.793/3.426 · (43.274/34.844)^2.243).
	near(t, "P(alive | 2, 30.43, 38.86)", bg.ProbabilityAlive(2, 30.43, 38.86), 0.72658, 1e-4)

	// E[X(t)] of a new member is the conditional expectation at
	// x = tx = T = 0. The spreadsheet used unrounded estimates, hence the
	// tolerance.
	for _, c := range []struct{ t, want float64 }{
		{0.1429, 0.0078}, {1, 0.0532}, {3, 0.1506}, {31.8571, 1.0405}, {32, 1.0437}, {78, 1.8576},
	} {
		near(t, "E[X(t)]", bg.ExpectedPurchases(c.t, 0, 0, 0), c.want, 0.006)
	}

	// Gamma-Gamma (Fader and Hardie's note on it): population mean p·v/(q−1) = 35.22,
	// and two repeat purchases averaging $100 shrink to 88.35.
	gg := prediction.CDNOWGG
	near(t, "E[Z] of a new member", gg.ExpectedValue(0, 0), 6.25*15.44/2.74, 1e-12)
	near(t, "E[Z | x=2, mean=100]", gg.ExpectedValue(2, 100), 88.353, 1e-4)
	near(t, "12-month value", prediction.PredictedValue(bg, gg, 2, 30.43, 38.86, 100, 52),
		bg.ExpectedPurchases(52, 2, 30.43, 38.86)*88.353, 1e-4)
}

// The series with Euler's transformation agrees with the textbook formula
// (evaluated with gonum's ₂F₁) wherever the latter does not overflow.
func TestExpectedPurchasesMatchesDirectFormula(t *testing.T) {
	for _, m := range []prediction.BGNBD{prediction.CDNOWBG, {R: 1.7, Alpha: 12, A: 2.6, B: 5.1}, {R: 0.5, Alpha: 0.8, A: 0.3, B: 0.9}} {
		for _, c := range []struct{ t, x, tx, T float64 }{
			{13, 0, 0, 10}, {52, 0, 0, 0.5}, {13, 1, 3, 20}, {52, 4, 30, 40}, {26, 7, 70, 104}, {5, 2, 1, 2},
		} {
			r, alpha, a, b := m.R, m.Alpha, m.A, m.B
			z := c.t / (alpha + c.T + c.t)
			direct := (a + b + c.x - 1) / (a - 1) *
				(1 - math.Pow((alpha+c.T)/(alpha+c.T+c.t), r+c.x)*mathext.Hypergeo(r+c.x, b+c.x, a+b+c.x-1, z)) *
				m.ProbabilityAlive(c.x, c.tx, c.T)
			near(t, "E[Y(t)]", m.ExpectedPurchases(c.t, c.x, c.tx, c.T), direct, 1e-8)
		}
	}
}

func TestPredictionIdentities(t *testing.T) {
	bg := prediction.CDNOWBG
	if got := bg.ExpectedPurchases(0, 3, 10, 20); got != 0 {
		t.Errorf("E[Y(0)] = %v, want 0", got)
	}
	if got := bg.ProbabilityAlive(0, 0, 50); got != 1 {
		t.Errorf("P(alive) without a repeat purchase = %v, want 1", got)
	}
	// A member who bought recently is likelier alive and expected to buy
	// more; expectations grow with the horizon.
	prevP, prevE := 0.0, 0.0
	for tx := 0.0; tx <= 40; tx += 5 {
		p, e := bg.ProbabilityAlive(3, tx, 40), bg.ExpectedPurchases(13, 3, tx, 40)
		if p <= prevP || e <= prevE || p > 1 {
			t.Errorf("tx = %v: P(alive) %v, E %v not above %v, %v", tx, p, e, prevP, prevE)
		}
		prevP, prevE = p, e
	}
	prevE = 0
	for h := 1.0; h < 1000; h *= 2 {
		e := bg.ExpectedPurchases(h, 3, 35, 40)
		if e <= prevE {
			t.Errorf("E[Y(%v)] = %v not above %v", h, e, prevE)
		}
		prevE = e
	}
	// For a short horizon the expectation is P(alive) times the posterior
	// mean rate (r+x)/(α+T) times t.
	h := 1e-4
	near(t, "E[Y(dt)]", bg.ExpectedPurchases(h, 3, 35, 40), bg.ProbabilityAlive(3, 35, 40)*(bg.R+3)/(bg.Alpha+40)*h, 1e-3)
	// a = 1 (the formula's 1/(a−1)) is continuous.
	at := func(a float64) float64 {
		m := bg
		m.A = a
		return m.ExpectedPurchases(39, 2, 30, 40)
	}
	near(t, "E at a = 1", at(1), (at(1-1e-7)+at(1+1e-7))/2, 1e-9)
	// Heavy buyers neither overflow nor lose precision.
	e := bg.ExpectedPurchases(52, 400, 103, 104)
	if math.IsNaN(e) || e < 100 || e > 250 {
		t.Errorf("E[Y(52) | x = 400] = %v", e)
	}
	// Gamma-Gamma shrinks a member's mean towards the population's.
	gg := prediction.CDNOWGG
	pop := gg.ExpectedValue(0, 0)
	for _, x := range []float64{1, 5, 50} {
		got := gg.ExpectedValue(x, 100)
		if got <= pop || got >= 100 {
			t.Errorf("E[Z | x=%v, 100] = %v, not between %v and 100", x, got, pop)
		}
	}
	if gg.ExpectedValue(50, 100) <= gg.ExpectedValue(5, 100) {
		t.Error("more purchases do not pull the expectation closer to the member's mean")
	}
}

// Members simulated from the CDNOW estimates: the fits recover the
// parameters, and the predictions match what the members then did.
func TestFitRecoversSimulatedModels(t *testing.T) {
	const holdout = 39
	for _, seed := range []uint64{1, 2} {
		sim := prediction.Simulate(seed, 30000, prediction.CDNOWBG, prediction.CDNOWGG, 26, 78, holdout)
		data := prediction.RFTs(sim)
		bg, err := prediction.FitBGNBD(data)
		if err != nil {
			t.Fatal(err)
		}
		near(t, "r", bg.R, prediction.CDNOWBG.R, 0.15)
		near(t, "alpha", bg.Alpha, prediction.CDNOWBG.Alpha, 0.15)
		near(t, "a", bg.A, prediction.CDNOWBG.A, 0.15)
		near(t, "b", bg.B, prediction.CDNOWBG.B, 0.15)

		gg, err := prediction.FitGammaGamma(data)
		if err != nil {
			t.Fatal(err)
		}
		near(t, "p", gg.P, prediction.CDNOWGG.P, 0.15)
		near(t, "q", gg.Q, prediction.CDNOWGG.Q, 0.15)
		near(t, "v", gg.V, prediction.CDNOWGG.V, 0.15)

		// The fitted optimum is at least as likely as the true parameters.
		llFit, err := bg.LogLikelihood(data)
		if err != nil {
			t.Fatal(err)
		}
		llTrue, _ := prediction.CDNOWBG.LogLikelihood(data)
		if llFit < llTrue {
			t.Errorf("log-likelihood at the fit %v below the true parameters' %v", llFit, llTrue)
		}

		// Holdout: overall and for the members with and without repeats.
		var pred, actual [2]float64
		for i, s := range sim {
			k := min(int(data[i].X), 1)
			pred[k] += bg.ExpectedPurchases(holdout, data[i].X, data[i].TX, data[i].T)
			actual[k] += float64(s.Future)
		}
		near(t, "holdout purchases", pred[0]+pred[1], actual[0]+actual[1], 0.10)
		near(t, "holdout purchases of one-time buyers", pred[0], actual[0], 0.15)
		near(t, "holdout purchases of repeat buyers", pred[1], actual[1], 0.10)
		t.Logf("seed %d: %+v %+v; holdout predicted %.0f, actual %.0f", seed, bg, gg, pred[0]+pred[1], actual[0]+actual[1])
	}
}

func TestFitAggregatesIdenticalMembers(t *testing.T) {
	// Whole days, as the service reads them: many members share a row.
	sim := prediction.Simulate(7, 20000, prediction.CDNOWBG, prediction.CDNOWGG, 26, 78, 0)
	data := prediction.RFTs(sim)
	for i := range data {
		data[i].T = math.Round(data[i].T*7) / 7
		data[i].TX = math.Round(data[i].TX*7) / 7
	}
	fit, err := prediction.FitBGNBD(data)
	if err != nil {
		t.Fatal(err)
	}
	// The same data twice is the same fit (the likelihood doubles).
	twice, err := prediction.FitBGNBD(append(append([]prediction.RFT{}, data...), data...))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range [][2]float64{{fit.R, twice.R}, {fit.Alpha, twice.Alpha}, {fit.A, twice.A}, {fit.B, twice.B}} {
		near(t, "parameter on doubled data", p[1], p[0], 1e-4)
	}
	ll1, _ := fit.LogLikelihood(data)
	ll2, _ := fit.LogLikelihood(append(append([]prediction.RFT{}, data...), data...))
	near(t, "log-likelihood of doubled data", ll2, 2*ll1, 1e-12)
}

func TestFitRejectsUnfittableData(t *testing.T) {
	if _, err := prediction.FitBGNBD(nil); !errors.Is(err, prediction.ErrInsufficientData) {
		t.Errorf("no members: %v", err)
	}
	oneTimers := []prediction.RFT{{T: 3}, {T: 10}, {T: 20}}
	if _, err := prediction.FitBGNBD(oneTimers); !errors.Is(err, prediction.ErrInsufficientData) {
		t.Errorf("no repeat purchase: %v", err)
	}
	if _, err := prediction.FitGammaGamma(oneTimers); !errors.Is(err, prediction.ErrInsufficientData) {
		t.Errorf("Gamma-Gamma without repeat purchases: %v", err)
	}
	if _, err := prediction.FitBGNBD([]prediction.RFT{{X: 1, TX: 5, T: 4}}); err == nil {
		t.Error("tx after T accepted")
	}
	if _, err := prediction.FitGammaGamma([]prediction.RFT{{X: 1, TX: 1, T: 2, MeanValue: math.Inf(1)}, {X: 1, TX: 1, T: 2, MeanValue: 3}}); err == nil {
		t.Error("an infinite mean value accepted")
	}
}

// A population homogeneous in purchase rate, dropout and spend has its
// likelihood maximal at infinite parameters: the fits stop at their
// bounds instead of failing, and still predict what the members do.
func TestFitHomogeneousPopulation(t *testing.T) {
	const k, holdout = 1e5, 26
	truth := prediction.BGNBD{R: k, Alpha: k / 0.3, A: 0.05 * k, B: 0.95 * k}
	spend := prediction.GammaGamma{P: 8, Q: k, V: k * 50}
	sim := prediction.Simulate(11, 20000, truth, spend, 26, 78, holdout)
	data := prediction.RFTs(sim)
	bg, err := prediction.FitBGNBD(data)
	if err != nil {
		t.Fatal(err)
	}
	gg, err := prediction.FitGammaGamma(data)
	if err != nil {
		t.Fatal(err)
	}
	if bg.R < 10 || bg.A < 10 || gg.Q < 100 {
		t.Errorf("fits %+v %+v did not head for the homogeneous limit", bg, gg)
	}
	near(t, "mean rate r/α", bg.R/bg.Alpha, 0.3, 0.05)
	near(t, "mean dropout a/(a+b)", bg.A/(bg.A+bg.B), 0.05, 0.15)
	near(t, "mean spend", gg.ExpectedValue(0, 0), 8*50, 0.05)
	var pred, actual float64
	for i, s := range sim {
		pred += bg.ExpectedPurchases(holdout, data[i].X, data[i].TX, data[i].T)
		actual += float64(s.Future)
	}
	near(t, "holdout purchases", pred, actual, 0.05)
	t.Logf("%+v %+v; holdout predicted %.0f, actual %.0f", bg, gg, pred, actual)
}
