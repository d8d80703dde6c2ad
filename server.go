// Command server is the OneMember GraphQL backend-for-frontend.
//
//	server [serve]                    run the API (applies migrations first)
//	server migrate [up]               apply migrations and exit
//	server migrate diff NAME          write a migration for ent schema changes
//	server migrate check              fail if migrations/ lags the ent schema
//	server migrate hash               rewrite atlas.sum after adding a hand-written migration
//	server seed [--seed N] [--members N]   load deterministic demo data
//	server verify-ledgers             check every balance against its entries
//	server mint-tokens [--count N] [--seed S] [--with-history] [--member-numbers|--api-client]
//	                                  credentials for scripts/bench.sh (internal/benchtool)
//
// Configuration comes from the environment (README.md lists it).
package main

//go:generate go run -mod=mod ./ent/entc.go
//go:generate go run -mod=mod ./cmd/gqlgen

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/onemember/onemember/internal/app"
	"github.com/onemember/onemember/internal/benchtool"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/platform/config"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/migrate"
	"github.com/onemember/onemember/internal/platform/obs"
	"github.com/onemember/onemember/internal/platform/schemadiff"
	"github.com/onemember/onemember/internal/seed"
	"github.com/onemember/onemember/migrations"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	cfg, err := config.Load()
	if err != nil {
		return err
	}
	log := obs.NewLogger(os.Stderr, cfg.LogFormat, cfg.LogLevel)
	switch cmd {
	case "serve":
		return serve(ctx, cfg, log)
	case "migrate":
		return migrateCmd(ctx, cfg, log, args)
	case "seed":
		return seedCmd(ctx, cfg, log, args)
	case "verify-ledgers":
		return verifyLedgers(ctx, cfg, log)
	case "mint-tokens":
		return mintTokens(ctx, cfg, log, args)
	}
	return fmt.Errorf("unknown command %q (serve, migrate, seed, verify-ledgers, mint-tokens)", cmd)
}

func serve(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	if os.Getenv("GOGC") == "" {
		// A request allocates tens of kilobytes that die with it, while the
		// live heap stays small; collecting at 5× the live heap instead of
		// 2× halves the collector's CPU (about a fifth of MemberHome's
		// server time at the default). GOGC and GOMEMLIMIT still override.
		debug.SetGCPercent(defaultGCPercent)
	}
	a, err := app.New(ctx, cfg, log, app.Options{})
	if err != nil {
		return err
	}
	defer a.Close()
	srv := &http.Server{
		Addr:              cfg.ListenAddr,
		Handler:           a.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	jobsCtx, stopJobs := context.WithCancel(ctx)
	jobsDone := make(chan struct{})
	go func() { a.Background(jobsCtx); close(jobsDone) }()
	defer func() { stopJobs(); <-jobsDone }()
	log.Info("serving", "addr", cfg.ListenAddr, "env", cfg.Env)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "grace", cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	// Shutdown does not wait for hijacked (websocket) connections; the
	// process exit closes them and apps resume by cursor.
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutting down: %w", err)
	}
	return nil
}

// defaultGCPercent is the server's GOGC when the environment sets none.
const defaultGCPercent = 400

func migrateCmd(ctx context.Context, cfg *config.Config, log *slog.Logger, args []string) error {
	sub := "up"
	if len(args) > 0 {
		sub, args = args[0], args[1:]
	}
	switch sub {
	case "up":
		db, err := database.Open(ctx, cfg.DatabaseURL, database.Options{})
		if err != nil {
			return err
		}
		defer db.Close()
		return migrate.Up(ctx, db, migrations.FS, log)
	case "diff":
		if len(args) != 1 {
			return errors.New("usage: server migrate diff NAME")
		}
		dev, drop, err := database.Scratch(ctx, cfg.DatabaseURL)
		if err != nil {
			return err
		}
		defer drop()
		created, err := schemadiff.Generate(ctx, dev, "migrations", args[0])
		if err != nil {
			return err
		}
		if len(created) == 0 {
			log.Info("schema and migrations agree; nothing written")
		}
		for _, f := range created {
			log.Info("wrote migration", "file", f)
		}
		return nil
	case "check":
		dev, drop, err := database.Scratch(ctx, cfg.DatabaseURL)
		if err != nil {
			return err
		}
		defer drop()
		return schemadiff.Check(ctx, dev, "migrations")
	case "hash":
		return schemadiff.Rehash("migrations")
	}
	return fmt.Errorf("unknown migrate command %q (up, diff, check, hash)", sub)
}

func seedCmd(ctx context.Context, cfg *config.Config, log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("seed", flag.ContinueOnError)
	s := fs.Int64("seed", 1, "random seed: the same seed gives the same data")
	members := fs.Int("members", 2000, "members to create")
	noHistory := fs.Bool("no-history", false, "skip the two years of orders, top-ups and paid cards")
	if err := fs.Parse(args); err != nil {
		return err
	}
	a, err := app.New(ctx, cfg, log, app.Options{})
	if err != nil {
		return err
	}
	defer a.Close()
	return seed.Run(ctx, a, seed.Options{Seed: *s, Members: *members, SkipHistory: *noHistory, AdminPassword: os.Getenv("SEED_ADMIN_PASSWORD")})
}

// mintTokens prints benchmark credentials (internal/benchtool); it refuses
// to run in production, before touching the database.
func mintTokens(ctx context.Context, cfg *config.Config, log *slog.Logger, args []string) error {
	o, err := benchtool.ParseArgs(args, os.Stderr)
	if err != nil {
		return err
	}
	if err := benchtool.Allowed(cfg); err != nil {
		return err
	}
	a, err := app.New(ctx, cfg, log, app.Options{})
	if err != nil {
		return err
	}
	defer a.Close()
	return benchtool.Run(ctx, a, o, os.Stdout)
}

// verifyLedgers checks that every balance equals the sum of its entries and
// every points lot adds up; it exits non-zero otherwise.
func verifyLedgers(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	a, err := app.New(ctx, cfg, log, app.Options{})
	if err != nil {
		return err
	}
	defer a.Close()
	report, err := ledger.Verify(ctx, a.DB)
	if err != nil {
		return err
	}
	for _, p := range report.Problems {
		fmt.Println(p)
	}
	if len(report.Problems) > 0 {
		return fmt.Errorf("%d ledger problems in %d accounts", len(report.Problems), report.Accounts)
	}
	fmt.Printf("ledgers verified: %d accounts, every balance equals the sum of its entries\n", report.Accounts)
	return nil
}
