package analytics

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/fault"
)

// CreateAiplInput defines an AIPL model: the behaviour kinds of each stage
// (PURCHASE and REPURCHASE stand for paid orders) and the loyalty rule.
// Empty Channels means all of them.
type CreateAiplInput struct {
	Name                          string
	WindowDays                    int
	Channels                      []enum.Channel
	Awareness, Interest, Purchase []enum.BehaviorKind
	LoyaltyMinPurchases           int
	LoyaltyRequireShare           bool
}

// Validate reports every problem of in at once, naming the fields of the
// GraphQL input.
func (in CreateAiplInput) Validate() error {
	errs := []error{validateName(in.Name), validateWindow(in.WindowDays), validateChannels(in.Channels)}
	for _, l := range []struct {
		field string
		kinds []enum.BehaviorKind
	}{{"awareness", in.Awareness}, {"interest", in.Interest}, {"purchase", in.Purchase}} {
		if len(l.kinds) == 0 {
			errs = append(errs, fault.Invalidf(l.field, "must list at least one behaviour kind"))
		}
		for _, k := range l.kinds {
			if !enum.Valid(k) {
				errs = append(errs, fault.Invalidf(l.field, "%q is not one of %s", k,
					strings.Join(enum.BehaviorKind("").Values(), ", ")))
				break
			}
		}
	}
	if in.LoyaltyMinPurchases < 2 {
		errs = append(errs, fault.Invalidf("loyalty.minPurchases", "must be at least 2"))
	}
	return errors.Join(errs...)
}

// CreateAiplModel validates in and creates the model.
func (s *Service) CreateAiplModel(ctx context.Context, in CreateAiplInput) (*ent.AiplModel, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	now := s.now()
	create := s.db.AiplModel.Create().
		SetName(strings.TrimSpace(in.Name)).SetWindowDays(in.WindowDays).
		SetAwareness(unique(in.Awareness)).SetInterest(unique(in.Interest)).SetPurchase(unique(in.Purchase)).
		SetLoyaltyMinPurchases(in.LoyaltyMinPurchases).SetLoyaltyRequireShare(in.LoyaltyRequireShare).
		SetCreatedAt(now).SetUpdatedAt(now)
	if chs := unique(in.Channels); len(chs) > 0 {
		create.SetChannels(chs)
	}
	m, err := create.Save(ctx)
	if err != nil {
		return nil, fmt.Errorf("creating AIPL model: %w", err)
	}
	return m, nil
}

// Snapshot counts the members at each stage on one date.
type Snapshot struct {
	At                                           calendar.Date
	None, Awareness, Interest, Purchase, Loyalty int64
}

func (sn *Snapshot) add(stage int, n int64) {
	switch aiplStages[stage] {
	case enum.AiplNone:
		sn.None += n
	case enum.AiplAwareness:
		sn.Awareness += n
	case enum.AiplInterest:
		sn.Interest += n
	case enum.AiplPurchase:
		sn.Purchase += n
	case enum.AiplLoyalty:
		sn.Loyalty += n
	}
}

// Interval is the step of a trend.
type Interval string

// Trend steps.
const (
	IntervalDay   Interval = "DAY"
	IntervalWeek  Interval = "WEEK"
	IntervalMonth Interval = "MONTH"
)

// Flow counts the members at stage From on one date and at stage To on
// another.
type Flow struct {
	From, To enum.AiplStage
	Members  int64
}

// aiplStages are the stages in funnel order; the SQL computes a stage as
// its index here.
var aiplStages = []enum.AiplStage{enum.AiplNone, enum.AiplAwareness, enum.AiplInterest, enum.AiplPurchase, enum.AiplLoyalty}

// orderKinds are the kinds counted from orders rather than events.
var orderKinds = []enum.BehaviorKind{enum.BehaviorPurchase, enum.BehaviorRepurchase}

// aiplQuery builds one statement over a model: the WITH items that give
// each member with any counted activity their stage in each window, and
// its parameters.
type aiplQuery struct {
	args []any
}

func (q *aiplQuery) arg(v any) string {
	q.args = append(q.args, v)
	return "$" + strconv.Itoa(len(q.args))
}

// window is the business date D's window (lo, hi]: hi = end(D), the start
// of D+1 in the zone, and lo is windowDays days earlier.
func (s *Service) window(m *ent.AiplModel, d calendar.Date) (lo, hi time.Time) {
	return d.AddDays(1 - m.WindowDays).Start(s.zone), d.AddDays(1).Start(s.zone)
}

