package marketing_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/businessunit"
	entcoupon "github.com/onemember/onemember/ent/coupon"
	"github.com/onemember/onemember/ent/pointsentry"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/auth/password"
	"github.com/onemember/onemember/internal/auth/signedcode"
	"github.com/onemember/onemember/internal/behavior"
	"github.com/onemember/onemember/internal/coupon"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/marketing"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/testkit"
	"github.com/onemember/onemember/internal/tier"
)

var _ marketing.CouponIssuer = (*coupon.Service)(nil)

// cheapHash keeps argon2 fast in tests.
var cheapHash = password.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// poolSize is the connection pool of the race tests (the brief asks for
// at least 64).
const poolSize = 64

type env struct {
	db      *ent.Client
	ledger  *ledger.Service
	tiers   *tier.Service
	coupons *coupon.Service
	tickets *signedcode.Signer
	svc     *marketing.Service
	clock   *testkit.Clock
	zone    *time.Location
	ladder  map[string]*ent.Tier
	seq     atomic.Int64
}

func newEnv(t *testing.T, opts ...marketing.Option) *env {
	t.Helper()
	client, sqlDB := testkit.EntClient(t, poolSize)
	zone := testkit.Shanghai(t)
	c := testkit.NewClock(time.Date(2025, 3, 10, 12, 0, 0, 0, zone))
	// Check-ins and referrals record behaviour: the test clock's month (and
	// the next three) need partitions.
	parts := behavior.New(client, sqlDB, zone, c.Now, behavior.Options{RetentionMonths: 1})
	if _, err := parts.MaintainPartitions(t.Context()); err != nil {
		t.Fatalf("behaviour partitions: %v", err)
	}
	tickets, err := signedcode.NewSigner([]byte(strings.Repeat("k", 32)), marketing.TicketPurpose, c.Now)
	if err != nil {
		t.Fatalf("ticket signer: %v", err)
	}
	e := &env{
		db:      client,
		ledger:  ledger.New(client, ledger.DefaultPolicy(zone), cheapHash, c.Now),
		tiers:   tier.New(client, zone, c.Now),
		coupons: coupon.New(client, zone, c.Now),
		tickets: tickets,
		clock:   c,
		zone:    zone,
		ladder:  map[string]*ent.Tier{},
	}
	e.svc = marketing.New(client, e.ledger, e.tiers, e.coupons, tickets, zone, c.Now, opts...)
	for i, tr := range []struct {
		code      string
		threshold int64
		referrals int
	}{{"NORMAL", 0, 0}, {"SILVER", 500, 0}, {"GOLD", 1500, 0}, {"DIAMOND", 3000, 1}} {
		row, err := client.Tier.Create().SetCode(tr.code).SetName(tr.code).SetRank(i).
			SetThreshold(tr.threshold).SetReferralsRequired(tr.referrals).Save(t.Context())
		if err != nil {
			t.Fatalf("creating tier %s: %v", tr.code, err)
		}
		e.ladder[tr.code] = row
	}
	return e
}

// behaviorRows counts the behaviour events matching where (SQL on
// behavior_events).
func (e *env) behaviorRows(t testing.TB, where string, args ...any) int {
	t.Helper()
	rows, err := e.db.QueryContext(context.Background(), "SELECT count(*) FROM behavior_events WHERE "+where, args...)
	if err != nil {
		t.Fatalf("counting behaviour events: %v", err)
	}
	defer rows.Close()
	var n int
	if !rows.Next() || rows.Scan(&n) != nil {
		t.Fatalf("counting behaviour events: %v", rows.Err())
	}
	return n
}

// member creates an active member, on tierCode when given.
func (e *env) member(t testing.TB, tierCode ...string) int {
	t.Helper()
	create := e.db.Member.Create().
		SetMemberNo(fmt.Sprintf("T%06d", e.seq.Add(1))).
		SetSourceChannel(enum.ChannelPOS)
	if len(tierCode) > 0 {
		create.SetTierID(e.ladder[tierCode[0]].ID)
	}
	m, err := create.Save(context.Background())
	if err != nil {
		t.Fatalf("creating member: %v", err)
	}
	return m.ID
}

// members creates n members, each with points.
func (e *env) members(t *testing.T, n int, points int64) []int {
	t.Helper()
	ids := make([]int, n)
	for i := range ids {
		ids[i] = e.member(t)
		if points > 0 {
			e.fund(t, ids[i], points)
		}
	}
	return ids
}

