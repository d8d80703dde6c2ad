// Package calendar owns the group's business calendar: the business time
// zone (Asia/Shanghai by default) and the Date scalar, a day in that zone.
// Storage is UTC; "today", birthdays, check-in days and monthly spend are
// reckoned in the business zone.
package calendar

import (
	"fmt"
	"io"
	"strconv"
	"time"
)

// DefaultZone is the business time zone used when none is configured.
const DefaultZone = "Asia/Shanghai"

// Date is a calendar day without a zone; it becomes an instant only with a
// location (Start).
type Date struct {
	Year  int
	Month time.Month
	Day   int
}

const layout = "2006-01-02"

// Parse reads YYYY-MM-DD.
func Parse(s string) (Date, error) {
	t, err := time.Parse(layout, s)
	if err != nil {
		return Date{}, fmt.Errorf("date %q is not YYYY-MM-DD", s)
	}
	return Of(t), nil
}

// Of returns the day t falls on in t's own location.
func Of(t time.Time) Date {
	y, m, d := t.Date()
	return Date{Year: y, Month: m, Day: d}
}

// In returns the day instant t falls on in loc.
func In(t time.Time, loc *time.Location) Date { return Of(t.In(loc)) }

// Start is the first instant of the day in loc.
func (d Date) Start(loc *time.Location) time.Time {
	return time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, loc)
}

// AddDays moves the date by n days.
func (d Date) AddDays(n int) Date {
	return Of(time.Date(d.Year, d.Month, d.Day+n, 0, 0, 0, 0, time.UTC))
}

// Before reports whether d is an earlier day than o.
func (d Date) Before(o Date) bool { return d.String() < o.String() }

// IsZero reports whether d is the zero Date.
func (d Date) IsZero() bool { return d == Date{} }

func (d Date) String() string {
	return time.Date(d.Year, d.Month, d.Day, 0, 0, 0, 0, time.UTC).Format(layout)
}

// MarshalGQL writes the date as a GraphQL string.
func (d Date) MarshalGQL(w io.Writer) { _, _ = io.WriteString(w, strconv.Quote(d.String())) }

// UnmarshalGQL reads a GraphQL string in YYYY-MM-DD form.
func (d *Date) UnmarshalGQL(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("Date must be a string in YYYY-MM-DD form")
	}
	p, err := Parse(s)
	if err != nil {
		return err
	}
	*d = p
	return nil
}
