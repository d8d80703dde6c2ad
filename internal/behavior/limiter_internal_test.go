package behavior

import (
	"testing"
	"time"
)

// TestLimitersStayBounded: buckets idle and full for over ten minutes are
// dropped at the next sweep; a bucket still refilling is kept.
func TestLimitersStayBounded(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiters(10, 200)
	for id := range 5000 {
		if !l.allow(id, 100, t0) {
			t.Fatalf("member %d refused a first call", id)
		}
	}
	if n := l.size(); n != 5000 {
		t.Fatalf("%d buckets, want 5000", n)
	}
	l.allow(-1, 1, t0.Add(idleAfter+time.Second))
	if n := l.size(); n != 1 {
		t.Fatalf("%d buckets after the idle ones went, want 1", n)
	}

	// A slow bucket still refilling is not idle: dropping it would give
	// its member a fresh burst.
	slow := newLimiters(0.001, 5)
	slow.allow(1, 5, t0)
	slow.allow(2, 1, t0.Add(idleAfter+time.Second))
	if n := slow.size(); n != 2 {
		t.Fatalf("%d slow buckets, want 2", n)
	}
	if slow.allow(1, 1, t0.Add(idleAfter+2*time.Second)) {
		t.Fatal("member 1 got tokens back early")
	}
}

// TestLimitersCap: past maxLimiters, a sweep brings the map back under
// 90% of the cap even when no bucket is idle.
func TestLimitersCap(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newLimiters(0.001, 5)
	for id := range maxLimiters + 10 {
		l.allow(id, 1, t0)
	}
	if n := l.size(); n > maxLimiters {
		t.Fatalf("%d buckets, over the cap %d", n, maxLimiters)
	}
}
