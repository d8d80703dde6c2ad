package campaign

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	entsql "entgo.io/ent/dialect/sql"
	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	entcampaign "github.com/onemember/onemember/ent/campaign"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/coupon"
	"github.com/onemember/onemember/internal/jobqueue"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

const (
	// passLock is the advisory lock that lets one Pass run at a time
	// across replicas (arbitrary, fixed): the others skip their tick.
	passLock int64 = 0x63616d70 // "camp"
	// gapAfter: a campaign whose change log was last read longer ago than
	// this is read by timestamps from then on (member_changes keeps an
	// hour).
	gapAfter = 45 * time.Minute
	// replayOverlap widens a timestamp replay backwards, for facts stamped
	// just before the pause or the last pass.
	replayOverlap = time.Minute
	// maxSlotsPerPlan bounds the slots one Plan enqueues per campaign (a
	// long outage of a frequent schedule catches up over several ticks).
	maxSlotsPerPlan = 100
)

// Run plans time triggers (Plan) and reads event triggers (Pass) every
// Options.Poll until ctx ends. The app runs it once per replica; several
// replicas at once are safe (Plan enqueues each slot once, Pass runs on
// one replica at a time, and executions are unique anyway). Errors are
// logged and the work is tried again at the next tick.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.opts.Poll)
	defer t.Stop()
	for {
		if _, err := s.Plan(ctx); err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "campaign: planning time triggers", "err", err)
		}
		if _, err := s.Pass(ctx); err != nil && ctx.Err() == nil {
			s.log.ErrorContext(ctx, "campaign: reading event triggers", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// Plan ends the ACTIVE and PAUSED campaigns past their endsAt, and
// enqueues a RUN_CAMPAIGN job for every due slot (next_run_at ≤ now) of
// the ACTIVE time-triggered campaigns, moving next_run_at in the same
// transaction; it answers how many jobs it enqueued. The job's
// idempotency key is "campaign:<id>:<slot occurrence>", so two planners
// (replicas) that both see a slot due enqueue it once, and a campaign
// rows another planner holds is skipped (SKIP LOCKED). Campaigns are taken
// by descending priority, so the jobs of higher-priority campaigns get
// lower ids and are claimed first.
func (s *Service) Plan(ctx context.Context) (int, error) {
	now := s.now().UTC()
	if err := s.db.Campaign.Update().
		Where(entcampaign.StatusIn(enum.CampaignActive, enum.CampaignPaused), entcampaign.EndsAtLTE(now)).
		SetStatus(enum.CampaignEnded).ClearNextRunAt().SetUpdatedAt(now).Exec(ctx); err != nil {
		return 0, fmt.Errorf("ending campaigns past their window: %w", err)
	}
	return database.WithTx(ctx, s.db, func(tx *ent.Tx) (int, error) {
		due, err := tx.Campaign.Query().
			Where(entcampaign.StatusEQ(enum.CampaignActive), entcampaign.NextRunAtLTE(now)).
			Order(entcampaign.ByPriority(entsql.OrderDesc()), entcampaign.ByID()).
			ForUpdate(entsql.WithLockAction(entsql.SkipLocked)).All(ctx)
		if err != nil {
			return 0, fmt.Errorf("reading due campaigns: %w", err)
		}
		n := 0
		for _, c := range due {
			next := c.NextRunAt
			for k := 0; k < maxSlotsPerPlan && next != nil && !next.After(now); k++ {
				created, err := s.enqueue(ctx, tx, c, *next, "")
				if err != nil {
					return 0, err
				}
				if created {
					n++
				}
				next = s.nextSlot(c, *next)
			}
			up := tx.Campaign.UpdateOneID(c.ID).SetUpdatedAt(now)
			if next == nil {
				up.ClearNextRunAt()
			} else {
				up.SetNextRunAt(*next)
			}
			if err := up.Exec(ctx); err != nil {
				return 0, fmt.Errorf("moving campaign %d's next run: %w", c.ID, err)
			}
		}
		return n, nil
	})
}

// enqueue queues the job of c's slot; suffix distinguishes a replay.
func (s *Service) enqueue(ctx context.Context, tx *ent.Tx, c *ent.Campaign, slot time.Time, suffix string) (bool, error) {
	params := map[string]any{"campaignId": c.ID, "slot": slot.UTC().Format(time.RFC3339Nano)}
	_, created, err := s.jobs.EnqueueInTx(ctx, tx, enum.JobRunCampaign, params, jobKey(c.ID, s.slotOccurrence(c, slot))+suffix, nil)
	if err != nil {
		return false, fmt.Errorf("queueing campaign %d's run: %w", c.ID, err)
	}
	return created, nil
}

// RunHandler returns the handler of RUN_CAMPAIGN jobs (params campaignId
// and slot): one run of a time trigger.
//
//   - The members are selected when the job runs (selectTime), leaving out
//     those the campaign already has an execution for and, as SUPPRESSED_
//     PRIORITY, those an ACTIVE time-triggered campaign of higher priority
//     selects on the same day.
//   - They are served in ascending id, Options.BatchSize per transaction;
//     each transaction ends with run.Advance to its last member, so its
//     executions and the job's progress (processed: executions recorded;
//     failed: members left without one, e.g. no longer ACTIVE) commit
//     together, and an attempt resumed after a crash or a lost lease starts
//     after the last committed batch. Executions already recorded are
//     skipped under the account locks, so even two jobs of one slot (a
//     replay) never act twice for a member.
//   - A campaign found PAUSED (or ENDED) stops the job, which succeeds
//     with a note; a paused campaign remembers the slot, and
//     activateCampaign(replaySkipped: true) runs it again for the members
//     not yet served.
//   - A campaign, coupon template or audience that no longer exists fails
//     the job at once (jobqueue.Permanent); other errors are retried from
//     the checkpoint.
func (s *Service) RunHandler() jobqueue.Handler {
	return func(ctx context.Context, run *jobqueue.Run) error { return s.runJob(ctx, run) }
}

func (s *Service) runJob(ctx context.Context, run *jobqueue.Run) error {
	params := run.Params()
	id, err := jobqueue.IntParam(params, "campaignId")
	if err != nil {
		return err
	}
	text, _ := params["slot"].(string)
	slot, err := time.Parse(time.RFC3339Nano, text)
	if err != nil {
		return jobqueue.Permanent(fault.Invalidf("slot", "must be an RFC 3339 time, got %q", text))
	}
	c, err := s.db.Campaign.Get(ctx, id)
	if ent.IsNotFound(err) {
		return jobqueue.Permanent(fmt.Errorf("campaign %d: %w", id, ErrNotFound))
	}
	if err != nil {
		return fmt.Errorf("reading campaign %d: %w", id, err)
	}
	if isEvent(c.TriggerKind) {
		return jobqueue.Permanent(fmt.Errorf("campaign %d: %s is not a time trigger", id, c.TriggerKind))
	}
	if c.Status != enum.CampaignActive {
		return s.stop(ctx, run, c.ID, c.Status, slot)
	}
	p, err := s.loadPlan(ctx, c)
	if err != nil {
		return permanentIfGone(err)
	}
	after := int(run.Checkpoint())
	cands, err := s.selectTime(ctx, p, slot, after)
	if err != nil {
		return err
	}
	if cands, err = s.dropDone(ctx, c.ID, after, cands); err != nil {
		return err
	}
	taken, err := s.takenByHigher(ctx, p, calendar.In(slot, s.zone))
	if err != nil {
		return permanentIfGone(err)
	}
	if err := run.SetTotal(ctx, run.Job.Processed+run.Job.Failed+int64(len(cands))); err != nil {
		return err
	}
	for len(cands) > 0 {
		batch := cands[:min(s.opts.BatchSize, len(cands))]
		cands = cands[len(batch):]
		items := make([]*work, len(batch))
		for i, cd := range batch {
			_, lost := slices.BinarySearch(taken, cd.member)
			items[i] = &work{p: p, member: cd.member, occurrence: cd.occurrence, lost: lost}
		}
		res, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (*batchResult, error) {
			res, err := s.execute(ctx, tx, items)
			if err != nil {
				return nil, err
			}
			if _, stopped := res.stopped[c.ID]; stopped {
				return res, nil // commits an ENDED status, if any
			}
			return res, run.Advance(ctx, tx, int64(batch[len(batch)-1].member), res.written, res.skipped)
		})
		if err != nil {
			return permanentIfGone(err)
		}
		s.send(ctx, res.outbox)
		if status, stopped := res.stopped[c.ID]; stopped {
			return s.stop(ctx, run, c.ID, status, slot)
		}
	}
	return nil
}

// permanentIfGone marks errors a retry cannot fix: something the campaign
// refers to no longer exists.
func permanentIfGone(err error) error {
	if errors.Is(err, coupon.ErrTemplateNotFound) || errors.Is(err, ErrNotFound) || fault.CodeOf(err) == fault.NotFound {
		return jobqueue.Permanent(err)
	}
	return err
}

// stop ends a job whose campaign is no longer ACTIVE: a PAUSED campaign
// remembers the slot (for a replay), and the job succeeds with a note.
func (s *Service) stop(ctx context.Context, run *jobqueue.Run, id int, status enum.CampaignStatus, slot time.Time) error {
	if status == enum.CampaignPaused {
		_, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (struct{}, error) {
			c, err := tx.Campaign.Query().Where(entcampaign.ID(id)).ForUpdate().Only(ctx)
			if err != nil {
				return struct{}{}, fmt.Errorf("reading campaign %d: %w", id, err)
			}
			cur, err := readCursor(c)
			if err != nil {
				return struct{}{}, err
			}
			at := slot.UTC().Format(time.RFC3339Nano)
			if c.Status != enum.CampaignPaused || slices.Contains(cur.Interrupted, at) {
				return struct{}{}, nil
			}
			cur.Interrupted = append(cur.Interrupted, at)
			return struct{}{}, tx.Campaign.UpdateOneID(id).SetCursor(cur.asMap()).Exec(ctx)
		})
		if err != nil {
			return err
		}
	}
	return run.Note(ctx, fmt.Sprintf("campaign %s: stopped after %d executions", status, run.Job.Processed))
}

