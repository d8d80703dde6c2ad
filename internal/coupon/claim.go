package coupon

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/behavior"
	"github.com/onemember/onemember/internal/platform/database"
)

// Claims of one template are served by group commit.
const (
	// MaxClaimBatch is the most claims of one template one transaction
	// serves.
	MaxClaimBatch = 64
	// ClaimBatchTimeout bounds the work of one batch of claims: how long
	// a caller who gave up after its batch started may still wait.
	ClaimBatchTimeout = 30 * time.Second

	// claimTemplateTTL is how long a runner serves claims from the
	// template it read.
	claimTemplateTTL = time.Second

	// claimStockLaterMargin: a batch takes its stock last while the stock
	// left, as last read, is at least this many times the batch.
	claimStockLaterMargin = 100
)

// States of a claim waiting for its batch.
const (
	claimWaiting   int32 = iota // queued, no batch has taken it
	claimTaken                  // in a batch: its result stands
	claimAbandoned              // its caller gave up before a batch took it
)

// claimReq is one Claim call waiting for its batch.
type claimReq struct {
	ctx    context.Context
	member int
	state  atomic.Int32
	done   chan claimResult // buffered: the batch never blocks on it
}

type claimResult struct {
	coupon *ent.Coupon
	err    error
}

// claimRunners is how many batches of one template run at once. The
// template's row is the bottleneck: while one batch holds it from its write
// to its commit, the next has begun and locked its members' accounts and
// waits for the row, so the row passes from one commit to the next write
// without the client round trips of a transaction's start in between.
// Stock and limits stay exact (the row and the account locks decide); two
// batches never deadlock, as both lock their accounts before the row.
const claimRunners = 2

// claimer queues the claims of each template. A template has an entry in
// queues exactly while goroutines (runClaims, at most claimRunners) serve
// it; each exits as soon as no claim of the template waits, so there is no
// long-lived goroutine per template.
type claimer struct {
	mu     sync.Mutex
	queues map[int]*claimQueue // template id → its claims and runners

	batches atomic.Int64 // batches served (for tests)
}

type claimQueue struct {
	reqs    []*claimReq // waiting, oldest first
	runners int
	// inflight holds the members of the batches running now. A member's
	// next claim waits for its batch to end rather than join the other
	// runner's batch: that batch would lock the member's account, wait
	// for the running batch to commit while holding its other accounts,
	// and the two runners would run one after the other instead of
	// overlapping.
	inflight map[int]bool
}

func newClaimer() *claimer { return &claimer{queues: map[int]*claimQueue{}} }

// enqueue queues r for templateID and reports whether the template wants
// one more runner (the caller starts it).
func (c *claimer) enqueue(templateID int, r *claimReq) (start bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := c.queues[templateID]
	if q == nil {
		q = &claimQueue{inflight: map[int]bool{}}
		c.queues[templateID] = q
	}
	q.reqs = append(q.reqs, r)
	if q.runners < claimRunners {
		q.runners++
		return true
	}
	return false
}

// take ends the calling runner's finished batch (nil for none) and removes
// the next batch of templateID's queue: up to MaxClaimBatch claims of
// distinct members, oldest first, each marked taken. A second claim of one
// member stays queued for a later batch (the per-member limit is counted
// once per batch), and so does a claim of a member whose batch is running;
// claims whose caller gave up are dropped. An empty answer retires the
// calling runner: what it leaves queued belongs to members of a running
// batch, whose runner takes it when that batch ends.
func (c *claimer) take(templateID int, finished []*claimReq) []*claimReq {
	c.mu.Lock()
	defer c.mu.Unlock()
	q := c.queues[templateID]
	for _, r := range finished {
		delete(q.inflight, r.member)
	}
	var (
		batch []*claimReq
		rest  = q.reqs[:0]
	)
	for _, r := range q.reqs {
		switch {
		case len(batch) == MaxClaimBatch || q.inflight[r.member]:
			rest = append(rest, r)
		case r.state.CompareAndSwap(claimWaiting, claimTaken):
			q.inflight[r.member] = true
			batch = append(batch, r)
		}
	}
	clear(q.reqs[len(rest):])
	q.reqs = rest
	if len(batch) == 0 {
		q.runners--
		if q.runners == 0 { // nothing runs, so nothing was left queued
			delete(c.queues, templateID)
		}
		return nil
	}
	return batch
}

