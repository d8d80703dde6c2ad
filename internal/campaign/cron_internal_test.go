package campaign

import (
	"testing"
	"time"

	"github.com/onemember/onemember/internal/platform/calendar"
)

func TestCronNext(t *testing.T) {
	zone, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	at := func(s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04", s, zone)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	for _, c := range []struct{ expr, from, want string }{
		{"0 9 * * *", "2026-03-10 08:59", "2026-03-10 09:00"},
		{"0 9 * * *", "2026-03-10 09:00", "2026-03-11 09:00"},
		{"*/15 * * * *", "2026-03-10 10:07", "2026-03-10 10:15"},
		{"30 8 1 * *", "2026-03-10 10:00", "2026-04-01 08:30"},
		{"0 10 * * MON-FRI", "2026-03-13 11:00", "2026-03-16 10:00"}, // Friday → Monday
		{"0 10 * * 0", "2026-03-10 10:00", "2026-03-15 10:00"},       // Sunday as 0
		{"0 10 * * SUN", "2026-03-10 10:00", "2026-03-15 10:00"},     // and by name
		{"0 0 1 JAN *", "2026-03-10 10:00", "2027-01-01 00:00"},
		{"0 12 13 * FRI", "2026-03-01 00:00", "2026-03-06 12:00"}, // day of month OR day of week
		{"5/20 1-3 * * *", "2026-03-10 00:00", "2026-03-10 01:05"},
		{"0 0 29 2 *", "2026-03-10 00:00", "2028-02-29 00:00"},
	} {
		s, err := parseCron(c.expr)
		if err != nil {
			t.Errorf("%q: %v", c.expr, err)
			continue
		}
		if got := s.next(at(c.from)); !got.Equal(at(c.want)) {
			t.Errorf("%q after %s: %s, want %s", c.expr, c.from, got.Format("2006-01-02 15:04"), c.want)
		}
	}
	for _, bad := range []string{"", "* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8",
		"*/0 * * * *", "a * * * *", "5-1 * * * *", "TZ=UTC 0 9 * * *"} {
		if _, err := parseCron(bad); err == nil {
			t.Errorf("%q parsed, want an error", bad)
		}
	}
	if s, _ := parseCron("0 0 30 2 *"); !s.next(at("2026-01-01 00:00")).IsZero() {
		t.Errorf("30 February has a slot")
	}
}

func TestBirthdayIn(t *testing.T) {
	leap := calendar.Date{Year: 2000, Month: time.February, Day: 29}
	if got := birthdayIn(2027, leap); got != (calendar.Date{Year: 2027, Month: time.February, Day: 28}) {
		t.Errorf("29 February in 2027: %v, want the 28th", got)
	}
	if got := birthdayIn(2028, leap); got != (calendar.Date{Year: 2028, Month: time.February, Day: 29}) {
		t.Errorf("29 February in 2028: %v", got)
	}
}

func TestHoldoutHashIsStableAndSpread(t *testing.T) {
	p := &plan{salt: holdoutSalt("生日礼", time.Unix(1_770_000_000, 0))}
	held := 0
	for m := range 10_000 {
		if heldOutWith(p.salt, 21474836480+m, 20) {
			held++
		}
		if heldOutWith(p.salt, 21474836480+m, 20) != heldOutWith(p.salt, 21474836480+m, 20) {
			t.Fatal("unstable")
		}
	}
	if held < 1800 || held > 2200 {
		t.Errorf("%d of 10000 held out at 20%%", held)
	}
	if holdoutSalt("a", time.Unix(1, 0)) == holdoutSalt("a", time.Unix(2, 0)) {
		t.Error("the start does not change the salt")
	}
}
