// Command dcbench runs the data centre benchmark (package
// internal/dcbench) against the PostgreSQL cluster of DATABASE_URL (the
// local development cluster: the data is loaded as superuser), writes a
// Markdown report and prints a summary:
//
//	dcbench [-members 1000000] [-orders 10000000] [-fresh] [-out FILE] [-db URL] [-database NAME]
//	        [-evals 500] [-warmups 10] [-sql-runs 20] [-sql-warmups 2] [-builds 3]
//	        [-dash-runs 200] [-dash-sql-runs 10]
//
// The data lives in onemember_dcbench_<members> (or -database) and is reused by
// later runs of the same scale; -fresh regenerates it. -out defaults to
// bench-results/datacenter-<UTC timestamp>.md; "-out -" writes no file.
// Progress goes to stderr. The exit status is 1 when the run fails,
// including when the SQL statement and the engine disagree, or SQL over
// the raw orders and the dashboards' aggregates; targets missed are
// reported, not failures.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	_ "time/tzdata" // the business zone without relying on the host's zoneinfo

	_ "github.com/lib/pq"

	"github.com/onemember/onemember/internal/dcbench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "dcbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dcbench", flag.ContinueOnError)
	members := fs.Int("members", 1_000_000, "members in the benchmark database")
	orders := fs.Int("orders", 10_000_000, "orders in the benchmark database")
	fresh := fs.Bool("fresh", false, "regenerate the data even when it could be reused")
	out := fs.String("out", "", `report file (default bench-results/datacenter-<UTC>.md; "-": none)`)
	dbURL := fs.String("db", os.Getenv("DATABASE_URL"), "postgres:// URL of the cluster (default $DATABASE_URL)")
	dbName := fs.String("database", "", "benchmark database (default onemember_dcbench_<members>)")
	evals := fs.Int("evals", dcbench.DefaultEvaluations, "measured engine evaluations")
	warmups := fs.Int("warmups", dcbench.DefaultWarmups, "unmeasured engine evaluations first")
	sqlRuns := fs.Int("sql-runs", dcbench.DefaultSQLRuns, "measured runs of each SQL statement")
	sqlWarmups := fs.Int("sql-warmups", dcbench.DefaultSQLWarmups, "unmeasured runs of each SQL statement first")
	builds := fs.Int("builds", dcbench.DefaultIndexBuilds, "timed full rebuilds of the bitmap indexes")
	dashRuns := fs.Int("dash-runs", dcbench.DefaultDashboardRuns, "measured SalesOverview and store report runs (a quarter as many MemberStats and ChannelStats)")
	dashSQLRuns := fs.Int("dash-sql-runs", dcbench.DefaultDashboardSQLRuns, "runs of the overview as SQL over the raw orders, each checked")
	command := fs.String("command", "", "how the run was started, for the report (default: this command line)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *dbURL == "" {
		return errors.New("no cluster: set DATABASE_URL or -db (scripts/ensure-postgres.sh prints one)")
	}
	if *command == "" {
		*command = strings.Join(append([]string{"dcbench"}, args...), " ")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	res, err := dcbench.Run(ctx, dcbench.Options{
		AdminURL: *dbURL, Database: *dbName,
		Scale: dcbench.Scale{Members: *members, Orders: *orders}, Fresh: *fresh,
		Evaluations: *evals, Warmups: *warmups, SQLRuns: *sqlRuns, SQLWarmups: *sqlWarmups,
		IndexBuilds: *builds, DashboardRuns: *dashRuns, DashboardSQLRuns: *dashSQLRuns, Log: log,
	})
	if err != nil {
		return err
	}
	path := *out
	switch path {
	case "-":
		path = ""
	case "":
		path = filepath.Join("bench-results", "datacenter-"+res.Started.UTC().Format("20060102T150405Z")+".md")
	}
	if path != "" {
		if err := writeReport(path, res, *command); err != nil {
			return err
		}
	}
	return res.WriteSummary(os.Stdout, path)
}

func writeReport(path string, res *dcbench.Result, command string) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	return res.WriteReport(f, command)
}
