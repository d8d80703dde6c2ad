package campaign_test

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/businessunit"
	entcampaign "github.com/onemember/onemember/ent/campaign"
	"github.com/onemember/onemember/ent/campaignexecution"
	entjob "github.com/onemember/onemember/ent/job"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/audience"
	"github.com/onemember/onemember/internal/auth/password"
	"github.com/onemember/onemember/internal/campaign"
	"github.com/onemember/onemember/internal/campaign/spec"
	"github.com/onemember/onemember/internal/coupon"
	"github.com/onemember/onemember/internal/jobqueue"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/pgtest"
	"github.com/onemember/onemember/internal/platform/testkit"
	"github.com/onemember/onemember/migrations"
)

// env is one database and a clock; node is one server process on it.
type env struct {
	t     *testing.T
	dsn   string
	db    *ent.Client
	sql   *sql.DB
	zone  *time.Location
	clock *testkit.Clock
	seq   atomic.Int64
	store *ent.Store
	*node
}

// node is what one server process runs: its own pool, services, job
// queue and campaign runner.
type node struct {
	db        *ent.Client
	sql       *sql.DB
	coupons   *coupon.Service
	svc       *campaign.Service
	jobs      *jobqueue.Queue
	messenger *recorder
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newEnv starts at 2026-03-10 10:00 in Shanghai, a Tuesday; mods adjust
// the first node's campaign service.
func newEnv(t *testing.T, mods ...func(*campaign.Deps)) *env {
	t.Helper()
	zone := testkit.Shanghai(t)
	e := &env{t: t, dsn: pgtest.New(t, migrations.FS), zone: zone,
		clock: testkit.NewClock(time.Date(2026, 3, 10, 10, 0, 0, 0, zone))}
	e.node = e.newNode(mods...)
	e.db, e.sql = e.node.db, e.node.sql
	u, err := e.db.BusinessUnit.Create().SetCode("BU1").SetName("超市").SetKind(businessunit.KindSUPERMARKET).Save(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if e.store, err = e.db.Store.Create().SetCode("S1").SetName("门店").SetBusinessUnitID(u.ID).Save(t.Context()); err != nil {
		t.Fatal(err)
	}
	return e
}

// newNode starts another "server process" on the database (batches of 50
// members, a runner polling every 50 ms).
func (e *env) newNode(mods ...func(*campaign.Deps)) *node {
	client, sqlDB := testkit.OpenEntClient(e.t, e.dsn, 16)
	n := &node{db: client, sql: sqlDB, messenger: &recorder{}}
	n.coupons = coupon.New(client, e.zone, e.clock.Now)
	ledgers := ledger.New(client, ledger.DefaultPolicy(e.zone), password.DefaultParams(), e.clock.Now)
	n.jobs = jobqueue.New(client, quiet(), jobqueue.Options{Now: e.clock.Now, Poll: 20 * time.Millisecond,
		Backoff: func(int) time.Duration { return 10 * time.Millisecond }})
	aud := audience.New(audience.Deps{DB: client, SQL: sqlDB, Zone: e.zone, Now: e.clock.Now,
		Index: audience.NewIndex(sqlDB, e.zone, e.clock.Now, audience.IndexOptions{})})
	d := campaign.Deps{DB: client, SQL: sqlDB, Audiences: aud, Coupons: n.coupons, Ledger: ledgers,
		Messenger: n.messenger, Jobs: n.jobs, Zone: e.zone, Now: e.clock.Now, Log: quiet(),
		Options: campaign.Options{Poll: 50 * time.Millisecond, BatchSize: 50}}
	for _, f := range mods {
		f(&d)
	}
	n.svc = campaign.New(d)
	n.jobs.Register(enum.JobRunCampaign, n.svc.RunHandler())
	return n
}

// run starts the node's runner and job workers until the test ends.
func (n *node) run(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = n.svc.Run(ctx) })
	wg.Go(func() { n.jobs.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// recorder is a Messenger that keeps what it was given; hook, when set,
// is called with each message first.
type recorder struct {
	mu   sync.Mutex
	sent []campaign.Message
	hook func(campaign.Message)
}

func (r *recorder) Send(_ context.Context, m campaign.Message) error {
	r.mu.Lock()
	hook := r.hook
	r.mu.Unlock()
	if hook != nil {
		hook(m)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, m)
	return nil
}

func (r *recorder) onSend(hook func(campaign.Message)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hook = hook
}

func (r *recorder) messages() []campaign.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sent)
}

// members creates n ACTIVE members registered now.
func (e *env) members(n int) []int {
	e.t.Helper()
	bulk := make([]*ent.MemberCreate, n)
	for i := range bulk {
		k := e.seq.Add(1)
		bulk[i] = e.db.Member.Create().SetMemberNo(fmt.Sprintf("T%06d", k)).
			SetDisplayName(fmt.Sprintf("会员%d", k)).SetSourceChannel(enum.ChannelPOS).SetRegisteredAt(e.clock.Now())
	}
	ms, err := e.db.Member.CreateBulk(bulk...).Save(e.t.Context())
	if err != nil {
		e.t.Fatalf("creating members: %v", err)
	}
	ids := make([]int, n)
	for i, m := range ms {
		ids[i] = m.ID
	}
	return ids
}

// template creates a FIXED_AMOUNT template of faceValue fen, valid 30 days.
func (e *env) template(faceValue int64, stock int) *ent.CouponTemplate {
	e.t.Helper()
	tpl, err := e.coupons.CreateTemplate(e.t.Context(), coupon.TemplateInput{
		Title: fmt.Sprintf("立减%d元", faceValue/100), Kind: coupon.KindFixedAmount, FaceValue: testkit.Ptr(faceValue),
		DaysAfterIssue: testkit.Ptr(30), TotalStock: stock, PerMemberLimit: 10,
	})
	if err != nil {
		e.t.Fatalf("creating template: %v", err)
	}
	return tpl
}

// audience saves an audience of exactly ids.
func (e *env) audience(ids []int) int {
	e.t.Helper()
	bm := roaring.New()
	for _, id := range ids {
		o, _ := audience.Ordinal(id)
		bm.Add(o)
	}
	var buf bytes.Buffer
	if _, err := bm.WriteTo(&buf); err != nil {
		e.t.Fatal(err)
	}
	a, err := e.db.Audience.Create().SetName(fmt.Sprintf("人群%d", e.seq.Add(1))).SetSource("IMPORT").
		SetStatus("READY").SetBitmap(buf.Bytes()).SetSize(int64(len(ids))).SetComputedAt(e.clock.Now()).Save(e.t.Context())
	if err != nil {
		e.t.Fatalf("saving audience: %v", err)
	}
	return a.ID
}

// consentAll records a granted consent of each member.
func (e *env) consentAll(members []int, kind string) {
	e.t.Helper()
	ids := make([]int64, len(members))
	for i, m := range members {
		ids[i] = int64(m)
	}
	if _, err := e.sql.ExecContext(e.t.Context(), `INSERT INTO consents (member_id, kind, granted, updated_at)
		SELECT m, $2, true, $3 FROM unnest($1::bigint[]) AS m`, pq.Array(ids), kind, e.clock.Now()); err != nil {
		e.t.Fatal(err)
	}
}

// consent records a granted consent.
func (e *env) consent(member int, kind string) {
	e.t.Helper()
	if err := e.db.Consent.Create().SetMemberID(member).SetKind(enum.ConsentKind(kind)).SetGranted(true).
		SetUpdatedAt(e.clock.Now()).Exec(e.t.Context()); err != nil {
		e.t.Fatal(err)
	}
}

// order records an order of member paid at paidAt.
func (e *env) order(member int, amount int64, paidAt time.Time) *ent.Order {
	e.t.Helper()
	o, err := e.db.Order.Create().SetExternalID(fmt.Sprintf("O%d", e.seq.Add(1))).SetChannel(enum.ChannelPOS).
		SetMemberID(member).SetStoreID(e.store.ID).SetBusinessUnitID(e.store.BusinessUnitID).
		SetAmount(amount).SetPaidAt(paidAt).SetCreatedAt(e.clock.Now()).Save(e.t.Context())
	if err != nil {
		e.t.Fatalf("recording order: %v", err)
	}
	return o
}

func couponAction(tplID int) *spec.Action {
	return &spec.Action{Kind: enum.ActionIssueCoupon, CouponTemplateID: &tplID}
}

func messageAction(ch enum.MessageChannel, title, body string) *spec.Action {
	return &spec.Action{Kind: enum.ActionSendMessage, Channel: &ch, Title: &title, Body: &body}
}

// oneOff is a ONE_OFF campaign at the clock's now.
func (e *env) oneOff(name string, actions ...*spec.Action) campaign.CreateInput {
	now := e.clock.Now()
	return campaign.CreateInput{Name: name, Trigger: &spec.Trigger{Kind: enum.TriggerOneOff, At: &now},
		Actions: actions, StartsAt: now.Add(-time.Hour)}
}

// create saves and activates a campaign.
func (e *env) create(in campaign.CreateInput) *ent.Campaign {
	e.t.Helper()
	c, err := e.svc.Create(e.t.Context(), nil, in)
	if err != nil {
		e.t.Fatalf("creating campaign: %v", err)
	}
	if c, err = e.svc.Activate(e.t.Context(), c.ID, false); err != nil {
		e.t.Fatalf("activating campaign: %v", err)
	}
	return c
}

// runDue plans the due time triggers and runs their jobs to the end.
func (e *env) runDue() {
	e.t.Helper()
	if _, err := e.svc.Plan(e.t.Context()); err != nil {
		e.t.Fatalf("plan: %v", err)
	}
	e.drain()
}

// drain runs the node's job workers until no RUN_CAMPAIGN job is left.
func (e *env) drain() {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.jobs.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	e.waitFor("the jobs to finish", func() bool {
		n, err := e.db.Job.Query().Where(entjob.KindEQ(enum.JobRunCampaign),
			entjob.StatusIn(enum.JobQueued, enum.JobRunning)).Count(context.Background())
		return err == nil && n == 0
	})
}

// waitFor polls cond for up to 20 s.
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// pass runs one event pass.
func (e *env) pass() int {
	e.t.Helper()
	n, err := e.svc.Pass(e.t.Context())
	if err != nil {
		e.t.Fatalf("pass: %v", err)
	}
	return n
}

// statuses maps member → statuses of the campaign's executions, in id
// order.
func (e *env) statuses(campaignID int) map[int][]enum.CampaignExecutionStatus {
	e.t.Helper()
	rows, err := e.db.CampaignExecution.Query().Where(campaignexecution.CampaignID(campaignID)).
		Order(campaignexecution.ByID()).All(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[int][]enum.CampaignExecutionStatus{}
	for _, r := range rows {
		out[r.MemberID] = append(out[r.MemberID], r.Status)
	}
	return out
}

// count runs a count query.
func (e *env) count(query string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.sql.QueryRowContext(e.t.Context(), query, args...).Scan(&n); err != nil {
		e.t.Fatalf("%s: %v", query, err)
	}
	return n
}

func (e *env) campaign(id int) *ent.Campaign {
	e.t.Helper()
	c, err := e.db.Campaign.Query().Where(entcampaign.ID(id)).Only(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func wantCode(t *testing.T, err error, code fault.Code) {
	t.Helper()
	if err == nil || fault.CodeOf(err) != code {
		t.Fatalf("want %s, got %v", code, err)
	}
}

var errInjected = errors.New("injected failure")
