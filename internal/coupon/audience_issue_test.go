package coupon_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	entcoupon "github.com/onemember/onemember/ent/coupon"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/ent/memberevent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/coupon"
	"github.com/onemember/onemember/internal/jobqueue"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/pgtest"
	"github.com/onemember/onemember/internal/platform/testkit"
	"github.com/onemember/onemember/migrations"
)

const audienceID = 77

var quietLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// audience answers ids for audienceID and NOT_FOUND for any other.
func audience(ids []int) coupon.AudienceMembers {
	return func(ctx context.Context, id int) ([]int, error) {
		if id != audienceID {
			return nil, fault.New(fault.NotFound, "audience not found")
		}
		return ids, nil
	}
}

// queue is a job queue on db running the ISSUE_COUPONS handler of svc
// (wrapped by wrap, when given). Leases are on clock, and long enough
// (a heartbeat every 200 s) that only a test moving clock ends one.
func queue(db *ent.Client, svc *coupon.Service, ids []int, clock *testkit.Clock, workers int, wrap func(jobqueue.Handler) jobqueue.Handler) *jobqueue.Queue {
	q := jobqueue.New(db, quietLog, jobqueue.Options{
		Workers: workers, Poll: 10 * time.Millisecond, Lease: 10 * time.Minute, Now: clock.Now,
		Backoff: func(int) time.Duration { return 0 },
	})
	h := svc.IssueToAudience(audience(ids))
	if wrap != nil {
		h = wrap(h)
	}
	q.Register(enum.JobIssueCoupons, h)
	return q
}

// runQueue runs q until stop (or the test's end); stop waits for Run.
func runQueue(t *testing.T, q *jobqueue.Queue) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		q.Run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Errorf("queue did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func issueJob(t *testing.T, q *jobqueue.Queue, tplID int, params ...any) *ent.Job {
	t.Helper()
	p := map[string]any{"templateId": tplID, "audienceId": audienceID}
	for i := 0; i+1 < len(params); i += 2 {
		p[params[i].(string)] = params[i+1]
	}
	j, _, err := q.Enqueue(t.Context(), enum.JobIssueCoupons, p, "", nil)
	if err != nil {
		t.Fatalf("enqueueing: %v", err)
	}
	return j
}

