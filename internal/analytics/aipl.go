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
	"github.com/onemember/onemember/ent/aiplmodel"
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

func (sn *Snapshot) add(stage enum.AiplStage, n int64) {
	switch stage {
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

// stageAt is the stage of index i in aiplStages, as the SQL gives it.
func stageAt(i int) (enum.AiplStage, error) {
	if i < 0 || i >= len(aiplStages) {
		return "", fmt.Errorf("AIPL stage index %d out of range", i)
	}
	return aiplStages[i], nil
}

// orderKinds are the kinds counted from orders rather than events.
var orderKinds = []enum.BehaviorKind{enum.BehaviorPurchase, enum.BehaviorRepurchase}

// aiplQuery collects the parameters of one statement.
type aiplQuery struct {
	args []any
}

func (q *aiplQuery) arg(v any) string {
	q.args = append(q.args, v)
	return "$" + strconv.Itoa(len(q.args))
}

// aiplWorkMem is the work_mem of the AIPL reads: their per-member
// aggregates (up to a row per member) then hash in memory instead of
// sorting on disk.
const aiplWorkMem = "64MB"

// window is the business date D's window (lo, hi]: hi = end(D), the start
// of D+1 in the zone, and lo is windowDays days earlier.
func (s *Service) window(m *ent.AiplModel, d calendar.Date) (lo, hi time.Time) {
	return d.AddDays(1 - m.WindowDays).Start(s.zone), d.AddDays(1).Start(s.zone)
}

// countIf is count(*), or count(*) FILTER (WHERE cond) when cond is set.
func countIf(cond ...string) string {
	var cs []string
	for _, c := range cond {
		if c != "" {
			cs = append(cs, c)
		}
	}
	if len(cs) == 0 {
		return "count(*)"
	}
	return "count(*) FILTER (WHERE " + strings.Join(cs, " AND ") + ")"
}

// stagesSQL is the SQL of members' stages on some dates, to use as
//
//	WITH <with> SELECT … <stage[k]> … FROM members m <joins> WHERE …
//
// stage[k] is the stage on dates[k] of member m, as an index in
// aiplStages (before the population is checked).
type stagesSQL struct {
	with, joins string
	stage       []string
}

// stagesQuery writes stagesSQL for dates: ev counts each member's events
// and ord their orders, per list and date, each table read once for all
// the dates over the span of their windows, and both joined to members by
// id. memberID > 0 restricts the counts to that member.
func (s *Service) stagesQuery(q *aiplQuery, m *ent.AiplModel, dates []calendar.Date, memberID int) stagesSQL {
	los, his := make([]string, len(dates)), make([]string, len(dates))
	var minLo, maxHi time.Time
	for k, d := range dates {
		l, h := s.window(m, d)
		los[k], his[k] = q.arg(l), q.arg(h)
		if k == 0 || l.Before(minLo) {
			minLo = l
		}
		if k == 0 || h.After(maxHi) {
			maxHi = h
		}
	}
	lo, hi := los[0], his[0]
	if len(dates) > 1 {
		lo, hi = q.arg(minLo), q.arg(maxHi)
	}
	// inWindow is the condition of window k on column at; none when the
	// statement's WHERE already says it.
	inWindow := func(k int, at string) string {
		if len(dates) == 1 {
			return ""
		}
		return at + " > " + los[k] + " AND " + at + " <= " + his[k]
	}

	lists := [3][]enum.BehaviorKind{m.Awareness, m.Interest, m.Purchase}
	var eventKinds [3]string // the text[] parameter of each list's event kinds
	var fromOrders [3]bool
	var allEventKinds []string
	for i, l := range lists {
		var kinds []string
		for _, k := range l {
			if slices.Contains(orderKinds, k) {
				fromOrders[i] = true
				continue
			}
			kinds = append(kinds, string(k))
		}
		if len(kinds) > 0 {
			eventKinds[i] = q.arg(pq.Array(kinds)) + "::text[]"
			allEventKinds = append(allEventKinds, kinds...)
		}
	}
	if m.LoyaltyRequireShare {
		allEventKinds = append(allEventKinds, string(enum.BehaviorShare))
	}
	allEventKinds = unique(allEventKinds)

	var filters string
	if len(m.Channels) > 0 {
		filters += " AND x.channel = ANY(" + q.arg(pq.Array(strs(m.Channels))) + "::text[])"
	}
	if memberID > 0 {
		filters += " AND x.member_id = " + q.arg(memberID)
	}

	// terms[k][c] are the columns adding up to count c (a, i, p, sh) on
	// dates[k].
	terms := make([][4][]string, len(dates))
	var with, joins []string
	col := func(k, c int) string { return fmt.Sprintf("%c%d", "aips"[c], k+1) }
	if len(allEventKinds) > 0 {
		var cols []string
		for k := range dates {
			for i := range lists {
				if eventKinds[i] != "" {
					cols = append(cols, countIf(inWindow(k, "x.occurred_at"), "x.kind = ANY("+eventKinds[i]+")")+" AS "+col(k, i))
					terms[k][i] = append(terms[k][i], "ev."+col(k, i))
				}
			}
			if m.LoyaltyRequireShare {
				cols = append(cols, countIf(inWindow(k, "x.occurred_at"), "x.kind = '"+string(enum.BehaviorShare)+"'")+" AS "+col(k, 3))
				terms[k][3] = append(terms[k][3], "ev."+col(k, 3))
			}
		}
		with = append(with, fmt.Sprintf(`ev AS (
  SELECT x.member_id, %s
  FROM behavior_events x
  WHERE x.kind = ANY(%s::text[]) AND x.occurred_at > %s AND x.occurred_at <= %s%s
  GROUP BY x.member_id
)`, strings.Join(cols, ", "), q.arg(pq.Array(allEventKinds)), lo, hi, filters))
		joins = append(joins, "LEFT JOIN ev ON ev.member_id = m.id")
	}
	if fromOrders[0] || fromOrders[1] || fromOrders[2] {
		var cols []string
		for k := range dates {
			// One count per date serves every list that reads orders.
			cols = append(cols, countIf(inWindow(k, "x.paid_at"))+" AS "+col(k, 2))
			for i := range lists {
				if fromOrders[i] {
					terms[k][i] = append(terms[k][i], "ord."+col(k, 2))
				}
			}
		}
		with = append(with, fmt.Sprintf(`ord AS (
  SELECT x.member_id, %s
  FROM orders x
  WHERE x.status <> 'REFUNDED' AND x.paid_at > %s AND x.paid_at <= %s%s
  GROUP BY x.member_id
)`, strings.Join(cols, ", "), lo, hi, filters))
		joins = append(joins, "LEFT JOIN ord ON ord.member_id = m.id")
	}

	minPurchases := q.arg(m.LoyaltyMinPurchases)
	out := stagesSQL{with: strings.Join(with, ", "), joins: strings.Join(joins, " ")}
	for k := range dates {
		var sum [4]string
		for c, ts := range terms[k] {
			if len(ts) == 0 {
				sum[c] = "0"
				continue
			}
			for j, t := range ts {
				ts[j] = "coalesce(" + t + ", 0)"
			}
			sum[c] = strings.Join(ts, " + ")
		}
		loyal := sum[2] + " >= " + minPurchases
		if m.LoyaltyRequireShare {
			loyal += " AND " + sum[3] + " > 0"
		}
		out.stage = append(out.stage, fmt.Sprintf(`CASE WHEN %s THEN 4 WHEN %s > 0 THEN 3 WHEN %s > 0 THEN 2 WHEN %s > 0 THEN 1 ELSE 0 END`,
			loyal, sum[2], sum[1], sum[0]))
	}
	return out
}

// read runs fn in a read-only transaction of one snapshot (REPEATABLE
// READ) with the work memory of the AIPL aggregates.
func (s *Service) read(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.sql.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return fmt.Errorf("beginning read: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, "SET LOCAL work_mem = '"+aiplWorkMem+"'"); err != nil {
		return fmt.Errorf("sizing work memory: %w", err)
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
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

// AiplSnapshot counts the members at each stage on date at.
func (s *Service) AiplSnapshot(ctx context.Context, modelID int, at calendar.Date) (Snapshot, error) {
	m, err := s.aiplModel(ctx, modelID)
	if err != nil {
		return Snapshot{}, err
	}
	var sn Snapshot
	err = s.read(ctx, func(tx *sql.Tx) error {
		sn, err = s.snapshot(ctx, tx, m, at)
		return err
	})
	return sn, err
}

func (s *Service) snapshot(ctx context.Context, tx *sql.Tx, m *ent.AiplModel, at calendar.Date) (Snapshot, error) {
	q := &aiplQuery{}
	st := s.stagesQuery(q, m, []calendar.Date{at}, 0)
	_, hi := s.window(m, at)
	query := "WITH " + st.with + `
SELECT ` + st.stage[0] + `, count(*)
FROM members m ` + st.joins + `
WHERE ` + population(q.arg(hi)) + `
GROUP BY 1`
	rows, err := tx.QueryContext(ctx, query, q.args...)
	if err != nil {
		return Snapshot{}, fmt.Errorf("computing AIPL snapshot: %w", err)
	}
	defer rows.Close()
	sn := Snapshot{At: at}
	for rows.Next() {
		var i int
		var n int64
		if err := rows.Scan(&i, &n); err != nil {
			return Snapshot{}, fmt.Errorf("reading AIPL snapshot: %w", err)
		}
		stage, err := stageAt(i)
		if err != nil {
			return Snapshot{}, err
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
	out := make([]Snapshot, len(dates))
	err = s.read(ctx, func(tx *sql.Tx) error {
		for i, d := range dates {
			if out[i], err = s.snapshot(ctx, tx, m, d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
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
	st := s.stagesQuery(q, m, []calendar.Date{from, to}, 0)
	_, hiFrom := s.window(m, from)
	_, hiTo := s.window(m, to)
	query := "WITH " + st.with + `
SELECT CASE WHEN m.registered_at < ` + q.arg(hiFrom) + ` THEN ` + st.stage[0] + ` ELSE 0 END AS f,
  ` + st.stage[1] + ` AS t, count(*)
FROM members m ` + st.joins + `
WHERE ` + population(q.arg(hiTo)) + `
GROUP BY 1, 2 ORDER BY 1, 2`
	out := []Flow{}
	err = s.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, query, q.args...)
		if err != nil {
			return fmt.Errorf("computing AIPL flow: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var f, t int
			var n int64
			if err := rows.Scan(&f, &t, &n); err != nil {
				return fmt.Errorf("reading AIPL flow: %w", err)
			}
			fs, err := stageAt(f)
			if err != nil {
				return err
			}
			ts, err := stageAt(t)
			if err != nil {
				return err
			}
			out = append(out, Flow{From: fs, To: ts, Members: n})
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("reading AIPL flow: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
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
	st := s.stagesQuery(q, m, []calendar.Date{at}, memberID)
	_, hi := s.window(m, at)
	query := "WITH " + st.with + `
SELECT CASE WHEN ` + population(q.arg(hi)) + ` THEN ` + st.stage[0] + ` ELSE 0 END
FROM members m ` + st.joins + `
WHERE m.id = ` + q.arg(memberID)
	var stage int
	switch err := s.sql.QueryRowContext(ctx, query, q.args...).Scan(&stage); {
	case errors.Is(err, sql.ErrNoRows):
		return "", ErrMemberNotFound
	case err != nil:
		return "", fmt.Errorf("computing AIPL stage: %w", err)
	}
	return stageAt(stage)
}

// MemberStage is a member's stage in one AIPL model.
type MemberStage struct {
	Model *ent.AiplModel
	Stage enum.AiplStage
}

// MemberStages returns the member's stage today in every AIPL model, by
// model id.
func (s *Service) MemberStages(ctx context.Context, memberID int) ([]MemberStage, error) {
	models, err := s.db.AiplModel.Query().Order(ent.Asc(aiplmodel.FieldID)).All(ctx)
	if err != nil {
		return nil, err
	}
	today := calendar.In(s.now(), s.zone)
	out := make([]MemberStage, 0, len(models))
	for _, m := range models {
		stage, err := s.AiplMemberStage(ctx, m.ID, memberID, today)
		if err != nil {
			return nil, err
		}
		out = append(out, MemberStage{Model: m, Stage: stage})
	}
	return out, nil
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
	st := s.stagesQuery(q, m, []calendar.Date{at}, 0)
	_, hi := s.window(m, at)
	query := "WITH " + st.with + `
SELECT m.id FROM members m ` + st.joins + `
WHERE ` + population(q.arg(hi)) + ` AND ` + st.stage[0] + ` = ANY(` + q.arg(pq.Array(idx)) + `::integer[])
ORDER BY m.id`
	out := []int{}
	err = s.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, query, q.args...)
		if err != nil {
			return fmt.Errorf("listing AIPL stage members: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var id int
			if err := rows.Scan(&id); err != nil {
				return fmt.Errorf("reading AIPL stage members: %w", err)
			}
			out = append(out, id)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("reading AIPL stage members: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
