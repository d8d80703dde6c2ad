package campaign

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	entcampaign "github.com/onemember/onemember/ent/campaign"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/ent/tier"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/campaign/spec"
	"github.com/onemember/onemember/internal/events"
	"github.com/onemember/onemember/internal/ledger"
)

// work is one (campaign, member, occurrence) a batch decides, and what it
// decided.
type work struct {
	p          *plan
	member     int
	occurrence string
	// lost: a campaign of higher priority matched the member at once.
	lost bool

	status enum.CampaignExecutionStatus
	runs   []*spec.Action // the actions that run (REACHED)
	cost   int64
	coupon int
	// before is the member's last REACHED time before this one (zero:
	// none), restored if its action fails.
	before time.Time
}

// action is the execution's action column: the first action that ran,
// or the campaign's first action when none did.
func (w *work) action() enum.CampaignActionKind {
	if len(w.runs) > 0 {
		return w.runs[0].Kind
	}
	if len(w.p.c.Actions) > 0 {
		return w.p.c.Actions[0].Kind
	}
	return enum.ActionSendMessage
}

// batchResult is what a batch did.
type batchResult struct {
	written int64 // executions recorded
	skipped int64 // candidates left without a row
	// stopped are the campaigns found no longer ACTIVE (their status now).
	stopped map[int]enum.CampaignStatus
	// outbox is what to send once the batch has committed.
	outbox []Message
}

// querier runs a query: a transaction, or the pool for a dry run.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// execute decides and carries out items in tx, a batch of one or several
// campaigns (Pass) for a set of members: guards, actions, executions and
// the campaigns' spent, all in tx. The lock order is the package
// comment's: accounts, campaigns, coupon templates.
func (s *Service) execute(ctx context.Context, tx *ent.Tx, items []*work) (*batchResult, error) {
	res := &batchResult{stopped: map[int]enum.CampaignStatus{}}
	if len(items) == 0 {
		return res, nil
	}
	now := s.now().UTC()
	members := make([]int, 0, len(items))
	plans := map[int]*plan{}
	for _, w := range items {
		members = append(members, w.member)
		plans[w.p.c.ID] = w.p
	}
	slices.Sort(members)
	members = slices.Compact(members)

	accts, err := account.LockMany(ctx, tx, members)
	if err != nil {
		return nil, err
	}
	info, err := tx.Member.Query().Where(member.IDIn(members...)).
		Select(member.FieldID, member.FieldStatus, member.FieldDisplayName, member.FieldTierID).All(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading the batch's members: %w", err)
	}
	byID := make(map[int]*ent.Member, len(info))
	for _, m := range info {
		byID[m.ID] = m
	}
	notStarted, err := s.lockCampaigns(ctx, tx, plans, now, res)
	if err != nil {
		return nil, err
	}
	done, err := existing(ctx, tx, items)
	if err != nil {
		return nil, err
	}
	live := make([]*work, 0, len(items))
	for _, w := range items {
		id := w.p.c.ID
		m := byID[w.member]
		_, stopped := res.stopped[id]
		if stopped || notStarted[id] || done[cand{w.member, w.occurrence}.key(id)] || m == nil ||
			m.Status != member.StatusACTIVE || !w.p.inAudience(w.member) {
			res.skipped++
			continue
		}
		live = append(live, w)
	}
	if len(live) == 0 {
		return res, nil
	}
	g, err := s.loadGuards(ctx, tx, live, now)
	if err != nil {
		return nil, err
	}
	sortWork(live)
	for _, w := range live {
		g.decide(w)
	}
	if err := s.issueCoupons(ctx, tx, live, accts, g); err != nil {
		return nil, err
	}
	if err := s.awardPoints(ctx, tx, live, accts, now); err != nil {
		return nil, err
	}
	if res.outbox, err = s.sendMessages(ctx, tx, live, accts, byID, now); err != nil {
		return nil, err
	}
	if err := insertExecutions(ctx, tx, live, now); err != nil {
		return nil, err
	}
	for id, p := range plans {
		if delta := g.spent[id] - p.c.Spent; delta != 0 {
			if err := tx.Campaign.UpdateOneID(id).AddSpent(delta).SetUpdatedAt(now).Exec(ctx); err != nil {
				return nil, fmt.Errorf("adding to campaign %d's spent: %w", id, err)
			}
			p.c.Spent += delta
		}
	}
	res.written = int64(len(live))
	return res, nil
}

// sortWork orders a batch's work: by member, then the winning campaign
// first, then occurrence.
func sortWork(ws []*work) {
	slices.SortStableFunc(ws, func(a, b *work) int {
		if c := cmp.Compare(a.member, b.member); c != 0 {
			return c
		}
		switch {
		case a.p.prio.before(b.p.prio):
			return -1
		case b.p.prio.before(a.p.prio):
			return 1
		}
		return cmp.Compare(a.occurrence, b.occurrence)
	})
}

