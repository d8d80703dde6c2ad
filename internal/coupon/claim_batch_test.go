package coupon_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/memberevent"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/coupon"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
)

// scalar runs a query answering one integer.
func (e *env) scalar(t testing.TB, query string, args ...any) int {
	t.Helper()
	rows, err := e.db.QueryContext(context.Background(), query, args...)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	var n int
	if !rows.Next() || rows.Scan(&n) != nil {
		t.Fatalf("%s: no answer (%v)", query, rows.Err())
	}
	return n
}

// checkClaimWrites checks what the claims of tpl wrote: issued_count, one
// coupon per claim that succeeded, each with its COUPON_ISSUED event
// (naming the coupon) and notification, and its CLAIM_COUPON behaviour
// event; every account's event_seq is its events' last seq, gap-free.
func (e *env) checkClaimWrites(t *testing.T, tpl *ent.CouponTemplate, members []int, claimed int) {
	t.Helper()
	got, err := e.db.CouponTemplate.Get(t.Context(), tpl.ID)
	if err != nil || got.IssuedCount != claimed {
		t.Fatalf("issued_count %d (%v), want %d", got.IssuedCount, err, claimed)
	}
	if n := e.countCoupons(t, tpl.ID); n != claimed {
		t.Fatalf("%d coupons of the template, want %d", n, claimed)
	}
	if n := e.scalar(t, `SELECT count(*) FROM coupons c
		JOIN member_events e ON e.member_id = c.member_id AND e.type = 'COUPON_ISSUED'
			AND (e.payload->>'couponId')::bigint = c.id AND (e.payload->>'templateId')::bigint = c.template_id
		JOIN notifications n ON n.event_id = e.id AND n.member_id = c.member_id
		WHERE c.template_id = $1`, tpl.ID); n != claimed {
		t.Fatalf("%d coupons with their COUPON_ISSUED event and notification, want %d", n, claimed)
	}
	if n := e.scalar(t, `SELECT count(*) FROM member_events WHERE member_id = ANY($1)`, pq.Array(members)); n != claimed {
		t.Fatalf("%d member events, want one per coupon (%d)", n, claimed)
	}
	if n := e.scalar(t, `SELECT count(*) FROM coupons c
		JOIN behavior_events b ON b.source = 's' AND b.event_id = 'CLAIM_COUPON:' || c.id
			AND b.kind = 'CLAIM_COUPON' AND b.member_id = c.member_id AND b.target_id = c.template_id::text
			AND b.channel = 'MINI_PROGRAM' AND b.occurred_at = c.issued_at
		WHERE c.template_id = $1`, tpl.ID); n != claimed {
		t.Fatalf("%d coupons with their CLAIM_COUPON behaviour event, want %d", n, claimed)
	}
	if n := e.behaviorRows(t, "member_id = ANY($1)", pq.Array(members)); n != claimed {
		t.Fatalf("%d behaviour events, want one per coupon (%d)", n, claimed)
	}
	if n := e.scalar(t, `SELECT count(*) FROM accounts a
		CROSS JOIN LATERAL (SELECT COALESCE(max(seq), 0) AS last, count(*) AS n
			FROM member_events e WHERE e.member_id = a.member_id) e
		WHERE a.member_id = ANY($1) AND (a.event_seq <> e.last OR a.event_seq <> e.n)`,
		pq.Array(members)); n != 0 {
		t.Fatalf("%d accounts whose event_seq is not their events' last seq (or has gaps)", n)
	}
}

