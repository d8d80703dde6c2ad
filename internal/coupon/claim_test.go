package coupon_test

import (
	"context"
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/onemember/onemember/ent/coupontemplate"
	"github.com/onemember/onemember/ent/memberevent"
	"github.com/onemember/onemember/ent/notification"
	"github.com/onemember/onemember/internal/coupon"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/testkit"
)

func TestCreateTemplate(t *testing.T) {
	e := newEnv(t)
	bu, st := e.store(t)
	_, err := e.svc.CreateTemplate(t.Context(), input(func(in *coupon.TemplateInput) {
		in.BusinessUnitCodes = []string{bu.Code, "NOPE"}
		in.StoreCodes = []string{"MISSING", st.Code}
		in.TotalStock = 0
	}))
	wantField(t, err, "businessUnitCodes")
	wantField(t, err, "storeCodes")
	wantField(t, err, "totalStock")

	tpl := e.template(t, func(in *coupon.TemplateInput) {
		in.BusinessUnitCodes = []string{bu.Code, bu.Code}
		in.StoreCodes = []string{st.Code}
	})
	got, err := e.db.CouponTemplate.Query().Where(coupontemplate.ID(tpl.ID)).
		WithBusinessUnits().WithStores().Only(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Edges.BusinessUnits) != 1 || len(got.Edges.Stores) != 1 || got.IssuedCount != 0 || got.TotalStock != 1000 {
		t.Fatalf("template = %+v, edges %+v", got, got.Edges)
	}
}

