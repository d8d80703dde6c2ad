package dcbench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"strings"
	"time"

	entdialect "entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/RoaringBitmap/roaring/v2"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/analytics"
	"github.com/onemember/onemember/internal/audience"
	"github.com/onemember/onemember/internal/audience/rule"
	"github.com/onemember/onemember/internal/jobqueue"
	"github.com/onemember/onemember/internal/platform/database"
)

// Targets of the issue, judged in the report.
const (
	TargetEngineP99  = 5 * time.Millisecond
	TargetRatio      = 100.0
	TargetIndexBuild = 60 * time.Second
	TargetRfm        = 60 * time.Second
)

// Defaults of Options.
const (
	DefaultEvaluations = 500
	DefaultWarmups     = 10
	DefaultSQLRuns     = 20
	DefaultSQLWarmups  = 2
	DefaultIndexBuilds = 3
)

// RuleSegment is the RFM segment of the measured rule.
const RuleSegment = enum.RfmImportantValue

// RuleTier is the tier of the measured rule.
const RuleTier = "GOLD"

// ErrMismatch is a SQL answer that differs from the engine's: the run
// fails, since a benchmark must also prove both compute the same thing.
var ErrMismatch = errors.New("the SQL statement and the audience engine disagree")

// Options configure a run.
type Options struct {
	// AdminURL is a postgres:// URL of the local cluster (a superuser).
	AdminURL string
	// Database defaults to DatabaseName(Scale.Members).
	Database string
	Scale    Scale
	// Fresh regenerates the data even when it could be reused.
	Fresh bool
	// Evaluations of the rule by the engine, after Warmups unmeasured ones.
	Evaluations, Warmups int
	// SQLRuns of each SQL statement (the count, the ids), after SQLWarmups
	// unmeasured ones.
	SQLRuns, SQLWarmups int
	// IndexBuilds is how many full rebuilds of the bitmap indexes to time.
	IndexBuilds int
	// DashboardRuns of SalesOverview and of the store report (a quarter
	// as many of MemberStats and ChannelStats), after Warmups unmeasured
	// ones; DashboardSQLRuns of the overview as SQL over the raw orders,
	// each compared with the aggregates' answer.
	DashboardRuns, DashboardSQLRuns int
	// Zone is the business zone (default Asia/Shanghai).
	Zone *time.Location
	Log  *slog.Logger
}

func (o *Options) defaults() error {
	set := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	set(&o.Evaluations, DefaultEvaluations)
	set(&o.Warmups, DefaultWarmups)
	set(&o.SQLRuns, DefaultSQLRuns)
	set(&o.SQLWarmups, DefaultSQLWarmups)
	set(&o.IndexBuilds, DefaultIndexBuilds)
	set(&o.DashboardRuns, DefaultDashboardRuns)
	set(&o.DashboardSQLRuns, DefaultDashboardSQLRuns)
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Zone == nil {
		z, err := time.LoadLocation("Asia/Shanghai")
		if err != nil {
			return fmt.Errorf("loading the business zone: %w", err)
		}
		o.Zone = z
	}
	var errs []error
	for _, c := range []struct {
		name   string
		v, min int
	}{{"evaluations", o.Evaluations, 1}, {"warm-ups", o.Warmups, 0}, {"SQL runs", o.SQLRuns, 1},
		{"SQL warm-ups", o.SQLWarmups, 0}, {"index builds", o.IndexBuilds, 1},
		{"dashboard runs", o.DashboardRuns, 1}, {"dashboard SQL runs", o.DashboardSQLRuns, 1}} {
		if c.v < c.min || c.v > 1_000_000 {
			errs = append(errs, fmt.Errorf("%s must be between %d and 1000000, got %d", c.name, c.min, c.v))
		}
	}
	return errors.Join(errs...)
}

// Timings summarize repeated measurements.
type Timings struct {
	N                        int
	Min, P50, P99, Max, Mean time.Duration
}

// Summarize returns the timings of d (nearest-rank percentiles).
func Summarize(d []time.Duration) Timings {
	if len(d) == 0 {
		return Timings{}
	}
	s := slices.Clone(d)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		k := int(math.Ceil(p*float64(len(s)))) - 1
		return s[min(max(k, 0), len(s)-1)]
	}
	var sum time.Duration
	for _, x := range s {
		sum += x
	}
	return Timings{N: len(s), Min: s[0], P50: rank(0.50), P99: rank(0.99), Max: s[len(s)-1], Mean: sum / time.Duration(len(s))}
}

// Rfm is the RFM phase.
type Rfm struct {
	ModelID int
	// Members with a result after the computation and the recomputation.
	Members, RecomputedMembers int64
	Compute, Recompute         CPU
	Segments                   []analytics.SegmentStat
}