// stagesCTE writes the WITH items w (the windows, n = 1, 2, … in the order
// of dates), facts and stages (member_id, n, stage: the index in
// aiplStages; members with nothing counted in window n have no row).
// memberID > 0 restricts it to that member.
func (s *Service) stagesCTE(q *aiplQuery, m *ent.AiplModel, dates []calendar.Date, memberID int) string {
	// The bounds go as text: pq.Array would write time.Time elements
	// unquoted, with a space inside.
	los, his := make([]string, len(dates)), make([]string, len(dates))
	var minLo, maxHi time.Time
	for i, d := range dates {
		l, h := s.window(m, d)
		los[i], his[i] = l.UTC().Format(time.RFC3339Nano), h.UTC().Format(time.RFC3339Nano)
		if i == 0 || l.Before(minLo) {
			minLo = l
		}
		if i == 0 || h.After(maxHi) {
			maxHi = h
		}
	}
	lo, hi := q.arg(minLo), q.arg(maxHi)

	lists := [3][]enum.BehaviorKind{m.Awareness, m.Interest, m.Purchase}
	var eventKinds [3][]string
	var fromOrders [3]bool
	var allEventKinds []string
	for i, l := range lists {
		for _, k := range l {
			if slices.Contains(orderKinds, k) {
				fromOrders[i] = true
				continue
			}
			eventKinds[i] = append(eventKinds[i], string(k))
			allEventKinds = append(allEventKinds, string(k))
		}
	}
	if m.LoyaltyRequireShare {
		allEventKinds = append(allEventKinds, string(enum.BehaviorShare))
	}
	allEventKinds = unique(allEventKinds)

	var channels, member string
	if len(m.Channels) > 0 {
		channels = q.arg(pq.Array(strs(m.Channels)))
	}
	if memberID > 0 {
		member = q.arg(memberID)
	}
	filters := func(alias string) string {
		var b strings.Builder
		if channels != "" {
			b.WriteString(" AND " + alias + ".channel = ANY(" + channels + "::text[])")
		}
		if member != "" {
			b.WriteString(" AND " + alias + ".member_id = " + member)
		}
		return b.String()
	}

	var b strings.Builder
	fmt.Fprintf(&b, `w AS (
  SELECT t.n::integer AS n, t.lo, t.hi
  FROM unnest(%s::timestamptz[], %s::timestamptz[]) WITH ORDINALITY AS t(lo, hi, n)
), facts AS (`, q.arg(pq.Array(los)), q.arg(pq.Array(his)))
	var branches []string
	if len(allEventKinds) > 0 {
		cols := make([]string, 3)
		for i := range cols {
			if len(eventKinds[i]) == 0 {
				cols[i] = "0::bigint"
				continue
			}
			cols[i] = "count(*) FILTER (WHERE e.kind = ANY(" + q.arg(pq.Array(eventKinds[i])) + "::text[]))"
		}
		share := "0::bigint"
		if m.LoyaltyRequireShare {
			share = "count(*) FILTER (WHERE e.kind = '" + string(enum.BehaviorShare) + "')"
		}
		branches = append(branches, fmt.Sprintf(`
  SELECT e.member_id, w.n, %s AS a, %s AS i, %s AS p, %s AS sh
  FROM behavior_events e JOIN w ON e.occurred_at > w.lo AND e.occurred_at <= w.hi
  WHERE e.kind = ANY(%s::text[]) AND e.occurred_at > %s AND e.occurred_at <= %s%s
  GROUP BY e.member_id, w.n`, cols[0], cols[1], cols[2], share,
			q.arg(pq.Array(allEventKinds)), lo, hi, filters("e")))
	}
	if fromOrders[0] || fromOrders[1] || fromOrders[2] {
		cols := make([]string, 3)
		for i := range cols {
			cols[i] = "0::bigint"
			if fromOrders[i] {
				cols[i] = "count(*)"
			}
		}
		branches = append(branches, fmt.Sprintf(`
  SELECT o.member_id, w.n, %s AS a, %s AS i, %s AS p, 0::bigint AS sh
  FROM orders o JOIN w ON o.paid_at > w.lo AND o.paid_at <= w.hi
  WHERE o.status <> 'REFUNDED' AND o.paid_at > %s AND o.paid_at <= %s%s
  GROUP BY o.member_id, w.n`, cols[0], cols[1], cols[2], lo, hi, filters("o")))
	}
	b.WriteString(strings.Join(branches, "\n  UNION ALL"))
	loyal := "sum(p) >= " + q.arg(m.LoyaltyMinPurchases)
	if m.LoyaltyRequireShare {
		loyal += " AND sum(sh) > 0"
	}
	fmt.Fprintf(&b, `
), stages AS (
  SELECT member_id, n, CASE WHEN %s THEN 4 WHEN sum(p) > 0 THEN 3 WHEN sum(i) > 0 THEN 2
    WHEN sum(a) > 0 THEN 1 ELSE 0 END AS stage
  FROM facts GROUP BY member_id, n
)`, loyal)
	return b.String()
}

