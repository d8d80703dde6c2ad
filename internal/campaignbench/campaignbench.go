// Package campaignbench is the campaign benchmark (docs/BENCHMARKS.md,
// "Campaigns"), run by cmd/campaignbench and scripts/bench-campaign.sh:
// a ONE_OFF campaign issuing one coupon to each member of a saved
// audience of every member of the data centre benchmark's database
// (onemember_dcbench_1000000, made by internal/dcbench), run the way the
// server runs it: the campaign runner plans the RUN_CAMPAIGN job, the job
// workers (as many as the server starts) run it. It measures the time from
// activation to the job's end and the members served per second, checks
// the outcome in SQL (exactly one coupon per treated member, one
// execution per member, the template's stock and the events in step),
// and times a reference on the same PostgreSQL: the same coupon rows
// written by one INSERT … SELECT (rolled back).
//
// The dataset is not generated here (scripts/bench-datacenter.sh makes
// it) and is changed only by what this benchmark adds, which each run
// first deletes: its audience, coupon templates, campaigns, their
// executions, jobs, coupons, COUPON_ISSUED events and notifications, and
// the member accounts its earlier runs created (those created since its
// first campaign that hold nothing). Migrations that landed since the
// data was generated are applied, as internal/dcbench does.
//
// Nothing here is used by the server.
package campaignbench

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"runtime"
	"sync"
	"time"

	entdialect "entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/RoaringBitmap/roaring/v2"
	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	entjob "github.com/onemember/onemember/ent/job"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/audience"
	"github.com/onemember/onemember/internal/auth/password"
	"github.com/onemember/onemember/internal/campaign"
	"github.com/onemember/onemember/internal/campaign/spec"
	"github.com/onemember/onemember/internal/coupon"
	"github.com/onemember/onemember/internal/jobqueue"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/migrate"
	"github.com/onemember/onemember/migrations"
)

// Target is the issue's: the campaign done within five minutes.
const Target = 5 * time.Minute

// DefaultDatabase is the data centre benchmark's 1,000,000-member
// database.
const DefaultDatabase = "onemember_dcbench_1000000"

// prefix names everything a run creates, so that the next run finds it.
const prefix = "campaignbench"

// Options configure a run.
type Options struct {
	// AdminURL is a postgres:// URL of the local cluster.
	AdminURL string
	// Database is the benchmark database (DefaultDatabase).
	Database string
	// Workers are the job workers (jobqueue.DefaultWorkers, what the
	// server runs).
	Workers int
	// BatchSize is the campaign's members per transaction
	// (campaign.DefaultBatchSize).
	BatchSize int
	Zone      *time.Location
	Log       *slog.Logger
}

// Result is what a run measured.
type Result struct {
	Database      string
	Members       int // in the audience (every member)
	ActiveMembers int // of them ACTIVE: those a campaign acts on
	Workers       int
	BatchSize     int
	Cleanup       time.Duration // deleting the earlier runs' rows
	Selection     time.Duration // activation to the job's first batch
	Elapsed       time.Duration // activation to the job's end
	Executions    int
	Coupons       int
	MembersPerSec float64
	// Verified: one coupon per REACHED member, one execution per ACTIVE
	// member, issued_count and COUPON_ISSUED events equal to the coupons.
	Verified bool
	Problems []string
	// Reference is the same coupon rows written by one INSERT … SELECT.
	Reference time.Duration
	Postgres  string
	Settings  map[string]string
	CPUs      int
	CPUModel  string
	Started   time.Time
}

