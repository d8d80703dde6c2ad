package campaign

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	entcampaign "github.com/onemember/onemember/ent/campaign"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/campaign/spec"
	"github.com/onemember/onemember/internal/platform/calendar"
)

// cand is a member a trigger selected, with the occurrence it reacts to.
type cand struct {
	member     int
	occurrence string
}

// birthdayAAD is the column birthdays are encrypted for (internal/member).
const birthdayAAD = "member.birthday"

// timeKinds are the time triggers.
var timeKinds = []enum.CampaignTriggerKind{enum.TriggerOneOff, enum.TriggerScheduled, enum.TriggerHoliday,
	enum.TriggerBirthday, enum.TriggerInactivity, enum.TriggerChurnRisk, enum.TriggerPointsExpiring}

// eventKinds are the event triggers.
var eventKinds = []enum.CampaignTriggerKind{enum.TriggerRegistration, enum.TriggerFirstPurchase,
	enum.TriggerPurchase, enum.TriggerTierChanged}

// audienceJoin restricts col to the plan's audience, appending the
// audience's ids to args; "" when the campaign has none.
func audienceJoin(p *plan, col string, args *[]any) string {
	if p.audience == nil {
		return ""
	}
	ids := make([]int64, len(p.members))
	for i, m := range p.members {
		ids[i] = int64(m)
	}
	*args = append(*args, pq.Array(ids))
	return fmt.Sprintf(" JOIN unnest($%d::bigint[]) AS aud(id) ON aud.id = %s", len(*args), col)
}

// selectTime returns the ACTIVE members p's time trigger selects for the
// job of slot, in ascending id after member id after (0: from the first),
// whether or not the campaign already acted on them (see dropDone):
//
//   - ONE_OFF, SCHEDULED, HOLIDAY: every member (of the audience);
//   - BIRTHDAY: members whose next birthday falls within daysBefore days
//     from the slot's day (package comment);
//   - INACTIVITY: members whose last order that counts (not refunded in
//     full), paid before now, was paid inactiveDays or more business days
//     before the slot's day; never-buyers are not "inactive";
//   - CHURN_RISK: members whose churn risk in the last fit is at least
//     minChurnRisk;
//   - POINTS_EXPIRING: members with points whose last usable day is within
//     daysBefore days from the slot's day (the earliest such day).
func (s *Service) selectTime(ctx context.Context, p *plan, slot time.Time, after int) ([]cand, error) {
	if err := s.loadAudience(ctx, p); err != nil {
		return nil, err
	}
	day := calendar.In(slot, s.zone)
	tr := p.c.Trigger
	args := []any{after}
	switch p.c.TriggerKind {
	case enum.TriggerOneOff, enum.TriggerScheduled, enum.TriggerHoliday:
		occ := s.slotOccurrence(p.c, slot)
		q := `SELECT m.id FROM members m` + audienceJoin(p, "m.id", &args) +
			` WHERE m.status = 'ACTIVE' AND m.id > $1 ORDER BY m.id`
		return s.scanCands(ctx, q, args, func(rows *sql.Rows) (cand, bool, error) {
			var id int
			err := rows.Scan(&id)
			return cand{member: id, occurrence: occ}, true, err
		})

	case enum.TriggerBirthday:
		return s.selectBirthdays(ctx, p, day, args)

	case enum.TriggerInactivity:
		n := 1
		if tr.InactiveDays != nil {
			n = *tr.InactiveDays
		}
		args = append(args, s.now().UTC(), day.AddDays(-n+1).Start(s.zone).UTC())
		q := `SELECT l.member_id, l.id FROM (
			SELECT DISTINCT ON (o.member_id) o.member_id, o.id, o.paid_at FROM orders o
			WHERE o.status <> 'REFUNDED' AND o.paid_at <= $2 AND o.member_id > $1
			ORDER BY o.member_id, o.paid_at DESC, o.id DESC) l
			JOIN members m ON m.id = l.member_id` + audienceJoin(p, "l.member_id", &args) + `
			WHERE m.status = 'ACTIVE' AND l.paid_at < $3 ORDER BY l.member_id`
		return s.scanCands(ctx, q, args, func(rows *sql.Rows) (cand, bool, error) {
			var id, order int
			err := rows.Scan(&id, &order)
			return cand{member: id, occurrence: "inactive:" + strconv.Itoa(order)}, true, err
		})

	case enum.TriggerChurnRisk:
		risk := 1.0
		if tr.MinChurnRisk != nil {
			risk = *tr.MinChurnRisk
		}
		args = append(args, s.zone.String(), risk)
		q := `SELECT p.member_id, to_char((p.fitted_at AT TIME ZONE $2)::date, 'YYYY-MM-DD')
			FROM member_predictions p JOIN members m ON m.id = p.member_id` + audienceJoin(p, "p.member_id", &args) + `
			WHERE m.status = 'ACTIVE' AND p.member_id > $1 AND p.churn_risk >= $3 ORDER BY p.member_id`
		return s.scanCands(ctx, q, args, func(rows *sql.Rows) (cand, bool, error) {
			var id int
			var fit string
			err := rows.Scan(&id, &fit)
			return cand{member: id, occurrence: "churn:" + fit}, true, err
		})

	case enum.TriggerPointsExpiring:
		args = append(args, day.Start(s.zone).UTC(), day.AddDays(daysBefore(tr)+1).Start(s.zone).UTC())
		q := `SELECT l.member_id, min(l.expires_at) FROM points_lots l
			JOIN members m ON m.id = l.member_id` + audienceJoin(p, "l.member_id", &args) + `
			WHERE m.status = 'ACTIVE' AND l.member_id > $1 AND l.remaining > 0
			AND l.expires_at > $2 AND l.expires_at <= $3
			GROUP BY l.member_id ORDER BY l.member_id`
		return s.scanCands(ctx, q, args, func(rows *sql.Rows) (cand, bool, error) {
			var id int
			var expires time.Time
			err := rows.Scan(&id, &expires)
			// The last usable day: lots expire at the first instant of a day.
			last := calendar.In(expires.Add(-time.Microsecond), s.zone)
			return cand{member: id, occurrence: "points-expiring:" + last.String()}, true, err
		})
	}
	return nil, fmt.Errorf("campaign %d: %s is not a time trigger", p.c.ID, p.c.TriggerKind)
}

