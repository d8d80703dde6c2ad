package loader

import (
	"context"
	"errors"
	"testing"
)

func TestOnceAndPeek(t *testing.T) {
	ctx := context.WithValue(t.Context(), key{}, New(nil))
	if _, ok := Peek[int](ctx, "k"); ok || Started(ctx, "k") {
		t.Fatal("Peek or Started answered before Once")
	}
	calls := 0
	f := func() (int, error) { calls++; return 42, nil }
	for range 2 {
		if v, err := Once(ctx, "k", f); v != 42 || err != nil {
			t.Fatalf("Once = %d, %v", v, err)
		}
	}
	if calls != 1 {
		t.Fatalf("computed %d times, want once", calls)
	}
	if v, ok := Peek[int](ctx, "k"); !ok || v != 42 || !Started(ctx, "k") {
		t.Fatalf("Peek = %d, %v; Started %v", v, ok, Started(ctx, "k"))
	}
	if _, ok := Peek[string](ctx, "k"); ok {
		t.Fatal("Peek answered a value of another type")
	}
	boom := errors.New("boom")
	if _, err := Once(ctx, "bad", func() (int, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Fatalf("Once error = %v", err)
	}
	if _, ok := Peek[int](ctx, "bad"); ok {
		t.Fatal("Peek answered a failed computation")
	}
	// Outside an operation Once computes every time and Peek knows nothing.
	if v, _ := Once(t.Context(), "k", f); v != 42 || calls != 2 {
		t.Fatalf("Once outside an operation: %d after %d calls", v, calls)
	}
	if _, ok := Peek[int](t.Context(), "k"); ok {
		t.Fatal("Peek answered outside an operation")
	}
}
