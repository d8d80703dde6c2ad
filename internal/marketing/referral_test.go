package marketing_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/growthentry"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/ent/referral"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/marketing"
	"github.com/onemember/onemember/internal/platform/database"
)

// register creates a member the way registration will: in one
// transaction that also links the invite code. A link refusal is
// returned but does not fail the registration.
func (e *env) register(t testing.TB, inviteCode string) (int, error) {
	t.Helper()
	var linkErr error
	id, err := database.WithTx(context.Background(), e.db, func(tx *ent.Tx) (int, error) {
		m, err := tx.Member.Create().SetMemberNo(fmt.Sprintf("R%06d", e.seq.Add(1))).
			SetSourceChannel(enum.ChannelMiniProgram).Save(context.Background())
		if err != nil {
			return 0, err
		}
		linkErr = e.svc.LinkReferral(context.Background(), tx, m.ID, inviteCode)
		return m.ID, nil
	})
	if err != nil {
		t.Fatalf("registering: %v", err)
	}
	return id, linkErr
}

func (e *env) code(t testing.TB, memberID int) string {
	t.Helper()
	c, err := e.svc.ReferralCode(context.Background(), memberID)
	if err != nil {
		t.Fatalf("ReferralCode: %v", err)
	}
	return c
}

// order ingests a paid order as internal/order does: the member's account
// locked, growth for the purchase, then the referral reward, in one
// transaction.
func (e *env) order(ctx context.Context, memberID, bu, st int, amount int64) error {
	_, err := database.WithTx(ctx, e.db, func(tx *ent.Tx) (struct{}, error) {
		acct, err := account.Lock(ctx, tx, memberID)
		if err != nil {
			return struct{}{}, err
		}
		o, err := tx.Order.Create().SetExternalID(fmt.Sprintf("O%d", e.seq.Add(1))).SetChannel(enum.ChannelPOS).
			SetMemberID(memberID).SetStoreID(st).SetBusinessUnitID(bu).SetAmount(amount).
			SetPaidAt(e.clock.Now()).Save(ctx)
		if err != nil {
			return struct{}{}, err
		}
		if growth := amount / 100; growth > 0 {
			key := fmt.Sprintf("order:%d:growth", o.ID)
			if _, err := e.ledger.EarnGrowth(ctx, tx, acct, ledger.Entry{Amount: growth, Source: ledger.SourceOrder, Key: &key}); err != nil {
				return struct{}{}, err
			}
		}
		return struct{}{}, e.svc.RewardFirstPaidOrder(ctx, tx, acct, o)
	})
	return err
}

func (e *env) referralGrowth(t testing.TB, memberID int) int64 {
	t.Helper()
	es := e.db.GrowthEntry.Query().
		Where(growthentry.MemberID(memberID), growthentry.SourceEQ(growthentry.SourceREFERRAL)).AllX(context.Background())
	var sum int64
	for _, g := range es {
		sum += g.Amount
	}
	return sum
}

func TestReferralCode(t *testing.T) {
	e := newEnv(t)
	m := e.member(t)
	codes := make([]string, 20)
	errs := parallel(20, func(i int) error {
		var err error
		codes[i], err = e.svc.ReferralCode(context.Background(), m)
		return err
	})
	unexpected(t, errs)
	for _, c := range codes {
		if c != codes[0] || len(c) != 8 {
			t.Fatalf("codes %v, want one 8-character code", codes)
		}
	}
	if stored := e.db.Member.GetX(t.Context(), m).ReferralCode; stored == nil || *stored != codes[0] {
		t.Errorf("stored %v, want %s", stored, codes[0])
	}
	if other := e.code(t, e.member(t)); other == codes[0] {
		t.Errorf("two members share code %s", other)
	}
	_, err := e.svc.ReferralCode(t.Context(), 999999)
	if !errors.Is(err, marketing.ErrMemberNotFound) {
		t.Errorf("unknown member: %v, want ErrMemberNotFound", err)
	}
}