// daysBefore is the trigger's daysBefore, 0 when unset.
func daysBefore(tr spec.Trigger) int {
	if tr.DaysBefore == nil {
		return 0
	}
	return *tr.DaysBefore
}

// selectBirthdays decrypts the birthdays of the members whose birth month
// falls in [day, day+daysBefore] and keeps those whose next birthday does.
func (s *Service) selectBirthdays(ctx context.Context, p *plan, day calendar.Date, args []any) ([]cand, error) {
	last := day.AddDays(daysBefore(p.c.Trigger))
	var months []int64
	for d := day; !last.Before(d); d = d.AddDays(1) {
		if m := int64(d.Month); !slices.Contains(months, m) {
			months = append(months, m)
		}
	}
	args = append(args, pq.Array(months))
	q := `SELECT m.id, m.birth_month, m.birthday_enc FROM members m` + audienceJoin(p, "m.id", &args) +
		` WHERE m.status = 'ACTIVE' AND m.id > $1 AND m.birth_month = ANY($2) ORDER BY m.id`
	warned := false
	return s.scanCands(ctx, q, args, func(rows *sql.Rows) (cand, bool, error) {
		var (
			id, month int
			enc       []byte
		)
		if err := rows.Scan(&id, &month, &enc); err != nil {
			return cand{}, false, err
		}
		bday := calendar.Date{Month: time.Month(month), Day: 1}
		if len(enc) > 0 && s.pii != nil {
			plain, err := s.pii.Decrypt(enc, birthdayAAD)
			if err == nil {
				var d calendar.Date
				if d, err = calendar.Parse(plain); err == nil {
					bday = d
				}
			}
			if err != nil {
				if !warned {
					s.log.WarnContext(ctx, "campaign: reading a birthday", "campaign", p.c.ID, "member", id, "err", err)
					warned = true
				}
				return cand{}, false, nil
			}
		}
		for _, y := range []int{day.Year, day.Year + 1} {
			d := birthdayIn(y, bday)
			if !d.Before(day) && !last.Before(d) {
				return cand{member: id, occurrence: "birthday:" + strconv.Itoa(y)}, true, nil
			}
		}
		return cand{}, false, nil
	})
}

