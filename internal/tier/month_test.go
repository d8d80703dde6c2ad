package tier

import (
	"testing"
	"time"

	"github.com/onemember/onemember/internal/platform/testkit"
)

func TestAddMonths(t *testing.T) {
	t.Parallel()
	sh := testkit.Shanghai(t)
	at := func(y int, m time.Month, d, h int) time.Time { return time.Date(y, m, d, h, 0, 0, 0, sh) }
	tests := []struct {
		name string
		in   time.Time
		n    int
		want time.Time
	}{
		{"a year on", at(2025, 6, 15, 10), 12, at(2026, 6, 15, 10)},
		{"month end clamps", at(2026, 1, 31, 9), 1, at(2026, 2, 28, 9)},
		{"leap day a year on", at(2024, 2, 29, 8), 12, at(2025, 2, 28, 8)},
		{"leap day four years on", at(2024, 2, 29, 8), 48, at(2028, 2, 29, 8)},
		{"back a year", at(2026, 6, 15, 10), -12, at(2025, 6, 15, 10)},
		{"back into a short month", at(2026, 3, 31, 0), -1, at(2026, 2, 28, 0)},
		// 2026-03-31 20:00 UTC is already 1 April in Shanghai: months are
		// counted in the business zone, not in UTC.
		{"zone decides the day", time.Date(2026, 3, 31, 20, 0, 0, 0, time.UTC), 1, at(2026, 5, 1, 4)},
	}
	for _, tt := range tests {
		if got := addMonths(tt.in, tt.n, sh); !got.Equal(tt.want) {
			t.Errorf("%s: addMonths(%v, %d) = %v, want %v", tt.name, tt.in, tt.n, got, tt.want)
		}
	}
}

func TestMonthBounds(t *testing.T) {
	t.Parallel()
	sh := testkit.Shanghai(t)
	// 31 May 16:30 UTC is 1 June 00:30 in Shanghai: June's spend.
	from, to := monthBounds(time.Date(2026, 5, 31, 16, 30, 0, 0, time.UTC), sh)
	if want := time.Date(2026, 6, 1, 0, 0, 0, 0, sh); !from.Equal(want) {
		t.Errorf("from = %v, want %v", from, want)
	}
	if want := time.Date(2026, 7, 1, 0, 0, 0, 0, sh); !to.Equal(want) {
		t.Errorf("to = %v, want %v", to, want)
	}
}