// Worst is the slower of the computation and the recomputation.
func (r Rfm) Worst() time.Duration { return max(r.Compute.Wall, r.Recompute.Wall) }

// Index is the bitmap index phase.
type Index struct {
	Builds []CPU
	// HeapBytes is the Go heap the built index holds (after a GC).
	HeapBytes int64
}

// Worst is the slowest build.
func (ix Index) Worst() time.Duration {
	var w time.Duration
	for _, b := range ix.Builds {
		w = max(w, b.Wall)
	}
	return w
}

// Result is one run's measurements.
type Result struct {
	Options                          Options
	Started, Finished                time.Time
	Machine                          Machine
	LoadStart, LoadBefore, LoadAfter string
	Dataset                          *Dataset
	Rfm                              Rfm
	Index                            Index
	// SavedAudience is the saved audience of the NOT operand and its size.
	SavedAudience     int
	SavedAudienceSize int64
	Rule              *rule.Rule
	RuleJSON          string
	CountSQL, IDsSQL  string
	// Size is how many members the rule selects (engine and SQL alike).
	Size uint64
	// Engine is Evaluate of the rule; EngineNoSaved the rule without its
	// NOT saved audience operand, for comparison.
	Engine, EngineNoSaved  Timings
	EngineCPU              CPU
	SQLCount, SQLIDs       Timings
	SQLCountCPU, SQLIDsCPU CPU
	// Plan is EXPLAIN (ANALYZE, BUFFERS) of the count statement.
	Plan string
	// Dashboards is the dashboards phase.
	Dashboards Dashboards
}

// RatioP50 is the SQL count's p50 over the engine's.
func (r *Result) RatioP50() float64 { return ratio(r.SQLCount.P50, r.Engine.P50) }

// RatioP99 is the SQL count's p99 over the engine's.
func (r *Result) RatioP99() float64 { return ratio(r.SQLCount.P99, r.Engine.P99) }

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Run prepares the data (Prepare) and measures the four phases; it
// returns ErrMismatch when the SQL side disagrees with the engine or the
// dashboards' aggregates.
func Run(ctx context.Context, o Options) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	res := &Result{Options: o, Started: time.Now(), LoadStart: loadAverage()}
	ds, err := Prepare(ctx, PrepareOptions{AdminURL: o.AdminURL, Database: o.Database, Scale: o.Scale, Fresh: o.Fresh, Log: o.Log})
	if err != nil {
		return nil, err
	}
	res.Dataset = ds
	db, err := database.Open(ctx, ds.DSN, database.Options{MaxOpenConns: 8})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	client := ent.NewClient(ent.Driver(entsql.OpenDB(entdialect.Postgres, db)))
	if res.Machine, err = machineFacts(ctx, db); err != nil {
		return nil, err
	}
	// Every run starts from the data alone.
	for _, q := range []string{`TRUNCATE rfm_results`, `DELETE FROM rfm_models`, `DELETE FROM audiences`, `TRUNCATE member_changes`,
		`TRUNCATE sales_daily, product_daily, product_months, store_member_months, store_months, member_first_orders, first_order_days, sales_days, sales_changes`,
		`DELETE FROM sales_aggregate_cursor`, `TRUNCATE member_predictions, prediction_models`} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return nil, fmt.Errorf("clearing earlier runs (%s): %w", q, err)
		}
	}
	res.LoadBefore = loadAverage()

	if err := res.rfm(ctx, analytics.New(client, db, o.Zone, time.Now)); err != nil {
		return nil, err
	}
	// The SQL side gets fresh statistics and a visibility map for the
	// results, as it would have in production (not timed).
	if _, err := db.ExecContext(ctx, `VACUUM ANALYZE rfm_results`); err != nil {
		return nil, fmt.Errorf("analyzing rfm_results: %w", err)
	}

	ix := audience.NewIndex(db, o.Zone, time.Now, audience.IndexOptions{Log: o.Log})
	if err := res.index(ctx, ix); err != nil {
		return nil, err
	}
	svc := audience.New(audience.Deps{
		DB: client, SQL: db, Index: ix, Aipl: analytics.New(client, db, o.Zone, time.Now),
		Jobs: jobqueue.New(client, o.Log, jobqueue.Options{Now: time.Now}), Zone: o.Zone, Now: time.Now,
	})
	saved, err := svc.Create(ctx, audience.CreateInput{
		Name:    "dcbench " + tagName(4),
		Rule:    &rule.Rule{Tag: &rule.TagRule{TagIDs: []int{ds.Tags[4]}, Match: enum.TagMatchAny}},
		Refresh: enum.RefreshStatic,
	})
	if err != nil {
		return nil, fmt.Errorf("saving the audience of the NOT operand: %w", err)
	}
	res.SavedAudience, res.SavedAudienceSize = saved.ID, saved.Size

	res.Rule = ruleOf(ds, res.Rfm.ModelID, saved.ID, true)
	raw, err := json.Marshal(res.Rule)
	if err != nil {
		return nil, err
	}
	res.RuleJSON = string(raw)
	if err := res.preview(ctx, svc, db); err != nil {
		return nil, err
	}
	if err := res.dashboards(ctx, client, db, svc); err != nil {
		return nil, err
	}
	res.LoadAfter = loadAverage()
	res.Finished = time.Now()
	return res, nil
}

