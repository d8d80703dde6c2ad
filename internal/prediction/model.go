package prediction

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/mathext"
	"gonum.org/v1/gonum/optimize"
)

// Errors of the fits.
var (
	// ErrInsufficientData: the data cannot identify the model (no member
	// at all, or no member with a repeat purchase).
	ErrInsufficientData = errors.New("not enough purchase history to fit the model")
	// ErrNoConvergence: the optimizer ended without a usable optimum.
	ErrNoConvergence = errors.New("model fit did not converge")
)

// RFT is one member's purchase history summarised the BTYD way: the
// first purchase starts the clock and is not counted.
type RFT struct {
	// X is the number of repeat purchases (purchases after the first).
	X float64
	// TX is the time of the last purchase and T the member's age, both in
	// weeks since the first purchase (TX = 0 when X = 0; TX ≤ T).
	TX, T float64
	// MeanValue is the mean value of the repeat purchases, in fen (only
	// read when X > 0).
	MeanValue float64
}

// BGNBD is a fitted BG/NBD model (Fader, Hardie and Lee 2005, "Counting
// your customers the easy way"): while active, a member buys as a Poisson
// process of rate λ ~ Gamma(shape R, rate Alpha) per week; after each
// repeat purchase they drop out for good with probability p ~ Beta(A, B).
type BGNBD struct{ R, Alpha, A, B float64 }

// GammaGamma is a fitted Gamma-Gamma model of spend (Fader, Hardie and
// Lee 2005, "RFM and CLV: using iso-value curves"): a member's purchase values
// are Gamma(shape P, rate ν) with ν ~ Gamma(shape Q, rate V) across
// members, independent of how often they buy. Values are in fen.
type GammaGamma struct{ P, Q, V float64 }

// Fit settings. The objectives are per-member averages of the negative
// log-likelihood over transforms of the parameters' logarithms (see
// bound), so the thresholds depend neither on the number of members nor on
// the units of time and money.
const (
	gradientThreshold = 1e-9
	acceptGradient    = 1e-6
	maxIterations     = 2000
)

// --- BG/NBD --------------------------------------------------------------

// bgData is the BG/NBD input aggregated: one row per distinct (x, tx, T)
// with its count, and each of x, tx and T stored once in a table of
// distinct values so that an evaluation takes every lgamma, digamma and
// log once per distinct value rather than once per member.
type bgData struct {
	n            []float64 // members with this row
	xi, txi, ti  []int32   // indexes into xs, txs, ts (txi unused when x = 0)
	xs, txs, ts  []float64
	members      float64
	anyRepeaters bool
}

func aggregateBG(data []RFT) (*bgData, error) {
	type key struct{ x, tx, t float64 }
	d := &bgData{}
	rows := make(map[key]int32, len(data)/4+1)
	xIdx, txIdx, tIdx := map[float64]int32{}, map[float64]int32{}, map[float64]int32{}
	index := func(m map[float64]int32, vals *[]float64, v float64) int32 {
		i, ok := m[v]
		if !ok {
			i = int32(len(*vals))
			m[v] = i
			*vals = append(*vals, v)
		}
		return i
	}
	for i, r := range data {
		if !(r.X >= 0 && r.TX >= 0 && r.T >= r.TX) || math.IsInf(r.X, 0) || math.IsInf(r.T, 0) {
			return nil, fmt.Errorf("member %d: x = %v, tx = %v, T = %v: want 0 ≤ x, 0 ≤ tx ≤ T", i, r.X, r.TX, r.T)
		}
		k := key{r.X, r.TX, r.T}
		if r.X == 0 {
			k.tx = 0 // the likelihood ignores tx without a repeat purchase
		} else {
			d.anyRepeaters = true
		}
		j, ok := rows[k]
		if !ok {
			j = int32(len(d.n))
			rows[k] = j
			d.n = append(d.n, 0)
			d.xi = append(d.xi, index(xIdx, &d.xs, k.x))
			d.txi = append(d.txi, index(txIdx, &d.txs, k.tx))
			d.ti = append(d.ti, index(tIdx, &d.ts, k.t))
		}
		d.n[j]++
	}
	d.members = float64(len(data))
	return d, nil
}