// population is the condition on members m of being counted on a date
// whose window ends at hi.
func population(hi string) string {
	return "m.status IN " + memberStatuses + " AND m.registered_at < " + hi
}

func (s *Service) aiplModel(ctx context.Context, id int) (*ent.AiplModel, error) {
	m, err := s.db.AiplModel.Get(ctx, id)
	if ent.IsNotFound(err) {
		return nil, ErrAiplModelNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("loading AIPL model: %w", err)
	}
	return m, nil
}

// querier is what a snapshot needs: the pool or a read transaction.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// AiplSnapshot counts the members at each stage on date at.
func (s *Service) AiplSnapshot(ctx context.Context, modelID int, at calendar.Date) (Snapshot, error) {
	m, err := s.aiplModel(ctx, modelID)
	if err != nil {
		return Snapshot{}, err
	}
	return s.snapshot(ctx, s.sql, m, at)
}

func (s *Service) snapshot(ctx context.Context, db querier, m *ent.AiplModel, at calendar.Date) (Snapshot, error) {
	q := &aiplQuery{}
	cte := s.stagesCTE(q, m, []calendar.Date{at}, 0)
	_, hi := s.window(m, at)
	query := "WITH " + cte + `
SELECT coalesce(s.stage, 0), count(*)
FROM members m LEFT JOIN stages s ON s.member_id = m.id
WHERE ` + population(q.arg(hi)) + `
GROUP BY 1`
	rows, err := db.QueryContext(ctx, query, q.args...)
	if err != nil {
		return Snapshot{}, fmt.Errorf("computing AIPL snapshot: %w", err)
	}
	defer rows.Close()
	sn := Snapshot{At: at}
	for rows.Next() {
		var stage int
		var n int64
		if err := rows.Scan(&stage, &n); err != nil {
			return Snapshot{}, fmt.Errorf("reading AIPL snapshot: %w", err)
		}
		sn.add(stage, n)
	}
	if err := rows.Err(); err != nil {
		return Snapshot{}, fmt.Errorf("reading AIPL snapshot: %w", err)
	}
	return sn, nil
}

// trendDates are from, from + every, … before to, then to; an error when
// there would be more than MaxTrendPoints.
func trendDates(from, to calendar.Date, every Interval) ([]calendar.Date, error) {
	var step func(k int) calendar.Date
	switch every {
	case IntervalDay:
		step = func(k int) calendar.Date { return from.AddDays(k) }
	case IntervalWeek:
		step = func(k int) calendar.Date { return from.AddDays(7 * k) }
	case IntervalMonth:
		step = func(k int) calendar.Date { return addMonths(from, k) }
	default:
		return nil, fault.Invalidf("interval", "must be one of DAY, WEEK, MONTH")
	}
	if to.Before(from) {
		return nil, fault.Invalidf("to", "must not be before from")
	}
	var out []calendar.Date
	for k := 0; ; k++ {
		d := step(k)
		if !d.Before(to) {
			break
		}
		out = append(out, d)
		if len(out) >= MaxTrendPoints {
			return nil, fault.Invalidf("to", "gives more than %d points at interval %s", MaxTrendPoints, every)
		}
	}
	return append(out, to), nil
}

// addMonths moves d by k months, keeping its day of the month or, when
// that month is shorter, taking its last day (31 January, 28 February,
// 31 March, …).
func addMonths(d calendar.Date, k int) calendar.Date {
	first := time.Date(d.Year, d.Month+time.Month(k), 1, 0, 0, 0, 0, time.UTC)
	last := first.AddDate(0, 1, -1).Day()
	return calendar.Date{Year: first.Year(), Month: first.Month(), Day: min(d.Day, last)}
}