// birthdayIn is the day the birthday b is celebrated in year y: 29
// February is the 28th in other years.
func birthdayIn(y int, b calendar.Date) calendar.Date {
	d := calendar.Date{Year: y, Month: b.Month, Day: b.Day}
	if b.Month == time.February && b.Day == 29 && calendar.Of(time.Date(y, 2, 29, 0, 0, 0, 0, time.UTC)).Month != time.February {
		d.Day = 28
	}
	return d
}

// scanCands runs q and turns each row into a candidate (skipping those
// scan rejects).
func (s *Service) scanCands(ctx context.Context, q string, args []any, scan func(*sql.Rows) (cand, bool, error)) ([]cand, error) {
	rows, err := s.sql.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("selecting members: %w", err)
	}
	defer rows.Close()
	var out []cand
	for rows.Next() {
		c, ok, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("selecting members: %w", err)
		}
		if ok {
			out = append(out, c)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("selecting members: %w", err)
	}
	return out, nil
}

// dropDone removes the candidates the campaign already has an execution
// for (any status).
func (s *Service) dropDone(ctx context.Context, campaignID, after int, cands []cand) ([]cand, error) {
	rows, err := s.sql.QueryContext(ctx, `SELECT member_id, occurrence FROM campaign_executions
		WHERE campaign_id = $1 AND member_id > $2`, campaignID, after)
	if err != nil {
		return nil, fmt.Errorf("reading executions: %w", err)
	}
	defer rows.Close()
	done := make(map[cand]bool)
	for rows.Next() {
		var c cand
		if err := rows.Scan(&c.member, &c.occurrence); err != nil {
			return nil, fmt.Errorf("reading executions: %w", err)
		}
		done[c] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading executions: %w", err)
	}
	if len(done) == 0 {
		return cands, nil
	}
	return slices.DeleteFunc(cands, func(c cand) bool { return done[c] }), nil
}

// selectEvents returns what p's event trigger reacts to among members (of
// its audience), between since (inclusive) and until (exclusive, nil:
// open), that the campaign has no execution for yet (campaign id 0: none
// has), in member then occurrence order:
//
//   - REGISTRATION: the member registered;
//   - FIRST_PURCHASE: the member's first order (by paid_at) was recorded;
//   - PURCHASE: an order of at least minAmount was recorded;
//   - TIER_CHANGED: the member entered tierCode (up or down).
//
// Times are when the server recorded the fact (registered_at, the order's
// created_at, changed_at), not when the till says it happened.
func (s *Service) selectEvents(ctx context.Context, p *plan, members []int64, since time.Time, until *time.Time) ([]cand, error) {
	if len(members) == 0 {
		return nil, nil
	}
	var end any
	if until != nil {
		end = until.UTC()
	}
	args := []any{pq.Array(members), since.UTC(), end, p.c.ID}
	notDone := func(occ string) string {
		return ` AND NOT EXISTS (SELECT 1 FROM campaign_executions e
			WHERE e.campaign_id = $4 AND e.member_id = m.id AND e.occurrence = ` + occ + `)`
	}
	var q string
	switch p.c.TriggerKind {
	case enum.TriggerRegistration:
		q = `SELECT m.id, 'registration' FROM members m
			WHERE m.id = ANY($1) AND m.status = 'ACTIVE' AND m.registered_at >= $2
			AND ($3::timestamptz IS NULL OR m.registered_at < $3)` + notDone(`'registration'`) + ` ORDER BY m.id`
	case enum.TriggerFirstPurchase:
		q = `SELECT m.id, 'first-purchase' FROM (
				SELECT DISTINCT ON (o.member_id) o.member_id, o.created_at FROM orders o
				WHERE o.member_id = ANY($1) ORDER BY o.member_id, o.paid_at, o.id) f
			JOIN members m ON m.id = f.member_id
			WHERE m.status = 'ACTIVE' AND f.created_at >= $2
			AND ($3::timestamptz IS NULL OR f.created_at < $3)` + notDone(`'first-purchase'`) + ` ORDER BY m.id`
	case enum.TriggerPurchase:
		var least int64
		if p.c.Trigger.MinAmount != nil {
			least = *p.c.Trigger.MinAmount
		}
		args = append(args, least)
		q = `SELECT m.id, 'order:' || o.id FROM orders o JOIN members m ON m.id = o.member_id
			WHERE o.member_id = ANY($1) AND m.status = 'ACTIVE' AND o.created_at >= $2
			AND ($3::timestamptz IS NULL OR o.created_at < $3) AND o.amount >= $5` +
			notDone(`'order:' || o.id`) + ` ORDER BY m.id, o.id`
	case enum.TriggerTierChanged:
		code := ""
		if p.c.Trigger.TierCode != nil {
			code = *p.c.Trigger.TierCode
		}
		args = append(args, code)
		q = `SELECT m.id, 'tier-event:' || t.id FROM tier_changes t
			JOIN tiers ON tiers.id = t.to_tier_id JOIN members m ON m.id = t.member_id
			WHERE t.member_id = ANY($1) AND m.status = 'ACTIVE' AND t.changed_at >= $2
			AND ($3::timestamptz IS NULL OR t.changed_at < $3) AND tiers.code = $5` +
			notDone(`'tier-event:' || t.id`) + ` ORDER BY m.id, t.id`
	default:
		return nil, fmt.Errorf("campaign %d: %s is not an event trigger", p.c.ID, p.c.TriggerKind)
	}
	cands, err := s.scanCands(ctx, q, args, func(rows *sql.Rows) (cand, bool, error) {
		var c cand
		err := rows.Scan(&c.member, &c.occurrence)
		return c, true, err
	})
	if err != nil || len(cands) == 0 {
		return nil, err
	}
	if err := s.loadAudience(ctx, p); err != nil {
		return nil, err
	}
	return slices.DeleteFunc(cands, func(c cand) bool { return !p.inAudience(c.member) }), nil
}

