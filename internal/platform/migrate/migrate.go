// Package migrate applies the versioned SQL migrations (golang-migrate
// format: <version>_<name>.up.sql, optionally .down.sql) to PostgreSQL and
// reports how far a database is migrated. Files that do not follow that
// naming, such as atlas.sum, are ignored.
//
// Migrations run under a PostgreSQL session-level advisory lock, the same
// one golang-migrate's postgres driver uses, so replicas starting together
// never apply a migration twice: the second waits, then finds nothing to do.
package migrate

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"
	"time"

	gomigrate "github.com/golang-migrate/migrate/v4"
	migratedb "github.com/golang-migrate/migrate/v4/database"
	"github.com/golang-migrate/migrate/v4/database/postgres"
	"github.com/golang-migrate/migrate/v4/source"
	"github.com/golang-migrate/migrate/v4/source/iofs"
	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
)

// migrationsTable is where golang-migrate records the version (its default,
// in the connection's current schema).
const migrationsTable = "schema_migrations"

// unlockTimeout bounds releasing the advisory lock, which happens even when
// ctx has ended.
const unlockTimeout = 10 * time.Second

// Up applies every pending up migration in migrations (an fs.FS whose root
// holds the files) to db and logs the version before and after. Having
// nothing to apply is not an error. A database already at a version newer
// than the newest migration (an older binary after a newer one migrated) is
// left alone with a warning. A dirty database (a migration failed half-way)
// is an error that needs a person to repair it.
//
// Up uses one connection of db for its whole run and hands it back to the
// pool afterwards; db stays open and usable. When ctx ends, Up stops between
// migrations (a migration already running is not interrupted) and returns
// ctx's error.
func Up(ctx context.Context, db *sql.DB, migrations fs.FS, log *slog.Logger) (err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	src, err := iofs.New(migrations, ".")
	if err != nil {
		return fmt.Errorf("migrate: reading migrations: %w", err)
	}
	latest, ok, err := latestVersion(src)
	if err != nil {
		return err
	}
	if !ok {
		log.Warn("no migrations to apply")
		return nil
	}

	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: getting a connection: %w", err)
	}
	unlock, err := lock(ctx, conn)
	if err != nil {
		return errors.Join(err, conn.Close())
	}
	defer func() { err = errors.Join(err, unlock(), conn.Close()) }()

	// WithConnection (unlike WithInstance) leaves db alone: the driver only
	// ever uses conn. It takes the same advisory lock again, which PostgreSQL
	// grants at once to the session already holding it.
	drv, err := postgres.WithConnection(ctx, conn, &postgres.Config{MigrationsTable: migrationsTable})
	if err != nil {
		return fmt.Errorf("migrate: preparing the %s table: %w", migrationsTable, err)
	}
	// m.Close is deliberately not called: it would close the caller's
	// migrations fs.FS if that is an io.Closer, and otherwise only closes
	// conn, which the deferred func does.
	m, err := gomigrate.NewWithInstance("iofs", src, "postgres", drv)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	m.Log = migrateLogger{log: log}

	before, dirty, err := drv.Version()
	if err != nil {
		return fmt.Errorf("migrate: reading the schema version: %w", err)
	}
	if dirty {
		return fmt.Errorf("migrate: database is dirty at version %d (a migration failed part-way; repair it by hand, then fix the version in %s)", before, migrationsTable)
	}
	switch {
	case before >= 0 && uint(before) == latest:
		log.Info("database schema is up to date", "version", before)
		return nil
	case before >= 0 && uint(before) > latest:
		log.Warn("database schema is newer than this binary's migrations; not migrating",
			"version", before, "latest_known", latest)
		return nil
	}
	log.Info("migrating database schema", "from", max(before, 0), "to", latest)

	stop := context.AfterFunc(ctx, func() { m.GracefulStop <- true })
	defer stop()
	upErr := m.Up()
	if errors.Is(upErr, gomigrate.ErrNoChange) {
		upErr = nil
	}
	after, dirty, verr := drv.Version()
	if upErr != nil {
		return fmt.Errorf("migrate: applying migrations (now at version %d, dirty=%t): %w", after, dirty, upErr)
	}
	if verr != nil {
		return fmt.Errorf("migrate: reading the schema version: %w", verr)
	}
	if err := ctx.Err(); err != nil && uint(max(after, 0)) < latest {
		return fmt.Errorf("migrate: stopped at version %d of %d: %w", after, latest, err)
	}
	log.Info("database schema migrated", "from", max(before, 0), "to", after)
	return nil
}

