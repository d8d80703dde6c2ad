package testkit_test

import (
	"sync"
	"testing"
	"time"

	"github.com/onemember/onemember/internal/platform/testkit"
)

func TestClock(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2025, 3, 10, 12, 0, 0, 0, time.UTC)
	c := testkit.NewClock(t0)
	if got := c.Now(); !got.Equal(t0) {
		t.Fatalf("Now = %v, want %v", got, t0)
	}
	c.Advance(90 * time.Minute)
	if got, want := c.Now(), t0.Add(90*time.Minute); !got.Equal(want) {
		t.Fatalf("after Advance: Now = %v, want %v", got, want)
	}
	c.Set(t0)
	if got := c.Now(); !got.Equal(t0) {
		t.Fatalf("after Set: Now = %v, want %v", got, t0)
	}

	// Concurrent Advance calls all land (run with -race).
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Advance(time.Second)
			_ = c.Now()
		}()
	}
	wg.Wait()
	if got, want := c.Now(), t0.Add(50*time.Second); !got.Equal(want) {
		t.Fatalf("after concurrent Advance: Now = %v, want %v", got, want)
	}
}

func TestShanghai(t *testing.T) {
	t.Parallel()
	zone := testkit.Shanghai(t)
	if zone.String() != "Asia/Shanghai" {
		t.Fatalf("zone = %s", zone)
	}
	if _, off := time.Date(2025, 7, 1, 0, 0, 0, 0, zone).Zone(); off != 8*3600 {
		t.Fatalf("offset = %d, want +8h", off)
	}
}

func TestPtr(t *testing.T) {
	t.Parallel()
	v := 3
	p := testkit.Ptr(v)
	if *p != 3 || p == &v {
		t.Fatalf("Ptr(3) = %p → %d", p, *p)
	}
}

func TestEntClient(t *testing.T) {
	t.Parallel()
	client, sqlDB := testkit.EntClient(t, 3)
	if got := sqlDB.Stats().MaxOpenConnections; got != 3 {
		t.Fatalf("MaxOpenConnections = %d, want 3", got)
	}
	// The schema is migrated: ent can query, and raw SQL shares the pool.
	if _, err := client.Member.Query().Count(t.Context()); err != nil {
		t.Fatalf("querying members through ent: %v", err)
	}
	var n int
	if err := sqlDB.QueryRowContext(t.Context(), "SELECT count(*) FROM members").Scan(&n); err != nil {
		t.Fatalf("raw SQL: %v", err)
	}
	if n != 0 {
		t.Fatalf("%d members in a fresh database", n)
	}
}