// key identifies an execution.
func (c cand) key(campaignID int) execKey { return execKey{campaignID, c.member, c.occurrence} }

type execKey struct {
	campaign, member int
	occurrence       string
}

// lockCampaigns locks the campaigns' rows in ascending id and refreshes
// the plans from them: a campaign no longer ACTIVE is noted in
// res.stopped, one past its endsAt is ENDED here. It answers the
// campaigns whose window has not started.
func (s *Service) lockCampaigns(ctx context.Context, tx *ent.Tx, plans map[int]*plan, now time.Time, res *batchResult) (map[int]bool, error) {
	ids := make([]int, 0, len(plans))
	for id := range plans {
		ids = append(ids, id)
	}
	rows, err := tx.Campaign.Query().Where(entcampaign.IDIn(ids...)).Order(entcampaign.ByID()).ForUpdate().All(ctx)
	if err != nil {
		return nil, fmt.Errorf("locking campaigns: %w", err)
	}
	notStarted := map[int]bool{}
	for _, c := range rows {
		plans[c.ID].c = c
		switch {
		case c.Status != enum.CampaignActive:
			res.stopped[c.ID] = c.Status
		case c.EndsAt != nil && !now.Before(*c.EndsAt):
			if err := tx.Campaign.UpdateOneID(c.ID).SetStatus(enum.CampaignEnded).ClearNextRunAt().
				SetUpdatedAt(now).Exec(ctx); err != nil {
				return nil, fmt.Errorf("ending campaign %d: %w", c.ID, err)
			}
			res.stopped[c.ID] = enum.CampaignEnded
		case now.Before(c.StartsAt):
			notStarted[c.ID] = true
		}
	}
	return notStarted, nil
}

// existing reads which of items already have an execution.
func existing(ctx context.Context, q querier, items []*work) (map[execKey]bool, error) {
	cs, ms, os := make([]int64, len(items)), make([]int64, len(items)), make([]string, len(items))
	for i, w := range items {
		cs[i], ms[i], os[i] = int64(w.p.c.ID), int64(w.member), w.occurrence
	}
	rows, err := q.QueryContext(ctx, `SELECT campaign_id, member_id, occurrence FROM campaign_executions
		WHERE (campaign_id, member_id, occurrence) IN (
			SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[]))`,
		pq.Array(cs), pq.Array(ms), pq.Array(os))
	if err != nil {
		return nil, fmt.Errorf("reading executions: %w", err)
	}
	defer rows.Close()
	out := map[execKey]bool{}
	for rows.Next() {
		var k execKey
		if err := rows.Scan(&k.campaign, &k.member, &k.occurrence); err != nil {
			return nil, fmt.Errorf("reading executions: %w", err)
		}
		out[k] = true
	}
	return out, rows.Err()
}

// guards holds what the guards read, and what the decisions so far
// changed (in member order: a REACHED counts against the member's later
// work of the batch).
type guards struct {
	s           *Service
	now         time.Time
	consents    map[int]map[enum.ConsentKind]bool
	reached     map[[2]int]int    // (campaign, member) → REACHED executions
	lastReached map[int]time.Time // member → last REACHED execution of any campaign
	spent       map[int]int64     // campaign → spent
}

// loadGuards reads the consents and caps of the work's members, through q
// (under the batch's account locks, or as they are now for a dry run).
func (s *Service) loadGuards(ctx context.Context, q querier, ws []*work, now time.Time) (*guards, error) {
	g := &guards{s: s, now: now, consents: map[int]map[enum.ConsentKind]bool{}, reached: map[[2]int]int{},
		lastReached: map[int]time.Time{}, spent: map[int]int64{}}
	var (
		members, campaigns        []int64
		consent, perMember, fcaps bool
	)
	for _, w := range ws {
		members = append(members, int64(w.member))
		campaigns = append(campaigns, int64(w.p.c.ID))
		g.spent[w.p.c.ID] = w.p.c.Spent
		consent = consent || w.p.needsConsent()
		perMember = perMember || w.p.c.MaxPerMember != nil
		fcaps = fcaps || w.p.c.FrequencyCapDays != nil
	}
	slices.Sort(members)
	members = slices.Compact(members)
	each := func(query string, scan func(*sql.Rows) error, args ...any) error {
		rows, err := q.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			if err := scan(rows); err != nil {
				return err
			}
		}
		return rows.Err()
	}
	if consent {
		err := each(`SELECT member_id, kind FROM consents WHERE member_id = ANY($1) AND granted`, func(r *sql.Rows) error {
			var (
				m    int
				kind enum.ConsentKind
			)
			if err := r.Scan(&m, &kind); err != nil {
				return err
			}
			if g.consents[m] == nil {
				g.consents[m] = map[enum.ConsentKind]bool{}
			}
			g.consents[m][kind] = true
			return nil
		}, pq.Array(members))
		if err != nil {
			return nil, fmt.Errorf("reading consents: %w", err)
		}
	}
	if perMember {
		err := each(`SELECT campaign_id, member_id, count(*) FROM campaign_executions
			WHERE campaign_id = ANY($1) AND member_id = ANY($2) AND status = 'REACHED' GROUP BY 1, 2`, func(r *sql.Rows) error {
			var c, m, n int
			if err := r.Scan(&c, &m, &n); err != nil {
				return err
			}
			g.reached[[2]int{c, m}] = n
			return nil
		}, pq.Array(campaigns), pq.Array(members))
		if err != nil {
			return nil, fmt.Errorf("counting executions: %w", err)
		}
	}
	if fcaps {
		err := each(`SELECT member_id, max(executed_at) FROM campaign_executions
			WHERE member_id = ANY($1) AND status = 'REACHED' GROUP BY 1`, func(r *sql.Rows) error {
			var (
				m  int
				at time.Time
			)
			if err := r.Scan(&m, &at); err != nil {
				return err
			}
			g.lastReached[m] = at
			return nil
		}, pq.Array(members))
		if err != nil {
			return nil, fmt.Errorf("reading last executions: %w", err)
		}
	}
	return g, nil
}