// Status reports the version db is at (0 when no migration was ever
// applied), the newest version in migrations, and whether db is dirty (a
// migration failed part-way). It only reads, takes no lock, and does not
// wait for a migration in progress, so it suits readiness probes: the
// database is fully migrated when !dirty && current >= latest.
func Status(ctx context.Context, db *sql.DB, migrations fs.FS) (current uint, latest uint, dirty bool, err error) {
	src, err := iofs.New(migrations, ".")
	if err != nil {
		return 0, 0, false, fmt.Errorf("migrate: reading migrations: %w", err)
	}
	if latest, _, err = latestVersion(src); err != nil {
		return 0, 0, false, err
	}

	var version int64
	// Unqualified, the table resolves through search_path like golang-migrate's
	// current_schema(). It holds at most one row.
	err = db.QueryRowContext(ctx, `SELECT version, dirty FROM `+pq.QuoteIdentifier(migrationsTable)+` LIMIT 1`).Scan(&version, &dirty)
	var pqErr *pq.Error
	switch {
	case errors.Is(err, sql.ErrNoRows), errors.As(err, &pqErr) && pqErr.Code == pqerror.UndefinedTable:
		return 0, latest, false, nil
	case err != nil:
		return 0, latest, false, fmt.Errorf("migrate: reading the schema version: %w", err)
	}
	return uint(max(version, 0)), latest, dirty, nil
}

// latestVersion returns the highest migration version in src; ok is false
// when src holds no migration.
func latestVersion(src source.Driver) (latest uint, ok bool, err error) {
	v, err := src.First()
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("migrate: reading migrations: %w", err)
	}
	for {
		next, err := src.Next(v)
		if errors.Is(err, fs.ErrNotExist) {
			return v, true, nil
		}
		if err != nil {
			return 0, false, fmt.Errorf("migrate: reading migrations: %w", err)
		}
		v = next
	}
}

// lock takes golang-migrate's advisory lock on conn, waiting as long as ctx
// allows (golang-migrate itself gives up after 15 s, too short for a slow
// migration in another replica), and returns the function releasing it.
func lock(ctx context.Context, conn *sql.Conn) (func() error, error) {
	var dbName, schema sql.NullString
	if err := conn.QueryRowContext(ctx, `SELECT current_database(), current_schema()`).Scan(&dbName, &schema); err != nil {
		return nil, fmt.Errorf("migrate: reading the current database: %w", err)
	}
	if !schema.Valid {
		return nil, errors.New("migrate: no current schema (check search_path)")
	}
	// The same key as postgres.Postgres.Lock computes.
	key, err := migratedb.GenerateAdvisoryLockId(dbName.String, schema.String, migrationsTable)
	if err != nil {
		return nil, fmt.Errorf("migrate: computing the lock key: %w", err)
	}
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1::bigint)`, key); err != nil {
		return nil, fmt.Errorf("migrate: taking the migration lock: %w", err)
	}
	return func() error {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), unlockTimeout)
		defer cancel()
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1::bigint)`, key); err != nil {
			// Never hand a connection still holding the lock back to the
			// pool: discarding it ends the session and so the lock.
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			return fmt.Errorf("migrate: releasing the migration lock: %w", err)
		}
		return nil
	}, nil
}

// migrateLogger adapts slog to golang-migrate's Logger.
type migrateLogger struct{ log *slog.Logger }

func (l migrateLogger) Printf(format string, v ...any) {
	l.log.Info("migrate: " + strings.TrimSpace(fmt.Sprintf(format, v...)))
}

func (l migrateLogger) Verbose() bool { return false }
