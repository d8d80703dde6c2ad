// Package prediction owns the customer-lifetime predictions of the data
// centre: a BG/NBD model (Fader, Hardie and Lee 2005) of whether a member
// is still active and how often they will buy, and a Gamma-Gamma model of
// how much a purchase is worth, both fitted by maximum likelihood on every
// member's purchase history, and the per-member scores they give
// (probability alive, churn risk = 1 − probability alive, expected
// purchases in the next 90 days, predicted value over the next 12 months).
//
// # Purchase history
//
// A purchase is a business-zone calendar day on which the member paid at
// least one order that is not REFUNDED (the BTYD convention: several
// orders on one day are one purchase); its value is the sum of amount −
// refunded_amount over that day's orders. The first purchase starts the
// member's clock: x is the number of purchase days after the first, tx
// the days from the first to the last and T the days from the first to
// today, both in weeks (days / 7); the mean value is over the repeat
// purchases only. An order stamped after now (a till whose clock runs
// ahead) counts as today. Like the RFM models, only ACTIVE and FROZEN
// members are read and scored.
//
// # Storage
//
// FitAndScore reads the histories with one aggregate query, fits both
// models in memory and, in one transaction, replaces every row of
// member_predictions (one per member with a purchase) and adds a row to
// prediction_models (the parameters, when, how many members, and the
// BG/NBD log-likelihood). Readers see the previous fit until it commits;
// concurrent fits write one after the other. member_predictions.churn_risk
// is indexed for the CHURN_RISK campaign trigger; Member and Members serve
// Member.prediction. Job runs the fit on the server's schedule.
package prediction

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/internal/jobs"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/database"
)

// Horizons of the stored scores, in weeks.
const (
	Horizon90Days   = 90.0 / 7
	Horizon12Months = 365.0 / 7
)

// writeChunk is how many member_predictions rows one INSERT carries.
const writeChunk = 50_000

// Service fits the models and answers members' predictions.
type Service struct {
	db   *ent.Client
	sql  *sql.DB
	zone *time.Location
	now  func() time.Time
	log  *slog.Logger
}

// New builds a Service. sqlDB is the pool under db, for the set-based
// reads and the session lock of Job; zone is the business time zone (an
// IANA name PostgreSQL must know too: purchase days are reckoned in it);
// now is the clock.
func New(db *ent.Client, sqlDB *sql.DB, zone *time.Location, now func() time.Time, log *slog.Logger) *Service {
	return &Service{db: db, sql: sqlDB, zone: zone, now: now, log: log}
}

// Summary describes one fit.
type Summary struct {
	// ModelID is the prediction_models row of the fit.
	ModelID  int64
	FittedAt time.Time
	// Members is how many members have a purchase (and now a
	// member_predictions row); Repeaters how many of them fed the
	// Gamma-Gamma fit (a repeat purchase with a positive mean value).
	Members, Repeaters int
	BGNBD              BGNBD
	GammaGamma         GammaGamma
	// LogLikelihood is the BG/NBD log-likelihood at the fit;
	// SpendLogLikelihood the Gamma-Gamma one.
	LogLikelihood, SpendLogLikelihood float64
	// Read, Fit and Write are how long each phase took.
	Read, Fit, Write time.Duration
}

// Prediction is a member's scores from the last fit.
type Prediction struct {
	MemberID         int
	ProbabilityAlive float64
	// ChurnRisk is 1 − ProbabilityAlive.
	ChurnRisk               float64
	ExpectedPurchases90Days float64
	// PredictedValue12Months is in fen, rounded.
	PredictedValue12Months int64
	FittedAt               time.Time
}

// history is one member's summary as read, in days.
type history struct {
	member       int64
	repeats      int32
	recency, age int32 // days from the first purchase to the last / to today
	repeatValue  int64 // fen, over the repeat purchases
}

func (h history) rft() RFT {
	r := RFT{X: float64(h.repeats), TX: float64(h.recency) / 7, T: float64(h.age) / 7}
	if h.repeats > 0 {
		r.MeanValue = float64(h.repeatValue) / float64(h.repeats)
	}
	return r
}

// historyQuery summarises every member's purchases in one statement. $1
// is the zone's name, $2 today in it. days has one row per member and
// purchase day; the first day's value is taken as the second element of
// the smallest [day − today, value] array, a plain aggregate where an
// ordered one (array_agg(value ORDER BY day)) would sort every member's
// days again.
const historyQuery = `WITH days AS (
  SELECT o.member_id, least((o.paid_at AT TIME ZONE $1)::date, $2::date) AS day,
         sum(o.amount - o.refunded_amount)::bigint AS value
  FROM orders o JOIN members m ON m.id = o.member_id
  WHERE o.status <> 'REFUNDED' AND m.status IN ('ACTIVE', 'FROZEN')
  GROUP BY 1, 2
)
SELECT member_id, count(*) - 1, max(day) - min(day), $2::date - min(day),
       sum(value)::bigint - (min(ARRAY[(day - $2::date)::bigint, value]))[2]
FROM days
GROUP BY member_id`