// Claim is a member claiming a coupon of a claimable template: the template
// must be claimable (else FORBIDDEN: ErrNotClaimable) and inside its window
// (ErrNotStarted, ErrEnded), with stock (ErrOutOfStock) and below the
// per-member limit (ErrLimitExceeded); a member id that does not exist is
// account.ErrMemberNotFound. A claim writes the coupon, its COUPON_ISSUED
// event and notification, and the member's CLAIM_COUPON behaviour event.
//
// Claims of one template are served by group commit: a claim joins the
// template's queue, and one transaction serves up to MaxClaimBatch of the
// claims waiting (distinct members, oldest first) while the next batch
// fills; up to claimRunners batches of a template run at once. Nothing
// waits for company: an idle template serves a lone claim at once, and a
// batch holds only the claims that arrived while the others ran. Within a
// batch the stock goes to the oldest claims
// first; per-member limits and stock are exact across batches, other
// servers and other issuers (account locks, and the conditional UPDATE of
// the template's row). A batch whose transaction fails (after one retry on
// a deadlock or serialization failure) fails each of its claims with that
// error, and then no coupon of it exists.
//
// Cancelling ctx before the claim's batch starts drops the claim: it
// answers ctx's error and nothing is written. Once its batch has started,
// the batch's outcome stands, whatever happens to ctx: the call waits for
// it (at most ClaimBatchTimeout) and answers it, so that no caller is told
// of an error while a coupon was issued. A batch runs with the values of
// the context of its oldest claim (the event bus's waker among them).
//
// The coupon answered is not bound to a client (read its fields); its
// Template edge is loaded.
func (s *Service) Claim(ctx context.Context, memberID, templateID int) (*ent.Coupon, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r := &claimReq{ctx: ctx, member: memberID, done: make(chan claimResult, 1)}
	if s.claims.enqueue(templateID, r) {
		go s.runClaims(templateID)
	}
	select {
	case res := <-r.done:
		return res.coupon, res.err
	case <-ctx.Done():
		if r.state.CompareAndSwap(claimWaiting, claimAbandoned) {
			return nil, fmt.Errorf("waiting to claim a coupon: %w", context.Cause(ctx))
		}
		res := <-r.done
		return res.coupon, res.err
	}
}

// runClaims serves templateID's queue batch by batch until it is empty.
// The template read for a batch serves the batches that follow it for
// claimTemplateTTL (a template's terms do not change once created; its
// stock is never read from it).
func (s *Service) runClaims(templateID int) {
	var (
		t      *ent.CouponTemplate
		readAt time.Time
		batch  []*claimReq
	)
	for {
		batch = s.claims.take(templateID, batch)
		if len(batch) == 0 {
			return
		}
		s.claims.batches.Add(1)
		ctx, cancel := context.WithTimeout(context.WithoutCancel(batch[0].ctx), ClaimBatchTimeout)
		var err error
		if t == nil || time.Since(readAt) > claimTemplateTTL {
			readAt = time.Now()
			t, err = s.db.CouponTemplate.Get(ctx, templateID)
			switch {
			case ent.IsNotFound(err):
				t, err = nil, ErrTemplateNotFound
			case err != nil:
				t, err = nil, fmt.Errorf("loading coupon template: %w", err)
			}
		}
		var results []claimResult
		if err != nil {
			results = failAll(len(batch), err)
		} else {
			results = s.serveClaims(ctx, t, batch)
		}
		cancel()
		for i, r := range batch {
			r.done <- results[i]
		}
	}
}

// failAll is n claims failing with err.
func failAll(n int, err error) []claimResult {
	out := make([]claimResult, n)
	for i := range out {
		out[i].err = err
	}
	return out
}

// serveClaims serves a batch of claims of t, answering one result per
// claim, in order. The batch's coupons get a copy of t of their own (with
// the issued_count the batch left), since t serves later batches.
func (s *Service) serveClaims(ctx context.Context, t *ent.CouponTemplate, batch []*claimReq) []claimResult {
	fail := func(err error) []claimResult { return failAll(len(batch), err) }
	own := *t
	t = &own
	switch {
	case !t.Claimable:
		return fail(ErrNotClaimable)
	case t.ValidFrom != nil && s.now().Before(*t.ValidFrom):
		return fail(ErrNotStarted)
	case t.ValidTo != nil && !s.now().Before(*t.ValidTo):
		return fail(ErrEnded)
	}
	// While the stock left (as last read, up to claimTemplateTTL ago) covers
	// the batch many times over, the batch takes its stock last; the
	// conditional UPDATE keeps it exact either way, and a batch it no longer
	// covers is served again taking the stock first.
	mode := stockFirst
	if t.TotalStock-t.IssuedCount >= claimStockLaterMargin*len(batch) {
		mode = stockLater
	}
	for attempt := 0; ; attempt++ {
		out, err := database.WithTx(ctx, s.db, func(tx *ent.Tx) ([]claimResult, error) {
			return s.claimInTx(ctx, tx, t, batch, mode)
		})
		switch {
		case err == nil:
			return out
		case errors.Is(err, errStockShort):
			mode = stockFirst
			continue
		case attempt == 0 && (database.IsDeadlock(err) || database.IsSerializationFailure(err)):
			continue
		}
		return fail(err)
	}
}