// ruleOf is the measured rule: tags 1 or 2, tier GOLD, RFM segment
// IMPORTANT_VALUE, and (with saved) not in the saved audience.
func ruleOf(ds *Dataset, rfmModel, saved int, withSaved bool) *rule.Rule {
	r := &rule.Rule{And: []*rule.Rule{
		{Tag: &rule.TagRule{TagIDs: []int{ds.Tags[0], ds.Tags[1]}, Match: enum.TagMatchAny}},
		{Attribute: &rule.AttributeRule{Field: enum.AttrTier, Op: enum.OpEq, Values: []string{RuleTier}}},
		{Rfm: &rule.RfmRule{ModelID: rfmModel, Segments: []enum.RfmSegment{RuleSegment}}},
	}}
	if withSaved {
		r.And = append(r.And, &rule.Rule{Not: &rule.Rule{Audience: &saved}})
	}
	return r
}

func (res *Result) rfm(ctx context.Context, an *analytics.Service) error {
	log := res.Options.Log
	m, err := an.CreateRfmModel(ctx, analytics.CreateRfmInput{
		Name: "dcbench RFM", WindowDays: 365, Split: analytics.RfmSplit{Mode: enum.RfmSplitMean},
	})
	if err != nil {
		return fmt.Errorf("creating the RFM model: %w", err)
	}
	res.Rfm.ModelID = m.ID
	c0 := readCPU()
	if res.Rfm.Members, err = an.ComputeRfm(ctx, m.ID); err != nil {
		return fmt.Errorf("computing RFM: %w", err)
	}
	res.Rfm.Compute = since(c0)
	log.Info("RFM computed", "members", res.Rfm.Members, "took", res.Rfm.Compute.Wall.Round(time.Millisecond))
	c0 = readCPU()
	if res.Rfm.RecomputedMembers, err = an.ComputeRfm(ctx, m.ID); err != nil {
		return fmt.Errorf("recomputing RFM: %w", err)
	}
	res.Rfm.Recompute = since(c0)
	log.Info("RFM recomputed", "members", res.Rfm.RecomputedMembers, "took", res.Rfm.Recompute.Wall.Round(time.Millisecond))
	if res.Rfm.Segments, err = an.RfmSegments(ctx, m.ID); err != nil {
		return fmt.Errorf("reading RFM segments: %w", err)
	}
	return nil
}

