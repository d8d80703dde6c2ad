package membercard_test

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"entgo.io/contrib/entgql"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/growthentry"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/ent/paidmembership"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/auth/password"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/membercard"
	"github.com/onemember/onemember/internal/membership"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/pgtest"
	"github.com/onemember/onemember/internal/platform/testkit"
	"github.com/onemember/onemember/internal/tier"
	"github.com/onemember/onemember/migrations"
)

// env is a migrated database with a ladder whose retention periods differ
// by tier, three paid plans, and the services a card stands in for, all on
// one clock.
type env struct {
	t      *testing.T
	db     *ent.Client
	clock  *testkit.Clock
	zone   *time.Location
	tiers  *tier.Service
	ledger *ledger.Service
	ms     *membership.Service
	cards  *membercard.Reader
	ladder []*ent.Tier
	plans  []*ent.PaidMembershipPlan
	tmpls  []*ent.CouponTemplate
	seq    int
}

func newEnv(t *testing.T, zone *time.Location, now time.Time) *env {
	t.Helper()
	dsn := pgtest.New(t, migrations.FS)
	db, _ := testkit.OpenEntClient(t, dsn, 0)
	// The card pool, as the server opens it.
	cardDB, _ := testkit.OpenEntClientWith(t, dsn, database.Options{MaxOpenConns: membercard.Runners, Runtime: membercard.Session})
	clock := testkit.NewClock(now)
	cheap := password.Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	e := &env{t: t, db: db, clock: clock, zone: zone,
		tiers:  tier.New(db, zone, clock.Now),
		ledger: ledger.New(db, ledger.DefaultPolicy(zone), cheap, clock.Now),
		ms:     membership.New(db, zone, clock.Now),
	}
	e.cards = membercard.New(db, cardDB, e.tiers, e.ms)
	ctx := t.Context()
	for i, s := range []struct {
		code      string
		threshold int64
		retention int
	}{{"NORMAL", 0, 12}, {"SILVER", 500, 12}, {"GOLD", 1500, 6}, {"DIAMOND", 3000, 1}} {
		e.ladder = append(e.ladder, must(db.Tier.Create().SetCode(s.code).SetName(s.code).SetRank(i).
			SetThreshold(s.threshold).SetRetentionMonths(s.retention).Save(ctx)))
	}
	for _, p := range []enum.PlanPeriod{"MONTH", "QUARTER", "YEAR"} {
		e.plans = append(e.plans, must(db.PaidMembershipPlan.Create().SetCode("PLUS_"+string(p)).
			SetName("PLUS "+string(p)).SetPeriod(p).SetPrice(1990).Save(ctx)))
	}
	for i, kind := range []enum.CouponKind{"FIXED_AMOUNT", "PERCENT_OFF"} {
		c := db.CouponTemplate.Create().SetTitle(fmt.Sprint("券", i)).SetKind(kind).SetTotalStock(1000).SetPerMemberLimit(100)
		if kind == "PERCENT_OFF" {
			c.SetDiscountPercent(90)
		} else {
			c.SetFaceValue(500)
		}
		e.tmpls = append(e.tmpls, must(c.Save(ctx)))
	}
	return e
}