// decide applies guards 2 to 6 of the package comment to w.
func (g *guards) decide(w *work) {
	p := w.p
	w.runs, w.cost = nil, 0
	runs := p.allowed(g.consents[w.member])
	last, touched := g.lastReached[w.member]
	switch {
	case len(runs) == 0:
		w.status = enum.ExecutionSuppressedConsent
	case p.c.MaxPerMember != nil && g.reached[[2]int{p.c.ID, w.member}] >= *p.c.MaxPerMember:
		w.status = enum.ExecutionSuppressedCap
	case p.c.FrequencyCapDays != nil && touched &&
		last.After(g.now.Add(-time.Duration(*p.c.FrequencyCapDays)*24*time.Hour)):
		w.status = enum.ExecutionSuppressedCap
	case w.lost:
		w.status = enum.ExecutionSuppressedPriority
	case p.heldOut(w.member):
		w.status = enum.ExecutionHoldout
	default:
		cost := g.s.cost(p, runs)
		if p.c.Budget != nil && g.spent[p.c.ID]+cost > *p.c.Budget {
			w.status = enum.ExecutionSuppressedBudget
			return
		}
		w.status, w.runs, w.cost, w.before = enum.ExecutionReached, runs, cost, last
		g.spent[p.c.ID] += cost
		g.reached[[2]int{p.c.ID, w.member}]++
		g.lastReached[w.member] = g.now
	}
}

// fail turns a REACHED execution whose action failed into FAILED: no
// other action, no cost, and it no longer counts against the caps of the
// batch's later work.
func (g *guards) fail(w *work) {
	g.spent[w.p.c.ID] -= w.cost
	g.reached[[2]int{w.p.c.ID, w.member}]--
	if w.before.IsZero() {
		delete(g.lastReached, w.member)
	} else {
		g.lastReached[w.member] = w.before
	}
	w.status, w.runs, w.cost = enum.ExecutionFailed, nil, 0
}

func runs(w *work, kind enum.CampaignActionKind) bool {
	return w.status == enum.ExecutionReached && slices.ContainsFunc(w.runs, func(a *spec.Action) bool { return a.Kind == kind })
}

// issueCoupons issues the coupons of the REACHED work, set-based: one
// IssueBatchInTx per template (ascending id, the lock order), campaign
// and round (a member's second coupon of one template in a batch, e.g.
// two orders, goes in the second round).
func (s *Service) issueCoupons(ctx context.Context, tx *ent.Tx, ws []*work, accts map[int]*ent.Account, g *guards) error {
	type group struct{ tpl, campaign, round int }
	groups := map[group][]*work{}
	seen := map[[2]int]int{} // (template, member) → work so far
	for _, w := range ws {
		if !runs(w, enum.ActionIssueCoupon) || w.p.tpl == nil {
			continue
		}
		tm := [2]int{w.p.tpl.ID, w.member}
		k := group{w.p.tpl.ID, w.p.c.ID, seen[tm]}
		seen[tm]++
		groups[k] = append(groups[k], w)
	}
	keys := make([]group, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b group) int {
		return cmp.Or(cmp.Compare(a.round, b.round), cmp.Compare(a.tpl, b.tpl), cmp.Compare(a.campaign, b.campaign))
	})
	for _, k := range keys {
		group := groups[k]
		list := make([]*ent.Account, len(group))
		for i, w := range group {
			list[i] = accts[w.member]
		}
		issued, err := s.coupons.IssueBatchInTx(ctx, tx, list, k.tpl, fmt.Sprintf("campaign:%d", k.campaign))
		if err != nil {
			return fmt.Errorf("campaign %d: issuing coupons: %w", k.campaign, err)
		}
		for i, r := range issued {
			if r.Err != nil {
				g.fail(group[i])
				continue
			}
			group[i].coupon = r.Coupon.ID
		}
	}
	return nil
}

