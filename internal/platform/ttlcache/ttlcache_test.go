package ttlcache

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

func TestMap(t *testing.T) {
	c := Map[int, string]{TTL: 50 * time.Millisecond, Max: 3}
	if _, ok := c.Get(1); ok {
		t.Fatal("an empty map answered")
	}
	var asked [][]int
	load := func(_ context.Context, keys []int) (map[int]string, error) {
		asked = append(asked, keys)
		out := map[int]string{}
		for _, k := range keys {
			if k != 404 {
				out[k] = fmt.Sprint("v", k)
			}
		}
		return out, nil
	}
	got, err := c.GetMany(t.Context(), []int{1, 2, 1, 404}, load)
	if err != nil || len(got) != 2 || got[1] != "v1" || got[2] != "v2" {
		t.Fatalf("GetMany = %v, %v", got, err)
	}
	if len(asked) != 1 || !slices.Equal(asked[0], []int{1, 2, 404}) {
		t.Fatalf("loads %v, want one of 1, 2, 404", asked)
	}
	if got, _ := c.GetMany(t.Context(), []int{2, 3}, load); got[2] != "v2" || got[3] != "v3" || !slices.Equal(asked[1], []int{3}) {
		t.Fatalf("second GetMany = %v, loads %v: want only 3 loaded", got, asked)
	}
	// Full (1, 2, 3 fresh): a new key starts over.
	c.Put(4, "v4")
	if _, ok := c.Get(1); ok {
		t.Fatal("a full map kept its entries")
	}
	if v, ok := c.Get(4); !ok || v != "v4" {
		t.Fatalf("Get(4) = %q, %v", v, ok)
	}
	time.Sleep(60 * time.Millisecond)
	if _, ok := c.Get(4); ok {
		t.Fatal("an entry outlived the TTL")
	}
	c.Put(5, "v5")
	c.Forget(5)
	if _, ok := c.Get(5); ok {
		t.Fatal("Forget kept the entry")
	}
	boom := errors.New("boom")
	if _, err := c.GetMany(t.Context(), []int{6}, func(context.Context, []int) (map[int]string, error) { return nil, boom }); !errors.Is(err, boom) {
		t.Fatalf("error not returned: %v", err)
	}
	var zero Map[int, int]
	zero.Put(1, 1)
	if _, ok := zero.Get(1); ok {
		t.Fatal("the zero Map cached")
	}
}