// must is v, for setup that cannot fail unless the test is wrong.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// randomMember creates a member with a random place on the ladder (or
// none), review period, growth history, points lots and memberships,
// around the clock's now.
func (e *env) randomMember(rng *rand.Rand) *ent.Member {
	e.t.Helper()
	ctx := e.t.Context()
	now := e.clock.Now()
	// Instants up to d before now, at any microsecond.
	before := func(d time.Duration) time.Time {
		return now.Add(-time.Duration(rng.Int64N(int64(d)))).Truncate(time.Microsecond)
	}
	e.seq++
	c := e.db.Member.Create().SetMemberNo(fmt.Sprintf("C%07d", e.seq)).SetSourceChannel(enum.ChannelPOS).
		SetRegisteredAt(before(5 * 365 * 24 * time.Hour)).SetStatus(member.StatusACTIVE)
	if k := rng.IntN(len(e.ladder) + 1); k < len(e.ladder) {
		c.SetTierID(e.ladder[k].ID)
	}
	m := must(c.Save(ctx))
	if rng.IntN(5) == 0 { // no account at all
		return m
	}
	a := e.db.Account.Create().SetMemberID(m.ID).SetPointsBalance(rng.Int64N(10_000)).
		SetStoredPrincipal(rng.Int64N(100_000)).SetStoredBonus(rng.Int64N(5_000))
	if rng.IntN(2) == 0 {
		a.SetTierSince(before(3 * 365 * 24 * time.Hour))
	}
	if rng.IntN(2) == 0 {
		a.SetPayPasswordHash("hash")
	}
	acct := must(a.Save(ctx))
	var growth int64
	for range rng.IntN(8) {
		amount := rng.Int64N(900) - 100
		growth += amount
		kind := growthentry.KindEARN
		if amount < 0 {
			kind = growthentry.KindREVERSAL
		}
		must(e.db.GrowthEntry.Create().SetMemberID(m.ID).SetSource(growthentry.SourceADJUSTMENT).SetKind(kind).
			SetAmount(amount).SetBalanceAfter(growth).SetOccurredAt(before(2 * 365 * 24 * time.Hour)).Save(ctx))
	}
	must(acct.Update().SetGrowthValue(growth).Save(ctx))
	if n := rng.IntN(6); n > 0 {
		entry := must(e.ledger.Adjust(ctx, m.ID, 100, "test", fmt.Sprintf("lots-%d", m.ID)))
		shared := now.Add(10 * 24 * time.Hour).Truncate(time.Microsecond)
		for i := range n {
			at := now.Add(time.Duration(rng.Int64N(int64(70*24*time.Hour))) - 10*24*time.Hour).Truncate(time.Microsecond)
			if i%3 == 0 {
				at = shared // several lots expiring together
			}
			must(e.db.PointsLot.Create().SetMemberID(m.ID).SetEntryID(entry.ID).SetAmount(50).
				SetRemaining(rng.Int64N(3) * 25).SetEarnedAt(now.AddDate(-1, 0, 0)).SetExpiresAt(at).Save(ctx))
		}
	}
	statuses := []enum.CouponStatus{"AVAILABLE", "AVAILABLE", "REDEEMED", "EXPIRED"}
	for i := range rng.IntN(14) {
		c := e.db.Coupon.Create().SetCode(fmt.Sprintf("C%d-%d", m.ID, i)).SetMemberID(m.ID).
			SetTemplateID(e.tmpls[rng.IntN(len(e.tmpls))].ID).SetStatus(statuses[rng.IntN(len(statuses))]).
			SetExpiresAt(now.Add(time.Duration(rng.IntN(4)) * 24 * time.Hour)) // ties: id decides
		if rng.IntN(4) == 0 {
			c.SetRedeemedAt(before(time.Hour)).SetSource("claim").SetDiscount(500)
		}
		must(c.Save(ctx))
	}
	for _, p := range e.plans {
		if rng.IntN(3) != 0 {
			continue
		}
		status := []paidmembership.Status{paidmembership.StatusACTIVE, paidmembership.StatusEXPIRED, paidmembership.StatusCANCELLED}[rng.IntN(3)]
		must(e.db.PaidMembership.Create().SetMemberID(m.ID).SetPlanID(p.ID).SetStatus(status).
			SetStartedAt(before(365 * 24 * time.Hour)).SetExpiresAt(before(365*24*time.Hour).AddDate(1, 0, 0)).Save(ctx))
	}
	return m
}

// tierID is t's id, 0 for none: the ladder is a 2-second display cache,
// so two reads may hold equal tiers in different instances.
func tierID(t *ent.Tier) int {
	if t == nil {
		return 0
	}
	return t.ID
}

