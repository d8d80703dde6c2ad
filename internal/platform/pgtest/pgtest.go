// Package pgtest gives tests throw-away PostgreSQL databases.
//
// The server comes from DATABASE_URL, an admin-capable URL (one allowed to
// CREATE and DROP databases); when it is unset, pgtest runs
// scripts/ensure-postgres.sh, which starts the project-local cluster and
// prints its URL. No server is a test failure, never a skip.
//
// New clones each database from a template that has the migrations already
// applied, so a database costs one CREATE DATABASE ... TEMPLATE (tens of
// milliseconds) instead of a full migration run. The template is named after
// a hash of the migration files, onemember_tmpl_<12 hex>, is built once per
// server (test processes of several packages coordinate through an advisory
// lock) and refuses connections so that nothing blocks cloning it. Building
// a template also drops templates of other hashes that are more than a day
// old; test databases left behind by a killed test process
// (onemember_test_<hex>) are not removed automatically.
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"

	"github.com/onemember/onemember/internal/platform/migrate"
)

const (
	templatePrefix = "onemember_tmpl_"
	testDBPrefix   = "onemember_test_"
	buildSuffix    = "_build"
	// templateLockKey is the advisory lock key serialising template builds
	// across test processes (arbitrary, fixed).
	templateLockKey int64 = 0x6f6e656d62 // "onemb"
	// staleAfter is the age past which another hash's template is dropped.
	staleAfter = 24 * time.Hour

	scriptTimeout = 10 * time.Minute // may install PostgreSQL with apt-get
	buildTimeout  = 5 * time.Minute
	opTimeout     = time.Minute
)

// admin caches, once per test process, the admin URL and a pool on it.
var admin struct {
	once sync.Once
	dsn  string
	db   *sql.DB
	err  error
}

// templates caches, per migration hash, that this process has made sure the
// template exists (map of string to *templateOnce).
var templates sync.Map

type templateOnce struct {
	once sync.Once
	err  error
}

// AdminDSN returns the admin URL of the test server: DATABASE_URL, or the
// URL printed by scripts/ensure-postgres.sh when DATABASE_URL is unset. It
// fails the test when no server can be reached.
func AdminDSN(t testing.TB) string {
	t.Helper()
	dsn, _ := adminDB(t)
	return dsn
}

// New returns the URL of a new, empty database with every migration in
// migrations (golang-migrate files at the root of the fs.FS; nil for none)
// applied. The database is dropped when the test and its subtests finish;
// connections still open to it then are terminated.
func New(t testing.TB, migrations fs.FS) string {
	t.Helper()
	dsn, db := adminDB(t)
	if migrations == nil {
		migrations = fstest.MapFS{}
	}
	sum, err := hashFS(migrations)
	if err != nil {
		t.Fatalf("pgtest: hashing migrations: %v", err)
	}
	tmpl := templatePrefix + sum[:12]

	entry, _ := templates.LoadOrStore(tmpl, &templateOnce{})
	e := entry.(*templateOnce)
	e.once.Do(func() { e.err = ensureTemplate(db, dsn, tmpl, migrations) })
	if e.err != nil {
		t.Fatalf("pgtest: preparing template database %s: %v", tmpl, e.err)
	}

	name := testDBPrefix + randomHex(t, 8)
	err = createFrom(db, name, tmpl)
	var pqErr *pq.Error
	if errors.As(err, &pqErr) && pqErr.Code == pqerror.InvalidCatalogName {
		// Another process dropped the template (a stale one to it) after
		// this process had made sure of it: build it again.
		if err = ensureTemplate(db, dsn, tmpl, migrations); err == nil {
			err = createFrom(db, name, tmpl)
		}
	}
	if err != nil {
		t.Fatalf("pgtest: creating database %s from %s: %v", name, tmpl, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if _, err := db.ExecContext(ctx, `DROP DATABASE IF EXISTS `+pq.QuoteIdentifier(name)+` WITH (FORCE)`); err != nil {
			t.Errorf("pgtest: dropping database %s: %v", name, err)
		}
	})
	return DSNForDB(dsn, name)
}

// DSNForDB returns base (a postgres:// URL or a key=value connection string)
// changed to connect to database dbname.
func DSNForDB(base, dbname string) string {
	if u, err := url.Parse(base); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Path = "/" + dbname
		u.RawPath = ""
		return u.String()
	}
	// lib/pq lets a later key override an earlier one.
	quoted := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(dbname)
	return strings.TrimSpace(base + " dbname='" + quoted + "'")
}

func adminDB(t testing.TB) (string, *sql.DB) {
	t.Helper()
	admin.once.Do(func() {
		admin.dsn, admin.err = resolveAdminDSN()
		if admin.err != nil {
			return
		}
		admin.db, admin.err = openPinged(admin.dsn)
	})
	if admin.err != nil {
		t.Fatalf("pgtest: no PostgreSQL server for tests: %v", admin.err)
	}
	return admin.dsn, admin.db
}

func resolveAdminDSN() (string, error) {
	if dsn := os.Getenv("DATABASE_URL"); dsn != "" {
		return dsn, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", fmt.Errorf("DATABASE_URL is unset and %w", err)
	}
	script := filepath.Join(root, "scripts", "ensure-postgres.sh")
	ctx, cancel := context.WithTimeout(context.Background(), scriptTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("DATABASE_URL is unset and %s failed: %w\n%s", script, err, stderr.Bytes())
	}
	for line := range strings.Lines(stdout.String()) {
		if dsn, ok := strings.CutPrefix(strings.TrimSpace(line), "DATABASE_URL="); ok && dsn != "" {
			return dsn, nil
		}
	}
	return "", fmt.Errorf("DATABASE_URL is unset and %s printed no DATABASE_URL= line (stdout %q)\n%s", script, stdout.String(), stderr.Bytes())
}