func TestLinkReferral(t *testing.T) {
	e := newEnv(t)
	referrer := e.member(t)
	code := e.code(t, referrer)

	if _, err := e.register(t, "NOSUCHCD"); !errors.Is(err, marketing.ErrUnknownInviteCode) {
		t.Errorf("unknown code: %v, want ErrUnknownInviteCode", err)
	}
	if _, err := e.register(t, ""); err != nil {
		t.Errorf("no code: %v", err)
	}
	referee, err := e.register(t, " "+code+" ") // as typed
	if err != nil {
		t.Fatalf("register: %v", err)
	}
	// A retried link keeps the first one, even with another code.
	other := e.member(t)
	otherCode := e.code(t, other)
	_, err = database.WithTx(t.Context(), e.db, func(tx *ent.Tx) (int, error) {
		return 0, e.svc.LinkReferral(t.Context(), tx, referee, otherCode)
	})
	if err != nil {
		t.Errorf("linking again: %v", err)
	}
	// The member's own code (possible only for an existing member).
	_, err = database.WithTx(t.Context(), e.db, func(tx *ent.Tx) (int, error) {
		return 0, e.svc.LinkReferral(t.Context(), tx, referrer, code)
	})
	if !errors.Is(err, marketing.ErrSelfReferral) {
		t.Errorf("own code: %v, want ErrSelfReferral", err)
	}
	refs := e.db.Referral.Query().AllX(t.Context())
	if len(refs) != 1 || refs[0].ReferrerID != referrer || refs[0].RefereeID != referee {
		t.Errorf("referrals %+v, want %d → %d", refs, referrer, referee)
	}
	invited, rewarded, err := e.svc.ReferralStats(t.Context(), referrer)
	if err != nil || invited != 1 || rewarded != 0 {
		t.Errorf("ReferralStats = %d, %d, %v; want 1, 0", invited, rewarded, err)
	}
	// The referrer's SHARE, once: neither the refused links nor the
	// retried one recorded any.
	if n := e.behaviorRows(t, `source = 's' AND kind = 'SHARE' AND event_id = 'SHARE:' || $1 AND member_id = $2
		AND channel = 'MINI_PROGRAM'`, fmt.Sprint(e.db.Referral.Query().OnlyIDX(t.Context())), referrer); n != 1 {
		t.Errorf("%d SHARE behaviour events of the referral, want 1", n)
	}
	if n := e.behaviorRows(t, "kind = 'SHARE'"); n != 1 {
		t.Errorf("%d SHARE behaviour events, want 1", n)
	}
}

func TestRewardFirstPaidOrder(t *testing.T) {
	e := newEnv(t)
	bu, st := e.store(t)
	referrer := e.member(t, "GOLD")
	// 2950 + 50 = 3000 and one referral: DIAMOND.
	if _, err := database.WithTx(t.Context(), e.db, func(tx *ent.Tx) (*ent.GrowthEntry, error) {
		acct, err := account.Lock(t.Context(), tx, referrer)
		if err != nil {
			return nil, err
		}
		return e.ledger.EarnGrowth(t.Context(), tx, acct, ledger.Entry{Amount: 2950, Source: ledger.SourceAdjustment})
	}); err != nil {
		t.Fatal(err)
	}
	referee, err := e.register(t, e.code(t, referrer))
	if err != nil {
		t.Fatal(err)
	}

	if err := e.order(t.Context(), referee, bu, st, 0); err != nil {
		t.Fatalf("free order: %v", err)
	}
	if got := e.referralGrowth(t, referrer); got != 0 {
		t.Errorf("a free order rewarded %d", got)
	}
	for range 3 {
		if err := e.order(t.Context(), referee, bu, st, 10_000); err != nil {
			t.Fatalf("order: %v", err)
		}
	}
	acct := e.account(t, referrer)
	if acct.GrowthValue != 3000 || acct.SuccessfulReferrals != 1 {
		t.Errorf("referrer growth %d, referrals %d; want 3000, 1", acct.GrowthValue, acct.SuccessfulReferrals)
	}
	m := e.db.Member.GetX(t.Context(), referrer)
	if m.TierID == nil || *m.TierID != e.ladder["DIAMOND"].ID {
		t.Errorf("referrer tier %v, want DIAMOND", m.TierID)
	}
	invited, rewarded, _ := e.svc.ReferralStats(t.Context(), referrer)
	if invited != 1 || rewarded != 1 {
		t.Errorf("ReferralStats %d/%d, want 1/1", invited, rewarded)
	}
	ref := e.db.Referral.Query().Where(referral.RefereeID(referee)).OnlyX(t.Context())
	if ref.RewardedAt == nil || ref.OrderID == nil {
		t.Errorf("referral %+v not marked rewarded", ref)
	}
	e.verifyLedgers(t)
}