// bgEval computes the BG/NBD log-likelihood and its gradient with respect
// to (log r, log α, log a, log b), reusing its scratch tables.
type bgEval struct {
	d *bgData
	// per distinct x
	xConst, xLogA4, dR, dA, dB, dBx []float64
	// per distinct tx and T
	logTx, invTx, logT, invT []float64
}

func newBGEval(d *bgData) *bgEval {
	nx := len(d.xs)
	return &bgEval{
		d:      d,
		xConst: make([]float64, nx), xLogA4: make([]float64, nx),
		dR: make([]float64, nx), dA: make([]float64, nx), dB: make([]float64, nx), dBx: make([]float64, nx),
		logTx: make([]float64, len(d.txs)), invTx: make([]float64, len(d.txs)),
		logT: make([]float64, len(d.ts)), invT: make([]float64, len(d.ts)),
	}
}

// logLik returns the total log-likelihood of m and, when grad is not nil,
// writes its gradient with respect to the log-parameters.
//
// A member's likelihood (FHL 2005, eq. 6) is
//
//	B(a, b+x)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+T)^(r+x))
//	  + [x > 0] B(a+1, b+x−1)/B(a, b) · Γ(r+x) α^r / (Γ(r) (α+tx)^(r+x)),
//
// written as exp(A₁ + A₂) · (exp(A₃) + [x > 0] exp(A₄)) with
// A₁ = lnΓ(r+x) − lnΓ(r) + r ln α, A₂ = lnΓ(a+b) + lnΓ(b+x) − lnΓ(b) −
// lnΓ(a+b+x), A₃ = −(r+x) ln(α+T), A₄ = ln a − ln(b+x−1) − (r+x) ln(α+tx),
// and the sum taken as a log-sum-exp so that neither term underflows.
func (e *bgEval) logLik(m BGNBD, grad []float64) float64 {
	d := e.d
	r, alpha, a, b := m.R, m.Alpha, m.A, m.B
	lgR, _ := math.Lgamma(r)
	lgAB, _ := math.Lgamma(a + b)
	lgB, _ := math.Lgamma(b)
	lnAlpha, lnA := math.Log(alpha), math.Log(a)
	psiR, psiAB, psiB := mathext.Digamma(r), mathext.Digamma(a+b), mathext.Digamma(b)
	for i, x := range d.xs {
		lgRX, _ := math.Lgamma(r + x)
		lgBX, _ := math.Lgamma(b + x)
		lgABX, _ := math.Lgamma(a + b + x)
		e.xConst[i] = lgRX - lgR + r*lnAlpha + lgAB + lgBX - lgB - lgABX
		if x > 0 {
			e.xLogA4[i] = lnA - math.Log(b+x-1)
			e.dBx[i] = 1 / (b + x - 1)
		}
		if grad != nil {
			psiABX := mathext.Digamma(a + b + x)
			e.dR[i] = mathext.Digamma(r+x) - psiR + lnAlpha
			e.dA[i] = psiAB - psiABX
			e.dB[i] = psiAB + mathext.Digamma(b+x) - psiB - psiABX
		}
	}
	for i, tx := range d.txs {
		e.logTx[i] = math.Log(alpha + tx)
		e.invTx[i] = 1 / (alpha + tx)
	}
	for i, t := range d.ts {
		e.logT[i] = math.Log(alpha + t)
		e.invT[i] = 1 / (alpha + t)
	}
	var ll, gR, gAlpha, gA, gB float64
	for j, n := range d.n {
		xi, ti := d.xi[j], d.ti[j]
		x := d.xs[xi]
		rx := r + x
		a3 := -rx * e.logT[ti]
		w4, term := 0.0, a3
		if x > 0 {
			txi := d.txi[j]
			a4 := e.xLogA4[xi] - rx*e.logTx[txi]
			// log(e^a3 + e^a4) and the share w4 of the second term.
			if a3 >= a4 {
				q := math.Exp(a4 - a3)
				term = a3 + math.Log1p(q)
				w4 = q / (1 + q)
			} else {
				q := math.Exp(a3 - a4)
				term = a4 + math.Log1p(q)
				w4 = 1 / (1 + q)
			}
			if grad != nil {
				w3 := 1 - w4
				gR += n * (e.dR[xi] - w3*e.logT[ti] - w4*e.logTx[txi])
				gAlpha += n * (r/alpha - rx*(w3*e.invT[ti]+w4*e.invTx[txi]))
				gA += n * (e.dA[xi] + w4/a)
				gB += n * (e.dB[xi] - w4*e.dBx[xi])
			}
		} else if grad != nil {
			gR += n * (e.dR[xi] - e.logT[ti])
			gAlpha += n * (r/alpha - rx*e.invT[ti])
			gA += n * e.dA[xi]
			gB += n * e.dB[xi]
		}
		ll += n * (e.xConst[xi] + term)
	}
	if grad != nil {
		// d/d(log θ) = θ · d/dθ.
		grad[0], grad[1], grad[2], grad[3] = r*gR, alpha*gAlpha, a*gA, b*gB
	}
	return ll
}