// recordedBetween lists the members whose facts of the kind p reacts to
// were recorded in [from, to): the replay of a window the change log no
// longer holds (or never was read for).
func (s *Service) recordedBetween(ctx context.Context, p *plan, from, to time.Time) ([]int64, error) {
	var q string
	switch p.c.TriggerKind {
	case enum.TriggerRegistration:
		q = `SELECT id FROM members WHERE registered_at >= $1 AND registered_at < $2`
	case enum.TriggerFirstPurchase, enum.TriggerPurchase:
		q = `SELECT DISTINCT member_id FROM orders WHERE created_at >= $1 AND created_at < $2`
	case enum.TriggerTierChanged:
		q = `SELECT DISTINCT member_id FROM tier_changes WHERE changed_at >= $1 AND changed_at < $2`
	default:
		return nil, nil
	}
	rows, err := s.sql.QueryContext(ctx, q, from.UTC(), to.UTC())
	if err != nil {
		return nil, fmt.Errorf("finding members by time: %w", err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("finding members by time: %w", err)
		}
		out = append(out, id)
	}
	return out, rows.Err()
}

// takenByHigher lists, ascending, the members that ACTIVE time-triggered
// campaigns of higher priority than p select on day: p leaves them out
// (SUPPRESSED_PRIORITY), whether those campaigns have run yet or not.
func (s *Service) takenByHigher(ctx context.Context, p *plan, day calendar.Date) ([]int, error) {
	others, err := s.db.Campaign.Query().
		Where(entcampaign.StatusEQ(enum.CampaignActive), entcampaign.TriggerKindIn(timeKinds...), entcampaign.IDNEQ(p.c.ID)).
		All(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading other campaigns: %w", err)
	}
	var out []int
	for _, o := range others {
		if !(priority{level: o.Priority, id: o.ID}).beats(p.prio) || !s.occursOn(o, day) {
			continue
		}
		op, err := s.loadPlan(ctx, o)
		if err != nil {
			return nil, err
		}
		cands, err := s.selectTime(ctx, op, s.slotOn(o, day), 0)
		if err != nil {
			return nil, err
		}
		for _, c := range cands {
			out = append(out, c.member)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// slotOn is c's slot on day (occursOn holds).
func (s *Service) slotOn(c *ent.Campaign, day calendar.Date) time.Time {
	tr := c.Trigger
	switch {
	case tr.Kind == enum.TriggerOneOff && tr.At != nil:
		return *tr.At
	case tr.Kind == enum.TriggerHoliday && tr.Date != nil:
		return s.holidayRun(tr.Date, tr.DaysBefore)
	case tr.Kind == enum.TriggerScheduled && tr.Cron != nil:
		if sched, err := parseCron(*tr.Cron); err == nil {
			if next := sched.next(day.Start(s.zone).Add(-time.Nanosecond)); !next.IsZero() {
				return next
			}
		}
	}
	return day.Start(s.zone).Add(s.opts.DailyAt)
}