// repoRoot walks up from the working directory to the one holding go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding the working directory: %w", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod found above the working directory")
		}
		dir = parent
	}
}

func openPinged(dsn string) (*sql.DB, error) {
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", redact(dsn), err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("connecting to %s: %w", redact(dsn), err), db.Close())
	}
	return db, nil
}

// ensureTemplate makes sure the template database tmpl exists with
// migrations applied, building it under an advisory lock that every test
// process takes, so that only one builds it.
func ensureTemplate(db *sql.DB, dsn, tmpl string, migrations fs.FS) (err error) {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("getting a connection: %w", err)
	}
	defer func() { err = errors.Join(err, conn.Close()) }()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, templateLockKey); err != nil {
		return fmt.Errorf("taking the template lock: %w", err)
	}
	defer func() {
		// The lock belongs to the session: unlock even when ctx has ended,
		// and never pool a connection that may still hold it.
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		if _, uerr := conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1)`, templateLockKey); uerr != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
			err = errors.Join(err, fmt.Errorf("releasing the template lock: %w", uerr))
		}
	}()

	var exists bool
	if err := conn.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, tmpl).Scan(&exists); err != nil {
		return fmt.Errorf("looking for the template: %w", err)
	}
	if exists {
		return nil
	}
	dropStaleTemplates(ctx, conn, tmpl)

	// Build under another name and rename when complete, so that the
	// template's name only ever denotes a fully migrated database.
	build := tmpl + buildSuffix
	if _, err := conn.ExecContext(ctx, `DROP DATABASE IF EXISTS `+pq.QuoteIdentifier(build)+` WITH (FORCE)`); err != nil {
		return fmt.Errorf("dropping a leftover %s: %w", build, err)
	}
	if _, err := conn.ExecContext(ctx, `CREATE DATABASE `+pq.QuoteIdentifier(build)+` TEMPLATE template0`); err != nil {
		return fmt.Errorf("creating %s: %w", build, err)
	}
	if err := migrateDB(ctx, DSNForDB(dsn, build), migrations); err != nil {
		return err
	}
	stmts := []string{
		// RENAME waits (up to 5 s) for the closed migration sessions to end.
		`ALTER DATABASE ` + pq.QuoteIdentifier(build) + ` RENAME TO ` + pq.QuoteIdentifier(tmpl),
		// A connection to a template makes cloning it fail: allow none.
		`ALTER DATABASE ` + pq.QuoteIdentifier(tmpl) + ` WITH ALLOW_CONNECTIONS false`,
		`COMMENT ON DATABASE ` + pq.QuoteIdentifier(tmpl) + ` IS ` + pq.QuoteLiteral("pgtest template built "+time.Now().UTC().Format(time.RFC3339)),
	}
	for _, s := range stmts {
		if _, err := conn.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("finishing the template: %w", err)
		}
	}
	return nil
}

func migrateDB(ctx context.Context, dsn string, migrations fs.FS) (err error) {
	db, err := openPinged(dsn)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	if err := migrate.Up(ctx, db, migrations, slog.New(slog.DiscardHandler)); err != nil {
		return fmt.Errorf("applying migrations: %w", err)
	}
	return nil
}

// dropStaleTemplates drops, best effort, templates of other migration sets
// built more than staleAfter ago, and unfinished builds (none can be in
// progress: the caller holds the template lock). A plain DROP DATABASE
// fails rather than disturb a clone in progress.
func dropStaleTemplates(ctx context.Context, conn *sql.Conn, keep string) {
	rows, err := conn.QueryContext(ctx, `
		SELECT d.datname, coalesce(shobj_description(d.oid, 'pg_database'), '')
		FROM pg_database d
		WHERE d.datname LIKE $1 AND d.datname <> $2`,
		strings.ReplaceAll(templatePrefix, "_", `\_`)+"%", keep)
	if err != nil {
		return
	}
	var stale []string
	for rows.Next() {
		var name, comment string
		if rows.Scan(&name, &comment) != nil {
			continue
		}
		built, perr := time.Parse(time.RFC3339, strings.TrimPrefix(comment, "pgtest template built "))
		if strings.HasSuffix(name, buildSuffix) || perr != nil || time.Since(built) > staleAfter {
			stale = append(stale, name)
		}
	}
	if rows.Close() != nil || rows.Err() != nil {
		return
	}
	for _, name := range stale {
		_, _ = conn.ExecContext(ctx, `DROP DATABASE IF EXISTS `+pq.QuoteIdentifier(name))
	}
}

func createFrom(db *sql.DB, name, tmpl string) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	_, err := db.ExecContext(ctx, `CREATE DATABASE `+pq.QuoteIdentifier(name)+` TEMPLATE `+pq.QuoteIdentifier(tmpl))
	return err
}

// hashFS returns the hex SHA-256 of every regular file's path and content.
func hashFS(fsys fs.FS) (string, error) {
	h := sha256.New()
	err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := fs.ReadFile(fsys, path)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", path, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("pgtest: random name: %v", err)
	}
	return hex.EncodeToString(b)
}

// redact hides a password in a URL for error messages.
func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		return u.Redacted()
	}
	return dsn
}