func (res *Result) index(ctx context.Context, ix *audience.Index) error {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range res.Options.IndexBuilds {
		c0 := readCPU()
		if err := ix.Build(ctx); err != nil {
			return fmt.Errorf("building the bitmap indexes: %w", err)
		}
		c := since(c0)
		res.Index.Builds = append(res.Index.Builds, c)
		res.Options.Log.Info("bitmap indexes built", "build", i+1, "took", c.Wall.Round(time.Millisecond))
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	res.Index.HeapBytes = int64(after.HeapAlloc) - int64(before.HeapAlloc)
	return nil
}

// preview measures the rule: Evaluate by the engine (and, for
// comparison, the rule without its saved audience) and the same rule as
// SQL, a count and the member ids, every SQL answer checked against the
// engine's members. The sides take turns, SQLRuns rounds of a block of
// evaluations, one count and one id list, so that both see the same
// machine: on a shared machine the load drifts within minutes.
func (res *Result) preview(ctx context.Context, svc *audience.Service, db querier) error {
	o, ds := res.Options, res.Dataset
	full, noSaved := res.Rule, ruleOf(ds, res.Rfm.ModelID, 0, false)
	var members *roaring.Bitmap
	eval := func(r *rule.Rule) (time.Duration, *roaring.Bitmap, error) {
		start := time.Now()
		bm, err := svc.Evaluate(ctx, r)
		took := time.Since(start)
		if err != nil {
			return 0, nil, fmt.Errorf("evaluating the rule: %w", err)
		}
		return took, bm, nil
	}
	for range max(o.Warmups, 1) {
		_, bm, err := eval(full)
		if err != nil {
			return err
		}
		if members != nil && !bm.Equals(members) {
			return fmt.Errorf("%w: the engine answered %d members, then %d", ErrMismatch, members.GetCardinality(), bm.GetCardinality())
		}
		members = bm
		if _, _, err := eval(noSaved); err != nil {
			return err
		}
	}
	res.Size = members.GetCardinality()

	where := fmt.Sprintf(`FROM members m
WHERE m.status = 'ACTIVE'
  AND m.tier_id = %d
  AND EXISTS (SELECT 1 FROM member_tags t WHERE t.member_id = m.id AND t.tag_id IN (%d, %d))
  AND EXISTS (SELECT 1 FROM rfm_results r WHERE r.model_id = %d AND r.member_id = m.id AND r.segment = '%s')
  AND NOT EXISTS (SELECT 1 FROM member_tags x WHERE x.member_id = m.id AND x.tag_id = %d)`,
		ds.Tiers[RuleTier], ds.Tags[0], ds.Tags[1], res.Rfm.ModelID, RuleSegment, ds.Tags[4])
	res.CountSQL = "SELECT count(*)\n" + where
	res.IDsSQL = "SELECT m.id\n" + where + "\nORDER BY m.id"
	count := func() (time.Duration, error) {
		start := time.Now()
		n, err := queryInt(ctx, db, res.CountSQL)
		took := time.Since(start)
		if err != nil {
			return 0, fmt.Errorf("running the count statement: %w", err)
		}
		if uint64(n) != res.Size {
			return 0, fmt.Errorf("%w: SQL counts %d members, the engine %d", ErrMismatch, n, res.Size)
		}
		return took, nil
	}
	ids := func() (time.Duration, error) {
		start := time.Now()
		got, err := queryIDs(ctx, db, res.IDsSQL)
		took := time.Since(start)
		if err != nil {
			return 0, fmt.Errorf("running the ids statement: %w", err)
		}
		return took, sameMembers(members, got)
	}
	for range o.SQLWarmups {
		if _, err := count(); err != nil {
			return err
		}
		if _, err := ids(); err != nil {
			return err
		}
	}

	per := (o.Evaluations + o.SQLRuns - 1) / o.SQLRuns
	var engine, engineNoSaved, sqlCount, sqlIDs []time.Duration
	var engineCPU, countCPU, idsCPU, other meter
	snap := readCPU()
	lap := func(m *meter) {
		next := readCPU()
		m.add(between(snap, next))
		snap = next
	}
	for range o.SQLRuns {
		for range per {
			took, bm, err := eval(full)
			if err != nil {
				return err
			}
			if bm.GetCardinality() != res.Size {
				return fmt.Errorf("%w: the engine answered %d members, then %d", ErrMismatch, res.Size, bm.GetCardinality())
			}
			engine = append(engine, took)
		}
		lap(&engineCPU)
		for range per {
			took, _, err := eval(noSaved)
			if err != nil {
				return err
			}
			engineNoSaved = append(engineNoSaved, took)
		}
		lap(&other)
		took, err := count()
		if err != nil {
			return err
		}
		sqlCount = append(sqlCount, took)
		lap(&countCPU)
		if took, err = ids(); err != nil {
			return err
		}
		sqlIDs = append(sqlIDs, took)
		lap(&idsCPU)
	}
	res.Engine, res.EngineNoSaved = Summarize(engine), Summarize(engineNoSaved)
	res.SQLCount, res.SQLIDs = Summarize(sqlCount), Summarize(sqlIDs)
	res.EngineCPU, res.SQLCountCPU, res.SQLIDsCPU = engineCPU.total(), countCPU.total(), idsCPU.total()
	o.Log.Info("preview measured", "members", res.Size, "engine_p50", res.Engine.P50, "engine_p99", res.Engine.P99,
		"sql_count_p50", res.SQLCount.P50, "sql_count_p99", res.SQLCount.P99)

	rows, err := db.QueryContext(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+res.CountSQL)
	if err != nil {
		return fmt.Errorf("explaining the count statement: %w", err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return err
		}
		plan = append(plan, line)
	}
	res.Plan = strings.Join(plan, "\n")
	return rows.Err()
}

func queryIDs(ctx context.Context, db querier, query string) ([]int64, error) {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// sameMembers checks that ids (ascending) are exactly the members of bm.
func sameMembers(bm *roaring.Bitmap, ids []int64) error {
	if uint64(len(ids)) != bm.GetCardinality() {
		return fmt.Errorf("%w: SQL lists %d members, the engine %d", ErrMismatch, len(ids), bm.GetCardinality())
	}
	it := bm.Iterator()
	for i, id := range ids {
		want := int64(audience.MemberID(it.Next()))
		if id != want {
			return fmt.Errorf("%w: member %d of the SQL list is %d, the engine's is %d", ErrMismatch, i+1, id, want)
		}
	}
	return nil
}
