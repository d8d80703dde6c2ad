package ledger_test

import (
	"testing"
	"time"

	"github.com/onemember/onemember/internal/ledger"
)

func TestExpiringIn(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 6, 15, 2, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	groups := func(days ...int) []ledger.Expiring {
		out := make([]ledger.Expiring, len(days))
		for i, d := range days {
			out[i] = ledger.Expiring{Amount: int64(10 * (i + 1)), ExpiresAt: now.Add(time.Duration(d) * day)}
		}
		return out
	}
	tests := []struct {
		name   string
		groups []ledger.Expiring
		limit  int
		within time.Duration
		want   int // how many of groups, -1 for not known
	}{
		{"none", nil, 3, 30 * day, 0},
		{"fewer than read: all known", groups(1, 5, 40), 4, 30 * day, 2},
		{"the window's end is in", groups(1, 30, 31), 3, 30 * day, 2},
		{"as many as read, the last beyond", groups(1, 2, 31), 3, 30 * day, 2},
		{"as many as read, all in: the next may be too", groups(1, 2, 3), 3, 30 * day, -1},
		{"nothing in the window", groups(31, 32, 33), 3, 30 * day, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ledger.ExpiringIn(tt.groups, tt.limit, now, tt.within)
			if tt.want < 0 {
				if ok {
					t.Fatalf("known: %v", got)
				}
				return
			}
			if !ok || len(got) != tt.want {
				t.Fatalf("got %v, ok %v; want the first %d", got, ok, tt.want)
			}
			for i := range got {
				if got[i] != tt.groups[i] {
					t.Fatalf("got %v, want the first %d of %v", got, tt.want, tt.groups)
				}
			}
		})
	}
}