// TestClaimGroupCommitStockRace: 64 goroutines released together claim one
// template for 4 members each, 256 claims for a stock of 100. Exactly the
// stock is claimed, everything a claim writes is there, and the claims were
// served in fewer transactions than claims.
func TestClaimGroupCommitStockRace(t *testing.T) {
	e := newEnv(t)
	const (
		workers = 64
		each    = 4
		stock   = 100
	)
	tpl := e.template(t, func(in *coupon.TemplateInput) { in.TotalStock, in.PerMemberLimit = stock, 1 })
	members := e.members(t, workers*each)
	before := coupon.ClaimBatches(e.svc)
	type outcome struct {
		c   *ent.Coupon
		err error
	}
	outs := make([]outcome, len(members))
	race(workers, func(w int) error {
		for k := range each {
			i := w*each + k
			c, err := e.svc.Claim(context.Background(), members[i], tpl.ID)
			outs[i] = outcome{c, err}
		}
		return nil
	})
	ok, ids, last := 0, map[int]bool{}, 0
	for i, o := range outs {
		switch {
		case o.err == nil:
			ok++
			if o.c == nil || o.c.MemberID != members[i] || o.c.TemplateID != tpl.ID || ids[o.c.ID] ||
				o.c.Edges.Template == nil || o.c.Edges.Template.Title != tpl.Title {
				t.Fatalf("claim %d answered %+v", i, o.c)
			}
			ids[o.c.ID] = true
			last = max(last, o.c.Edges.Template.IssuedCount)
		case !errors.Is(o.err, coupon.ErrOutOfStock) || fault.CodeOf(o.err) != fault.OutOfStock:
			t.Fatalf("claim %d: %v, want a coupon or OUT_OF_STOCK", i, o.err)
		}
	}
	if ok != stock || last != stock {
		t.Fatalf("%d claims succeeded, the last saw issued_count %d; want the stock %d", ok, last, stock)
	}
	e.checkClaimWrites(t, tpl, members, stock)
	batches := coupon.ClaimBatches(e.svc) - before
	t.Logf("%d claims in %d batches", len(members), batches)
	if batches >= int64(len(members)) || batches < int64(len(members)/coupon.MaxClaimBatch) {
		t.Fatalf("%d claims served in %d batches: not combined", len(members), batches)
	}
}

// TestClaimStockLastRace: claims of a template whose stock is far from
// running out take their stock last, after the coupons are written; under
// 64 racing claimants every claim gets its coupon, and the count, the
// coupons and their writes agree.
func TestClaimStockLastRace(t *testing.T) {
	e := newEnv(t)
	const workers, each = 64, 4
	tpl := e.template(t, func(in *coupon.TemplateInput) { in.TotalStock, in.PerMemberLimit = 1_000_000, 1 })
	members := e.members(t, workers*each)
	errs := make([]error, len(members))
	race(workers, func(w int) error {
		for k := range each {
			i := w*each + k
			_, errs[i] = e.svc.Claim(context.Background(), members[i], tpl.ID)
		}
		return nil
	})
	for i, err := range errs {
		if err != nil {
			t.Fatalf("claim %d: %v", i, err)
		}
	}
	e.checkClaimWrites(t, tpl, members, len(members))
}