// Run runs the benchmark.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Database == "" {
		o.Database = DefaultDatabase
	}
	if o.Workers <= 0 {
		o.Workers = jobqueue.DefaultWorkers
	}
	if o.BatchSize <= 0 {
		o.BatchSize = campaign.DefaultBatchSize
	}
	if o.Zone == nil {
		z, err := time.LoadLocation("Asia/Shanghai")
		if err != nil {
			return nil, err
		}
		o.Zone = z
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	dsn, err := databaseURL(o.AdminURL, o.Database)
	if err != nil {
		return nil, err
	}
	db, err := database.Open(ctx, dsn, database.Options{MaxOpenConns: 16})
	if err != nil {
		return nil, fmt.Errorf("opening %s (made by scripts/bench-datacenter.sh): %w", o.Database, err)
	}
	defer db.Close()
	if err := migrate.Up(ctx, db, migrations.FS, o.Log); err != nil {
		return nil, err
	}
	client := ent.NewClient(ent.Driver(entsql.OpenDB(entdialect.Postgres, db)))
	r := &Result{Database: o.Database, Workers: o.Workers, BatchSize: o.BatchSize, Started: time.Now().UTC(),
		CPUs: runtime.NumCPU(), CPUModel: cpuModel()}
	if err := facts(ctx, db, r); err != nil {
		return nil, err
	}

	o.Log.Info("deleting what earlier runs created")
	start := time.Now()
	if err := cleanup(ctx, db); err != nil {
		return nil, err
	}
	r.Cleanup = time.Since(start)

	members, err := memberIDs(ctx, db)
	if err != nil {
		return nil, err
	}
	r.Members = len(members)
	if err := db.QueryRowContext(ctx, `SELECT count(*) FROM members WHERE status = 'ACTIVE'`).Scan(&r.ActiveMembers); err != nil {
		return nil, err
	}
	if r.Members == 0 {
		return nil, errors.New("the benchmark database has no members: run scripts/bench-datacenter.sh first")
	}
	audienceID, err := saveAudience(ctx, client, members)
	if err != nil {
		return nil, err
	}
	coupons := coupon.New(client, o.Zone, time.Now)
	tpl, err := coupons.CreateTemplate(ctx, coupon.TemplateInput{Title: prefix + " 立减10元", Kind: coupon.KindFixedAmount,
		FaceValue: ptr[int64](1000), DaysAfterIssue: ptr(30), TotalStock: r.Members + 10, PerMemberLimit: 1})
	if err != nil {
		return nil, fmt.Errorf("coupon template: %w", err)
	}
	queue := jobqueue.New(client, o.Log.With("component", "jobs"), jobqueue.Options{Workers: o.Workers})
	aud := audience.New(audience.Deps{DB: client, SQL: db, Zone: o.Zone, Now: time.Now,
		Index: audience.NewIndex(db, o.Zone, time.Now, audience.IndexOptions{})})
	svc := campaign.New(campaign.Deps{DB: client, SQL: db, Audiences: aud, Coupons: coupons,
		Ledger: ledger.New(client, ledger.DefaultPolicy(o.Zone), password.DefaultParams(), time.Now),
		Jobs:   queue, Zone: o.Zone, Now: time.Now, Log: o.Log.With("component", "campaigns"),
		Options: campaign.Options{BatchSize: o.BatchSize}})
	queue.Register(enum.JobRunCampaign, svc.RunHandler())
	now := time.Now()
	c, err := svc.Create(ctx, nil, campaign.CreateInput{Name: prefix + " 全员发券", AudienceID: &audienceID,
		Trigger: &spec.Trigger{Kind: enum.TriggerOneOff, At: &now}, StartsAt: now.Add(-time.Minute),
		Actions: []*spec.Action{{Kind: enum.ActionIssueCoupon, CouponTemplateID: &tpl.ID}}})
	if err != nil {
		return nil, fmt.Errorf("campaign: %w", err)
	}

	o.Log.Info("running the campaign", "members", r.Members, "workers", o.Workers, "batch", o.BatchSize)
	runCtx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = svc.Run(runCtx) })
	wg.Go(func() { queue.Run(runCtx) })
	start = time.Now()
	if _, err := svc.Activate(ctx, c.ID, false); err != nil {
		stop()
		wg.Wait()
		return nil, err
	}
	job, err := wait(ctx, client, c.ID, start, r, o.Log)
	stop()
	wg.Wait()
	if err != nil {
		return nil, err
	}
	r.Elapsed = time.Since(start)
	if job.Status != enum.JobSucceeded {
		return nil, fmt.Errorf("the campaign's job ended %s: %s", job.Status, job.Error)
	}

	o.Log.Info("verifying")
	if err := verify(ctx, db, c.ID, tpl.ID, r); err != nil {
		return nil, err
	}
	r.MembersPerSec = float64(r.Executions) / r.Elapsed.Seconds()
	o.Log.Info("timing the reference INSERT … SELECT")
	if r.Reference, err = reference(ctx, db, tpl.ID); err != nil {
		return nil, err
	}
	return r, nil
}

func databaseURL(admin, name string) (string, error) {
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("%q is not a postgres:// URL", admin)
	}
	u.Path = "/" + name
	return u.String(), nil
}

