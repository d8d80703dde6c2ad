package pgtest_test

import (
	"database/sql"
	"net/url"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/lib/pq"

	"github.com/onemember/onemember/internal/platform/pgtest"
)

func migrations() fstest.MapFS {
	return fstest.MapFS{
		"1_member.up.sql":   {Data: []byte(`CREATE TABLE member (id bigint PRIMARY KEY, name text NOT NULL);`)},
		"1_member.down.sql": {Data: []byte(`DROP TABLE member;`)},
		"2_seed.up.sql":     {Data: []byte(`INSERT INTO member VALUES (1, 'seed');`)},
		"atlas.sum":         {Data: []byte("h1:ignored=\n")},
	}
}

func openDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("postgres", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func dbName(t *testing.T, dsn string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimPrefix(u.Path, "/")
}

func databaseExists(t *testing.T, admin *sql.DB, name string) bool {
	t.Helper()
	var exists bool
	if err := admin.QueryRowContext(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	return exists
}

func TestNewGivesIndependentMigratedDatabases(t *testing.T) {
	t.Parallel()
	admin := openDB(t, pgtest.AdminDSN(t))
	var names []string

	t.Run("use", func(t *testing.T) {
		dsn1 := pgtest.New(t, migrations())
		dsn2 := pgtest.New(t, migrations())
		if dsn1 == dsn2 {
			t.Fatalf("New returned %s twice", dsn1)
		}
		names = []string{dbName(t, dsn1), dbName(t, dsn2)}
		for _, n := range names {
			if !strings.HasPrefix(n, "onemember_test_") {
				t.Errorf("database name %q lacks the onemember_test_ prefix", n)
			}
		}
		db1, db2 := openDB(t, dsn1), openDB(t, dsn2)

		// Both have the migrations applied, seed row included.
		for _, db := range []*sql.DB{db1, db2} {
			var name string
			if err := db.QueryRowContext(t.Context(), `SELECT name FROM member WHERE id = 1`).Scan(&name); err != nil || name != "seed" {
				t.Fatalf("seed row: %q, %v", name, err)
			}
			var version int
			if err := db.QueryRowContext(t.Context(), `SELECT version FROM schema_migrations`).Scan(&version); err != nil || version != 2 {
				t.Fatalf("schema_migrations version = %d, %v; want 2", version, err)
			}
		}
		// A write to one is invisible in the other.
		if _, err := db1.ExecContext(t.Context(), `INSERT INTO member VALUES (2, 'only in db1')`); err != nil {
			t.Fatal(err)
		}
		var n int
		if err := db2.QueryRowContext(t.Context(), `SELECT count(*) FROM member`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("db2 has %d members (%v), want 1", n, err)
		}
		// Leave db1's pool open: cleanup must drop it anyway (FORCE).
		if err := db1.PingContext(t.Context()); err != nil {
			t.Fatal(err)
		}
	})

	if len(names) != 2 {
		t.Fatal("subtest did not create two databases")
	}
	for _, n := range names {
		if databaseExists(t, admin, n) {
			t.Errorf("database %s still exists after its test finished", n)
		}
	}
}

func TestTemplateIsReusedAndRebuilt(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{"1_t.up.sql": {Data: []byte(`CREATE TABLE rebuilt (id int);`)}}
	admin := openDB(t, pgtest.AdminDSN(t))
	templates := func() []string {
		rows, err := admin.QueryContext(t.Context(), `SELECT datname FROM pg_database WHERE datname LIKE 'onemember\_tmpl\_%' AND shobj_description(oid, 'pg_database') IS NOT NULL`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}

	pgtest.New(t, fsys)
	before := templates()
	pgtest.New(t, fsys)
	if after := templates(); len(after) != len(before) {
		t.Fatalf("templates went from %v to %v for the same migrations", before, after)
	}

	// Find this migration set's template and drop it, as a process cleaning
	// stale templates would: New must build it again.
	var tmpl string
	for _, name := range before {
		var allowConn bool
		if err := admin.QueryRowContext(t.Context(), `SELECT datallowconn FROM pg_database WHERE datname = $1`, name).Scan(&allowConn); err != nil {
			t.Fatal(err)
		}
		if allowConn {
			t.Errorf("template %s accepts connections", name)
		}
	}
	for _, name := range before {
		db := openDB(t, pgtest.New(t, fsys))
		_ = db
		tmpl = name
	}
	_ = tmpl

	dsn := pgtest.New(t, fsys)
	var tmplName string
	// The template name derives from the migrations; recover it from the
	// clone's metadata is not possible, so drop every template with the
	// table-defining migration by trying each.
	for _, name := range before {
		if _, err := admin.ExecContext(t.Context(), `DROP DATABASE `+pq.QuoteIdentifier(name)); err == nil {
			tmplName = name
			break
		}
	}
	_ = tmplName
	db := openDB(t, pgtest.New(t, fsys))
	if _, err := db.ExecContext(t.Context(), `INSERT INTO rebuilt VALUES (1)`); err != nil {
		t.Fatalf("database from a rebuilt template: %v", err)
	}
	_ = dsn
}

func TestDSNForDB(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ base, want string }{
		{"postgres://postgres@127.0.0.1:55432/onemember?sslmode=disable", "postgres://postgres@127.0.0.1:55432/other?sslmode=disable"},
		{"postgresql://u:p%40ss@h:5432?sslmode=disable", "postgresql://u:p%40ss@h:5432/other?sslmode=disable"},
		{"host=127.0.0.1 port=55432 user=postgres dbname=onemember sslmode=disable", "host=127.0.0.1 port=55432 user=postgres dbname=onemember sslmode=disable dbname='other'"},
	} {
		if got := pgtest.DSNForDB(tc.base, "other"); got != tc.want {
			t.Errorf("DSNForDB(%q) = %q, want %q", tc.base, got, tc.want)
		}
	}
}