// bgBounds are the ranges the BG/NBD fit searches for r, α, a and b. A
// likelihood still rising towards a limit (a population homogeneous in its
// purchase rate, r and α → ∞, or in its dropout, a and b → ∞) stops at the
// bound, where the model is already indistinguishable from the limit. The
// bounds also keep ExpectedPurchases' series accurate: it agrees with an
// independent quadrature to 1e-7 or better for r ≤ 30 and a ≤ 50 (see the
// tests), loses precision for r around 100 and overflows for a in the
// hundreds.
func bgBounds() []bound { return []bound{{1e-4, 30}, {}, {1e-4, 50}, {1e-4, 1e5}} }

// FitBGNBD fits a BG/NBD model to data by maximum likelihood: BFGS with
// the analytic gradient over unbounded transforms of the parameters (their
// logarithms, squeezed into bgBounds), falling back to Nelder-Mead should
// BFGS stop without an optimum. Members with identical (x, tx, T) are
// evaluated once, with their count.
func FitBGNBD(data []RFT) (BGNBD, error) {
	m, _, err := fitBGNBD(data)
	return m, err
}

// fitBGNBD is FitBGNBD that also returns the log-likelihood at the fit.
func fitBGNBD(data []RFT) (BGNBD, float64, error) {
	d, err := aggregateBG(data)
	if err != nil {
		return BGNBD{}, 0, err
	}
	if !d.anyRepeaters {
		return BGNBD{}, 0, fmt.Errorf("BG/NBD: %w: no repeat purchase among %d members", ErrInsufficientData, len(data))
	}
	ev := newBGEval(d)
	bounds := bgBounds()
	unpack := func(th []float64) BGNBD {
		v := values(bounds, th)
		return BGNBD{R: v[0], Alpha: v[1], A: v[2], B: v[3]}
	}
	// Start with shape 1 and the data's mean repeat rate.
	var sx, st float64
	for j, n := range d.n {
		sx += n * d.xs[d.xi[j]]
		st += n * d.ts[d.ti[j]]
	}
	start := starts(bounds, 1, math.Max(st/math.Max(sx, 1), 1e-3), 1, 1)
	th, err := minimize(func(th, grad []float64) float64 {
		ll := ev.logLik(unpack(th), grad)
		chain(bounds, th, grad)
		return negMean(ll, grad, d.members)
	}, start)
	if err != nil {
		return BGNBD{}, 0, fmt.Errorf("BG/NBD: %w", err)
	}
	m := unpack(th)
	if !positive(m.R, m.Alpha, m.A, m.B) {
		return BGNBD{}, 0, fmt.Errorf("BG/NBD: %w: parameters %+v", ErrNoConvergence, m)
	}
	return m, ev.logLik(m, nil), nil
}