// The configured points and coupon come with the growth; a coupon that
// cannot be issued is skipped without failing the referee's order.
func TestRewardFirstPaidOrderExtras(t *testing.T) {
	// The template must exist before the service that names it.
	e := newEnv(t)
	tpl := e.template(t, 1, 5)
	svc := marketing.New(e.db, e.ledger, e.tiers, e.coupons, e.tickets, e.zone, e.clock.Now,
		marketing.WithReferralReward(marketing.ReferralReward{Growth: 50, Points: 100, CouponTemplateID: &tpl.ID}))
	e.svc = svc
	bu, st := e.store(t)
	referrer := e.member(t)
	code := e.code(t, referrer)
	a, _ := e.register(t, code)
	b, _ := e.register(t, code)
	for _, referee := range []int{a, b} {
		if err := e.order(t.Context(), referee, bu, st, 5_000); err != nil {
			t.Fatalf("order: %v", err)
		}
	}
	acct := e.account(t, referrer)
	if acct.GrowthValue != 100 || acct.PointsBalance != 200 || acct.SuccessfulReferrals != 2 {
		t.Errorf("referrer growth %d, points %d, referrals %d; want 100, 200, 2", acct.GrowthValue, acct.PointsBalance, acct.SuccessfulReferrals)
	}
	if n := e.couponsOf(t, referrer); n != 1 {
		t.Errorf("referrer holds %d coupons, want 1 (the template had one)", n)
	}
	e.verifyLedgers(t)
}

// Referees' first orders race each other and their referrers' own
// orders (a chain G → P → R, so that P's orders reward G while R's reward
// P): no deadlock, and each referrer is rewarded exactly once.
func TestRewardFirstPaidOrderRace(t *testing.T) {
	e := newEnv(t)
	bu, st := e.store(t)
	const chains = 10
	type chain struct{ g, p, r int }
	cs := make([]chain, chains)
	for i := range cs {
		g := e.member(t)
		p, err := e.register(t, e.code(t, g))
		if err != nil {
			t.Fatal(err)
		}
		r, err := e.register(t, e.code(t, p))
		if err != nil {
			t.Fatal(err)
		}
		cs[i] = chain{g, p, r}
	}
	// Per chain: R twice, P twice, G twice, all at once.
	errs := parallel(chains*6, func(i int) error {
		c := cs[i/6]
		who := []int{c.r, c.r, c.p, c.p, c.g, c.g}[i%6]
		return e.order(context.Background(), who, bu, st, 10_000)
	})
	for _, err := range errs {
		if database.IsDeadlock(err) {
			t.Errorf("deadlock: %v", err)
		} else if err != nil {
			t.Errorf("order: %v", err)
		}
	}
	for _, c := range cs {
		for _, m := range []int{c.g, c.p} {
			if got := e.referralGrowth(t, m); got != 50 {
				t.Errorf("member %d got %d referral growth, want 50", m, got)
			}
			if acct := e.account(t, m); acct.SuccessfulReferrals != 1 || acct.GrowthValue != 50+200 {
				t.Errorf("member %d: referrals %d, growth %d; want 1, 250", m, acct.SuccessfulReferrals, acct.GrowthValue)
			}
		}
	}
	if n := e.db.Referral.Query().Where(referral.RewardedAtIsNil()).CountX(t.Context()); n != 0 {
		t.Errorf("%d referrals not rewarded", n)
	}
	e.verifyLedgers(t)
}

func TestRewardSkipsErasedReferrer(t *testing.T) {
	e := newEnv(t)
	bu, st := e.store(t)
	referrer := e.member(t)
	referee, _ := e.register(t, e.code(t, referrer))
	e.db.Member.UpdateOneID(referrer).SetStatus(member.StatusERASED).ExecX(t.Context())
	if err := e.order(t.Context(), referee, bu, st, 1_000); err != nil {
		t.Fatalf("order: %v", err)
	}
	if got := e.account(t, referrer).GrowthValue; got != 0 {
		t.Errorf("erased referrer got %d growth", got)
	}
}