// Pass reads the change log once for the ACTIVE event-triggered
// campaigns and acts on what they react to; it answers how many
// executions it recorded. One replica at a time runs it (an advisory
// lock; the others return at once). See the package comment for the
// horizon, the timestamps and the replay.
//
// The members are served in batches of Options.BatchSize members, one
// transaction each, all campaigns of a member in the same batch: when a
// member matches several campaigns in one pass, the campaign of highest
// priority acts and the others record SUPPRESSED_PRIORITY. The cursors
// move after the last batch: a pass that fails half-way is read again
// by the next one, and the executions its batches committed are not
// repeated.
func (s *Service) Pass(ctx context.Context) (int, error) {
	rows, err := s.db.Campaign.Query().
		Where(entcampaign.StatusEQ(enum.CampaignActive), entcampaign.TriggerKindIn(eventKinds...)).
		Order(entcampaign.ByID()).All(ctx)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	conn, err := s.sql.Conn(ctx)
	if err != nil {
		return 0, fmt.Errorf("taking a connection: %w", err)
	}
	defer conn.Close()
	var locked bool
	if err := conn.QueryRowContext(ctx, `SELECT pg_try_advisory_lock($1)`, passLock).Scan(&locked); err != nil {
		return 0, fmt.Errorf("taking the pass lock: %w", err)
	}
	if !locked {
		return 0, nil
	}
	defer func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, passLock)
	}()

	now := s.now().UTC()
	plans := make([]*plan, 0, len(rows))
	var lo uint64
	for i, c := range rows {
		p, err := s.loadPlan(ctx, c)
		if err != nil {
			s.log.ErrorContext(ctx, "campaign: cannot run", "campaign", c.ID, "err", err)
			continue
		}
		h, _ := strconv.ParseUint(p.cur.Horizon, 10, 64)
		if i == 0 || h < lo {
			lo = h
		}
		plans = append(plans, p)
	}
	var (
		horizon string
		changed []int64
	)
	if err := conn.QueryRowContext(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text,
		coalesce((SELECT array_agg(DISTINCT member_id) FROM member_changes
			WHERE tx_id >= $1::text::xid8 AND member_id IS NOT NULL), '{}')`,
		strconv.FormatUint(lo, 10)).Scan(&horizon, pq.Array(&changed)); err != nil {
		return 0, fmt.Errorf("reading member changes: %w", err)
	}

	byMember := map[int][]*work{}
	for _, p := range plans {
		cands, err := s.eventCands(ctx, p, changed, now)
		if fault.CodeOf(err) == fault.NotFound { // its audience is gone: the others go on
			s.log.ErrorContext(ctx, "campaign: cannot run", "campaign", p.c.ID, "err", err)
			continue
		}
		if err != nil {
			return 0, err
		}
		for _, cd := range cands {
			byMember[cd.member] = append(byMember[cd.member], &work{p: p, member: cd.member, occurrence: cd.occurrence})
		}
	}
	members := make([]int, 0, len(byMember))
	for m, ws := range byMember {
		members = append(members, m)
		best := ws[0].p.prio
		for _, w := range ws[1:] {
			if w.p.prio.beats(best) {
				best = w.p.prio
			}
		}
		for _, w := range ws {
			w.lost = best.beats(w.p.prio)
		}
	}
	slices.Sort(members)
	written := 0
	for len(members) > 0 {
		batch := members[:min(s.opts.BatchSize, len(members))]
		members = members[len(batch):]
		var items []*work
		for _, m := range batch {
			items = append(items, byMember[m]...)
		}
		res, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (*batchResult, error) {
			return s.execute(ctx, tx, items)
		})
		if err != nil {
			return written, err
		}
		s.send(ctx, res.outbox)
		written += int(res.written)
	}
	return written, s.advance(ctx, plans, horizon, now)
}

// eventCands is what p reacts to in this pass: the changed members'
// facts since its activation, and a replay by timestamps when one is due.
func (s *Service) eventCands(ctx context.Context, p *plan, changed []int64, now time.Time) ([]cand, error) {
	since := p.c.StartsAt
	if p.cur.Since != nil && p.cur.Since.After(since) {
		since = *p.cur.Since
	}
	cands, err := s.selectEvents(ctx, p, changed, since, p.c.EndsAt)
	if err != nil {
		return nil, err
	}
	from, to := p.cur.ReplayFrom, p.cur.ReplayTo
	if from == nil && p.cur.SeenAt != nil && now.Sub(*p.cur.SeenAt) > gapAfter {
		f := p.cur.SeenAt.Add(-replayOverlap)
		if f.Before(since) {
			f = since
		}
		from, to = &f, &now
	}
	if from == nil || to == nil {
		return cands, nil
	}
	start, end := *from, *to
	if start.Before(p.c.StartsAt) {
		start = p.c.StartsAt
	}
	if p.c.EndsAt != nil && p.c.EndsAt.Before(end) {
		end = *p.c.EndsAt
	}
	if !start.Before(end) {
		return cands, nil
	}
	ms, err := s.recordedBetween(ctx, p, start, end)
	if err != nil {
		return nil, err
	}
	more, err := s.selectEvents(ctx, p, ms, start, &end)
	if err != nil {
		return nil, err
	}
	seen := make(map[cand]bool, len(cands))
	for _, c := range cands {
		seen[c] = true
	}
	for _, c := range more {
		if !seen[c] {
			cands = append(cands, c)
		}
	}
	return cands, nil
}

// advance moves the cursors of the campaigns of a pass: unless a campaign
// was paused or activated again meanwhile (its cursor then belongs to
// that change).
func (s *Service) advance(ctx context.Context, plans []*plan, horizon string, now time.Time) error {
	_, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) (struct{}, error) {
		for _, p := range plans {
			c, err := tx.Campaign.Query().Where(entcampaign.ID(p.c.ID)).ForUpdate().Only(ctx)
			if err != nil {
				return struct{}{}, fmt.Errorf("reading campaign %d: %w", p.c.ID, err)
			}
			cur, err := readCursor(c)
			if err != nil {
				return struct{}{}, err
			}
			if c.Status != enum.CampaignActive || cur.Activation != p.cur.Activation {
				continue
			}
			cur.Horizon, cur.SeenAt, cur.ReplayFrom, cur.ReplayTo = horizon, &now, nil, nil
			if err := tx.Campaign.UpdateOneID(c.ID).SetCursor(cur.asMap()).Exec(ctx); err != nil {
				return struct{}{}, fmt.Errorf("moving campaign %d's cursor: %w", c.ID, err)
			}
		}
		return struct{}{}, nil
	})
	return err
}