// LogLikelihood is the BG/NBD log-likelihood of data under m.
func (m BGNBD) LogLikelihood(data []RFT) (float64, error) {
	d, err := aggregateBG(data)
	if err != nil {
		return 0, err
	}
	return newBGEval(d).logLik(m, nil), nil
}

// ProbabilityAlive is the probability that a member with x repeat
// purchases, the last at tx, is still active at age T:
// 1 / (1 + [x > 0] a/(b+x−1) · ((α+T)/(α+tx))^(r+x)). A member without a
// repeat purchase cannot have dropped out (dropout only follows a
// purchase), so it is 1 for x = 0.
func (m BGNBD) ProbabilityAlive(x, tx, T float64) float64 {
	if x <= 0 {
		return 1
	}
	ld := math.Log(m.A/(m.B+x-1)) + (m.R+x)*(math.Log(m.Alpha+T)-math.Log(m.Alpha+tx))
	return 1 / (1 + math.Exp(ld))
}

// ExpectedPurchases is the expected number of purchases in the next t
// weeks of a member with x repeat purchases, the last at tx, at age T
// (FHL 2005, eq. 10):
//
//	(a+b+x−1)/(a−1) · [1 − ((α+T)/(α+T+t))^(r+x) ₂F₁(r+x, b+x; a+b+x−1; z)]
//	  · P(alive),   z = t/(α+T+t).
//
// Euler's transformation ₂F₁(A, B; C; z) = (1−z)^(C−A−B) ₂F₁(C−A, C−B; C; z)
// turns the bracket into 1 − (1−z)^(a−1) ₂F₁(a+b−1−r, a−1; a+b+x−1; z),
// whose terms neither overflow for a large x nor grow with (1−z)⁻ˣ; the
// factor a−1 of its second parameter is divided out of the series
// analytically, so a = 1 needs no special case. With x = tx = T = 0 it is
// the expected purchases of a new member, E[X(t)]. Within the fit's bounds
// (r ≤ 30, a ≤ 50; see bgBounds) it agrees with an independent quadrature
// to 1e-7 or better.
func (m BGNBD) ExpectedPurchases(t, x, tx, T float64) float64 {
	if t <= 0 {
		return 0
	}
	eps := m.A - 1
	c := m.A + m.B + x - 1
	// L = ln(1−z) = −ln(1 + t/(α+T)).
	L := -math.Log1p(t / (m.Alpha + T))
	z := -math.Expm1(L)
	s := hyp2f1Tail(m.A+m.B-1-m.R, eps, c, z)
	// The bracket is (1 − G)/ε with G = (1−z)^ε (1 + ε·s), that is
	// −(expm1(εL)/ε + s·(1−z)^ε): no difference of nearly equal terms
	// when G is near 1, nor of huge ones when s is large and (1−z)^ε small.
	e1 := L // expm1(εL)/ε → L as ε → 0
	if eps != 0 {
		e1 = math.Expm1(eps*L) / eps
	}
	bracket := -(e1 + s*math.Exp(eps*L))
	return c * bracket * m.ProbabilityAlive(x, tx, T)
}

// Series limits of hyp2f1Tail: relative precision and an iteration guard.
// The terms shrink at least like zⁿ once past their peak, and z ≤
// t/(α+t), so the guard is only reached for z within about 10⁻⁵ of 1
// (a horizon 10⁵ times α); the tail is then estimated geometrically.
const (
	seriesTol     = 1e-16
	seriesMaxTerm = 1_000_000
)

// hyp2f1Tail returns (₂F₁(A, ε; C; z) − 1)/ε for 0 ≤ z < 1, summed as
// Σₙ≥₁ (A)ₙ (ε+1)ₙ₋₁ / ((C)ₙ n!) zⁿ, which is finite at ε = 0.
func hyp2f1Tail(A, eps, C, z float64) float64 {
	if z == 0 {
		return 0
	}
	u := A * z / C
	s, ratio := u, 0.0
	for n := 1.0; n < seriesMaxTerm; n++ {
		ratio = (A + n) * (eps + n) * z / ((C + n) * (n + 1))
		u *= ratio
		s += u
		if u == 0 || math.Abs(u) <= seriesTol*math.Abs(s) && math.Abs(ratio) < 1 {
			return s
		}
	}
	if math.Abs(ratio) < 1 {
		s += u * ratio / (1 - ratio)
	}
	return s
}