// check compares m's card with what the services answer one by one.
func (e *env) check(m *ent.Member) (usedSQLWindow bool) {
	e.t.Helper()
	ctx := e.t.Context()
	c, err := e.cards.Read(ctx, m, membercard.CouponPage{})
	if err != nil {
		e.t.Fatalf("member %d: Read: %v", m.ID, err)
	}
	acct := must(account.Get(ctx, e.db, m.ID))
	if want := membercard.BalancesOf(acct); c.Balances != want {
		e.t.Errorf("member %d: balances %+v, want %+v", m.ID, c.Balances, want)
	}
	want := must(e.tiers.StatusOf(ctx, e.db, m, acct))
	if got := c.Status; !got.ReviewAt.Equal(want.ReviewAt) || got.GrowthInWindow != want.GrowthInWindow ||
		got.GrowthToRetain != want.GrowthToRetain || got.ToNext != want.ToNext || tierID(got.Current) != tierID(want.Current) ||
		tierID(got.Projected) != tierID(want.Projected) || tierID(got.Next) != tierID(want.Next) {
		e.t.Errorf("member %d (tier %v, tier since %v, registered %v): status\n%+v, want\n%+v",
			m.ID, m.TierID, acct.TierSince, m.RegisteredAt, got, want)
	}
	for _, days := range []int{1, 30, 366} {
		within := time.Duration(days) * 24 * time.Hour
		want := must(e.ledger.ExpiringSoon(ctx, e.db, m.ID, within))
		got, ok := c.ExpiringSoon(within)
		if !ok {
			continue
		}
		if !slices.EqualFunc(got, want, func(a, b ledger.Expiring) bool { return a.Amount == b.Amount && a.ExpiresAt.Equal(b.ExpiresAt) }) {
			e.t.Errorf("member %d: expiring within %d days %v, want %v", m.ID, days, got, want)
		}
	}
	wantMs := must(e.ms.Memberships(ctx, m.ID))
	if !slices.EqualFunc(c.Memberships, wantMs, func(a, b *ent.PaidMembership) bool {
		return a.ID == b.ID && a.PlanID == b.PlanID && a.Status == b.Status && a.StartedAt.Equal(b.StartedAt) &&
			a.ExpiresAt.Equal(b.ExpiresAt) && a.AutoRenew == b.AutoRenew && a.CreatedAt.Equal(b.CreatedAt) &&
			a.Edges.Plan != nil && a.Edges.Plan.Code == b.Edges.Plan.Code
	}) {
		e.t.Errorf("member %d: memberships %v, want %v", m.ID, c.Memberships, wantMs)
	}
	available := enum.CouponStatus("AVAILABLE")
	for _, page := range []membercard.CouponPage{{First: 3}, {First: 10, Status: &available}, {First: 1, Status: &available}} {
		withPage, err := e.cards.Read(ctx, m, page)
		if err != nil {
			e.t.Fatalf("member %d: Read with %+v: %v", m.ID, page, err)
		}
		got, ok := withPage.FirstCoupons(page.First, page.Status)
		if !ok {
			e.t.Fatalf("member %d: the card did not read the page %+v", m.ID, page)
		}
		want := must(e.cards.FirstCoupons(ctx, m.ID, page.First, page.Status))
		if g, w := connOf(got), connOf(want); !reflect.DeepEqual(g, w) {
			e.t.Errorf("member %d: page %+v\n%+v\nwant\n%+v", m.ID, page, g, w)
		}
		if _, ok := withPage.FirstCoupons(page.First+1, page.Status); ok {
			e.t.Errorf("member %d: the card answered a page it did not read", m.ID)
		}
	}
	return membercard.UsedSQLWindow(c)
}

// conn is what a coupon connection shows, without ent's client.
type conn struct {
	Next, Prev bool
	Count      int
	Start, End *entgql.Cursor[int]
	Edges      []edge
}

type edge struct {
	Cursor   entgql.Cursor[int]
	Coupon   ent.Coupon
	Template int
}

