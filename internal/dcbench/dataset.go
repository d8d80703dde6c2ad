package dcbench

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"regexp"
	"strconv"
	"time"

	entdialect "entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/migrate"
	"github.com/onemember/onemember/migrations"
)

// DataVersion is the version of what generate writes. Changing the
// generator bumps it, so that data of an older generator is regenerated
// instead of measured. Version 2 added order lines and paid memberships
// (the dashboards phase).
const DataVersion = 2

// Bounds of a Scale.
const (
	MinMembers = 1000
	MaxMembers = 50_000_000
	MaxOrders  = 500_000_000
)

// Scale is how much data a benchmark database holds.
type Scale struct {
	Members int
	Orders  int
}

// Validate reports a scale out of bounds.
func (s Scale) Validate() error {
	var errs []error
	if s.Members < MinMembers || s.Members > MaxMembers {
		errs = append(errs, fmt.Errorf("members must be between %d and %d, got %d", MinMembers, MaxMembers, s.Members))
	}
	if s.Orders < 0 || s.Orders > MaxOrders {
		errs = append(errs, fmt.Errorf("orders must be between 0 and %d, got %d", MaxOrders, s.Orders))
	}
	return errors.Join(errs...)
}

// DatabaseName is the default benchmark database of a member count.
func DatabaseName(members int) string {
	return "onemember_dcbench_" + strconv.Itoa(members)
}

// TagShares are the shares of the members holding each of the five
// generated tags, in tag order.
var TagShares = [5]float64{0.30, 0.20, 0.15, 0.25, 0.10}

// TierCodes are the generated tiers, by rank (1, 2, 3).
var TierCodes = [3]string{"SILVER", "GOLD", "PLATINUM"}

// Dataset is a prepared benchmark database.
type Dataset struct {
	Name string
	// DSN connects to it.
	DSN string
	Scale
	// Generated says this run generated the data; otherwise it was reused.
	Generated    bool
	GeneratedAt  time.Time
	GenerateTime time.Duration
	// What the generator wrote.
	ActiveMembers, Buyers, RefundedOrders, TagAssignments, OrderItems, PaidMembers int64
	// SizeBytes is the database's size on disk.
	SizeBytes int64
	// Tags are the five tag ids, in the order of TagShares.
	Tags [5]int
	// Tiers are the tier ids by code.
	Tiers map[string]int
}

// PrepareOptions say which database to prepare.
type PrepareOptions struct {
	// AdminURL is a postgres:// URL of the cluster, as a user allowed to
	// create databases (and a superuser: see the package comment).
	AdminURL string
	// Database defaults to DatabaseName(Scale.Members).
	Database string
	Scale    Scale
	// Fresh regenerates the data even when it could be reused.
	Fresh bool
	Log   *slog.Logger
}

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Prepare makes sure the benchmark database exists with data of the
// requested scale: it reuses a database whose marker matches, and
// otherwise drops and recreates it, applies the migrations and generates
// the data (see the package comment). The returned Dataset's DSN connects
// to it.
func Prepare(ctx context.Context, o PrepareOptions) (*Dataset, error) {
	if err := o.Scale.Validate(); err != nil {
		return nil, err
	}
	if o.Database == "" {
		o.Database = DatabaseName(o.Scale.Members)
	}
	if !identRE.MatchString(o.Database) {
		return nil, fmt.Errorf("database name %q is not a plain lower-case identifier", o.Database)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	dsn, err := dsnFor(o.AdminURL, o.Database)
	if err != nil {
		return nil, err
	}
	admin, err := database.Open(ctx, o.AdminURL, database.Options{MaxOpenConns: 2})
	if err != nil {
		return nil, fmt.Errorf("connecting to the cluster: %w", err)
	}
	defer admin.Close()

	var exists bool
	if err := admin.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, o.Database).Scan(&exists); err != nil {
		return nil, fmt.Errorf("looking for database %s: %w", o.Database, err)
	}
	ds := &Dataset{Name: o.Database, DSN: dsn, Scale: o.Scale}
	if exists && !o.Fresh {
		reused, why, err := reuse(ctx, ds, o.Log)
		if err != nil {
			return nil, err
		}
		if reused {
			o.Log.Info("reusing benchmark data", "database", o.Database, "generated_at", ds.GeneratedAt.Format(time.RFC3339))
			return ds, nil
		}
		o.Log.Info("regenerating benchmark data", "database", o.Database, "reason", why)
	}

	var super bool
	if err := admin.QueryRowContext(ctx, `SELECT rolsuper FROM pg_roles WHERE rolname = current_user`).Scan(&super); err != nil {
		return nil, fmt.Errorf("reading the user's role: %w", err)
	}
	if !super {
		return nil, errors.New("generating the data needs a superuser (it loads with session_replication_role = replica); use the local development cluster")
	}
	started := time.Now()
	if _, err := admin.ExecContext(ctx, `DROP DATABASE IF EXISTS `+pq.QuoteIdentifier(o.Database)+` WITH (FORCE)`); err != nil {
		return nil, fmt.Errorf("dropping database %s: %w", o.Database, err)
	}
	if _, err := admin.ExecContext(ctx, `CREATE DATABASE `+pq.QuoteIdentifier(o.Database)); err != nil {
		return nil, fmt.Errorf("creating database %s: %w", o.Database, err)
	}
	db, err := database.Open(ctx, dsn, database.Options{MaxOpenConns: 2})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	if err := migrate.Up(ctx, db, migrations.FS, o.Log); err != nil {
		return nil, err
	}
	client := ent.NewClient(ent.Driver(entsql.OpenDB(entdialect.Postgres, db)))
	if err := generate(ctx, client, db, o.Scale, o.Log); err != nil {
		return nil, err
	}
	if err := readMarker(ctx, db, ds); err != nil {
		return nil, err
	}
	if err := readRefs(ctx, db, ds); err != nil {
		return nil, err
	}
	ds.Generated = true
	ds.GenerateTime = time.Since(started)
	if _, err := db.ExecContext(ctx, `UPDATE dcbench_dataset SET generate_seconds = $1`, ds.GenerateTime.Seconds()); err != nil {
		return nil, fmt.Errorf("recording the generation time: %w", err)
	}
	if err := db.QueryRowContext(ctx, `SELECT pg_database_size(current_database())`).Scan(&ds.SizeBytes); err != nil {
		return nil, fmt.Errorf("reading the database size: %w", err)
	}
	return ds, nil
}

