package campaign

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/platform/calendar"
)

// isEvent reports whether k reacts to the change log (Pass) rather than
// running from jobs (Plan).
func isEvent(k enum.CampaignTriggerKind) bool {
	switch k {
	case enum.TriggerRegistration, enum.TriggerFirstPurchase, enum.TriggerPurchase, enum.TriggerTierChanged:
		return true
	}
	return false
}

// isDaily reports whether k runs once a business day at DailyAt.
func isDaily(k enum.CampaignTriggerKind) bool {
	switch k {
	case enum.TriggerBirthday, enum.TriggerInactivity, enum.TriggerChurnRisk, enum.TriggerPointsExpiring:
		return true
	}
	return false
}

// cursor is a campaign's campaigns.cursor: what its runner needs to
// remember between passes, activations and pauses.
type cursor struct {
	// Activation counts activations; a pass that started before one does
	// not write its cursor over the new one.
	Activation int `json:"activation,omitempty"`
	// AudienceID is the audience the campaign was created with: if the
	// audience is deleted (campaigns.audience_id becomes NULL) the
	// campaign fails rather than reaching every member.
	AudienceID *int `json:"audienceId,omitempty"`
	// Since: event triggers react to what happened from this instant on
	// (the last activation).
	Since *time.Time `json:"since,omitempty"`
	// Horizon is the xid8 horizon of member_changes read up to (event
	// triggers).
	Horizon string `json:"horizon,omitempty"`
	// SeenAt is when the last pass read the change log.
	SeenAt *time.Time `json:"seenAt,omitempty"`
	// ReplayFrom and ReplayTo bound a window the next pass reads by
	// timestamps (a reactivation with replaySkipped, or a gap longer than
	// member_changes keeps).
	ReplayFrom *time.Time `json:"replayFrom,omitempty"`
	ReplayTo   *time.Time `json:"replayTo,omitempty"`
	// PausedAt is when the campaign was last paused.
	PausedAt *time.Time `json:"pausedAt,omitempty"`
	// Interrupted are the slots (RFC 3339) of time-trigger jobs that a
	// pause stopped part-way: activateCampaign(replaySkipped: true) runs
	// them again.
	Interrupted []string `json:"interrupted,omitempty"`
}

func readCursor(c *ent.Campaign) (cursor, error) {
	var cur cursor
	if len(c.Cursor) == 0 {
		return cur, nil
	}
	b, err := json.Marshal(c.Cursor)
	if err != nil {
		return cur, fmt.Errorf("campaign %d cursor: %w", c.ID, err)
	}
	if err := json.Unmarshal(b, &cur); err != nil {
		return cur, fmt.Errorf("campaign %d cursor: %w", c.ID, err)
	}
	return cur, nil
}