func connOf(c *ent.CouponConnection) conn {
	out := conn{Count: c.TotalCount, Next: c.PageInfo.HasNextPage, Prev: c.PageInfo.HasPreviousPage,
		Start: c.PageInfo.StartCursor, End: c.PageInfo.EndCursor}
	for _, e := range c.Edges {
		n := *e.Node
		// Only the exported fields: the client and edges are no answer.
		cp := ent.Coupon{ID: n.ID, Code: n.Code, TemplateID: n.TemplateID, MemberID: n.MemberID, Status: n.Status,
			IssuedAt: n.IssuedAt, ExpiresAt: n.ExpiresAt, LockedOrderRef: n.LockedOrderRef, LockedAt: n.LockedAt,
			RedeemedAt: n.RedeemedAt, OrderID: n.OrderID, Source: n.Source, Discount: n.Discount,
			ExpiringNotifiedAt: n.ExpiringNotifiedAt, IssueJobID: n.IssueJobID}
		out.Edges = append(out.Edges, edge{Cursor: e.Cursor, Coupon: cp, Template: n.Edges.Template.ID})
	}
	return out
}

// The card answers what the services answer, field by field, for members
// of every kind at several instants (month ends, a leap day, instants with
// sub-microsecond parts), and its one statement's retention window is the
// rule's in the business zone.
func TestCardMatchesTheServices(t *testing.T) {
	t.Parallel()
	for _, zoneName := range []string{"Asia/Shanghai", "UTC", "America/New_York"} {
		t.Run(zoneName, func(t *testing.T) {
			t.Parallel()
			zone, err := time.LoadLocation(zoneName)
			if err != nil {
				t.Fatal(err)
			}
			e := newEnv(t, zone, time.Date(2026, 6, 15, 10, 0, 0, 0, zone))
			rng := rand.New(rand.NewPCG(1, uint64(len(zoneName))))
			for _, now := range []time.Time{
				time.Date(2026, 6, 15, 10, 0, 0, 0, zone),
				time.Date(2027, 1, 31, 23, 59, 59, 999_999_999, zone),
				time.Date(2028, 2, 29, 0, 0, 0, 500, zone),
				time.Date(2026, 8, 31, 12, 30, 0, 0, zone),
			} {
				e.clock.Set(now)
				var members []*ent.Member
				for range 25 {
					members = append(members, e.randomMember(rng))
				}
				sqlWindows := 0
				for _, m := range members {
					if e.check(m) {
						sqlWindows++
					}
				}
				// A zone without daylight saving never needs the slow way;
				// New York may, at a wall time that repeats or is skipped.
				if zoneName != "America/New_York" && sqlWindows != len(members) {
					t.Errorf("%v: %d of %d cards used the SQL window", now, sqlWindows, len(members))
				}
			}
		})
	}
}

// A card reads a member's earliest expiry instants only: with more of them
// in the asked window it says so, and the caller asks the ledger.
func TestCardExpiringSoonKnowsWhatItHolds(t *testing.T) {
	t.Parallel()
	zone := testkit.Shanghai(t)
	now := time.Date(2026, 6, 15, 10, 0, 0, 0, zone)
	e := newEnv(t, zone, now)
	ctx := t.Context()
	m := must(e.db.Member.Create().SetMemberNo("C1").SetSourceChannel(enum.ChannelPOS).
		SetRegisteredAt(now.AddDate(-1, 0, 0)).SetStatus(member.StatusACTIVE).Save(ctx))
	entry := must(e.ledger.Adjust(ctx, m.ID, 100, "test", "lots"))
	// One more instant than a card reads, a day apart from tomorrow.
	for i := range membercard.LotGroups + 1 {
		must(e.db.PointsLot.Create().SetMemberID(m.ID).SetEntryID(entry.ID).SetAmount(10).SetRemaining(10).
			SetEarnedAt(now).SetExpiresAt(now.AddDate(0, 0, 1+i)).Save(ctx))
	}
	c := must(e.cards.Read(ctx, m, membercard.CouponPage{}))
	// The last instant read lies beyond the window: every one in it is known.
	n := membercard.LotGroups - 1
	if xs, ok := c.ExpiringSoon(time.Duration(n) * 24 * time.Hour); !ok || len(xs) != n {
		t.Errorf("within %d days: %d instants, ok %v; want all %d known", n, len(xs), ok, n)
	}
	// Every instant read lies in the window: the next one might too.
	if xs, ok := c.ExpiringSoon(time.Duration(membercard.LotGroups) * 24 * time.Hour); ok {
		t.Errorf("within %d days: %d instants and ok, want not known (the next instant is not read)", membercard.LotGroups, len(xs))
	}
	if xs, ok := c.ExpiringSoon(24 * time.Hour); !ok || len(xs) != 1 || xs[0].Amount != 10 || !xs[0].ExpiresAt.Equal(now.AddDate(0, 0, 1)) {
		t.Errorf("within a day: %v, ok %v", xs, ok)
	}
}