func waitFor(t *testing.T, q *jobqueue.Queue, id int, what string, ok func(*ent.Job) bool) *ent.Job {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		j, err := q.Get(t.Context(), id)
		if err != nil {
			t.Fatalf("reading job: %v", err)
		}
		if ok(j) {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %d: waited in vain for %s; it is %s, attempts %d, processed %d, error %q", id, what, j.Status, j.Attempts, j.Processed, j.Error)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func jobDone(j *ent.Job) bool { return jobqueue.Finished(j.Status) }

// wantOnePerMember checks that the job's coupons are exactly one for each
// of want, carry the job, and that the template's issued_count matches
// the coupon rows.
func (e *env) wantOnePerMember(t *testing.T, tpl *ent.CouponTemplate, jobID int, want []int) {
	t.Helper()
	cs, err := e.db.Coupon.Query().Where(entcoupon.TemplateID(tpl.ID)).All(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	per := map[int]int{}
	for _, c := range cs {
		per[c.MemberID]++
		if c.IssueJobID == nil || *c.IssueJobID != jobID || c.Source != fmt.Sprintf("job:%d", jobID) {
			t.Fatalf("coupon %s: job %v, source %q; want job %d", c.Code, deref(c.IssueJobID), c.Source, jobID)
		}
	}
	for _, id := range want {
		if per[id] != 1 {
			t.Fatalf("member %d holds %d coupons of the job; want 1", id, per[id])
		}
	}
	if len(cs) != len(want) {
		t.Fatalf("%d coupons; want %d", len(cs), len(want))
	}
	fresh, err := e.db.CouponTemplate.Get(t.Context(), tpl.ID)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.IssuedCount != len(cs) {
		t.Fatalf("issued_count %d, coupon rows %d", fresh.IssuedCount, len(cs))
	}
	events, err := e.db.MemberEvent.Query().Where(memberevent.TypeEQ(memberevent.TypeCOUPON_ISSUED)).Count(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if events != len(cs) {
		t.Fatalf("%d CouponIssued events for %d coupons", events, len(cs))
	}
}

func TestIssueToAudience(t *testing.T) {
	e := newEnv(t)
	ids := e.members(t, 600)
	tpl := e.template(t, func(in *coupon.TemplateInput) { in.TotalStock = 1000 })
	q := queue(e.db, e.svc, ids, testkit.NewClock(time.Now()), 2, nil)
	runQueue(t, q)
	j := waitFor(t, q, issueJob(t, q, tpl.ID).ID, "the end", jobDone)
	if j.Status != enum.JobSucceeded || j.Total != 600 || j.Processed != 600 || j.Failed != 0 || j.Error != "" || j.Attempts != 1 {
		t.Fatalf("job = %s, total %d, processed %d, failed %d, error %q, attempts %d", j.Status, j.Total, j.Processed, j.Failed, j.Error, j.Attempts)
	}
	if j.Checkpoint != int64(ids[len(ids)-1]) {
		t.Fatalf("checkpoint %d; want the last member %d", j.Checkpoint, ids[len(ids)-1])
	}
	e.wantOnePerMember(t, tpl, j.ID, ids)
	if evs := e.events(t, ids[321], memberevent.TypeCOUPON_ISSUED); len(evs) != 1 {
		t.Fatalf("member got %d CouponIssued events", len(evs))
	}
}

// Refused members count as failed and the batch goes on: one at the
// per-member limit, a merged one, an erased one and an id that is no
// member, all inside one batch.
func TestIssueToAudienceRefusals(t *testing.T) {
	e := newEnv(t)
	ids := e.members(t, 250)
	frozen, atLimit, merged, erased := ids[5], ids[10], ids[20], ids[30]
	tpl := e.template(t, func(in *coupon.TemplateInput) { in.PerMemberLimit = 1 })
	e.issue(t, atLimit, tpl)
	set := func(id int, s member.Status) {
		if err := e.db.Member.UpdateOneID(id).SetStatus(s).Exec(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	set(frozen, member.StatusFROZEN)
	set(merged, member.StatusMERGED)
	set(erased, member.StatusERASED)
	ghost := ids[len(ids)-1] + 1000 // no such member, served last
	audienceIDs := append(append([]int(nil), ids...), ghost)

	q := queue(e.db, e.svc, audienceIDs, testkit.NewClock(time.Now()), 1, nil)
	runQueue(t, q)
	j := waitFor(t, q, issueJob(t, q, tpl.ID).ID, "the end", jobDone)
	if j.Status != enum.JobSucceeded || j.Total != 251 || j.Processed != 247 || j.Failed != 4 {
		t.Fatalf("job = %s, total %d, processed %d, failed %d, error %q", j.Status, j.Total, j.Processed, j.Failed, j.Error)
	}
	n, err := e.db.Coupon.Query().Where(entcoupon.TemplateID(tpl.ID), entcoupon.MemberID(atLimit)).Count(t.Context())
	if err != nil || n != 1 {
		t.Fatalf("member at the limit holds %d coupons, %v; want just the one held", n, err)
	}
	for _, id := range []int{merged, erased} {
		if n, _ := e.db.Coupon.Query().Where(entcoupon.MemberID(id)).Count(t.Context()); n != 0 {
			t.Fatalf("member %d (not live) got %d coupons", id, n)
		}
	}
	if n, _ := e.db.Coupon.Query().Where(entcoupon.MemberID(frozen), entcoupon.IssueJobID(j.ID)).Count(t.Context()); n != 1 {
		t.Fatalf("frozen member got %d coupons; want 1", n)
	}
	fresh, _ := e.db.CouponTemplate.Get(t.Context(), tpl.ID)
	if total := e.countCoupons(t, tpl.ID); total != 248 || fresh.IssuedCount != 248 {
		t.Fatalf("%d coupons, issued_count %d; want 247 + the one held", total, fresh.IssuedCount)
	}
}

// The stock runs out in the second batch: exactly the stock is issued,
// everyone else counts as failed, and the job succeeds with a note.
func TestIssueToAudienceOutOfStock(t *testing.T) {
	e := newEnv(t)
	ids := e.members(t, 600)
	tpl := e.template(t, func(in *coupon.TemplateInput) { in.TotalStock = 250 })
	q := queue(e.db, e.svc, ids, testkit.NewClock(time.Now()), 2, nil)
	runQueue(t, q)
	j := waitFor(t, q, issueJob(t, q, tpl.ID).ID, "the end", jobDone)
	if j.Status != enum.JobSucceeded || j.Processed != 250 || j.Failed != 350 || j.Error != "out of stock after 250 coupons" {
		t.Fatalf("job = %s, processed %d, failed %d, error %q", j.Status, j.Processed, j.Failed, j.Error)
	}
	if j.Checkpoint != int64(ids[len(ids)-1]) {
		t.Fatalf("checkpoint %d; want past the last member", j.Checkpoint)
	}
	e.wantOnePerMember(t, tpl, j.ID, ids[:250])
}

func TestIssueToAudienceFailsAtOnce(t *testing.T) {
	e := newEnv(t)
	ids := e.members(t, 3)
	ended := e.template(t, func(in *coupon.TemplateInput) {
		in.DaysAfterIssue = nil
		in.ValidFrom, in.ValidTo = testkit.Ptr(e.clock.Now()), testkit.Ptr(e.clock.Now().Add(time.Hour))
	})
	e.clock.Advance(2 * time.Hour)
	good := e.template(t)
	q := queue(e.db, e.svc, ids, testkit.NewClock(time.Now()), 2, nil)
	runQueue(t, q)
	for name, params := range map[string][]any{
		"ended template":   {"templateId", ended.ID},
		"unknown template": {"templateId", good.ID + 1000},
		"unknown audience": {"templateId", good.ID, "audienceId", audienceID + 1},
		"fractional id":    {"templateId", 1.5},
		"missing audience": {"templateId", good.ID, "audienceId", nil},
	} {
		j := waitFor(t, q, issueJob(t, q, good.ID, params...).ID, "the end", jobDone)
		if j.Status != enum.JobFailed || j.Attempts != 1 || j.Error == "" || j.Processed != 0 {
			t.Errorf("%s: job = %s, attempts %d, processed %d, error %q; want FAILED at once", name, j.Status, j.Attempts, j.Processed, j.Error)
		}
	}
	if n, _ := e.db.Coupon.Query().Count(t.Context()); n != 0 {
		t.Fatalf("%d coupons issued by failed jobs", n)
	}
}

// holdAccount locks memberID's account in a transaction of its own until
// the returned release is called (or the test ends).
func holdAccount(t *testing.T, db *ent.Client, memberID int) (release func()) {
	t.Helper()
	tx, err := db.Tx(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := account.Lock(context.Background(), tx, memberID); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { _ = tx.Rollback() }) }
	t.Cleanup(release)
	return release
}

// A worker stopped in its third batch (its context cancelled while the
// batch waits on a member's account) rolls that batch back; the job,
// resumed by another queue, serves each member exactly once.
func TestIssueToAudienceResume(t *testing.T) {
	e := newEnv(t)
	ids := e.members(t, 450) // three batches: 200, 200 and 50
	tpl := e.template(t)
	release := holdAccount(t, e.db, ids[420])
	clock := testkit.NewClock(time.Now())

	first := queue(e.db, e.svc, ids, clock, 1, nil)
	stop := runQueue(t, first)
	j := issueJob(t, first, tpl.ID)
	waitFor(t, first, j.ID, "two batches", func(j *ent.Job) bool { return j.Processed == 400 })
	time.Sleep(50 * time.Millisecond) // the third batch reaches the held account
	stop()
	release()
	mid, err := first.Get(t.Context(), j.ID)
	if err != nil {
		t.Fatal(err)
	}
	if mid.Status != enum.JobQueued || mid.Processed != 400 || mid.Checkpoint != int64(ids[399]) {
		t.Fatalf("interrupted job = %s, processed %d, checkpoint %d", mid.Status, mid.Processed, mid.Checkpoint)
	}
	if n := e.countCoupons(t, tpl.ID); n != 400 {
		t.Fatalf("%d coupons after two batches; want 400 (the third rolled back)", n)
	}

	second := queue(e.db, e.svc, ids, clock, 2, nil)
	runQueue(t, second)
	done := waitFor(t, second, j.ID, "the end", jobDone)
	if done.Status != enum.JobSucceeded || done.Processed != 450 || done.Failed != 0 || done.Attempts != 2 {
		t.Fatalf("resumed job = %s, processed %d, failed %d, attempts %d", done.Status, done.Processed, done.Failed, done.Attempts)
	}
	e.wantOnePerMember(t, tpl, j.ID, ids)
}

// Two replicas run the job at once: the first stalls in its second batch
// past its lease, the second takes the job over and both go on working.
// The stale worker's batch is fenced out, and nobody gets two coupons.
func TestIssueToAudienceTakeoverRace(t *testing.T) {
	dsn := pgtest.New(t, migrations.FS)
	db1, _ := testkit.OpenEntClient(t, dsn, 32)
	db2, _ := testkit.OpenEntClient(t, dsn, 32)
	zone := testkit.Shanghai(t)
	bizClock := testkit.NewClock(time.Date(2025, 3, 10, 12, 0, 0, 0, zone))
	e := &env{db: db1, svc: coupon.New(db1, zone, bizClock.Now), clock: bizClock, zone: zone}
	svc2 := coupon.New(db2, zone, bizClock.Now)
	ids := e.members(t, 450)
	tpl := e.template(t)
	leaseClock := testkit.NewClock(time.Now())

	var (
		mu      sync.Mutex
		results = map[int]error{} // by attempt
	)
	record := func(h jobqueue.Handler) jobqueue.Handler {
		return func(ctx context.Context, r *jobqueue.Run) error {
			err := h(ctx, r)
			mu.Lock()
			results[r.Job.Attempts] = err
			mu.Unlock()
			return err
		}
	}
	release := holdAccount(t, db1, ids[250])
	q1 := queue(db1, e.svc, ids, leaseClock, 1, record)
	q2 := queue(db2, svc2, ids, leaseClock, 2, record)
	runQueue(t, q1)
	j := issueJob(t, q1, tpl.ID)
	waitFor(t, q1, j.ID, "the first batch", func(j *ent.Job) bool { return j.Processed == 200 })

	leaseClock.Advance(20 * time.Minute) // the stalled worker's lease runs out
	gate := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		<-gate
		runQueue(t, q2)
	})
	wg.Go(func() {
		<-gate
		release() // the stale worker goes on as the new one starts
	})
	close(gate)
	wg.Wait()

	done := waitFor(t, q1, j.ID, "the end", jobDone)
	if done.Status != enum.JobSucceeded || done.Processed != 450 || done.Failed != 0 || done.Attempts < 2 {
		t.Fatalf("job = %s, processed %d, failed %d, attempts %d", done.Status, done.Processed, done.Failed, done.Attempts)
	}
	e.wantOnePerMember(t, tpl, j.ID, ids)
	mu.Lock()
	defer mu.Unlock()
	if err := results[1]; !errors.Is(err, jobqueue.ErrLeaseLost) && !errors.Is(err, context.Canceled) {
		t.Fatalf("stale attempt ended with %v; want the lease lost", err)
	}
	if err := results[done.Attempts]; err != nil {
		t.Fatalf("last attempt ended with %v", err)
	}
}