// --- Gamma-Gamma -----------------------------------------------------------

// ggGroup holds the members with one repeat count x: their count, Σ ln m
// and every x·m.
type ggGroup struct {
	x, n, sumLogM, logX float64
	xm                  []float64
}

func aggregateGG(data []RFT) ([]ggGroup, float64, error) {
	idx := map[float64]int{}
	var groups []ggGroup
	var members float64
	for i, r := range data {
		if r.X <= 0 {
			continue
		}
		if !(r.MeanValue > 0) || math.IsInf(r.MeanValue, 0) {
			if r.MeanValue <= 0 {
				continue // nothing paid: outside the model's support
			}
			return nil, 0, fmt.Errorf("member %d: mean value %v is not a finite number", i, r.MeanValue)
		}
		j, ok := idx[r.X]
		if !ok {
			j = len(groups)
			idx[r.X] = j
			groups = append(groups, ggGroup{x: r.X, logX: math.Log(r.X)})
		}
		g := &groups[j]
		g.n++
		g.sumLogM += math.Log(r.MeanValue)
		g.xm = append(g.xm, r.X*r.MeanValue)
		members++
	}
	return groups, members, nil
}

// ggLogLik is the Gamma-Gamma log-likelihood of the mean spend m of the x
// repeat purchases of each member, summed (Fader and Hardie, "The
// Gamma-Gamma model of monetary value", 2013):
//
//	Γ(px+q)/(Γ(px) Γ(q)) · v^q · m^(px−1) x^(px) / (v + x·m)^(px+q),
//
// and, when grad is not nil, its gradient with respect to (ln p,
// ln(q−1), ln v).
func ggLogLik(groups []ggGroup, m GammaGamma, grad []float64) float64 {
	p, q, v := m.P, m.Q, m.V
	lgQ, _ := math.Lgamma(q)
	lnV := math.Log(v)
	psiQ := mathext.Digamma(q)
	var ll, gP, gQ, gV float64
	for _, g := range groups {
		px := p * g.x
		lgPXQ, _ := math.Lgamma(px + q)
		lgPX, _ := math.Lgamma(px)
		var sumLog, sumInv float64
		for _, xm := range g.xm {
			sumLog += math.Log(v + xm)
			if grad != nil {
				sumInv += 1 / (v + xm)
			}
		}
		ll += g.n*(lgPXQ-lgPX-lgQ+q*lnV+px*g.logX) + (px-1)*g.sumLogM - (px+q)*sumLog
		if grad != nil {
			psiPXQ := mathext.Digamma(px + q)
			gP += g.x * (g.n*(psiPXQ-mathext.Digamma(px)+g.logX) + g.sumLogM - sumLog)
			gQ += g.n*(psiPXQ-psiQ+lnV) - sumLog
			gV += g.n*q/v - (px+q)*sumInv
		}
	}
	if grad != nil {
		grad[0], grad[1], grad[2] = p*gP, (q-1)*gQ, v*gV
	}
	return ll
}

// ggBounds are the ranges the Gamma-Gamma fit searches for p, q − 1 and
// v (see bgBounds): q → ∞ is a population homogeneous in its spend, p → ∞
// members who always spend the same.
func ggBounds() []bound { return []bound{{1e-4, 1e4}, {1e-4, 1e6}, {}} }

// FitGammaGamma fits a Gamma-Gamma model by maximum likelihood to the
// members with a repeat purchase (X > 0) and a positive MeanValue, the way
// FitBGNBD fits. Q is kept above 1, where the population's mean spend
// p·v/(q−1) is finite (a member without a repeat purchase is predicted to
// spend it).
func FitGammaGamma(data []RFT) (GammaGamma, error) {
	m, _, err := fitGammaGamma(data)
	return m, err
}

