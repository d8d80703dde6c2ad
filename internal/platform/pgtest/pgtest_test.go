package pgtest

import (
	"database/sql"
	"net/url"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/lib/pq"
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
	admin := openDB(t, AdminDSN(t))
	var names []string

	t.Run("use", func(t *testing.T) {
		dsn1 := New(t, migrations())
		dsn2 := New(t, migrations())
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
	// A migration set of its own, so no other test uses its template.
	fsys := fstest.MapFS{"1_t.up.sql": {Data: []byte(`CREATE TABLE rebuilt (id int);`)}}
	sum, err := hashFS(fsys)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := templatePrefix + sum[:12]
	admin := openDB(t, AdminDSN(t))

	New(t, fsys)
	var allowConn bool
	var comment string
	if err := admin.QueryRowContext(t.Context(), `SELECT datallowconn, shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1`, tmpl).Scan(&allowConn, &comment); err != nil {
		t.Fatalf("template %s: %v", tmpl, err)
	}
	if allowConn || !strings.HasPrefix(comment, "pgtest template built ") {
		t.Errorf("template %s: datallowconn=%t, comment %q", tmpl, allowConn, comment)
	}
	New(t, fsys)
	var n int
	if err := admin.QueryRowContext(t.Context(), `SELECT count(*) FROM pg_database WHERE datname LIKE $1`, tmpl+"%").Scan(&n); err != nil || n != 1 {
		t.Fatalf("%d databases named %s*, want the one template (%v)", n, tmpl, err)
	}

	// Another process dropped it (as stale): New builds it again.
	if _, err := admin.ExecContext(t.Context(), `DROP DATABASE `+pq.QuoteIdentifier(tmpl)); err != nil {
		t.Fatal(err)
	}
	db := openDB(t, New(t, fsys))
	if _, err := db.ExecContext(t.Context(), `INSERT INTO rebuilt VALUES (1)`); err != nil {
		t.Fatalf("database from the rebuilt template: %v", err)
	}
}

func TestHashFS(t *testing.T) {
	t.Parallel()
	a := fstest.MapFS{"1_a.up.sql": {Data: []byte("x")}}
	b := fstest.MapFS{"1_a.up.sql": {Data: []byte("y")}}
	c := fstest.MapFS{"1_b.up.sql": {Data: []byte("x")}}
	seen := map[string]bool{}
	for _, fsys := range []fstest.MapFS{a, b, c, {}} {
		h, err := hashFS(fsys)
		if err != nil {
			t.Fatal(err)
		}
		if seen[h] {
			t.Errorf("hash %s repeated", h)
		}
		seen[h] = true
	}
	if h1, h2 := mustHash(t, a), mustHash(t, a); h1 != h2 {
		t.Error("hash is not deterministic")
	}
}

func mustHash(t *testing.T, fsys fstest.MapFS) string {
	t.Helper()
	h, err := hashFS(fsys)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestDSNForDB(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ base, want string }{
		{"postgres://postgres@127.0.0.1:55432/onemember?sslmode=disable", "postgres://postgres@127.0.0.1:55432/other?sslmode=disable"},
		{"postgresql://u:p%40ss@h:5432?sslmode=disable", "postgresql://u:p%40ss@h:5432/other?sslmode=disable"},
		{"host=127.0.0.1 port=55432 user=postgres dbname=onemember sslmode=disable", "host=127.0.0.1 port=55432 user=postgres dbname=onemember sslmode=disable dbname='other'"},
	} {
		if got := DSNForDB(tc.base, "other"); got != tc.want {
			t.Errorf("DSNForDB(%q) = %q, want %q", tc.base, got, tc.want)
		}
	}
}