// TestClaimStockLastFallsBack: a batch that took its stock last on a stale
// reading (another server sold most of the stock meanwhile) finds the stock
// short, is rolled back, and is served again taking the stock first: what
// is left goes to the oldest claim, the other is OUT_OF_STOCK, and nothing
// of the first attempt remains.
func TestClaimStockLastFallsBack(t *testing.T) {
	e := newEnv(t)
	tpl := e.template(t, func(in *coupon.TemplateInput) { in.TotalStock, in.PerMemberLimit = 1000, 1 })
	members := e.members(t, 2)
	stale, err := e.db.CouponTemplate.Get(t.Context(), tpl.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.ExecContext(t.Context(), "UPDATE coupon_templates SET issued_count = 999 WHERE id = $1", tpl.ID); err != nil {
		t.Fatal(err)
	}
	errs := coupon.ServeClaims(t.Context(), e.svc, stale, members...)
	if errs[0] != nil || !errors.Is(errs[1], coupon.ErrOutOfStock) {
		t.Fatalf("claims answered %v; want a coupon, then OUT_OF_STOCK", errs)
	}
	if n := e.scalar(t, "SELECT issued_count FROM coupon_templates WHERE id = $1", tpl.ID); n != 1000 {
		t.Fatalf("issued_count %d, want 1000", n)
	}
	if n := e.countCoupons(t, tpl.ID); n != 1 {
		t.Fatalf("%d coupons, want 1", n)
	}
	if n := e.behaviorRows(t, "member_id = $1", members[1]); n != 0 {
		t.Fatalf("the refused member has %d behaviour rows", n)
	}
	if n := e.scalar(t, "SELECT count(*) FROM member_events WHERE member_id = $1", members[1]); n != 0 {
		t.Fatalf("the refused member has %d events", n)
	}
}

// TestClaimGroupCommitLimitRace: two members claim 24 times each at once,
// among 16 other members claiming once, with a per-member limit of 3: each
// of the two gets exactly 3 coupons (a member's repeated claims never share
// a batch), everyone else one.
func TestClaimGroupCommitLimitRace(t *testing.T) {
	e := newEnv(t)
	const limit, repeats = 3, 24
	tpl := e.template(t, func(in *coupon.TemplateInput) { in.TotalStock, in.PerMemberLimit = 1000, limit })
	members := e.members(t, 18)
	var claimers []int
	for range repeats {
		claimers = append(claimers, members[0], members[1])
	}
	claimers = append(claimers, members[2:]...)
	errs := race(len(claimers), func(i int) error {
		_, err := e.svc.Claim(context.Background(), claimers[i], tpl.ID)
		return err
	})
	okBy, limitedBy := map[int]int{}, map[int]int{}
	for i, err := range errs {
		switch {
		case err == nil:
			okBy[claimers[i]]++
		case fault.CodeOf(err) == fault.LimitExceeded:
			limitedBy[claimers[i]]++
		default:
			t.Fatalf("claim %d: %v", i, err)
		}
	}
	for _, m := range members[:2] {
		if okBy[m] != limit || limitedBy[m] != repeats-limit {
			t.Fatalf("member %d: %d claimed, %d LIMIT_EXCEEDED; want %d and %d", m, okBy[m], limitedBy[m], limit, repeats-limit)
		}
	}
	for _, m := range members[2:] {
		if okBy[m] != 1 {
			t.Fatalf("member %d: %d claimed, want 1", m, okBy[m])
		}
	}
	e.checkClaimWrites(t, tpl, members, 2*limit+len(members)-2)
}

// TestClaimCancelled: while the template's batches are held up (their
// members' accounts are locked by another transaction), a claim queued
// behind them whose context ends answers at once with the context's error
// and is never served; the claims of the held batches, whose contexts are
// cancelled meanwhile, get their coupons when the batches commit.
func TestClaimCancelled(t *testing.T) {
	e := newEnv(t)
	tpl := e.template(t)
	members := e.members(t, coupon.ClaimRunners+1)
	held, queued := members[:coupon.ClaimRunners], members[coupon.ClaimRunners]

	lock := func(tx *ent.Tx) error {
		for _, m := range held {
			if _, err := account.Lock(t.Context(), tx, m); err != nil {
				return err
			}
		}
		return nil
	}
	if _, err := database.WithTx(t.Context(), e.db, func(tx *ent.Tx) (struct{}, error) { return struct{}{}, lock(tx) }); err != nil {
		t.Fatal(err) // creates the accounts
	}
	tx, err := e.db.Tx(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	if err := lock(tx); err != nil {
		t.Fatal(err)
	}

	type outcome struct {
		c   *ent.Coupon
		err error
	}
	first := coupon.ClaimBatches(e.svc)
	heldCtx, cancelHeld := context.WithCancel(context.Background())
	heldDone := make(chan outcome, len(held))
	for _, m := range held {
		before := coupon.ClaimBatches(e.svc)
		go func() {
			c, err := e.svc.Claim(heldCtx, m, tpl.ID)
			heldDone <- outcome{c, err}
		}()
		for coupon.ClaimBatches(e.svc) == before { // held batch i has started
			time.Sleep(time.Millisecond)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	c, err := e.svc.Claim(ctx, queued, tpl.ID)
	if !errors.Is(err, context.DeadlineExceeded) || c != nil {
		t.Fatalf("queued claim: %+v, %v; want context.DeadlineExceeded", c, err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("the queued claim waited %v for the held batches", waited)
	}
	cancelHeld()
	select {
	case o := <-heldDone:
		t.Fatalf("a held claim answered %+v, %v before its batch could run", o.c, o.err)
	case <-time.After(100 * time.Millisecond):
	}

	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	for range held {
		o := <-heldDone
		if o.err != nil || o.c == nil || !slices.Contains(held, o.c.MemberID) {
			t.Fatalf("held claim: %+v, %v; want its coupon", o.c, o.err)
		}
	}
	if n := e.scalar(t, "SELECT count(*) FROM coupons WHERE member_id = $1", queued); n != 0 {
		t.Fatalf("the cancelled claim's member holds %d coupons", n)
	}
	e.checkClaimWrites(t, tpl, members, len(held))
	// The runners are idle again: the abandoned claim was dropped, not served.
	if n := coupon.ClaimBatches(e.svc) - first; n != int64(len(held)) {
		t.Fatalf("%d batches, want %d", n, len(held))
	}
	if _, err := e.svc.Claim(t.Context(), queued, tpl.ID); err != nil {
		t.Fatalf("claiming again: %v", err)
	}
}

// TestClaimUnknownMember: a member id that does not exist is NOT_FOUND and
// does not fail the claims it shares a batch with.
func TestClaimUnknownMember(t *testing.T) {
	e := newEnv(t)
	tpl := e.template(t)
	members := e.members(t, 8)
	claimers := append([]int{1}, members...) // 1 is no member
	errs := race(len(claimers), func(i int) error {
		_, err := e.svc.Claim(context.Background(), claimers[i], tpl.ID)
		return err
	})
	if !errors.Is(errs[0], account.ErrMemberNotFound) {
		t.Fatalf("unknown member: %v, want ErrMemberNotFound", errs[0])
	}
	for i, err := range errs[1:] {
		if err != nil {
			t.Fatalf("member %d: %v", i, err)
		}
	}
	e.checkClaimWrites(t, tpl, members, len(members))
}

// TestIssueBatchRedrawsTakenCodes: codes taken by an earlier coupon or by
// another member of the batch are drawn again, without taking the stock
// twice.
func TestIssueBatchRedrawsTakenCodes(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	tpl := e.template(t)
	members := e.members(t, 4)
	codes := []string{"AAAAAAAAAAAA", // members[0], by IssueInTx
		"AAAAAAAAAAAA", "BBBBBBBBBBBB", "BBBBBBBBBBBB", // the batch: two collisions
		"AAAAAAAAAAAA", "CCCCCCCCCCCC", // redrawn: one collides again
		"DDDDDDDDDDDD"}
	var mu sync.Mutex
	coupon.SetCodeSource(e.svc, func() (string, error) {
		mu.Lock()
		defer mu.Unlock()
		c := codes[0]
		codes = codes[1:]
		return c, nil
	})
	e.issue(t, members[0], tpl)
	issued, err := database.WithTx(ctx, e.db, func(tx *ent.Tx) ([]coupon.Issued, error) {
		accts, err := lockAll(ctx, tx, members[1:])
		if err != nil {
			return nil, err
		}
		return e.svc.IssueBatchInTx(ctx, tx, accts, tpl.ID, "TEST")
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for i, r := range issued {
		if r.Err != nil || r.Coupon == nil || r.Coupon.MemberID != members[i+1] {
			t.Fatalf("member %d: %+v", i+1, r)
		}
		got[r.Coupon.Code] = r.Coupon.MemberID
	}
	if len(got) != 3 || got["AAAAAAAAAAAA"] != 0 || len(codes) != 0 {
		t.Fatalf("codes %v, %d left to draw", got, len(codes))
	}
	if tp, _ := e.db.CouponTemplate.Get(ctx, tpl.ID); tp.IssuedCount != 4 {
		t.Fatalf("issued_count = %d, want 4", tp.IssuedCount)
	}
	for _, m := range members {
		evs := e.events(t, m, memberevent.TypeCOUPON_ISSUED)
		if len(evs) != 1 || evs[0].Seq != 1 {
			t.Fatalf("member %d: events %+v, want one of seq 1", m, evs)
		}
	}
}

// BenchmarkClaimHotTemplate is the claims scenario of make bench without
// HTTP: 64 goroutines claim one template for 2,000 members in turn. It
// reports claims per batch (group commit at work) besides the time per
// claim.
func BenchmarkClaimHotTemplate(b *testing.B) {
	e := newEnv(b)
	tpl := e.template(b, func(in *coupon.TemplateInput) { in.TotalStock, in.PerMemberLimit = 1<<30, 1<<30 })
	members := e.members(b, 2000)
	var next atomic.Int64
	before := coupon.ClaimBatches(e.svc)
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m := members[int(next.Add(1))%len(members)]
			if _, err := e.svc.Claim(context.Background(), m, tpl.ID); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/float64(coupon.ClaimBatches(e.svc)-before), "claims/batch")
}
