package migrate_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	_ "github.com/lib/pq"

	"github.com/onemember/onemember/internal/platform/migrate"
	"github.com/onemember/onemember/internal/platform/pgtest"
)

// twoMigrations has no IF NOT EXISTS anywhere: applying a migration twice
// fails. The first sleeps so that concurrent runs overlap.
func twoMigrations() fstest.MapFS {
	return fstest.MapFS{
		"1_member.up.sql":   {Data: []byte(`SELECT pg_sleep(0.5); CREATE TABLE member (id bigint PRIMARY KEY);`)},
		"1_member.down.sql": {Data: []byte(`DROP TABLE member;`)},
		"2_phone.up.sql":    {Data: []byte(`ALTER TABLE member ADD COLUMN phone text NOT NULL;`)},
		"atlas.sum":         {Data: []byte("h1:whatever=\n1_member.up.sql h1:x=\n")},
	}
}

// emptyDB returns a pool on a fresh database with no migrations applied.
func emptyDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", pgtest.New(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func status(t *testing.T, db *sql.DB, fsys fstest.MapFS) (current, latest uint, dirty bool) {
	t.Helper()
	current, latest, dirty, err := migrate.Status(t.Context(), db, fsys)
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	return current, latest, dirty
}

func TestUpAndStatus(t *testing.T) {
	t.Parallel()
	db := emptyDB(t)
	db.SetMaxOpenConns(1) // Up must hand its connection back
	fsys := twoMigrations()

	if cur, latest, dirty := status(t, db, fsys); cur != 0 || latest != 2 || dirty {
		t.Fatalf("before Up: Status = %d, %d, %t; want 0, 2, false", cur, latest, dirty)
	}

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	if err := migrate.Up(t.Context(), db, fsys, log); err != nil {
		t.Fatalf("Up: %v", err)
	}
	if cur, latest, dirty := status(t, db, fsys); cur != 2 || latest != 2 || dirty {
		t.Fatalf("after Up: Status = %d, %d, %t; want 2, 2, false", cur, latest, dirty)
	}
	// The caller's pool is still open, and the advisory lock was released.
	if _, err := db.ExecContext(t.Context(), `INSERT INTO member (id, phone) VALUES (1, '+86')`); err != nil {
		t.Fatalf("db unusable after Up: %v", err)
	}
	var free bool
	if err := db.QueryRowContext(t.Context(), `SELECT count(*) = 0 FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&free); err != nil || !free {
		t.Fatalf("advisory lock still held after Up (free=%t, err=%v)", free, err)
	}
	for _, want := range []string{"from=0 to=2", "1/u member", "2/u phone"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}

	// Again: nothing to do is not an error.
	logs.Reset()
	if err := migrate.Up(t.Context(), db, fsys, log); err != nil {
		t.Fatalf("second Up: %v", err)
	}
	if !strings.Contains(logs.String(), "up to date") {
		t.Errorf("second Up did not log that the schema is up to date:\n%s", logs.String())
	}

	// A new migration is picked up; Status sees it pending first.
	fsys["3_email.up.sql"] = &fstest.MapFile{Data: []byte(`ALTER TABLE member ADD COLUMN email text;`)}
	if cur, latest, _ := status(t, db, fsys); cur != 2 || latest != 3 {
		t.Fatalf("with a new file: Status = %d, %d; want 2, 3", cur, latest)
	}
	if err := migrate.Up(t.Context(), db, fsys, nil); err != nil {
		t.Fatalf("Up with a third migration: %v", err)
	}
	if cur, _, _ := status(t, db, fsys); cur != 3 {
		t.Fatalf("current = %d, want 3", cur)
	}

	// An older binary (knowing only 1 and 2) leaves a newer schema alone.
	if err := migrate.Up(t.Context(), db, twoMigrations(), nil); err != nil {
		t.Fatalf("Up with older migrations: %v", err)
	}
}

func TestConcurrentUp(t *testing.T) {
	t.Parallel()
	dsn := pgtest.New(t, nil)
	fsys := twoMigrations()

	// Separate pools, as separate processes would have.
	const n = 4
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		db, err := sql.Open("postgres", dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		wg.Go(func() { errs[i] = migrate.Up(t.Context(), db, fsys, nil) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent Up: %v", err)
	}
	db := emptyDBFrom(t, dsn)
	if cur, latest, dirty := status(t, db, fsys); cur != 2 || latest != 2 || dirty {
		t.Fatalf("Status = %d, %d, %t; want 2, 2, false", cur, latest, dirty)
	}
}

func TestUpFailingMigrationLeavesDirty(t *testing.T) {
	t.Parallel()
	db := emptyDB(t)
	fsys := fstest.MapFS{
		"1_ok.up.sql":     {Data: []byte(`CREATE TABLE a (id int);`)},
		"2_broken.up.sql": {Data: []byte(`CREATE TABLE b (id int); SELECT no_such_column FROM a;`)},
	}
	err := migrate.Up(t.Context(), db, fsys, nil)
	if err == nil || !strings.Contains(err.Error(), "no_such_column") {
		t.Fatalf("Up = %v, want the migration's error", err)
	}
	if cur, _, dirty := status(t, db, fsys); cur != 2 || !dirty {
		t.Fatalf("Status = %d, dirty=%t; want 2, dirty", cur, dirty)
	}
	if err := migrate.Up(t.Context(), db, fsys, nil); err == nil || !strings.Contains(err.Error(), "dirty") {
		t.Fatalf("Up on a dirty database = %v, want a dirty error", err)
	}
}

func TestUpCanceled(t *testing.T) {
	t.Parallel()
	db := emptyDB(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := migrate.Up(ctx, db, twoMigrations(), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Up with a canceled context = %v, want context.Canceled", err)
	}
	if err := db.PingContext(t.Context()); err != nil {
		t.Fatalf("db unusable after a canceled Up: %v", err)
	}
}

func TestNoMigrations(t *testing.T) {
	t.Parallel()
	db := emptyDB(t)
	if err := migrate.Up(t.Context(), db, fstest.MapFS{"atlas.sum": {Data: []byte("x")}}, nil); err != nil {
		t.Fatalf("Up without migrations: %v", err)
	}
	if cur, latest, dirty := status(t, db, fstest.MapFS{}); cur != 0 || latest != 0 || dirty {
		t.Fatalf("Status = %d, %d, %t; want zeros", cur, latest, dirty)
	}
}

func emptyDBFrom(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