// claimInTx serves a batch in tx: the members' accounts are locked in
// ascending member id (the lock order of every issuer: accounts, then the
// template's row), the coupons issued by issueBatch, and the CLAIM_COUPON
// behaviour of each coupon recorded, all set-based: three statements when
// every member has an account already, and with stockLater a fourth that
// takes the stock, so that the template's row is locked for it and the
// commit only.
func (s *Service) claimInTx(ctx context.Context, tx *ent.Tx, t *ent.CouponTemplate, batch []*claimReq, mode stockMode) ([]claimResult, error) {
	out := make([]claimResult, len(batch))
	ids := make([]int, len(batch))
	for i, r := range batch {
		ids[i] = r.member
	}
	locked, err := lockAccounts(ctx, tx, ids)
	if err != nil {
		return nil, err
	}
	accts := make([]*ent.Account, 0, len(batch))
	idx := make([]int, 0, len(batch)) // index into batch of each of accts
	for i, r := range batch {
		a, ok := locked[r.member]
		if !ok {
			out[i].err = account.ErrMemberNotFound
			continue
		}
		accts = append(accts, a)
		idx = append(idx, i)
	}
	issued, err := s.issueBatch(ctx, tx, accts, t, SourceClaim, mode)
	if err != nil {
		return nil, err
	}
	// A self-claim is the member's CLAIM_COUPON behaviour; coupons issued
	// by other tools are not.
	evs := make([]behavior.Event, 0, len(issued))
	target := strconv.Itoa(t.ID)
	for k, r := range issued {
		i := idx[k]
		if r.Err != nil {
			out[i].err = r.Err
			continue
		}
		out[i].coupon = r.Coupon
		evs = append(evs, behavior.Event{MemberID: r.Coupon.MemberID, Kind: enum.BehaviorClaimCoupon,
			OccurredAt: r.Coupon.IssuedAt, Channel: enum.ChannelMiniProgram, TargetID: target,
			Key: fmt.Sprintf("CLAIM_COUPON:%d", r.Coupon.ID)})
	}
	if err := behavior.RecordMany(ctx, tx, evs); err != nil {
		return nil, err
	}
	if mode == stockLater {
		if err := takeStockLast(ctx, tx, t, len(evs)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// lockClaimers locks the accounts of a batch's members, in ascending
// member id.
const lockClaimers = `SELECT id, member_id, event_seq FROM accounts
WHERE member_id = ANY($1::bigint[])
ORDER BY member_id
FOR UPDATE`

// lockAccounts locks the accounts of the distinct members ids in ascending
// member id, and answers them by member id (none for a member id that does
// not exist). The accounts answered hold their id, member id and event_seq,
// all that issueBatch reads. When they all exist, as for every claim of a
// member after the first, that is one statement; otherwise
// account.LockMany creates the missing ones and locks them too. The
// missing ones are then locked after the others: a deadlock with a
// transaction creating the same account is possible (PostgreSQL breaks it,
// and the batch is retried once).
func lockAccounts(ctx context.Context, tx *ent.Tx, ids []int) (map[int]*ent.Account, error) {
	members := make([]int64, len(ids))
	for i, id := range ids {
		members[i] = int64(id)
	}
	rows, err := tx.QueryContext(ctx, lockClaimers, pq.Array(members))
	if err != nil {
		return nil, fmt.Errorf("locking accounts: %w", err)
	}
	defer rows.Close()
	out := make(map[int]*ent.Account, len(ids))
	for rows.Next() {
		a := &ent.Account{}
		if err := rows.Scan(&a.ID, &a.MemberID, &a.EventSeq); err != nil {
			return nil, fmt.Errorf("locking accounts: %w", err)
		}
		out[a.MemberID] = a
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("locking accounts: %w", err)
	}
	if err := rows.Close(); err != nil {
		return nil, fmt.Errorf("locking accounts: %w", err)
	}
	if len(out) < len(ids) {
		return account.LockMany(ctx, tx, ids)
	}
	return out, nil
}
