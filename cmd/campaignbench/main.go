// Command campaignbench runs the campaign benchmark (package
// internal/campaignbench) against the data centre benchmark's database of
// the PostgreSQL cluster of DATABASE_URL, writes a Markdown report and
// prints a summary:
//
//	campaignbench [-db URL] [-database onemember_dcbench_1000000] [-workers 2] [-batch 1000] [-out FILE]
//
// -out defaults to bench-results/campaign-<UTC timestamp>.md; "-out -"
// writes no file. Progress goes to stderr. The exit status is 1 when the
// run fails, including when the outcome does not verify; a missed target
// is reported, not a failure.
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

	"github.com/onemember/onemember/internal/campaignbench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "campaignbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("campaignbench", flag.ContinueOnError)
	dbURL := fs.String("db", os.Getenv("DATABASE_URL"), "postgres:// URL of the cluster (default $DATABASE_URL)")
	dbName := fs.String("database", campaignbench.DefaultDatabase, "benchmark database (made by scripts/bench-datacenter.sh)")
	workers := fs.Int("workers", 0, "job workers (default: what the server runs)")
	batch := fs.Int("batch", 0, "members per transaction (default: the campaign engine's)")
	out := fs.String("out", "", `report file (default bench-results/campaign-<UTC>.md; "-": none)`)
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
		*command = strings.Join(append([]string{"campaignbench"}, args...), " ")
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	res, err := campaignbench.Run(ctx, campaignbench.Options{AdminURL: *dbURL, Database: *dbName,
		Workers: *workers, BatchSize: *batch, Log: log})
	if err != nil {
		return err
	}
	path := *out
	switch path {
	case "-":
		path = ""
	case "":
		path = filepath.Join("bench-results", "campaign-"+res.Started.Format("20060102T150405Z")+".md")
	}
	if path != "" {
		if err := writeReport(path, res, *command); err != nil {
			return err
		}
	}
	if err := res.WriteSummary(os.Stdout, path); err != nil {
		return err
	}
	if !res.Verified {
		return errors.New("the outcome did not verify")
	}
	return nil
}

func writeReport(path string, res *campaignbench.Result, command string) (err error) {
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
