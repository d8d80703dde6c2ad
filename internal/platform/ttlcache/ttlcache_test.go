package ttlcache

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestValue(t *testing.T) {
	c := Value[int]{TTL: 50 * time.Millisecond}
	loads := 0
	load := func(context.Context) (int, error) { loads++; return loads, nil }
	for range 3 {
		if v, _ := c.Get(t.Context(), load); v != 1 {
			t.Fatalf("got %d, want the first load", v)
		}
	}
	time.Sleep(60 * time.Millisecond)
	if v, _ := c.Get(t.Context(), load); v != 2 {
		t.Fatalf("after the TTL got %d, want a reload", v)
	}
	c.Forget()
	if v, _ := c.Get(t.Context(), load); v != 3 {
		t.Fatalf("after Forget got %d, want a reload", v)
	}
	boom := errors.New("boom")
	c.Forget()
	if _, err := c.Get(t.Context(), func(context.Context) (int, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("error not returned: %v", err)
	}
	if v, _ := c.Get(t.Context(), load); v != 4 {
		t.Fatalf("a failed load was cached: %d", v)
	}
}
