package tier_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/account"
	"github.com/onemember/onemember/ent/businessunit"
	"github.com/onemember/onemember/ent/growthentry"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/ent/order"
	"github.com/onemember/onemember/ent/schema/enum"
	memberaccount "github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/pgtest"
	"github.com/onemember/onemember/internal/platform/testkit"
	"github.com/onemember/onemember/internal/tier"
	"github.com/onemember/onemember/migrations"
)

// env is a migrated database with the default ladder and one store.
type env struct {
	t       *testing.T
	dsn     string
	db      *ent.Client
	svc     *tier.Service
	clock   *testkit.Clock
	zone    *time.Location
	tiers   map[string]*ent.Tier
	buID    int
	storeID int

	mu  sync.Mutex
	seq int
}

func newEnv(t *testing.T) *env {
	t.Helper()
	zone := testkit.Shanghai(t)
	e := &env{
		t:    t,
		dsn:  pgtest.New(t, migrations.FS),
		zone: zone,
		// Every test starts at 15 June 2026, 10:00 in Shanghai.
		clock: testkit.NewClock(time.Date(2026, 6, 15, 10, 0, 0, 0, zone)),
		tiers: map[string]*ent.Tier{},
	}
	e.db, _ = testkit.OpenEntClient(t, e.dsn, 0)
	e.svc = tier.New(e.db, zone, e.clock.Now)

	ctx := t.Context()
	benefits := map[string]int{}
	for _, code := range []string{"DISCOUNT_95", "DISCOUNT_90", "DISCOUNT_85", "DISCOUNT_80", "PERSONAL_SHOPPER"} {
		b := must(e.db.Benefit.Create().SetCode(code).SetName(code).SetKind(enum.BenefitKind("DISCOUNT")).Save(ctx))
		benefits[code] = b.ID
	}
	for _, s := range []struct {
		code, name, benefit string
		rank                int
		threshold, spend    int64
		referrals, permille int
	}{
		{"NORMAL", "普通会员", "DISCOUNT_95", 0, 0, 0, 0, 1000},
		{"SILVER", "银卡会员", "DISCOUNT_90", 1, 500, 0, 0, 1200},
		{"GOLD", "金卡会员", "DISCOUNT_85", 2, 1500, 20000, 0, 1500},
		{"DIAMOND", "钻石会员", "DISCOUNT_80", 3, 3000, 0, 1, 2000},
	} {
		e.tiers[s.code] = must(e.db.Tier.Create().SetCode(s.code).SetName(s.name).SetRank(s.rank).
			SetThreshold(s.threshold).SetMonthlySpendRequired(s.spend).SetReferralsRequired(s.referrals).
			SetPointsMultiplierPermille(s.permille).AddBenefitIDs(benefits[s.benefit]).Save(ctx))
	}
	bu := must(e.db.BusinessUnit.Create().SetCode("SUPER").SetName("超市").SetKind(businessunit.KindSUPERMARKET).Save(ctx))
	st := must(e.db.Store.Create().SetCode("SUPER-SH-01").SetName("上海一店").SetBusinessUnitID(bu.ID).Save(ctx))
	e.buID, e.storeID = bu.ID, st.ID
	return e
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func (e *env) next() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.seq++
	return e.seq
}

// at is a wall-clock time in the business zone.
func (e *env) at(y int, m time.Month, d, h, min int) time.Time {
	return time.Date(y, m, d, h, min, 0, 0, e.zone)
}

// memberSpec sets up a member; zero values mean: ACTIVE, registered two
// years before now, no tier_since, no account row unless a balance is set.
type memberSpec struct {
	tier       string // "" for no tier
	status     member.Status
	registered time.Time
	tierSince  time.Time
	referrals  int
}