// AiplTrend returns snapshots at from, from + every, … and at to (always
// the last point, on a step or not), all read from one snapshot of the
// database. At most MaxTrendPoints points; from after to is bad input.
func (s *Service) AiplTrend(ctx context.Context, modelID int, from, to calendar.Date, every Interval) ([]Snapshot, error) {
	dates, err := trendDates(from, to, every)
	if err != nil {
		return nil, err
	}
	m, err := s.aiplModel(ctx, modelID)
	if err != nil {
		return nil, err
	}
	tx, err := s.sql.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("beginning trend transaction: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	out := make([]Snapshot, len(dates))
	for i, d := range dates {
		if out[i], err = s.snapshot(ctx, tx, m, d); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// AiplFlow counts the members by their stage on from and on to. Members
// registered after from are NONE on from. Pairs with no members are left
// out; the rest are ordered by From, then To, in funnel order.
func (s *Service) AiplFlow(ctx context.Context, modelID int, from, to calendar.Date) ([]Flow, error) {
	if to.Before(from) {
		return nil, fault.Invalidf("to", "must not be before from")
	}
	m, err := s.aiplModel(ctx, modelID)
	if err != nil {
		return nil, err
	}
	q := &aiplQuery{}
	cte := s.stagesCTE(q, m, []calendar.Date{from, to}, 0)
	_, hiFrom := s.window(m, from)
	_, hiTo := s.window(m, to)
	query := "WITH " + cte + `
SELECT CASE WHEN m.registered_at < ` + q.arg(hiFrom) + ` THEN coalesce(s1.stage, 0) ELSE 0 END AS f,
  coalesce(s2.stage, 0) AS t, count(*)
FROM members m
  LEFT JOIN stages s1 ON s1.member_id = m.id AND s1.n = 1
  LEFT JOIN stages s2 ON s2.member_id = m.id AND s2.n = 2
WHERE ` + population(q.arg(hiTo)) + `
GROUP BY 1, 2 ORDER BY 1, 2`
	rows, err := s.sql.QueryContext(ctx, query, q.args...)
	if err != nil {
		return nil, fmt.Errorf("computing AIPL flow: %w", err)
	}
	defer rows.Close()
	var out []Flow
	for rows.Next() {
		var f, t int
		var n int64
		if err := rows.Scan(&f, &t, &n); err != nil {
			return nil, fmt.Errorf("reading AIPL flow: %w", err)
		}
		out = append(out, Flow{From: aiplStages[f], To: aiplStages[t], Members: n})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading AIPL flow: %w", err)
	}
	return out, nil
}

// AiplMemberStage returns the member's stage on date at: NONE for a
// member outside the population (not ACTIVE or FROZEN, or registered
// later).
func (s *Service) AiplMemberStage(ctx context.Context, modelID, memberID int, at calendar.Date) (enum.AiplStage, error) {
	m, err := s.aiplModel(ctx, modelID)
	if err != nil {
		return "", err
	}
	q := &aiplQuery{}
	cte := s.stagesCTE(q, m, []calendar.Date{at}, memberID)
	_, hi := s.window(m, at)
	query := "WITH " + cte + `
SELECT CASE WHEN ` + population(q.arg(hi)) + ` THEN coalesce(s.stage, 0) ELSE 0 END
FROM members m LEFT JOIN stages s ON s.member_id = m.id
WHERE m.id = ` + q.arg(memberID)
	var stage int
	switch err := s.sql.QueryRowContext(ctx, query, q.args...).Scan(&stage); {
	case errors.Is(err, sql.ErrNoRows):
		return "", ErrMemberNotFound
	case err != nil:
		return "", fmt.Errorf("computing AIPL stage: %w", err)
	}
	return aiplStages[stage], nil
}

// AiplStageMembers returns the ids, ascending, of the members at one of
// stages on date at (for audience rules).
func (s *Service) AiplStageMembers(ctx context.Context, modelID int, at calendar.Date, stages []enum.AiplStage) ([]int, error) {
	idx := make([]int64, 0, len(stages))
	for _, st := range unique(stages) {
		i := slices.Index(aiplStages, st)
		if i < 0 {
			return nil, fault.Invalidf("stages", "%q is not one of %s", st, strings.Join(enum.AiplStage("").Values(), ", "))
		}
		idx = append(idx, int64(i))
	}
	m, err := s.aiplModel(ctx, modelID)
	if err != nil {
		return nil, err
	}
	if len(idx) == 0 {
		return []int{}, nil
	}
	q := &aiplQuery{}
	cte := s.stagesCTE(q, m, []calendar.Date{at}, 0)
	_, hi := s.window(m, at)
	query := "WITH " + cte + `
SELECT m.id FROM members m LEFT JOIN stages s ON s.member_id = m.id
WHERE ` + population(q.arg(hi)) + ` AND coalesce(s.stage, 0) = ANY(` + q.arg(pq.Array(idx)) + `::integer[])
ORDER BY m.id`
	rows, err := s.sql.QueryContext(ctx, query, q.args...)
	if err != nil {
		return nil, fmt.Errorf("listing AIPL stage members: %w", err)
	}
	defer rows.Close()
	out := []int{}
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("reading AIPL stage members: %w", err)
		}
		out = append(out, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading AIPL stage members: %w", err)
	}
	return out, nil
}