func fitGammaGamma(data []RFT) (GammaGamma, float64, error) {
	groups, members, err := aggregateGG(data)
	if err != nil {
		return GammaGamma{}, 0, err
	}
	if members < 2 {
		return GammaGamma{}, 0, fmt.Errorf("Gamma-Gamma: %w: %v members with a repeat purchase", ErrInsufficientData, members)
	}
	bounds := ggBounds()
	unpack := func(th []float64) GammaGamma {
		v := values(bounds, th)
		return GammaGamma{P: v[0], Q: 1 + v[1], V: v[2]}
	}
	// Start at p = 1, q = 2, v = the mean spend: the population mean
	// p·v/(q−1) then matches the data.
	var sumM float64
	for _, g := range groups {
		for _, xm := range g.xm {
			sumM += xm / g.x
		}
	}
	start := starts(bounds, 1, 1, sumM/members)
	th, err := minimize(func(th, grad []float64) float64 {
		ll := ggLogLik(groups, unpack(th), grad)
		chain(bounds, th, grad)
		return negMean(ll, grad, members)
	}, start)
	if err != nil {
		return GammaGamma{}, 0, fmt.Errorf("Gamma-Gamma: %w", err)
	}
	m := unpack(th)
	if !positive(m.P, m.Q-1, m.V) {
		return GammaGamma{}, 0, fmt.Errorf("Gamma-Gamma: %w: parameters %+v", ErrNoConvergence, m)
	}
	return m, ggLogLik(groups, m, nil), nil
}

// ExpectedValue is the expected value of a member's future purchase, in
// fen, given x repeat purchases of mean value meanValue: the weighted
// average (p·v + p·x·meanValue)/(p·x + q − 1)
// of the population mean p·v/(q−1) and the member's own mean; for x = 0
// the population mean.
func (m GammaGamma) ExpectedValue(x, meanValue float64) float64 {
	if x <= 0 {
		meanValue = 0
	}
	return m.P * (m.V + x*meanValue) / (m.P*x + m.Q - 1)
}

// PredictedValue is a member's predicted spend over the next horizonWeeks
// weeks, in fen: the expected purchases in the horizon times the expected
// value of a purchase. It is not discounted: over the horizons used here
// (a year at most) discounting would change it by a few per cent and the
// ranking of members not at all.
func PredictedValue(bg BGNBD, gg GammaGamma, x, tx, T, meanValue, horizonWeeks float64) float64 {
	return bg.ExpectedPurchases(horizonWeeks, x, tx, T) * gg.ExpectedValue(x, meanValue)
}

// --- optimization ----------------------------------------------------------

// minimize minimizes f (which writes its gradient when grad is not nil)
// from start: BFGS, then Nelder-Mead from BFGS's best point (or from
// start) should BFGS end without meeting the gradient threshold.
func minimize(f func(x, grad []float64) float64, start []float64) ([]float64, error) {
	// gonum asks for the value and the gradient at one point in separate
	// calls; one pass computes both, so keep the last one.
	var lastX, lastGrad []float64
	lastF := math.NaN()
	eval := func(x []float64) {
		if lastX != nil && equal(lastX, x) {
			return
		}
		lastX = append(lastX[:0], x...)
		lastGrad = resize(lastGrad, len(x))
		lastF = f(x, lastGrad)
		if math.IsNaN(lastF) {
			lastF = math.Inf(1)
		}
	}
	problem := optimize.Problem{
		Func: func(x []float64) float64 { eval(x); return lastF },
		Grad: func(grad, x []float64) { eval(x); copy(grad, lastGrad) },
	}
	settings := &optimize.Settings{
		GradientThreshold: gradientThreshold,
		MajorIterations:   maxIterations,
		Converger:         &optimize.FunctionConverge{Absolute: 1e-13, Relative: 1e-13, Iterations: 50},
	}
	res, err := optimize.Minimize(problem, start, settings, &optimize.BFGS{})
	// A line search that fails this close to the optimum only met the
	// limits of floating point.
	if res != nil && finite(res.X) && len(res.Gradient) > 0 && maxAbs(res.Gradient) < acceptGradient {
		return res.X, nil
	}
	from := start
	if res != nil && finite(res.X) && !math.IsInf(res.F, 0) {
		from = res.X
	}
	nm, nmErr := optimize.Minimize(optimize.Problem{Func: problem.Func}, from, &optimize.Settings{
		MajorIterations: 20 * maxIterations,
		Converger:       &optimize.FunctionConverge{Absolute: 1e-13, Relative: 1e-13, Iterations: 200},
	}, &optimize.NelderMead{})
	if nmErr != nil || nm == nil || math.IsInf(nm.F, 0) || !finite(nm.X) {
		return nil, fmt.Errorf("%w: BFGS: %s, Nelder-Mead: %s", ErrNoConvergence, errOrStatus(err, res), errOrStatus(nmErr, nm))
	}
	return nm.X, nil
}