// awardPoints credits the points of the REACHED work; the ledger's
// idempotency key is the execution's.
func (s *Service) awardPoints(ctx context.Context, tx *ent.Tx, ws []*work, accts map[int]*ent.Account, now time.Time) error {
	for _, w := range ws {
		if !runs(w, enum.ActionAwardPoints) {
			continue
		}
		for _, a := range w.runs {
			if a.Kind != enum.ActionAwardPoints || a.Points == nil {
				continue
			}
			key := fmt.Sprintf("campaign:%d:%d:%s", w.p.c.ID, w.member, w.occurrence)
			if _, err := s.ledger.EarnPoints(ctx, tx, accts[w.member], ledger.Entry{Amount: int64(*a.Points),
				Source: ledger.SourceCampaign, Reason: w.p.c.Name, Key: &key, At: now}); err != nil {
				return fmt.Errorf("campaign %d: awarding points to member %d: %w", w.p.c.ID, w.member, err)
			}
		}
	}
	return nil
}

// sendMessages renders the messages of the REACHED work: IN_APP,
// WECHAT_SUBSCRIBE and APP_PUSH become MESSAGE events in tx; SMS and EMAIL
// are returned, to send after the commit.
func (s *Service) sendMessages(ctx context.Context, tx *ent.Tx, ws []*work, accts map[int]*ent.Account,
	members map[int]*ent.Member, now time.Time) ([]Message, error) {
	var (
		out   []Message
		tiers map[int]string
	)
	for _, w := range ws {
		if !runs(w, enum.ActionSendMessage) {
			continue
		}
		if tiers == nil {
			rows, err := tx.Tier.Query().Select(tier.FieldID, tier.FieldName).All(ctx)
			if err != nil {
				return nil, fmt.Errorf("reading tiers: %w", err)
			}
			tiers = make(map[int]string, len(rows))
			for _, t := range rows {
				tiers[t.ID] = t.Name
			}
		}
		m := members[w.member]
		vars := map[string]string{"displayName": m.DisplayName}
		if m.TierID != nil {
			vars["tierName"] = tiers[*m.TierID]
		}
		if w.coupon != 0 && w.p.tpl != nil {
			vars["couponTitle"] = w.p.tpl.Title
		}
		for _, a := range w.runs {
			if a.Kind != enum.ActionSendMessage || a.Channel == nil || a.Title == nil || a.Body == nil {
				continue
			}
			title, body := render(*a.Title, vars), render(*a.Body, vars)
			ev := events.Event{Type: events.Message, Payload: map[string]any{
				"title": title, "body": body, "channel": string(*a.Channel), "campaignId": w.p.c.ID}}
			switch *a.Channel {
			case enum.MessageSMS, enum.MessageEmail:
				out = append(out, Message{Channel: *a.Channel, CampaignID: w.p.c.ID, MemberID: w.member, Title: title, Body: body})
				continue
			case enum.MessageInApp:
				ev.Title, ev.Body = title, body
			}
			if _, err := events.Emit(ctx, tx, accts[w.member], now, ev); err != nil {
				return nil, fmt.Errorf("campaign %d: message to member %d: %w", w.p.c.ID, w.member, err)
			}
		}
	}
	return out, nil
}

// insertExecutions records the batch's executions in one statement.
func insertExecutions(ctx context.Context, tx *ent.Tx, ws []*work, now time.Time) error {
	n := len(ws)
	cs, ms, costs, coupons := make([]int64, n), make([]int64, n), make([]int64, n), make([]int64, n)
	occs, statuses, actions := make([]string, n), make([]string, n), make([]string, n)
	for i, w := range ws {
		cs[i], ms[i], costs[i], coupons[i] = int64(w.p.c.ID), int64(w.member), w.cost, int64(w.coupon)
		occs[i], statuses[i], actions[i] = w.occurrence, string(w.status), string(w.action())
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO campaign_executions
			(campaign_id, member_id, occurrence, status, action, cost, coupon_id, executed_at)
		SELECT c, m, o, s, a, k, NULLIF(cp, 0), $8
		FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[])
			AS x(c, m, o, s, a, k, cp)`,
		pq.Array(cs), pq.Array(ms), pq.Array(occs), pq.Array(statuses), pq.Array(actions), pq.Array(costs),
		pq.Array(coupons), now)
	if err != nil {
		return fmt.Errorf("recording executions: %w", err)
	}
	return nil
}