// reuse opens an existing database and fills ds when its marker matches
// the scale and the generator; otherwise it says why not.
func reuse(ctx context.Context, ds *Dataset, log *slog.Logger) (bool, string, error) {
	db, err := database.Open(ctx, ds.DSN, database.Options{MaxOpenConns: 2})
	if err != nil {
		return false, "", err
	}
	defer db.Close()
	var marked bool
	if err := db.QueryRowContext(ctx, `SELECT to_regclass('dcbench_dataset') IS NOT NULL`).Scan(&marked); err != nil {
		return false, "", fmt.Errorf("looking for the marker: %w", err)
	}
	if !marked {
		return false, "no marker (an interrupted generation)", nil
	}
	var members, orders, version int
	if err := db.QueryRowContext(ctx, `SELECT members, orders, data_version FROM dcbench_dataset`).Scan(&members, &orders, &version); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return false, "empty marker", nil
		}
		return false, "", fmt.Errorf("reading the marker: %w", err)
	}
	switch {
	case version != DataVersion:
		return false, fmt.Sprintf("generated by version %d of the generator, this is version %d", version, DataVersion), nil
	case members != ds.Members || orders != ds.Orders:
		return false, fmt.Sprintf("holds %d members and %d orders, %d and %d requested", members, orders, ds.Members, ds.Orders), nil
	}
	// Migrations that landed since the data was generated apply to it.
	if err := migrate.Up(ctx, db, migrations.FS, log); err != nil {
		return false, "", err
	}
	if err := readMarker(ctx, db, ds); err != nil {
		return false, "", err
	}
	if err := readRefs(ctx, db, ds); err != nil {
		return false, "", err
	}
	if err := db.QueryRowContext(ctx, `SELECT pg_database_size(current_database())`).Scan(&ds.SizeBytes); err != nil {
		return false, "", fmt.Errorf("reading the database size: %w", err)
	}
	return true, "", nil
}

func readMarker(ctx context.Context, db *sql.DB, ds *Dataset) error {
	var secs float64
	err := db.QueryRowContext(ctx, `SELECT generated_at, generate_seconds, active_members, buyers, refunded_orders, tag_assignments,
  order_items, paid_members
FROM dcbench_dataset`).Scan(&ds.GeneratedAt, &secs, &ds.ActiveMembers, &ds.Buyers, &ds.RefundedOrders, &ds.TagAssignments,
		&ds.OrderItems, &ds.PaidMembers)
	if err != nil {
		return fmt.Errorf("reading the marker: %w", err)
	}
	ds.GenerateTime = time.Duration(secs * float64(time.Second))
	return nil
}

// readRefs reads the ids of the generated tags and tiers.
func readRefs(ctx context.Context, db *sql.DB, ds *Dataset) error {
	for i := range ds.Tags {
		if err := db.QueryRowContext(ctx, `SELECT id FROM tags WHERE name = $1`, tagName(i)).Scan(&ds.Tags[i]); err != nil {
			return fmt.Errorf("reading tag %q: %w", tagName(i), err)
		}
	}
	ds.Tiers = map[string]int{}
	for _, code := range TierCodes {
		var id int
		if err := db.QueryRowContext(ctx, `SELECT id FROM tiers WHERE code = $1`, code).Scan(&id); err != nil {
			return fmt.Errorf("reading tier %s: %w", code, err)
		}
		ds.Tiers[code] = id
	}
	return nil
}

func tagName(i int) string { return fmt.Sprintf("dcbench tag %d", i+1) }

// dsnFor is base (a postgres:// URL) connecting to database name instead.
func dsnFor(base, name string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", errors.New("the database URL must be a postgres:// URL")
	}
	u.Path = "/" + name
	u.RawPath = ""
	return u.String(), nil
}
