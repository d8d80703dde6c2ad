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
		{"SQL warm-ups", o.SQLWarmups, 0}, {"index builds", o.IndexBuilds, 1}} {
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
	Members, Remembers int64
	Compute, Recompute CPU
	Segments           []analytics.SegmentStat
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
}

// RatioP50 and RatioP99 are SQL (count) over the engine.
func (r *Result) RatioP50() float64 { return ratio(r.SQLCount.P50, r.Engine.P50) }

// RatioP99 is the SQL count's p99 over the engine's.
func (r *Result) RatioP99() float64 { return ratio(r.SQLCount.P99, r.Engine.P99) }

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// Run prepares the data (Prepare) and measures the three phases; it
// returns ErrMismatch when the SQL side disagrees with the engine.
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
	for _, q := range []string{`TRUNCATE rfm_results`, `DELETE FROM rfm_models`, `DELETE FROM audiences`, `TRUNCATE member_changes`} {
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
	bm, err := res.engine(ctx, svc)
	if err != nil {
		return nil, err
	}
	res.Size = bm.GetCardinality()
	if err := res.sql(ctx, db, ds, bm); err != nil {
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
	if res.Rfm.Remembers, err = an.ComputeRfm(ctx, m.ID); err != nil {
		return fmt.Errorf("recomputing RFM: %w", err)
	}
	res.Rfm.Recompute = since(c0)
	log.Info("RFM recomputed", "members", res.Rfm.Remembers, "took", res.Rfm.Recompute.Wall.Round(time.Millisecond))
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

// engine times Evaluate of the rule (and of the rule without its saved
// audience) and returns the rule's members.
func (res *Result) engine(ctx context.Context, svc *audience.Service) (*roaring.Bitmap, error) {
	o := res.Options
	measure := func(r *rule.Rule, n int) (Timings, CPU, *roaring.Bitmap, error) {
		var first *roaring.Bitmap
		for range o.Warmups {
			bm, err := svc.Evaluate(ctx, r)
			if err != nil {
				return Timings{}, CPU{}, nil, fmt.Errorf("evaluating the rule: %w", err)
			}
			first = bm
		}
		d := make([]time.Duration, 0, n)
		c0 := readCPU()
		for range n {
			start := time.Now()
			bm, err := svc.Evaluate(ctx, r)
			d = append(d, time.Since(start))
			if err != nil {
				return Timings{}, CPU{}, nil, fmt.Errorf("evaluating the rule: %w", err)
			}
			if first == nil {
				first = bm
			} else if bm.GetCardinality() != first.GetCardinality() {
				return Timings{}, CPU{}, nil, fmt.Errorf("%w: the engine answered %d members, then %d", ErrMismatch,
					first.GetCardinality(), bm.GetCardinality())
			}
		}
		return Summarize(d), since(c0), first, nil
	}
	t, c, bm, err := measure(res.Rule, o.Evaluations)
	if err != nil {
		return nil, err
	}
	res.Engine, res.EngineCPU = t, c
	o.Log.Info("engine measured", "evaluations", t.N, "p50", t.P50, "p99", t.P99, "members", bm.GetCardinality())
	if res.EngineNoSaved, _, _, err = measure(ruleOf(res.Dataset, res.Rfm.ModelID, 0, false), o.Evaluations); err != nil {
		return nil, err
	}
	return bm, nil
}

// sql times the rule as SQL, a count and the ids, and checks every
// answer against the engine's members.
func (res *Result) sql(ctx context.Context, db querier, ds *Dataset, members *roaring.Bitmap) error {
	o := res.Options
	where := fmt.Sprintf(`FROM members m
WHERE m.status = 'ACTIVE'
  AND m.tier_id = %d
  AND EXISTS (SELECT 1 FROM member_tags t WHERE t.member_id = m.id AND t.tag_id IN (%d, %d))
  AND EXISTS (SELECT 1 FROM rfm_results r WHERE r.model_id = %d AND r.member_id = m.id AND r.segment = '%s')
  AND NOT EXISTS (SELECT 1 FROM member_tags x WHERE x.member_id = m.id AND x.tag_id = %d)`,
		ds.Tiers[RuleTier], ds.Tags[0], ds.Tags[1], res.Rfm.ModelID, RuleSegment, ds.Tags[4])
	res.CountSQL = "SELECT count(*)\n" + where
	res.IDsSQL = "SELECT m.id\n" + where + "\nORDER BY m.id"
	want := members.GetCardinality()

	count := func() error {
		n, err := queryInt(ctx, db, res.CountSQL)
		if err != nil {
			return fmt.Errorf("running the count statement: %w", err)
		}
		if uint64(n) != want {
			return fmt.Errorf("%w: SQL counts %d members, the engine %d", ErrMismatch, n, want)
		}
		return nil
	}
	ids := func() error {
		got, err := queryIDs(ctx, db, res.IDsSQL)
		if err != nil {
			return fmt.Errorf("running the ids statement: %w", err)
		}
		return sameMembers(members, got)
	}
	var err error
	if res.SQLCount, res.SQLCountCPU, err = repeat(o.SQLWarmups, o.SQLRuns, count); err != nil {
		return err
	}
	o.Log.Info("SQL count measured", "runs", res.SQLCount.N, "p50", res.SQLCount.P50, "p99", res.SQLCount.P99)
	if res.SQLIDs, res.SQLIDsCPU, err = repeat(o.SQLWarmups, o.SQLRuns, ids); err != nil {
		return err
	}
	o.Log.Info("SQL ids measured", "runs", res.SQLIDs.N, "p50", res.SQLIDs.P50, "p99", res.SQLIDs.P99)

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

// repeat runs fn warm times, then n timed times.
func repeat(warm, n int, fn func() error) (Timings, CPU, error) {
	for range warm {
		if err := fn(); err != nil {
			return Timings{}, CPU{}, err
		}
	}
	d := make([]time.Duration, 0, n)
	c0 := readCPU()
	for range n {
		start := time.Now()
		if err := fn(); err != nil {
			return Timings{}, CPU{}, err
		}
		d = append(d, time.Since(start))
	}
	return Summarize(d), since(c0), nil
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