// member creates a member and, when it has a tier_since or referrals, its
// account.
func (e *env) member(s memberSpec) *ent.Member {
	e.t.Helper()
	ctx := e.t.Context()
	if s.registered.IsZero() {
		s.registered = e.clock.Now().AddDate(-2, 0, 0)
	}
	if s.status == "" {
		s.status = member.StatusACTIVE
	}
	c := e.db.Member.Create().SetMemberNo(fmt.Sprintf("T%07d", e.next())).
		SetSourceChannel(enum.ChannelPOS).SetRegisteredAt(s.registered).SetStatus(s.status)
	if s.tier != "" {
		c.SetTierID(e.tiers[s.tier].ID)
	}
	m, err := c.Save(ctx)
	if err != nil {
		e.t.Fatalf("creating member: %v", err)
	}
	if !s.tierSince.IsZero() || s.referrals > 0 {
		a := e.db.Account.Create().SetMemberID(m.ID).SetSuccessfulReferrals(s.referrals)
		if !s.tierSince.IsZero() {
			a.SetTierSince(s.tierSince)
		}
		if err := a.Exec(ctx); err != nil {
			e.t.Fatalf("creating account: %v", err)
		}
	}
	return m
}

// growth appends a growth entry at the given time and keeps the account's
// growth value its projection.
func (e *env) growth(memberID int, amount int64, at time.Time) {
	e.t.Helper()
	ctx := e.t.Context()
	a := e.account(memberID)
	a, err := a.Update().AddGrowthValue(amount).Save(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	kind := growthentry.KindEARN
	if amount < 0 {
		kind = growthentry.KindREVERSAL
	}
	if err := e.db.GrowthEntry.Create().SetMemberID(memberID).SetSource(growthentry.SourceADJUSTMENT).
		SetKind(kind).SetAmount(amount).SetBalanceAfter(a.GrowthValue).SetOccurredAt(at).Exec(ctx); err != nil {
		e.t.Fatal(err)
	}
}

// account returns the member's account, creating it when missing.
func (e *env) account(memberID int) *ent.Account {
	e.t.Helper()
	ctx := e.t.Context()
	a, err := e.db.Account.Query().Where(account.MemberID(memberID)).Only(ctx)
	if ent.IsNotFound(err) {
		a, err = e.db.Account.Create().SetMemberID(memberID).Save(ctx)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

// order records a paid order (fen) and, when refunded > 0, one refund of
// that amount made at refundedAt.
func (e *env) order(memberID int, amount int64, paidAt time.Time, refunded int64, refundedAt time.Time) {
	e.t.Helper()
	ctx := e.t.Context()
	n := e.next()
	status := order.StatusPAID
	if refunded > 0 {
		status = order.StatusPARTIALLY_REFUNDED
	}
	o, err := e.db.Order.Create().SetExternalID(fmt.Sprintf("POS-%d", n)).SetChannel(enum.ChannelPOS).
		SetMemberID(memberID).SetStoreID(e.storeID).SetBusinessUnitID(e.buID).SetStatus(status).
		SetAmount(amount).SetRefundedAmount(refunded).SetPaidAt(paidAt).SetCreatedAt(paidAt).Save(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	if refunded > 0 {
		if err := e.db.Refund.Create().SetOrderID(o.ID).SetRefundID(fmt.Sprintf("R-%d", n)).
			SetAmount(refunded).SetPointsReversed(0).SetGrowthReversed(0).SetStoredValueRestored(0).
			SetCreatedAt(refundedAt).Exec(ctx); err != nil {
			e.t.Fatal(err)
		}
	}
}

// tierOf returns the member's tier code ("" for none).
func (e *env) tierOf(memberID int) string {
	e.t.Helper()
	m, err := e.db.Member.Query().Where(member.ID(memberID)).WithTier().Only(e.t.Context())
	if err != nil {
		e.t.Fatal(err)
	}
	if m.Edges.Tier == nil {
		return ""
	}
	return m.Edges.Tier.Code
}

// reevaluate runs Reevaluate the way a caller does: in a transaction,
// under the account lock.
func (e *env) reevaluate(ctx context.Context, memberID int, reason string) (*ent.TierChange, *ent.Account, error) {
	var acct *ent.Account
	tc, err := database.WithTx(ctx, e.db, func(tx *ent.Tx) (*ent.TierChange, error) {
		a, err := memberaccount.Lock(ctx, tx, memberID)
		if err != nil {
			return nil, err
		}
		acct = a
		return e.svc.Reevaluate(ctx, tx, a, reason)
	})
	return tc, acct, err
}
