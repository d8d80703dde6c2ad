package prediction_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/testkit"
	"github.com/onemember/onemember/internal/prediction"
)

// shop is a database with one business unit and store, and the orders the
// tests seeded, kept to compute the expected histories independently.
type shop struct {
	sql    *sql.DB
	svc    *prediction.Service
	clock  *testkit.Clock
	zone   *time.Location
	bu     int64
	store  int64
	seq    int
	orders []order
	status map[int64]string
}

type order struct {
	member           int64
	status           string
	amount, refunded int64
	paid             time.Time
}

func newShop(t *testing.T) *shop {
	t.Helper()
	client, sqlDB := testkit.EntClient(t, 8)
	zone := testkit.Shanghai(t)
	// 01:30 in Shanghai is the previous day in UTC: a day reckoned in UTC
	// would be off by one for every purchase.
	clock := testkit.NewClock(time.Date(2026, 3, 10, 1, 30, 0, 0, zone))
	s := &shop{sql: sqlDB, clock: clock, zone: zone, status: map[int64]string{}}
	s.svc = prediction.New(client, sqlDB, zone, clock.Now, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx := t.Context()
	if err := sqlDB.QueryRowContext(ctx, `INSERT INTO business_units (created_at, updated_at, code, name, kind)
VALUES (now(), now(), 'BU', '超市', 'SUPERMARKET') RETURNING id`).Scan(&s.bu); err != nil {
		t.Fatal(err)
	}
	if err := sqlDB.QueryRowContext(ctx, `INSERT INTO stores (created_at, updated_at, code, name, business_unit_id)
VALUES (now(), now(), 'S', '门店', $1) RETURNING id`, s.bu).Scan(&s.store); err != nil {
		t.Fatal(err)
	}
	return s
}

// members creates n members of a status and returns their ids.
func (s *shop) members(t *testing.T, n int, status string) []int64 {
	t.Helper()
	rows, err := s.sql.QueryContext(t.Context(), `INSERT INTO members (created_at, updated_at, member_no, status, source_channel, registered_at)
SELECT now(), now(), 'P' || $1::int + i, $2, 'POS', now() FROM generate_series(1, $3::int) AS i RETURNING id`, s.seq, status, n)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	s.seq += n
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
		s.status[id] = status
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// add inserts orders in one statement.
func (s *shop) add(t *testing.T, batch ...order) {
	t.Helper()
	var members, amounts, refunded []int64
	var statuses, paid, ext []string
	for _, o := range batch {
		s.seq++
		members = append(members, o.member)
		amounts = append(amounts, o.amount)
		refunded = append(refunded, o.refunded)
		statuses = append(statuses, o.status)
		paid = append(paid, o.paid.UTC().Format(time.RFC3339Nano))
		ext = append(ext, fmt.Sprintf("O%d", s.seq))
	}
	if _, err := s.sql.ExecContext(t.Context(), `INSERT INTO orders (external_id, channel, member_id, status, amount, refunded_amount,
  paid_at, created_at, store_id, business_unit_id)
SELECT e, 'POS', m, st, a, r, p::timestamptz, p::timestamptz, $7, $8
FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::text[]) AS t(e, m, st, a, r, p)`,
		pq.Array(ext), pq.Array(members), pq.Array(statuses), pq.Array(amounts), pq.Array(refunded), pq.Array(paid),
		s.store, s.bu); err != nil {
		t.Fatal(err)
	}
	s.orders = append(s.orders, batch...)
}

// seed gives each member purchases drawn from the CDNOW BG/NBD model on
// whole days over up to 500 days, with one to three orders a day (some
// refunded in full or in part).
func (s *shop) seed(t *testing.T, ids []int64, rnd *rand.Rand) {
	t.Helper()
	now := s.clock.Now()
	var batch []order
	for _, m := range ids {
		age := 1 + rnd.IntN(500)
		lambda := -math.Log(1-rnd.Float64()) * 0.3 // purchases a week
		p := rnd.Float64() * 0.5
		for day := 0.0; day <= float64(age); {
			at := now.AddDate(0, 0, -age+int(day)).Add(time.Duration(rnd.IntN(3600)) * time.Second)
			for range 1 + rnd.IntN(3) {
				o := order{member: m, status: "PAID", amount: 1000 + rnd.Int64N(50000), paid: at}
				switch r := rnd.IntN(20); {
				case r == 0:
					o.status, o.refunded = "REFUNDED", o.amount
				case r == 1:
					o.status, o.refunded = "PARTIALLY_REFUNDED", o.amount/3
				}
				batch = append(batch, o)
			}
			if day > 0 && rnd.Float64() < p {
				break
			}
			day += math.Ceil(-math.Log(1-rnd.Float64()) / lambda * 7)
		}
	}
	s.add(t, batch...)
}

// expected computes every scored member's RFT from the seeded orders, the
// way the package comment defines it, in member order.
func (s *shop) expected() ([]int64, []prediction.RFT) {
	today := calendar.In(s.clock.Now(), s.zone)
	days := map[int64]map[calendar.Date]int64{}
	for _, o := range s.orders {
		if o.status == "REFUNDED" || (s.status[o.member] != "ACTIVE" && s.status[o.member] != "FROZEN") {
			continue
		}
		d := calendar.In(o.paid, s.zone)
		if today.Before(d) {
			d = today
		}
		if days[o.member] == nil {
			days[o.member] = map[calendar.Date]int64{}
		}
		days[o.member][d] += o.amount - o.refunded
	}
	var ids []int64
	for id := range days {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	out := make([]prediction.RFT, len(ids))
	dayNo := func(d calendar.Date) float64 { return float64(d.Start(time.UTC).Unix() / 86400) }
	for i, id := range ids {
		var ds []calendar.Date
		var total int64
		for d, v := range days[id] {
			ds = append(ds, d)
			total += v
		}
		slices.SortFunc(ds, func(a, b calendar.Date) int { return int(dayNo(a) - dayNo(b)) })
		first, last := ds[0], ds[len(ds)-1]
		r := prediction.RFT{X: float64(len(ds) - 1), TX: (dayNo(last) - dayNo(first)) / 7, T: (dayNo(today) - dayNo(first)) / 7}
		if r.X > 0 {
			r.MeanValue = float64(total-days[id][first]) / r.X
		}
		out[i] = r
	}
	return ids, out
}

type row struct {
	alive, purchases, churn float64
	value                   int64
	fittedAt                time.Time
}

func (s *shop) rows(t *testing.T) map[int64]row {
	t.Helper()
	rs, err := s.sql.QueryContext(t.Context(), `SELECT member_id, probability_alive, expected_purchases_90d,
  predicted_value_12m, churn_risk, fitted_at FROM member_predictions`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	out := map[int64]row{}
	for rs.Next() {
		var id int64
		var r row
		if err := rs.Scan(&id, &r.alive, &r.purchases, &r.value, &r.churn, &r.fittedAt); err != nil {
			t.Fatal(err)
		}
		out[id] = r
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func count(t *testing.T, db *sql.DB, query string) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(t.Context(), query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// check compares the stored rows with the scores of a fit on the
// independently computed histories.
func (s *shop) check(t *testing.T, sum prediction.Summary) {
	t.Helper()
	ids, data := s.expected()
	if sum.Members != len(ids) {
		t.Fatalf("summary counts %d members, want %d", sum.Members, len(ids))
	}
	repeaters := 0
	for _, d := range data {
		if d.X > 0 && d.MeanValue > 0 {
			repeaters++
		}
	}
	if sum.Repeaters != repeaters {
		t.Errorf("summary counts %d repeaters, want %d", sum.Repeaters, repeaters)
	}
	bg, err := prediction.FitBGNBD(data)
	if err != nil {
		t.Fatal(err)
	}
	gg, err := prediction.FitGammaGamma(data)
	if err != nil {
		t.Fatal(err)
	}
	if bg != sum.BGNBD || gg != sum.GammaGamma {
		t.Fatalf("fitted %+v %+v, the same histories fit %+v %+v", sum.BGNBD, sum.GammaGamma, bg, gg)
	}
	ll, _ := bg.LogLikelihood(data)
	if math.Abs(ll-sum.LogLikelihood) > 1e-9*math.Abs(ll) {
		t.Errorf("log-likelihood %v, want %v", sum.LogLikelihood, ll)
	}
	rows := s.rows(t)
	if len(rows) != len(ids) {
		t.Fatalf("%d member_predictions rows, want %d", len(rows), len(ids))
	}
	for i, id := range ids {
		d := data[i]
		got, ok := rows[id]
		if !ok {
			t.Fatalf("member %d has no row", id)
		}
		p := bg.ProbabilityAlive(d.X, d.TX, d.T)
		want := row{
			alive: p, churn: 1 - p, purchases: bg.ExpectedPurchases(prediction.Horizon90Days, d.X, d.TX, d.T),
			value: int64(math.Round(prediction.PredictedValue(bg, gg, d.X, d.TX, d.T, d.MeanValue, prediction.Horizon12Months))),
		}
		if got.alive != want.alive || got.churn != want.churn || got.purchases != want.purchases ||
			got.value != want.value || !got.fittedAt.Equal(sum.FittedAt) {
			t.Fatalf("member %d (%+v): row %+v, want %+v at %v", id, d, got, want, sum.FittedAt)
		}
	}
}

func TestFitAndScore(t *testing.T) {
	s := newShop(t)
	ctx := t.Context()
	rnd := rand.New(rand.NewPCG(20260310, 1))
	now := s.clock.Now()
	active := s.members(t, 300, "ACTIVE")
	frozen := s.members(t, 20, "FROZEN")
	erased := s.members(t, 10, "ERASED")
	merged := s.members(t, 10, "MERGED")
	idle := s.members(t, 10, "ACTIVE") // never buy
	s.seed(t, append(append(append(slices.Clone(active[10:]), frozen...), erased...), merged...), rnd)

	// The conventions, on members of their own.
	day := func(daysAgo, h, m int) time.Time {
		d := now.In(s.zone).AddDate(0, 0, -daysAgo)
		return time.Date(d.Year(), d.Month(), d.Day(), h, m, 0, 0, s.zone)
	}
	sameDay, acrossMidnight, refundedOnly, partly, future := active[0], active[1], active[2], active[3], active[4]
	s.add(t,
		// Two orders on one business day are one purchase; so the member
		// has one repeat purchase worth both.
		order{member: sameDay, status: "PAID", amount: 1000, paid: day(60, 9, 0)},
		order{member: sameDay, status: "PAID", amount: 2000, paid: day(30, 9, 0)},
		order{member: sameDay, status: "PAID", amount: 3000, paid: day(30, 21, 0)},
		// 23:30 and 00:30 the next day in Shanghai: one UTC date, two
		// business days.
		order{member: acrossMidnight, status: "PAID", amount: 1000, paid: day(21, 23, 30)},
		order{member: acrossMidnight, status: "PAID", amount: 1000, paid: day(20, 0, 30)},
		// Only refunded: no purchase at all.
		order{member: refundedOnly, status: "REFUNDED", amount: 5000, refunded: 5000, paid: day(10, 12, 0)},
		// A partial refund counts for what was kept.
		order{member: partly, status: "PAID", amount: 700, paid: day(100, 12, 0)},
		order{member: partly, status: "PARTIALLY_REFUNDED", amount: 9000, refunded: 4000, paid: day(50, 12, 0)},
		// Stamped tomorrow by a till ahead of time: today.
		order{member: future, status: "PAID", amount: 800, paid: day(40, 12, 0)},
		order{member: future, status: "PAID", amount: 900, paid: day(-1, 1, 0)},
	)
	ids, data := s.expected()
	byID := map[int64]prediction.RFT{}
	for i, id := range ids {
		byID[id] = data[i]
	}
	for _, c := range []struct {
		id   int64
		want prediction.RFT
	}{
		{sameDay, prediction.RFT{X: 1, TX: 30.0 / 7, T: 60.0 / 7, MeanValue: 5000}},
		{acrossMidnight, prediction.RFT{X: 1, TX: 1.0 / 7, T: 21.0 / 7, MeanValue: 1000}},
		{partly, prediction.RFT{X: 1, TX: 50.0 / 7, T: 100.0 / 7, MeanValue: 5000}},
		{future, prediction.RFT{X: 1, TX: 40.0 / 7, T: 40.0 / 7, MeanValue: 900}},
	} {
		if got := byID[c.id]; got != c.want {
			t.Fatalf("the test's own history of member %d = %+v, want %+v", c.id, got, c.want)
		}
	}

	sum, err := s.svc.FitAndScore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s.check(t, sum)
	rows := s.rows(t)
	for _, id := range slices.Concat(erased, merged, idle, []int64{refundedOnly}) {
		if _, ok := rows[id]; ok {
			t.Errorf("member %d (%s) has a prediction", id, s.status[id])
		}
	}
	for _, id := range []int64{sameDay, acrossMidnight, partly, future, frozen[0]} {
		if _, ok := rows[id]; !ok {
			t.Errorf("member %d has no prediction", id)
		}
	}
	if n := count(t, s.sql, `SELECT count(*) FROM prediction_models`); n != 1 {
		t.Errorf("%d prediction_models rows, want 1", n)
	}
	var members int
	var r, ll float64
	if err := s.sql.QueryRowContext(ctx, `SELECT members, r, log_likelihood FROM prediction_models WHERE id = $1`, sum.ModelID).
		Scan(&members, &r, &ll); err != nil {
		t.Fatal(err)
	}
	if members != sum.Members || r != sum.BGNBD.R || ll != sum.LogLikelihood {
		t.Errorf("model row (%d, %v, %v), summary %+v", members, r, ll, sum)
	}

	// Member and Members answer from the rows.
	p, err := s.svc.Member(ctx, int(sameDay))
	if err != nil {
		t.Fatal(err)
	}
	want := rows[sameDay]
	if p == nil || p.MemberID != int(sameDay) || p.ProbabilityAlive != want.alive || p.ChurnRisk != want.churn ||
		p.ExpectedPurchases90Days != want.purchases || p.PredictedValue12Months != want.value || !p.FittedAt.Equal(sum.FittedAt) {
		t.Errorf("Member = %+v, row %+v", p, want)
	}
	if p.ChurnRisk != 1-p.ProbabilityAlive || p.ProbabilityAlive <= 0 || p.ProbabilityAlive > 1 || p.PredictedValue12Months <= 0 {
		t.Errorf("implausible prediction %+v", p)
	}
	if p, err := s.svc.Member(ctx, int(idle[0])); p != nil || err != nil {
		t.Errorf("Member of a member without purchases = %+v, %v", p, err)
	}
	ps, err := s.svc.Members(ctx, []int{int(idle[0]), int(sameDay), int(partly), int(sameDay)})
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 4 || ps[0] != nil || ps[1] == nil || ps[1].MemberID != int(sameDay) || ps[2] == nil ||
		ps[2].MemberID != int(partly) || ps[3] == nil || ps[3].MemberID != int(sameDay) {
		t.Errorf("Members = %+v", ps)
	}

	// A day later, with new purchases, a new buyer and a member erased:
	// every row is replaced.
	s.clock.Advance(24 * time.Hour)
	newcomer := s.members(t, 1, "ACTIVE")[0]
	s.add(t,
		order{member: newcomer, status: "PAID", amount: 4200, paid: s.clock.Now().Add(-time.Hour)},
		order{member: idle[1], status: "PAID", amount: 4200, paid: day(90, 10, 0)},
		order{member: idle[1], status: "PAID", amount: 4200, paid: day(3, 10, 0)},
	)
	if _, err := s.sql.ExecContext(ctx, `UPDATE members SET status = 'ERASED' WHERE id = $1`, frozen[0]); err != nil {
		t.Fatal(err)
	}
	s.status[frozen[0]] = "ERASED"
	second, err := s.svc.FitAndScore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if second.ModelID == sum.ModelID || !second.FittedAt.Equal(s.clock.Now()) {
		t.Errorf("second fit %+v", second)
	}
	s.check(t, second)
	rows = s.rows(t)
	if _, ok := rows[frozen[0]]; ok {
		t.Error("an erased member kept its prediction")
	}
	for _, id := range []int64{newcomer, idle[1]} {
		if _, ok := rows[id]; !ok {
			t.Errorf("new buyer %d has no prediction", id)
		}
	}
	if rows[newcomer].alive != 1 || rows[newcomer].purchases <= 0 {
		t.Errorf("a first-time buyer of today: %+v", rows[newcomer])
	}
	if n := count(t, s.sql, `SELECT count(*) FROM prediction_models`); n != 2 {
		t.Errorf("%d prediction_models rows, want 2", n)
	}
}

func TestConcurrentFitsReplaceCleanly(t *testing.T) {
	s := newShop(t)
	ids := s.members(t, 150, "ACTIVE")
	s.seed(t, ids, rand.New(rand.NewPCG(3, 3)))
	want, _ := s.expected()
	// Several rounds of fits started at once, so that their writes overlap.
	const rounds, n = 4, 4
	for round := range rounds {
		start := make(chan struct{})
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				_, errs[i] = s.svc.FitAndScore(t.Context())
			})
		}
		close(start)
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if got := count(t, s.sql, `SELECT count(*) FROM member_predictions`); got != len(want) {
			t.Fatalf("round %d: %d rows after concurrent fits, want %d", round, got, len(want))
		}
	}
	if got := count(t, s.sql, `SELECT count(*) FROM prediction_models`); got != rounds*n {
		t.Errorf("%d models, want %d", got, rounds*n)
	}
}

func TestJob(t *testing.T) {
	s := newShop(t)
	ctx := t.Context()
	job := s.svc.Job(24 * time.Hour)

	// Only one-time buyers: nothing to fit, which is no failure.
	once := s.members(t, 5, "ACTIVE")
	for _, m := range once {
		s.add(t, order{member: m, status: "PAID", amount: 100, paid: s.clock.Now().AddDate(0, 0, -3)})
	}
	if _, err := s.svc.FitAndScore(ctx); !errors.Is(err, prediction.ErrInsufficientData) {
		t.Fatalf("FitAndScore without repeat purchases: %v", err)
	}
	if n, err := job.Run(ctx); n != 0 || err != nil {
		t.Fatalf("job without repeat purchases = %d, %v", n, err)
	}
	if got := count(t, s.sql, `SELECT count(*) FROM prediction_models`); got != 0 {
		t.Fatalf("%d models written without data", got)
	}

	ids := s.members(t, 100, "ACTIVE")
	s.seed(t, ids, rand.New(rand.NewPCG(4, 4)))
	want, _ := s.expected()
	// Replicas running the schedule at once: one fits.
	start := make(chan struct{})
	var wg sync.WaitGroup
	got := make([]int64, 2)
	errs := make([]error, 2)
	for i := range got {
		wg.Go(func() {
			<-start
			got[i], errs[i] = job.Run(ctx)
		})
	}
	close(start)
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatal(errs)
	}
	if got[0]+got[1] != int64(len(want)) || got[0]*got[1] != 0 {
		t.Errorf("the two runs scored %v members, want %d once", got, len(want))
	}
	if n := count(t, s.sql, `SELECT count(*) FROM prediction_models`); n != 1 {
		t.Errorf("%d models after concurrent runs, want 1", n)
	}
	// Fresh: nothing to do until the interval has passed.
	s.clock.Advance(23 * time.Hour)
	if n, err := job.Run(ctx); n != 0 || err != nil {
		t.Errorf("run on a fresh fit = %d, %v", n, err)
	}
	s.clock.Advance(2 * time.Hour)
	if n, err := job.Run(ctx); n != int64(len(want)) || err != nil {
		t.Errorf("run on a stale fit = %d, %v", n, err)
	}
	if n := count(t, s.sql, `SELECT count(*) FROM prediction_models`); n != 2 {
		t.Errorf("%d models, want 2", n)
	}
}

// TestScale times FitAndScore on 200,000 members with 2,000,000 orders;
// run it with PREDICTION_SCALE=1.
func TestScale(t *testing.T) {
	if os.Getenv("PREDICTION_SCALE") != "1" {
		t.Skip("set PREDICTION_SCALE=1 to time a fit of 200,000 members")
	}
	const members, orders = 200_000, 2_000_000
	s := newShop(t)
	ctx := context.WithoutCancel(t.Context())
	start := time.Now()
	// Members buy at log-normal relative rates over up to two years; the
	// orders are shared out in proportion to the rates, on days drawn
	// between the member's first day and a last active day.
	for _, q := range []string{
		`SELECT setseed(0.42)`,
		`INSERT INTO members (created_at, updated_at, member_no, status, source_channel, registered_at)
SELECT now(), now(), 'S' || i, 'ACTIVE', 'POS', now() FROM generate_series(1, ` + fmt.Sprint(members) + `) AS i`,
		`CREATE TEMP TABLE buyers AS
SELECT id, exp(sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())) AS w,
  random() * 730 AS first_ago, random() AS active_share FROM members`,
		`CREATE TEMP TABLE picks AS
SELECT b.id, b.first_ago, b.active_share FROM buyers b,
  generate_series(1, greatest(1, round(b.w * ` + fmt.Sprint(orders) + ` / (SELECT sum(w) FROM buyers)))::int)`,
		`INSERT INTO orders (external_id, channel, member_id, status, amount, paid_at, created_at, store_id, business_unit_id)
SELECT 'S' || row_number() OVER (), 'POS', p.id, CASE WHEN random() < 0.03 THEN 'REFUNDED' ELSE 'PAID' END,
  (1000 + random() * 50000)::bigint, ts, ts, ` + fmt.Sprint(s.store) + `, ` + fmt.Sprint(s.bu) + `
FROM (SELECT id, now() - make_interval(days => 1) * first_ago * (1 - active_share * random()) AS ts FROM picks) p`,
		`ANALYZE orders`,
		`ANALYZE members`,
	} {
		if _, err := s.sql.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	t.Logf("seeded %d members, %d orders in %v", members, count(t, s.sql, `SELECT count(*) FROM orders`), time.Since(start).Round(time.Millisecond))
	s.clock.Set(time.Now())
	start = time.Now()
	sum, err := s.svc.FitAndScore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("FitAndScore: %v (read %v, fit and score %v, write %v); %d members, %d repeaters; %+v %+v",
		time.Since(start).Round(time.Millisecond), sum.Read.Round(time.Millisecond), sum.Fit.Round(time.Millisecond),
		sum.Write.Round(time.Millisecond), sum.Members, sum.Repeaters, sum.BGNBD, sum.GammaGamma)
	if got := count(t, s.sql, `SELECT count(*) FROM member_predictions`); got != sum.Members || got < members*9/10 {
		t.Errorf("%d rows for %d members", got, sum.Members)
	}
}