// cardView is what a card shows, comparable with reflect.DeepEqual.
type cardView struct {
	Balances                   membercard.Balances
	ReviewAt                   int64
	InWindow, ToRetain, ToNext int64
	Tier, Projected, Next      int
	Expiring                   []ledger.Expiring
	ExpiringKnown              bool
	Memberships                []string
	Coupons                    conn
}

func viewOf(c *membercard.Card, page membercard.CouponPage) cardView {
	v := cardView{Balances: c.Balances, ReviewAt: c.Status.ReviewAt.UnixMicro(), InWindow: c.Status.GrowthInWindow,
		ToRetain: c.Status.GrowthToRetain, ToNext: c.Status.ToNext, Tier: tierID(c.Status.Current),
		Projected: tierID(c.Status.Projected), Next: tierID(c.Status.Next)}
	v.Expiring, v.ExpiringKnown = c.ExpiringSoon(30 * 24 * time.Hour)
	for i := range v.Expiring {
		v.Expiring[i].ExpiresAt = v.Expiring[i].ExpiresAt.UTC()
	}
	for _, pm := range c.Memberships {
		v.Memberships = append(v.Memberships, fmt.Sprint(pm.ID, pm.Status, pm.ExpiresAt.UnixMicro(), pm.Edges.Plan.Code))
	}
	if page.First > 0 {
		coupons, _ := c.FirstCoupons(page.First, page.Status)
		v.Coupons = connOf(coupons)
	}
	return v
}

// Cards read at the same time share statements (batch.go), and each is the
// card its member gets read alone.
func TestCardsReadTogetherAreEachTheirOwn(t *testing.T) {
	t.Parallel()
	zone := testkit.Shanghai(t)
	e := newEnv(t, zone, time.Date(2026, 6, 15, 10, 0, 0, 0, zone))
	rng := rand.New(rand.NewPCG(7, 11))
	available := enum.CouponStatus("AVAILABLE")
	pages := []membercard.CouponPage{{}, {First: 3}, {First: 10, Status: &available}}
	ctx := t.Context()
	type read struct {
		m    *ent.Member
		page membercard.CouponPage
		want cardView
	}
	// Without a card pool (DATABASE_PREPARE=false) every card is read alone
	// on the main pool; it is the same card.
	noPool := membercard.New(e.db, nil, e.tiers, e.ms)
	var reads []read
	for i := range 30 {
		m, page := e.randomMember(rng), pages[i%len(pages)]
		want := viewOf(must(e.cards.Read(ctx, m, page)), page)
		if got := viewOf(must(noPool.Read(ctx, m, page)), page); !reflect.DeepEqual(got, want) {
			t.Errorf("member %d without a card pool:\n%+v\nwith:\n%+v", m.ID, got, want)
		}
		reads = append(reads, read{m: m, page: page, want: want})
	}
	const rounds = 4
	before := membercard.Statements(e.cards)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range rounds {
		for _, r := range reads {
			wg.Go(func() {
				<-start
				c, err := e.cards.Read(ctx, r.m, r.page)
				if err != nil {
					t.Errorf("member %d: %v", r.m.ID, err)
					return
				}
				if got := viewOf(c, r.page); !reflect.DeepEqual(got, r.want) {
					t.Errorf("member %d read with others:\n%+v\nalone:\n%+v", r.m.ID, got, r.want)
				}
			})
		}
	}
	close(start)
	wg.Wait()
	n := membercard.Statements(e.cards) - before
	if n >= rounds*int64(len(reads)) {
		t.Errorf("%d reads at once took %d statements: none shared one", rounds*len(reads), n)
	}
	t.Logf("%d reads at once took %d statements", rounds*len(reads), n)
}