// cleanup deletes what earlier runs created.
func cleanup(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() //nolint:errcheck // no-op after commit
	var since sql.NullTime
	steps := []struct{ what, query string }{
		{"executions", `DELETE FROM campaign_executions WHERE campaign_id IN (SELECT id FROM campaigns WHERE name LIKE '` + prefix + `%')`},
		{"jobs", `DELETE FROM jobs WHERE kind = 'RUN_CAMPAIGN' AND (params->>'campaignId')::bigint IN (
			SELECT id FROM campaigns WHERE name LIKE '` + prefix + `%')`},
		{"campaigns", `DELETE FROM campaigns WHERE name LIKE '` + prefix + `%'`},
		{"audiences", `DELETE FROM audiences WHERE name LIKE '` + prefix + `%'`},
		{"notifications", `DELETE FROM notifications WHERE event_id IN (SELECT id FROM member_events
			WHERE type = 'COUPON_ISSUED' AND (payload->>'templateId')::bigint IN (
				SELECT id FROM coupon_templates WHERE title LIKE '` + prefix + `%'))`},
		{"events", `DELETE FROM member_events WHERE type = 'COUPON_ISSUED' AND (payload->>'templateId')::bigint IN (
			SELECT id FROM coupon_templates WHERE title LIKE '` + prefix + `%')`},
		{"coupons", `DELETE FROM coupons WHERE template_id IN (SELECT id FROM coupon_templates WHERE title LIKE '` + prefix + `%')`},
		{"templates", `DELETE FROM coupon_templates WHERE title LIKE '` + prefix + `%'`},
	}
	if err := tx.QueryRowContext(ctx, `SELECT min(created_at) FROM campaigns WHERE name LIKE '`+prefix+`%'`).Scan(&since); err != nil {
		return fmt.Errorf("finding earlier runs: %w", err)
	}
	for _, s := range steps {
		if _, err := tx.ExecContext(ctx, s.query); err != nil {
			return fmt.Errorf("deleting earlier runs' %s: %w", s.what, err)
		}
	}
	if since.Valid {
		// Accounts the earlier runs created: since their first campaign,
		// holding nothing and with no event left.
		if _, err := tx.ExecContext(ctx, `DELETE FROM accounts a WHERE a.created_at >= $1
			AND a.points_balance = 0 AND a.growth_value = 0 AND a.stored_principal = 0 AND a.stored_bonus = 0
			AND NOT EXISTS (SELECT 1 FROM member_events e WHERE e.member_id = a.member_id)`, since.Time); err != nil {
			return fmt.Errorf("deleting earlier runs' accounts: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	for _, t := range []string{"accounts", "coupons", "member_events", "notifications", "campaign_executions", "jobs"} {
		if _, err := db.ExecContext(ctx, `VACUUM (ANALYZE) `+t); err != nil {
			return fmt.Errorf("vacuuming %s: %w", t, err)
		}
	}
	return nil
}

func memberIDs(ctx context.Context, db *sql.DB) ([]int64, error) {
	var ids []int64
	if err := db.QueryRowContext(ctx, `SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM members`).Scan(pq.Array(&ids)); err != nil {
		return nil, fmt.Errorf("reading members: %w", err)
	}
	return ids, nil
}

// saveAudience saves the audience of every member (an imported list).
func saveAudience(ctx context.Context, client *ent.Client, ids []int64) (int, error) {
	bm := roaring.New()
	for _, id := range ids {
		if o, ok := audience.Ordinal(int(id)); ok {
			bm.Add(o)
		}
	}
	bm.RunOptimize()
	var buf bytes.Buffer
	if _, err := bm.WriteTo(&buf); err != nil {
		return 0, err
	}
	a, err := client.Audience.Create().SetName(prefix + " 全体会员").SetSource("IMPORT").SetStatus("READY").
		SetBitmap(buf.Bytes()).SetSize(int64(bm.GetCardinality())).SetComputedAt(time.Now()).Save(ctx)
	if err != nil {
		return 0, fmt.Errorf("saving the audience: %w", err)
	}
	return a.ID, nil
}

// wait follows the campaign's job to its end, logging progress.
func wait(ctx context.Context, client *ent.Client, campaignID int, start time.Time, r *Result, log *slog.Logger) (*ent.Job, error) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	var lastLog time.Time
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
		jobs, err := client.Job.Query().Where(entjob.KindEQ(enum.JobRunCampaign)).All(ctx)
		if err != nil {
			return nil, err
		}
		for _, j := range jobs {
			if id, _ := jobqueue.IntParam(j.Params, "campaignId"); id != campaignID {
				continue
			}
			if r.Selection == 0 && j.Processed > 0 {
				r.Selection = time.Since(start)
			}
			if time.Since(lastLog) > 10*time.Second {
				log.Info("progress", "processed", j.Processed, "total", j.Total, "elapsed", time.Since(start).Round(time.Second))
				lastLog = time.Now()
			}
			if jobqueue.Finished(j.Status) {
				return j, nil
			}
		}
	}
}