// positive reports parameters that are finite and above 0 (an unbounded
// one can run off to e^±∞ on a flat likelihood).
func positive(vs ...float64) bool {
	for _, v := range vs {
		if !(v > 0) || math.IsInf(v, 0) {
			return false
		}
	}
	return true
}

func maxAbs(xs []float64) float64 {
	m := 0.0
	for _, x := range xs {
		m = math.Max(m, math.Abs(x))
	}
	return m
}

// bound is the range of a positive parameter. The optimizer works on an
// unbounded φ: the parameter is e^φ without bounds (hi = 0), otherwise
// its logarithm runs from ln lo to ln hi along a logistic curve in φ.
type bound struct{ lo, hi float64 }

func (b bound) value(phi float64) float64 {
	if b.hi == 0 {
		return math.Exp(phi)
	}
	lo, hi := math.Log(b.lo), math.Log(b.hi)
	return math.Exp(lo + (hi-lo)/(1+math.Exp(-phi)))
}

// dlog is d ln(value)/dφ.
func (b bound) dlog(phi float64) float64 {
	if b.hi == 0 {
		return 1
	}
	s := 1 / (1 + math.Exp(-phi))
	return (math.Log(b.hi) - math.Log(b.lo)) * s * (1 - s)
}

// start is the φ of v (clamped into the range).
func (b bound) start(v float64) float64 {
	if b.hi == 0 {
		return math.Log(v)
	}
	lo, hi := math.Log(b.lo), math.Log(b.hi)
	s := min(max((math.Log(v)-lo)/(hi-lo), 1e-6), 1-1e-6)
	return math.Log(s / (1 - s))
}

func values(bs []bound, phi []float64) []float64 {
	out := make([]float64, len(bs))
	for i, b := range bs {
		out[i] = b.value(phi[i])
	}
	return out
}

func starts(bs []bound, vs ...float64) []float64 {
	out := make([]float64, len(bs))
	for i, b := range bs {
		out[i] = b.start(vs[i])
	}
	return out
}

// chain turns a gradient with respect to the logarithms of the parameters
// into one with respect to φ, in place, and returns it.
func chain(bs []bound, phi, grad []float64) []float64 {
	for i := range grad {
		grad[i] *= bs[i].dlog(phi[i])
	}
	return grad
}

// negMean turns a total log-likelihood and its gradient (in place) into
// the per-member negative log-likelihood the optimizer minimizes.
func negMean(ll float64, grad []float64, members float64) float64 {
	for i := range grad {
		grad[i] /= -members
	}
	return -ll / members
}

func errOrStatus(err error, res *optimize.Result) string {
	switch {
	case err != nil:
		return err.Error()
	case res == nil:
		return "no result"
	default:
		return res.Status.String()
	}
}

func equal(a, b []float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func resize(s []float64, n int) []float64 {
	if cap(s) < n {
		return make([]float64, n)
	}
	return s[:n]
}

func finite(xs []float64) bool {
	for _, x := range xs {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
	}
	return len(xs) > 0
}