func (cur cursor) asMap() map[string]any {
	b, _ := json.Marshal(cur) // plain fields: cannot fail
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

// audienceID is the campaign's audience, also when it was deleted.
func audienceID(c *ent.Campaign, cur cursor) *int {
	if c.AudienceID != nil {
		return c.AudienceID
	}
	return cur.AudienceID
}

// firstSlot is the first slot of c's time trigger at or after from
// (within the window), or nil. late lets a slot already passed run at
// from: a ONE_OFF or HOLIDAY activated after its time (but before the
// holiday), and a daily trigger whose time of day has passed today.
func (s *Service) firstSlot(c *ent.Campaign, from time.Time, late bool) *time.Time {
	if from.Before(c.StartsAt) {
		from = c.StartsAt
	}
	var slot time.Time
	tr := c.Trigger
	switch {
	case tr.Kind == enum.TriggerOneOff && tr.At != nil:
		slot = *tr.At
		if slot.Before(from) {
			if !late {
				return nil
			}
			slot = from
		}
	case tr.Kind == enum.TriggerHoliday && tr.Date != nil:
		slot = s.holidayRun(tr.Date, tr.DaysBefore)
		if slot.Before(from) {
			if !late || !from.Before(tr.Date.AddDays(1).Start(s.zone)) {
				return nil
			}
			slot = from
		}
	case tr.Kind == enum.TriggerScheduled && tr.Cron != nil:
		sched, err := parseCron(*tr.Cron)
		if err != nil {
			return nil
		}
		slot = sched.next(from.In(s.zone).Add(-time.Nanosecond))
		if slot.IsZero() {
			return nil
		}
	case isDaily(tr.Kind):
		today := calendar.In(from, s.zone)
		slot = today.Start(s.zone).Add(s.opts.DailyAt)
		if slot.Before(from) {
			slot = from
			if !late {
				slot = today.AddDays(1).Start(s.zone).Add(s.opts.DailyAt)
			}
		}
	default:
		return nil
	}
	if c.EndsAt != nil && !slot.Before(*c.EndsAt) {
		return nil
	}
	slot = slot.UTC()
	return &slot
}

// nextSlot is the slot after slot, or nil: ONE_OFF and HOLIDAY run once.
func (s *Service) nextSlot(c *ent.Campaign, slot time.Time) *time.Time {
	var next time.Time
	tr := c.Trigger
	switch {
	case tr.Kind == enum.TriggerScheduled && tr.Cron != nil:
		sched, err := parseCron(*tr.Cron)
		if err != nil {
			return nil
		}
		if next = sched.next(slot.In(s.zone)); next.IsZero() {
			return nil
		}
	case isDaily(tr.Kind):
		next = calendar.In(slot, s.zone).AddDays(1).Start(s.zone).Add(s.opts.DailyAt)
	default:
		return nil
	}
	if c.EndsAt != nil && !next.Before(*c.EndsAt) {
		return nil
	}
	next = next.UTC()
	return &next
}

// holidayRun is when a HOLIDAY campaign runs: daysBefore days before the
// date, at DailyAt.
func (s *Service) holidayRun(date *calendar.Date, daysBefore *int) time.Time {
	d := 0
	if daysBefore != nil {
		d = *daysBefore
	}
	return date.AddDays(-d).Start(s.zone).Add(s.opts.DailyAt)
}

// slotOccurrence names a job's slot: the campaign-wide occurrence of
// ONE_OFF, SCHEDULED and HOLIDAY, the business day of a daily trigger
// (whose members each have their own occurrence).
func (s *Service) slotOccurrence(c *ent.Campaign, slot time.Time) string {
	switch c.TriggerKind {
	case enum.TriggerOneOff:
		return "once"
	case enum.TriggerHoliday:
		if c.Trigger.Date != nil {
			return c.Trigger.Date.String()
		}
	case enum.TriggerScheduled:
		return slot.In(s.zone).Format("2006-01-02T15:04Z07:00")
	}
	return calendar.In(slot, s.zone).String()
}

// jobKey is the idempotency key of the RUN_CAMPAIGN job of a slot.
func jobKey(campaignID int, occurrence string) string {
	return fmt.Sprintf("campaign:%d:%s", campaignID, occurrence)
}

// occursOn reports whether c's time trigger has a slot on day (in its
// window), for the priority between time-triggered campaigns.
func (s *Service) occursOn(c *ent.Campaign, day calendar.Date) bool {
	start, end := day.Start(s.zone), day.AddDays(1).Start(s.zone)
	if !c.StartsAt.Before(end) || (c.EndsAt != nil && !start.Before(*c.EndsAt)) {
		return false
	}
	tr := c.Trigger
	switch {
	case isDaily(tr.Kind):
		return true
	case tr.Kind == enum.TriggerOneOff && tr.At != nil:
		return calendar.In(*tr.At, s.zone) == day
	case tr.Kind == enum.TriggerHoliday && tr.Date != nil:
		return calendar.In(s.holidayRun(tr.Date, tr.DaysBefore), s.zone) == day
	case tr.Kind == enum.TriggerScheduled && tr.Cron != nil:
		sched, err := parseCron(*tr.Cron)
		if err != nil {
			return false
		}
		next := sched.next(start.Add(-time.Nanosecond))
		return !next.IsZero() && next.Before(end)
	}
	return false
}