func TestClaimIssuesCouponWithEvent(t *testing.T) {
	e := newEnv(t)
	m := e.member(t)
	tpl := e.template(t, func(in *coupon.TemplateInput) { in.DaysAfterIssue = testkit.Ptr(7) })
	// 23:30 on 10 March in Shanghai: the coupon lasts through 17 March.
	e.clock.Set(time.Date(2025, 3, 10, 23, 30, 0, 0, e.zone))
	c, err := e.svc.Claim(t.Context(), m, tpl.ID)
	if err != nil {
		t.Fatalf("Claim: %v", err)
	}
	if !regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{12}$`).MatchString(c.Code) {
		t.Fatalf("code %q is not 12 Crockford base32 characters", c.Code)
	}
	wantExp := time.Date(2025, 3, 18, 0, 0, 0, 0, e.zone)
	if !c.ExpiresAt.Equal(wantExp) || c.Source != coupon.SourceClaim || c.MemberID != m || c.Status != "AVAILABLE" {
		t.Fatalf("coupon = %+v, want expiry %v", c, wantExp)
	}
	evs := e.events(t, m, memberevent.TypeCOUPON_ISSUED)
	if len(evs) != 1 {
		t.Fatalf("%d COUPON_ISSUED events, want 1", len(evs))
	}
	if n := e.behaviorRows(t, `source = 's' AND event_id = $1 AND kind = 'CLAIM_COUPON' AND member_id = $2
		AND target_id = $3 AND channel = 'MINI_PROGRAM' AND occurred_at = $4`,
		fmt.Sprintf("CLAIM_COUPON:%d", c.ID), m, fmt.Sprint(tpl.ID), c.IssuedAt); n != 1 {
		t.Fatalf("%d CLAIM_COUPON behaviour events, want 1", n)
	}
	p := evs[0].Payload
	if p["couponId"] != float64(c.ID) || p["templateId"] != float64(tpl.ID) || p["title"] != tpl.Title ||
		p["expiresAt"] != "2025-03-18T00:00:00+08:00" {
		t.Fatalf("payload = %v", p)
	}
	n, err := e.db.Notification.Query().Where(notification.MemberID(m), notification.EventID(evs[0].ID)).Only(t.Context())
	if err != nil || n.Title != "获得优惠券" {
		t.Fatalf("notification = %+v, %v", n, err)
	}

	list, err := e.svc.Claimable(t.Context(), m)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ClaimedByMe != 1 || list[0].Remaining != 999 || !list[0].ValidUntil.Equal(wantExp) {
		t.Fatalf("Claimable = %+v", list)
	}
}

func TestClaimRefusals(t *testing.T) {
	e := newEnv(t)
	m := e.member(t)
	now := e.clock.Now()
	later, muchLater := now.Add(24*time.Hour), now.Add(48*time.Hour)

	_, err := e.svc.Claim(t.Context(), m, 1)
	wantIs(t, err, coupon.ErrTemplateNotFound)
	wantCode(t, err, fault.NotFound)

	closed := e.template(t, func(in *coupon.TemplateInput) { in.Claimable = false })
	_, err = e.svc.Claim(t.Context(), m, closed.ID)
	wantIs(t, err, coupon.ErrNotClaimable)
	wantCode(t, err, fault.Forbidden)

	upcoming := e.template(t, func(in *coupon.TemplateInput) {
		in.DaysAfterIssue, in.ValidFrom, in.ValidTo = nil, &later, &muchLater
	})
	_, err = e.svc.Claim(t.Context(), m, upcoming.ID)
	wantIs(t, err, coupon.ErrNotStarted)

	ending := e.template(t, func(in *coupon.TemplateInput) {
		from := now.Add(-time.Hour)
		in.DaysAfterIssue, in.ValidFrom, in.ValidTo = nil, &from, &later
	})
	e.clock.Set(later)
	_, err = e.svc.Claim(t.Context(), m, ending.ID)
	wantIs(t, err, coupon.ErrEnded)
	wantCode(t, err, fault.BadUserInput)

	one := e.template(t, func(in *coupon.TemplateInput) { in.TotalStock, in.PerMemberLimit = 1, 1 })
	if _, err := e.svc.Claim(t.Context(), m, one.ID); err != nil {
		t.Fatalf("first claim: %v", err)
	}
	_, err = e.svc.Claim(t.Context(), m, one.ID)
	wantCode(t, err, fault.LimitExceeded)
	_, err = e.svc.Claim(t.Context(), e.member(t), one.ID)
	wantCode(t, err, fault.OutOfStock)

	// Nothing of the refused claims was written.
	if n := e.countCoupons(t, one.ID); n != 1 {
		t.Fatalf("%d coupons of the one-stock template, want 1", n)
	}
	list, err := e.svc.Claimable(t.Context(), m)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range list {
		if c.Template.ID == one.ID || c.Template.ID == closed.ID || c.Template.ID == ending.ID {
			t.Fatalf("Claimable lists template %d (%s)", c.Template.ID, c.Template.Title)
		}
	}
}

func TestIssueRetriesTakenCode(t *testing.T) {
	e := newEnv(t)
	m := e.member(t)
	tpl := e.template(t)
	codes := []string{"AAAAAAAAAAAA", "AAAAAAAAAAAA", "AAAAAAAAAAAA", "BBBBBBBBBBBB"}
	var mu sync.Mutex
	coupon.SetCodeSource(e.svc, func() (string, error) {
		mu.Lock()
		defer mu.Unlock()
		c := codes[0]
		codes = codes[1:]
		return c, nil
	})
	first := e.issue(t, m, tpl)
	second := e.issue(t, m, tpl)
	if first.Code != "AAAAAAAAAAAA" || second.Code != "BBBBBBBBBBBB" {
		t.Fatalf("codes = %s, %s", first.Code, second.Code)
	}
	if got, _ := e.db.CouponTemplate.Get(t.Context(), tpl.ID); got.IssuedCount != 2 {
		t.Fatalf("issued_count = %d, want 2", got.IssuedCount)
	}
}

// TestClaimStockRace: 1,000 members claim at once a template of stock 100.
func TestClaimStockRace(t *testing.T) {
	e := newEnv(t)
	tpl := e.template(t, func(in *coupon.TemplateInput) { in.TotalStock, in.PerMemberLimit = 100, 1 })
	const claimers = 1000
	members := e.members(t, claimers)
	errs := race(claimers, func(i int) error {
		_, err := e.svc.Claim(context.Background(), members[i], tpl.ID)
		return err
	})
	codes := map[fault.Code]int{}
	for _, err := range errs {
		if err == nil {
			codes["OK"]++
			continue
		}
		codes[fault.CodeOf(err)]++
		if fault.CodeOf(err) != fault.OutOfStock {
			t.Errorf("unexpected error: %v", err)
		}
	}
	if codes["OK"] != 100 || codes[fault.OutOfStock] != 900 {
		t.Fatalf("outcomes = %v, want 100 OK and 900 OUT_OF_STOCK", codes)
	}
	if n := e.countCoupons(t, tpl.ID); n != 100 {
		t.Fatalf("%d coupons exist, want 100", n)
	}
	if n := e.behaviorRows(t, "kind = 'CLAIM_COUPON' AND target_id = $1", fmt.Sprint(tpl.ID)); n != 100 {
		t.Fatalf("%d CLAIM_COUPON behaviour events, want one per claimed coupon (100)", n)
	}
	got, err := e.db.CouponTemplate.Get(t.Context(), tpl.ID)
	if err != nil || got.IssuedCount != 100 || got.IssuedCount != got.TotalStock {
		t.Fatalf("template = %+v, %v", got, err)
	}
}

// TestClaimLimitRace: one member claims 20 times at once with a limit of 1.
func TestClaimLimitRace(t *testing.T) {
	e := newEnv(t)
	m := e.member(t)
	tpl := e.template(t, func(in *coupon.TemplateInput) { in.TotalStock, in.PerMemberLimit = 100, 1 })
	errs := race(20, func(int) error {
		_, err := e.svc.Claim(context.Background(), m, tpl.ID)
		return err
	})
	ok, limited := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case fault.CodeOf(err) == fault.LimitExceeded:
			limited++
		default:
			t.Errorf("unexpected error: %v", err)
		}
	}
	if ok != 1 || limited != 19 {
		t.Fatalf("%d claimed, %d LIMIT_EXCEEDED; want 1 and 19", ok, limited)
	}
	if n := e.countCoupons(t, tpl.ID); n != 1 {
		t.Fatalf("%d coupons, want 1", n)
	}
	if got, _ := e.db.CouponTemplate.Get(t.Context(), tpl.ID); got.IssuedCount != 1 {
		t.Fatalf("issued_count = %d, want 1 (refused claims must not take stock)", got.IssuedCount)
	}
}

// race runs f(0..n-1) in n goroutines released together.
func race(n int, f func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = f(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}
