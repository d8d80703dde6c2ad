package campaign

import (
	"errors"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// schedule is a SCHEDULED trigger's five-field cron expression (minute,
// hour, day of month, month, day of week with 0 for Sunday; "*", values,
// ranges, steps, lists, and English names of months and days), read by
// robfig/cron's standard parser. As in Vixie cron, when both day fields
// are restricted a day matching either matches. Times are reckoned in the
// location of the time given to next: the business zone.
type schedule struct{ s cron.Schedule }

// parseCron parses a five-field cron expression. A time-zone prefix is
// refused: the business zone applies.
func parseCron(expr string) (*schedule, error) {
	if strings.Contains(expr, "TZ=") {
		return nil, errors.New("a time zone cannot be set: the business time zone applies")
	}
	s, err := cron.ParseStandard(expr)
	if err != nil {
		return nil, err
	}
	return &schedule{s: s}, nil
}

// next returns the first slot after t, or the zero time when there is none
// within five years (30 February).
func (s *schedule) next(t time.Time) time.Time { return s.s.Next(t) }
