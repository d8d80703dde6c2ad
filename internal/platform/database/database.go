// Package database owns the service's connection to PostgreSQL: opening and
// sizing the *sql.DB pool (driver "postgres", github.com/lib/pq), running
// work in transactions (WithTx), throw-away scratch databases (Scratch), and
// classifying PostgreSQL errors (unique violations, serialization failures,
// deadlocks) so callers can retry or map them without knowing SQLSTATE
// codes.
package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"time"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
)

// Pool defaults applied by Open for zero Options fields.
const (
	// DefaultConnMaxLifetime recycles connections now and then so that the
	// pool follows fail-overs and DNS changes and no backend grows forever.
	DefaultConnMaxLifetime = 30 * time.Minute
	// DefaultConnMaxIdleTime closes connections idle that long, shrinking the
	// pool after a burst.
	DefaultConnMaxIdleTime = 5 * time.Minute
	// pingTimeout bounds the connectivity check in Open (on top of ctx).
	pingTimeout = 10 * time.Second
)

// Options sizes the connection pool. A zero field takes its default; any
// other value is passed to database/sql as is (so a negative MaxOpenConns
// means no limit, a negative MaxIdleConns keeps no idle connection and a
// negative duration never expires connections).
type Options struct {
	// MaxOpenConns defaults to DefaultMaxOpenConns().
	MaxOpenConns int
	// MaxIdleConns defaults to the effective MaxOpenConns, so a busy pool
	// does not keep closing and reopening connections.
	MaxIdleConns int
	// ConnMaxLifetime defaults to DefaultConnMaxLifetime.
	ConnMaxLifetime time.Duration
	// ConnMaxIdleTime defaults to DefaultConnMaxIdleTime.
	ConnMaxIdleTime time.Duration
	// Runtime are PostgreSQL run-time parameters (plan_cache_mode, ...)
	// every session of the pool starts with: lib/pq sends them in the
	// startup message, after those of dsn.
	Runtime map[string]string
}

// DefaultMaxOpenConns is the pool size used when Options.MaxOpenConns is
// zero: 4×GOMAXPROCS+4. Queries mostly wait on the network, so a few
// connections per core keep the CPU busy, while the bound keeps several
// replicas well under the server's max_connections.
func DefaultMaxOpenConns() int {
	return 4*runtime.GOMAXPROCS(0) + 4
}

// Open opens a pool on dsn (a postgres:// URL or a key=value string
// understood by lib/pq), sizes it from opts and pings the server, giving up
// after ctx ends or ten seconds, whichever comes first.
func Open(ctx context.Context, dsn string, opts Options) (*sql.DB, error) {
	cfg, err := pq.NewConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("opening database: %w", err)
	}
	if len(opts.Runtime) > 0 {
		cfg.Runtime = maps.Clone(cfg.Runtime)
		if cfg.Runtime == nil {
			cfg.Runtime = map[string]string{}
		}
		maps.Copy(cfg.Runtime, opts.Runtime)
	}
	connector, err := pq.NewConnectorConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("opening database: %w", err)
	}
	db := sql.OpenDB(connector)
	configure(db, opts)

	pingCtx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		return nil, errors.Join(fmt.Errorf("pinging database: %w", err), db.Close())
	}
	return db, nil
}

func configure(db *sql.DB, opts Options) {
	maxOpen := opts.MaxOpenConns
	if maxOpen == 0 {
		maxOpen = DefaultMaxOpenConns()
	}
	maxIdle := opts.MaxIdleConns
	if maxIdle == 0 {
		maxIdle = maxOpen
	}
	lifetime := opts.ConnMaxLifetime
	if lifetime == 0 {
		lifetime = DefaultConnMaxLifetime
	}
	idleTime := opts.ConnMaxIdleTime
	if idleTime == 0 {
		idleTime = DefaultConnMaxIdleTime
	}
	db.SetMaxOpenConns(maxOpen)
	db.SetMaxIdleConns(maxIdle)
	db.SetConnMaxLifetime(lifetime)
	db.SetConnMaxIdleTime(idleTime)
}

// IsUniqueViolation reports whether err (or an error it wraps) is a
// PostgreSQL unique_violation (23505).
func IsUniqueViolation(err error) bool {
	return hasCode(err, pqerror.UniqueViolation)
}

// IsSerializationFailure reports whether err is a PostgreSQL
// serialization_failure (40001); the transaction may be retried.
func IsSerializationFailure(err error) bool {
	return hasCode(err, pqerror.TRSerializationFailure)
}

// IsDeadlock reports whether err is a PostgreSQL deadlock_detected (40P01);
// the transaction may be retried.
func IsDeadlock(err error) bool {
	return hasCode(err, pqerror.TRDeadlockDetected)
}

// ConstraintName returns the name of the constraint err violated, or "" when
// err is not a PostgreSQL error naming one.
func ConstraintName(err error) string {
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		return pqErr.Constraint
	}
	return ""
}

func hasCode(err error, code pqerror.Code) bool {
	var pqErr *pq.Error
	return errors.As(err, &pqErr) && pqErr.Code == code
}