// fund earns points for the member.
func (e *env) fund(t testing.TB, memberID int, points int64) {
	t.Helper()
	_, err := database.WithTx(context.Background(), e.db, func(tx *ent.Tx) (*ent.PointsEntry, error) {
		acct, err := account.Lock(context.Background(), tx, memberID)
		if err != nil {
			return nil, err
		}
		return e.ledger.EarnPoints(context.Background(), tx, acct, ledger.Entry{Amount: points, Source: ledger.SourceAdjustment})
	})
	if err != nil {
		t.Fatalf("funding member %d: %v", memberID, err)
	}
}

func (e *env) account(t testing.TB, memberID int) *ent.Account {
	t.Helper()
	a, err := account.Get(context.Background(), e.db, memberID)
	if err != nil {
		t.Fatalf("reading account: %v", err)
	}
	return a
}

func (e *env) balance(t testing.TB, memberID int) int64 { return e.account(t, memberID).PointsBalance }

// template creates a coupon template with stock and a per-member limit.
func (e *env) template(t testing.TB, stock, perMember int) *ent.CouponTemplate {
	t.Helper()
	tpl, err := e.coupons.CreateTemplate(context.Background(), coupon.TemplateInput{
		Title: fmt.Sprintf("券 %d", e.seq.Add(1)), Kind: coupon.KindFixedAmount, FaceValue: testkit.Ptr[int64](500),
		DaysAfterIssue: testkit.Ptr(30), TotalStock: stock, PerMemberLimit: perMember,
	})
	if err != nil {
		t.Fatalf("creating coupon template: %v", err)
	}
	return tpl
}

func (e *env) couponsOf(t testing.TB, memberID int) int {
	t.Helper()
	n, err := e.db.Coupon.Query().Where(entcoupon.MemberID(memberID)).Count(context.Background())
	if err != nil {
		t.Fatalf("counting coupons: %v", err)
	}
	return n
}

// pointsSum counts and sums everyone's points entries of a source and
// kind.
func (e *env) pointsSum(t testing.TB, source pointsentry.Source, kind pointsentry.Kind) (count int, sum int64) {
	t.Helper()
	es, err := e.db.PointsEntry.Query().Where(pointsentry.SourceEQ(source), pointsentry.KindEQ(kind)).All(context.Background())
	if err != nil {
		t.Fatalf("loading points entries: %v", err)
	}
	for _, pe := range es {
		sum += pe.Amount
	}
	return len(es), sum
}

// store creates a business unit with one store.
func (e *env) store(t testing.TB) (bu, st int) {
	t.Helper()
	n := e.seq.Add(1)
	u, err := e.db.BusinessUnit.Create().SetCode(fmt.Sprintf("BU%d", n)).SetName("超市").
		SetKind(businessunit.KindSUPERMARKET).Save(context.Background())
	if err != nil {
		t.Fatalf("creating business unit: %v", err)
	}
	s, err := e.db.Store.Create().SetCode(fmt.Sprintf("S%d", n)).SetName("门店").
		SetBusinessUnitID(u.ID).Save(context.Background())
	if err != nil {
		t.Fatalf("creating store: %v", err)
	}
	return u.ID, s.ID
}

func (e *env) verifyLedgers(t *testing.T) {
	t.Helper()
	rep, err := ledger.Verify(context.Background(), e.db)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	for _, p := range rep.Problems {
		t.Errorf("ledger Verify: %s", p)
	}
}

// wantCode fails unless err has the code (and, for BAD_USER_INPUT, names
// field when field is given).
func wantCode(t testing.TB, err error, code fault.Code, field ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	if got := fault.CodeOf(err); got != code {
		t.Fatalf("got %s (%v), want %s", got, err, code)
	}
	for _, f := range field {
		found := false
		for _, inv := range fault.Fields(err) {
			if inv.Field == f {
				found = true
			}
		}
		if !found {
			t.Errorf("error %v does not name field %q", err, f)
		}
	}
}

// parallel runs fn(i) for i in [0, n) at once and returns the errors.
func parallel(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// tally counts errors by code ("" for success).
func tally(errs []error) map[fault.Code]int {
	out := map[fault.Code]int{}
	for _, err := range errs {
		if err == nil {
			out[""]++
			continue
		}
		out[fault.CodeOf(err)]++
	}
	return out
}

// unexpected reports errors that are not of the allowed codes.
func unexpected(t *testing.T, errs []error, allowed ...fault.Code) {
	t.Helper()
	for _, err := range errs {
		if err == nil {
			continue
		}
		ok := false
		for _, c := range allowed {
			if fault.CodeOf(err) == c && !errors.Is(err, context.DeadlineExceeded) {
				ok = true
			}
		}
		if !ok {
			t.Errorf("unexpected error: %v", err)
		}
	}
}