// FitAndScore reads every member's purchase history, fits both models and
// replaces the stored predictions with the new scores (see the package
// comment). Without a member with a repeat purchase the models cannot be
// fitted: it returns ErrInsufficientData and leaves the stored
// predictions as they were.
func (s *Service) FitAndScore(ctx context.Context) (Summary, error) {
	now := s.now()
	today := calendar.In(now, s.zone)
	sum := Summary{FittedAt: now}

	start := time.Now()
	hs, err := s.read(ctx, today)
	if err != nil {
		return sum, err
	}
	sum.Read = time.Since(start)
	sum.Members = len(hs)

	start = time.Now()
	data := make([]RFT, len(hs))
	for i, h := range hs {
		data[i] = h.rft()
		if data[i].X > 0 && data[i].MeanValue > 0 {
			sum.Repeaters++
		}
	}
	if sum.BGNBD, sum.LogLikelihood, err = fitBGNBD(data); err != nil {
		return sum, err
	}
	if sum.GammaGamma, sum.SpendLogLikelihood, err = fitGammaGamma(data); err != nil {
		return sum, err
	}
	cols, err := score(sum.BGNBD, sum.GammaGamma, hs, data)
	if err != nil {
		return sum, err
	}
	sum.Fit = time.Since(start)

	start = time.Now()
	if sum.ModelID, err = s.write(ctx, sum, cols); err != nil {
		return sum, err
	}
	sum.Write = time.Since(start)
	s.log.InfoContext(ctx, "predictions fitted", "model", sum.ModelID, "members", sum.Members,
		"repeaters", sum.Repeaters, "bgnbd", sum.BGNBD, "gammaGamma", sum.GammaGamma,
		"logLikelihood", sum.LogLikelihood, "read", sum.Read, "fit", sum.Fit, "write", sum.Write)
	return sum, nil
}

// read streams the histories, in member order. With the default
// work_mem PostgreSQL reads the orders through their (member_id, paid_at)
// index and aggregates them as they come, sorted; a work_mem large enough
// for hash aggregates makes it twice as slow (EXPLAIN ANALYZE on 2M
// orders: 3.6 s against 7.8 s), so the read keeps the default.
func (s *Service) read(ctx context.Context, today calendar.Date) ([]history, error) {
	rows, err := s.sql.QueryContext(ctx, historyQuery, s.zone.String(), today.String())
	if err != nil {
		return nil, fmt.Errorf("reading purchase histories: %w", err)
	}
	defer rows.Close()
	var hs []history
	for rows.Next() {
		var h history
		if err := rows.Scan(&h.member, &h.repeats, &h.recency, &h.age, &h.repeatValue); err != nil {
			return nil, fmt.Errorf("reading purchase histories: %w", err)
		}
		hs = append(hs, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading purchase histories: %w", err)
	}
	// Written in member order, the primary key index is appended to.
	slices.SortFunc(hs, func(a, b history) int { return cmp.Compare(a.member, b.member) })
	return hs, nil
}

// columns are the member_predictions rows, column by column.
type columns struct {
	member, value12    []int64
	alive, purchases90 []float64
}

func score(bg BGNBD, gg GammaGamma, hs []history, data []RFT) (columns, error) {
	n := len(hs)
	c := columns{member: make([]int64, n), value12: make([]int64, n), alive: make([]float64, n), purchases90: make([]float64, n)}
	for i, d := range data {
		c.member[i] = hs[i].member
		c.alive[i] = bg.ProbabilityAlive(d.X, d.TX, d.T)
		c.purchases90[i] = bg.ExpectedPurchases(Horizon90Days, d.X, d.TX, d.T)
		v := PredictedValue(bg, gg, d.X, d.TX, d.T, d.MeanValue, Horizon12Months)
		if !finiteScore(c.alive[i]) || !finiteScore(c.purchases90[i]) || !finiteScore(v) || v > math.MaxInt64/2 {
			return c, fmt.Errorf("%w: member %d scored P(alive) %v, E[purchases 90 days] %v, value %v",
				ErrNoConvergence, hs[i].member, c.alive[i], c.purchases90[i], v)
		}
		c.value12[i] = int64(math.Round(v))
	}
	return c, nil
}

func finiteScore(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) && v >= 0 }

// Advisory locks: writeLock serialises the writes of fits (transaction
// level), jobLock keeps replicas from fitting at once (session level, held
// by Job around a whole fit). They differ, since a fit under jobLock
// takes writeLock from another connection.
// The keys spell "pred_wrt" and "pred_job" in ASCII.
const (
	writeLock int64 = 0x707265645f777274
	jobLock   int64 = 0x707265645f6a6f62
)

