// Package testkit holds helpers shared by the tests of several packages: a
// settable clock, the business zone, a fresh migrated database with an ent
// client on it, and small generic helpers.
//
// It is ordinary (non-_test) code so that the tests of any package can
// import it; nothing outside tests should. It imports ent, database,
// migrations and pgtest, so none of those may import it.
package testkit

import (
	"database/sql"
	"sync"
	"testing"
	"time"
	_ "time/tzdata" // the business zone without relying on the host's zoneinfo

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/pgtest"
	"github.com/onemember/onemember/migrations"
)

// Clock is a settable time source; goroutines may read and move it at once.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock reading t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time; pass c.Now where a func() time.Time is due.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// Advance moves the clock on by d (back when d is negative).
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Shanghai returns the business zone, Asia/Shanghai, failing the test when
// it cannot be loaded.
func Shanghai(t testing.TB) *time.Location {
	t.Helper()
	zone, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatalf("loading zone: %v", err)
	}
	return zone
}

// EntClient opens a fresh database with the migrations applied (see
// pgtest.New) and returns an ent client on it together with its pool, for
// tests that need raw SQL. maxOpenConns sizes the pool (0: database.Open's
// default). The client is closed when the test ends.
func EntClient(t testing.TB, maxOpenConns int) (*ent.Client, *sql.DB) {
	t.Helper()
	return OpenEntClient(t, pgtest.New(t, migrations.FS), maxOpenConns)
}

// OpenEntClient is EntClient on an existing database, dsn, for tests that
// want several clients (several pools) on one database.
func OpenEntClient(t testing.TB, dsn string, maxOpenConns int) (*ent.Client, *sql.DB) {
	t.Helper()
	return OpenEntClientWith(t, dsn, database.Options{MaxOpenConns: maxOpenConns})
}

// OpenEntClientWith is OpenEntClient with the pool's options.
func OpenEntClientWith(t testing.TB, dsn string, opts database.Options) (*ent.Client, *sql.DB) {
	t.Helper()
	sqlDB, err := database.Open(t.Context(), dsn, opts)
	if err != nil {
		t.Fatalf("opening database: %v", err)
	}
	// The statements run prepared, as in the server (database.Prepared).
	drv, err := database.Prepared(entsql.OpenDB(dialect.Postgres, sqlDB), sqlDB, 0)
	if err != nil {
		t.Fatalf("preparing driver: %v", err)
	}
	client := ent.NewClient(ent.Driver(drv))
	t.Cleanup(func() { client.Close() })
	return client, sqlDB
}

// Ptr returns a pointer to a copy of v.
func Ptr[T any](v T) *T { return &v }