// verify checks the outcome in SQL.
func verify(ctx context.Context, db *sql.DB, campaignID, templateID int, r *Result) error {
	var reached, withCoupon, notOne, issued, events, mismatched int
	c, t := campaignID, templateID
	checks := []struct {
		query string
		arg   int
		dst   *int
	}{
		{`SELECT count(*) FROM campaign_executions WHERE campaign_id = $1`, c, &r.Executions},
		{`SELECT count(*) FROM campaign_executions WHERE campaign_id = $1 AND status = 'REACHED'`, c, &reached},
		{`SELECT count(*) FROM campaign_executions WHERE campaign_id = $1 AND coupon_id IS NOT NULL`, c, &withCoupon},
		{`SELECT count(*) FROM coupons WHERE template_id = $1`, t, &r.Coupons},
		{`SELECT count(*) FROM (SELECT member_id FROM coupons WHERE template_id = $1 GROUP BY member_id HAVING count(*) <> 1) x`, t, &notOne},
		{`SELECT count(*) FROM campaign_executions e LEFT JOIN coupons c ON c.id = e.coupon_id
			WHERE e.campaign_id = $1 AND (c.id IS NULL OR c.member_id <> e.member_id OR c.source <> 'campaign:' || e.campaign_id)`, c, &mismatched},
		{`SELECT issued_count FROM coupon_templates WHERE id = $1`, t, &issued},
		{`SELECT count(*) FROM member_events WHERE type = 'COUPON_ISSUED' AND (payload->>'templateId')::bigint = $1`, t, &events},
	}
	for _, ch := range checks {
		if err := db.QueryRowContext(ctx, ch.query, ch.arg).Scan(ch.dst); err != nil {
			return fmt.Errorf("verifying: %w", err)
		}
	}
	bad := func(format string, args ...any) { r.Problems = append(r.Problems, fmt.Sprintf(format, args...)) }
	if r.Executions != r.ActiveMembers {
		bad("%d executions, want one per ACTIVE member (%d)", r.Executions, r.ActiveMembers)
	}
	if reached != r.Executions || withCoupon != reached {
		bad("%d REACHED and %d with a coupon of %d executions, want all", reached, withCoupon, r.Executions)
	}
	if r.Coupons != reached || notOne != 0 || mismatched != 0 {
		bad("%d coupons for %d treated members, %d members without exactly one, %d executions without their coupon",
			r.Coupons, reached, notOne, mismatched)
	}
	if issued != r.Coupons || events != r.Coupons {
		bad("issued_count %d and %d COUPON_ISSUED events for %d coupons", issued, events, r.Coupons)
	}
	r.Verified = len(r.Problems) == 0
	return nil
}

// reference writes the same coupon rows with one INSERT … SELECT and rolls
// it back: what PostgreSQL alone needs for the rows (and their indexes).
func reference(ctx context.Context, db *sql.DB, templateID int) (time.Duration, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback() //nolint:errcheck // rolled back on purpose
	start := time.Now()
	_, err = tx.ExecContext(ctx, `INSERT INTO coupons (code, template_id, member_id, status, issued_at, expires_at, source, discount)
		SELECT 'REF' || m.id, $1, m.id, 'AVAILABLE', now(), now() + interval '30 days', 'reference', 0
		FROM members m WHERE m.status = 'ACTIVE'`, templateID)
	took := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("reference insert: %w", err)
	}
	return took, nil
}

// facts reads what shapes the SQL side.
func facts(ctx context.Context, db *sql.DB, r *Result) error {
	if err := db.QueryRowContext(ctx, `SHOW server_version`).Scan(&r.Postgres); err != nil {
		return err
	}
	r.Settings = map[string]string{}
	rows, err := db.QueryContext(ctx, `SELECT name, current_setting(name) FROM pg_settings
		WHERE name IN ('shared_buffers', 'work_mem', 'synchronous_commit', 'wal_level', 'max_wal_size', 'checkpoint_timeout')`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return err
		}
		r.Settings[k] = v
	}
	return rows.Err()
}

func ptr[T any](v T) *T { return &v }