// write replaces member_predictions and records the model, in one
// transaction, returning the model's id.
func (s *Service) write(ctx context.Context, sum Summary, c columns) (int64, error) {
	return database.WithTx(ctx, s.db, func(tx *ent.Tx) (int64, error) {
		// A second fit running at once waits here rather than failing on
		// the primary key of rows the first one inserted.
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, writeLock); err != nil {
			return 0, fmt.Errorf("locking predictions: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM member_predictions`); err != nil {
			return 0, fmt.Errorf("deleting predictions: %w", err)
		}
		for lo := 0; lo < len(c.member); lo += writeChunk {
			hi := min(lo+writeChunk, len(c.member))
			if _, err := tx.ExecContext(ctx, `INSERT INTO member_predictions
  (member_id, probability_alive, expected_purchases_90d, predicted_value_12m, churn_risk, fitted_at)
SELECT m, p, e, v, 1 - p, $5
FROM unnest($1::bigint[], $2::float8[], $3::float8[], $4::bigint[]) AS t(m, p, e, v)`,
				pq.Array(c.member[lo:hi]), pq.Array(c.alive[lo:hi]), pq.Array(c.purchases90[lo:hi]),
				pq.Array(c.value12[lo:hi]), sum.FittedAt); err != nil {
				return 0, fmt.Errorf("inserting predictions: %w", err)
			}
		}
		rows, err := tx.QueryContext(ctx, `INSERT INTO prediction_models
  (fitted_at, members, r, alpha, a, b, p, q, v, log_likelihood)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id`,
			sum.FittedAt, sum.Members, sum.BGNBD.R, sum.BGNBD.Alpha, sum.BGNBD.A, sum.BGNBD.B,
			sum.GammaGamma.P, sum.GammaGamma.Q, sum.GammaGamma.V, sum.LogLikelihood)
		if err != nil {
			return 0, fmt.Errorf("recording the model: %w", err)
		}
		defer rows.Close()
		var id int64
		if !rows.Next() {
			return 0, fmt.Errorf("recording the model: %w", errors.Join(rows.Err(), sql.ErrNoRows))
		}
		if err := rows.Scan(&id); err != nil {
			return 0, fmt.Errorf("recording the model: %w", err)
		}
		return id, rows.Close()
	})
}

// Member returns the member's prediction from the last fit, or nil when
// the member has none (no purchase, or no fit yet).
func (s *Service) Member(ctx context.Context, memberID int) (*Prediction, error) {
	ps, err := s.Members(ctx, []int{memberID})
	if err != nil {
		return nil, err
	}
	return ps[0], nil
}

// Members returns one prediction per id, in the order of ids, nil for a
// member without one.
func (s *Service) Members(ctx context.Context, ids []int) ([]*Prediction, error) {
	out := make([]*Prediction, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	keys := make([]int64, len(ids))
	for i, id := range ids {
		keys[i] = int64(id)
	}
	rows, err := s.sql.QueryContext(ctx, `SELECT member_id, probability_alive, churn_risk,
  expected_purchases_90d, predicted_value_12m, fitted_at
FROM member_predictions WHERE member_id = ANY($1)`, pq.Array(keys))
	if err != nil {
		return nil, fmt.Errorf("reading predictions: %w", err)
	}
	defer rows.Close()
	byID := make(map[int]*Prediction, len(ids))
	for rows.Next() {
		p := &Prediction{}
		if err := rows.Scan(&p.MemberID, &p.ProbabilityAlive, &p.ChurnRisk,
			&p.ExpectedPurchases90Days, &p.PredictedValue12Months, &p.FittedAt); err != nil {
			return nil, fmt.Errorf("reading predictions: %w", err)
		}
		byID[p.MemberID] = p
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading predictions: %w", err)
	}
	for i, id := range ids {
		out[i] = byID[id]
	}
	return out, nil
}

// LastFittedAt returns when the stored predictions were fitted, or the
// zero time before the first fit.
func (s *Service) LastFittedAt(ctx context.Context) (time.Time, error) {
	var at sql.NullTime
	if err := s.sql.QueryRowContext(ctx, `SELECT max(fitted_at) FROM prediction_models`).Scan(&at); err != nil {
		return time.Time{}, fmt.Errorf("reading the last fit: %w", err)
	}
	return at.Time, nil
}

// Job is the periodic fit for internal/jobs. Every replica runs the
// schedule, so a run does nothing while another replica holds the fit's
// session lock or when the last fit is younger than every; otherwise it
// fits and returns the number of members scored. A history without a
// repeat purchase is not a failure of the job: it logs and scores nobody.
func (s *Service) Job(every time.Duration) jobs.Job {
	return jobs.Job{Name: "predictions", Every: every, Run: func(ctx context.Context) (int64, error) {
		conn, err := s.sql.Conn(ctx)
		if err != nil {
			return 0, fmt.Errorf("taking a connection: %w", err)
		}
		defer conn.Close()
		var got bool
		if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, jobLock).Scan(&got); err != nil {
			return 0, fmt.Errorf("locking predictions: %w", err)
		}
		if !got {
			return 0, nil
		}
		defer func() {
			// A new context: the unlock must run even when ctx has ended.
			_, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, jobLock)
		}()
		last, err := s.LastFittedAt(ctx)
		if err != nil {
			return 0, err
		}
		if !last.IsZero() && s.now().Sub(last) < every {
			return 0, nil
		}
		sum, err := s.FitAndScore(ctx)
		if errors.Is(err, ErrInsufficientData) {
			s.log.InfoContext(ctx, "predictions not fitted", "err", err)
			return 0, nil
		}
		return int64(sum.Members), err
	}}
}
