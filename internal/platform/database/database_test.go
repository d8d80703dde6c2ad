package database_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/pgtest"
)

func open(t *testing.T, opts database.Options) *sql.DB {
	t.Helper()
	db, err := database.Open(t.Context(), pgtest.New(t, nil), opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestOpenDefaults(t *testing.T) {
	t.Parallel()
	db := open(t, database.Options{})
	if got, want := db.Stats().MaxOpenConnections, database.DefaultMaxOpenConns(); got != want {
		t.Errorf("MaxOpenConnections = %d, want %d", got, want)
	}
	var one int
	if err := db.QueryRowContext(t.Context(), `SELECT 1`).Scan(&one); err != nil || one != 1 {
		t.Errorf("SELECT 1 = %d, %v", one, err)
	}
}

func TestOpenOptions(t *testing.T) {
	t.Parallel()
	db := open(t, database.Options{MaxOpenConns: 3, MaxIdleConns: 1, ConnMaxLifetime: time.Minute, ConnMaxIdleTime: time.Second})
	if got := db.Stats().MaxOpenConnections; got != 3 {
		t.Errorf("MaxOpenConnections = %d, want 3", got)
	}
}

// Every session of a pool starts with its Runtime parameters; a pool
// without them keeps the server's defaults.
func TestOpenRuntimeParameters(t *testing.T) {
	t.Parallel()
	dsn := pgtest.New(t, nil)
	mode := func(opts database.Options) string {
		db, err := database.Open(t.Context(), dsn, opts)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer db.Close()
		var got string
		if err := db.QueryRowContext(t.Context(), `SHOW plan_cache_mode`).Scan(&got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := mode(database.Options{Runtime: map[string]string{"plan_cache_mode": "force_generic_plan"}}); got != "force_generic_plan" {
		t.Errorf("with the parameter: plan_cache_mode %q", got)
	}
	if got := mode(database.Options{}); got != "auto" {
		t.Errorf("without: plan_cache_mode %q", got)
	}
}

func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	// Port 1 on loopback: nothing listens there.
	db, err := database.Open(ctx, "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=2", database.Options{})
	if err == nil {
		db.Close()
		t.Fatal("Open succeeded against a closed port")
	}
	if !strings.Contains(err.Error(), "pinging database") {
		t.Errorf("error %q does not say what was being done", err)
	}
}

func TestErrorClassification(t *testing.T) {
	t.Parallel()
	db := open(t, database.Options{})
	ctx := t.Context()
	mustExec(t, db, `CREATE TABLE member (id int PRIMARY KEY, phone text CONSTRAINT member_phone_key UNIQUE)`)
	mustExec(t, db, `INSERT INTO member VALUES (1, '+8613800000000'), (2, '+8613800000001')`)

	t.Run("unique violation", func(t *testing.T) {
		_, err := db.ExecContext(ctx, `INSERT INTO member VALUES (3, '+8613800000000')`)
		err = fmt.Errorf("creating member: %w", err) // wrapped, as callers do
		if !database.IsUniqueViolation(err) {
			t.Fatalf("IsUniqueViolation(%v) = false", err)
		}
		if got := database.ConstraintName(err); got != "member_phone_key" {
			t.Errorf("ConstraintName = %q, want member_phone_key", got)
		}
		if database.IsSerializationFailure(err) || database.IsDeadlock(err) {
			t.Error("a unique violation is classified as retryable")
		}
	})

	t.Run("serialization failure", func(t *testing.T) {
		// Write skew: each transaction reads what the other writes.
		tx1 := begin(t, db, sql.LevelSerializable)
		tx2 := begin(t, db, sql.LevelSerializable)
		var n int
		for _, tx := range []*sql.Tx{tx1, tx2} {
			if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM member`).Scan(&n); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := tx1.ExecContext(ctx, `UPDATE member SET phone = phone || '1' WHERE id = 1`); err != nil {
			t.Fatal(err)
		}
		if err := tx1.Commit(); err != nil {
			t.Fatal(err)
		}
		// PostgreSQL may refuse tx2 at its write or at its commit.
		_, err := tx2.ExecContext(ctx, `UPDATE member SET phone = phone || '2' WHERE id = 2`)
		if err == nil {
			err = tx2.Commit()
		}
		if !database.IsSerializationFailure(err) {
			t.Fatalf("IsSerializationFailure(%v) = false", err)
		}
		if database.IsUniqueViolation(err) || database.IsDeadlock(err) {
			t.Error("misclassified")
		}
	})

	t.Run("deadlock", func(t *testing.T) {
		tx1 := begin(t, db, sql.LevelReadCommitted)
		tx2 := begin(t, db, sql.LevelReadCommitted)
		lock := func(tx *sql.Tx, id int) error {
			_, err := tx.ExecContext(ctx, `SELECT 1 FROM member WHERE id = $1 FOR UPDATE`, id)
			if err != nil {
				_ = tx.Rollback() // releases the locks the other one waits for
			}
			return err
		}
		if err := lock(tx1, 1); err != nil {
			t.Fatal(err)
		}
		if err := lock(tx2, 2); err != nil {
			t.Fatal(err)
		}
		errs := make([]error, 2)
		var wg sync.WaitGroup
		wg.Go(func() { errs[0] = lock(tx1, 2) })
		wg.Go(func() { errs[1] = lock(tx2, 1) })
		wg.Wait()
		deadlocks := 0
		for _, err := range errs {
			if database.IsDeadlock(err) {
				deadlocks++
			}
		}
		if deadlocks != 1 {
			t.Fatalf("want exactly one deadlock error, got %v", errs)
		}
	})
}

func TestClassifyNonPostgresErrors(t *testing.T) {
	t.Parallel()
	for _, err := range []error{nil, errors.New("plain"), sql.ErrNoRows, context.Canceled} {
		if database.IsUniqueViolation(err) || database.IsSerializationFailure(err) || database.IsDeadlock(err) {
			t.Errorf("%v classified as a PostgreSQL error", err)
		}
		if got := database.ConstraintName(err); got != "" {
			t.Errorf("ConstraintName(%v) = %q", err, got)
		}
	}
	for code, is := range map[string]func(error) bool{
		"23505": database.IsUniqueViolation,
		"40001": database.IsSerializationFailure,
		"40P01": database.IsDeadlock,
	} {
		err := fmt.Errorf("wrapped twice: %w", fmt.Errorf("once: %w", &pq.Error{Code: pq.ErrorCode(code)}))
		if !is(err) {
			t.Errorf("code %s not recognised through wrapping", code)
		}
	}
}

func mustExec(t *testing.T, db *sql.DB, query string) {
	t.Helper()
	if _, err := db.ExecContext(t.Context(), query); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

func begin(t *testing.T, db *sql.DB, level sql.IsolationLevel) *sql.Tx {
	t.Helper()
	tx, err := db.BeginTx(t.Context(), &sql.TxOptions{Isolation: level})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback() })
	return tx
}
