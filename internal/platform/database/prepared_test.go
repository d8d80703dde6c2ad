package database_test

import (
	"testing"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/onemember/onemember/internal/platform/database"
)

// Statements through the prepared driver give the same answers in and out
// of transactions, stay prepared on the connection, and the cache's bound
// holds: evicted statements are not a failure for later use.
func TestPreparedDriver(t *testing.T) {
	t.Parallel()
	db := open(t, database.Options{MaxOpenConns: 2})
	drv, err := database.Prepared(entsql.OpenDB(dialect.Postgres, db), db, 2)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	query := func(q dialect.ExecQuerier, sql string, args ...any) int {
		t.Helper()
		var rows entsql.Rows
		if err := q.Query(ctx, sql, args, &rows); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		defer rows.Close()
		var n int
		if !rows.Next() {
			t.Fatalf("%s: no row", sql)
		}
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// More distinct texts than the cache holds, twice over.
	for round := range 2 {
		for i := range 5 {
			if got := query(drv, "SELECT $1::int + "+string(rune('0'+i)), 10*round); got != 10*round+i {
				t.Fatalf("round %d statement %d: %d", round, i, got)
			}
		}
	}
	var res entsql.Result
	if err := drv.Exec(ctx, "CREATE TABLE prepared_t (n int)", []any{}, &res); err != nil {
		t.Fatal(err)
	}
	// A text new to the cache runs unprepared in a transaction and is
	// prepared in the background; later transactions use it prepared on
	// their own connection.
	insert := func() {
		tx, err := drv.Tx(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		for i := range 3 {
			if err := tx.Exec(ctx, "INSERT INTO prepared_t VALUES ($1)", []any{i}, &res); err != nil {
				t.Fatal(err)
			}
		}
		if got := query(tx, "SELECT sum(n)::int FROM prepared_t"); got != 3 {
			t.Fatalf("sum in transaction = %d", got)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := drv.Exec(ctx, "TRUNCATE prepared_t", []any{}, &res); err != nil {
			t.Fatal(err)
		}
	}
	insert()
	deadline := time.Now().Add(5 * time.Second)
	for {
		insert()
		tx, err := drv.Tx(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Exec(ctx, "INSERT INTO prepared_t VALUES ($1)", []any{9}, &res); err != nil {
			t.Fatal(err)
		}
		n := query(tx, "SELECT count(*)::int FROM pg_prepared_statements WHERE statement LIKE 'INSERT INTO prepared_t%'")
		_ = tx.Rollback()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the INSERT never ran prepared")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// A statement on a temporary table of the transaction cannot be
	// prepared elsewhere: it runs as is, every time.
	tx, err := drv.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if err := tx.Exec(ctx, "CREATE TEMP TABLE tmp (n int) ON COMMIT DROP", []any{}, &res); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := tx.Exec(ctx, "INSERT INTO tmp VALUES ($1)", []any{i}, &res); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := query(tx, "SELECT sum(n)::int FROM tmp"); got != 3 {
		t.Fatalf("temporary table sum = %d", got)
	}
}
