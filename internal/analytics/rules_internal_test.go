package analytics

import (
	"slices"
	"testing"

	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/fault"
)

func TestSegmentOf(t *testing.T) {
	for _, c := range []struct {
		r, f, m bool
		want    enum.RfmSegment
	}{
		{true, true, true, enum.RfmImportantValue},
		{false, true, true, enum.RfmImportantKeep},
		{true, false, true, enum.RfmImportantDevelop},
		{false, false, true, enum.RfmImportantRetain},
		{true, true, false, enum.RfmGeneralValue},
		{false, true, false, enum.RfmGeneralKeep},
		{true, false, false, enum.RfmGeneralDevelop},
		{false, false, false, enum.RfmGeneralRetain},
	} {
		if got := segmentOf(c.r, c.f, c.m); got != c.want {
			t.Errorf("R %v F %v M %v: %s, want %s", c.r, c.f, c.m, got, c.want)
		}
	}
	// The SQL's index: 1 + (R low) + 2·(F low) + 4·(M low).
	want := []string{"IMPORTANT_VALUE", "IMPORTANT_KEEP", "IMPORTANT_DEVELOP", "IMPORTANT_RETAIN",
		"GENERAL_VALUE", "GENERAL_KEEP", "GENERAL_DEVELOP", "GENERAL_RETAIN"}
	if got := segmentsByLows(); !slices.Equal(got, want) {
		t.Errorf("segments by lows %v, want %v", got, want)
	}
	if !slices.Equal(strs(aiplStages), enum.AiplStage("").Values()) {
		t.Errorf("stages %v are not in enum order", aiplStages)
	}
}

func date(s string) calendar.Date {
	d, err := calendar.Parse(s)
	if err != nil {
		panic(err)
	}
	return d
}

func TestTrendDates(t *testing.T) {
	for _, c := range []struct {
		from, to string
		every    Interval
		want     []string
		n        int // the number of points when want is not listed
	}{
		{from: "2026-03-01", to: "2026-03-01", every: IntervalWeek, want: []string{"2026-03-01"}},
		{from: "2026-03-01", to: "2026-03-03", every: IntervalDay, want: []string{"2026-03-01", "2026-03-02", "2026-03-03"}},
		{from: "2026-03-01", to: "2026-03-16", every: IntervalWeek, want: []string{"2026-03-01", "2026-03-08", "2026-03-15", "2026-03-16"}},
		{from: "2026-03-01", to: "2026-03-15", every: IntervalWeek, want: []string{"2026-03-01", "2026-03-08", "2026-03-15"}},
		{from: "2024-01-31", to: "2024-05-01", every: IntervalMonth,
			want: []string{"2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30", "2024-05-01"}},
		{from: "2025-11-30", to: "2026-02-28", every: IntervalMonth,
			want: []string{"2025-11-30", "2025-12-30", "2026-01-30", "2026-02-28"}},
		{from: "2026-01-01", to: "2027-02-04", every: IntervalDay, n: 400},
		{from: "2000-01-01", to: "2033-04-01", every: IntervalMonth, n: 400},
	} {
		got, err := trendDates(date(c.from), date(c.to), c.every)
		if err != nil {
			t.Errorf("%s..%s %s: %v", c.from, c.to, c.every, err)
			continue
		}
		if c.want == nil {
			if len(got) != c.n {
				t.Errorf("%s..%s %s: %d points, want %d", c.from, c.to, c.every, len(got), c.n)
			}
			continue
		}
		var s []string
		for _, d := range got {
			s = append(s, d.String())
		}
		if !slices.Equal(s, c.want) {
			t.Errorf("%s..%s %s: %v, want %v", c.from, c.to, c.every, s, c.want)
		}
	}
	for _, c := range []struct {
		from, to string
		every    Interval
		field    string
	}{
		{"2026-01-01", "2027-02-05", IntervalDay, "to"},
		{"2000-01-01", "2033-04-02", IntervalMonth, "to"},
		{"2026-03-02", "2026-03-01", IntervalDay, "to"},
		{"2026-03-01", "2026-03-02", "HOUR", "interval"},
	} {
		_, err := trendDates(date(c.from), date(c.to), c.every)
		if fs := fault.Fields(err); len(fs) != 1 || fs[0].Field != c.field {
			t.Errorf("%s..%s %s: %v, want a problem on %s", c.from, c.to, c.every, err, c.field)
		}
	}
}
