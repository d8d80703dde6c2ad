package graph_test

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/pointsentry"
	"github.com/onemember/onemember/ent/pointslot"
	"github.com/onemember/onemember/internal/apptest"
)

func TestProfileConsentsCheckInAndNotifications(t *testing.T) {
	s := apptest.Start(t)
	s.Seed()
	member, _ := s.PhoneMember("13600000001")
	update := apptest.Op(t, "UpdateMyProfile")
	type profileOut struct {
		UpdateMyProfile struct {
			GrowthAwarded int
			Member        struct {
				ProfileCompleteness int
				Birthday            string
			}
		}
	}
	var partial, full, again profileOut
	s.Do(member, update, map[string]any{"input": map[string]any{"displayName": "小王", "gender": "MALE"}}).Decode(t, &partial)
	if partial.UpdateMyProfile.GrowthAwarded != 0 {
		t.Fatalf("growth for an incomplete profile: %+v", partial)
	}
	s.Do(member, update, map[string]any{"input": map[string]any{"birthday": "1990-05-20", "regionCode": "310104", "avatarUrl": "https://img.example.com/a.png"}}).Decode(t, &full)
	if full.UpdateMyProfile.GrowthAwarded != 10 || full.UpdateMyProfile.Member.ProfileCompleteness != 100 || full.UpdateMyProfile.Member.Birthday != "1990-05-20" {
		t.Fatalf("completing the profile: %+v", full)
	}
	s.Do(member, update, map[string]any{"input": map[string]any{"displayName": "王小明"}}).Decode(t, &again)
	if again.UpdateMyProfile.GrowthAwarded != 0 {
		t.Fatal("profile growth awarded twice")
	}
	wantCode(t, s.Do(member, update, map[string]any{"input": map[string]any{"birthday": "1991-01-01"}}), "BAD_USER_INPUT")
	wantCode(t, s.Do(member, update, map[string]any{"input": map[string]any{"birthday": time.Now().AddDate(1, 0, 0).Format("2006-01-02")}}), "BAD_USER_INPUT")
	wantCode(t, s.Do(member, update, map[string]any{"input": map[string]any{"regionCode": "abc"}}), "BAD_USER_INPUT")

	var consent struct {
		UpdateConsent struct {
			Consent struct {
				Kind      string
				Granted   bool
				UpdatedAt *time.Time
			}
		}
	}
	s.Do(member, apptest.Op(t, "UpdateConsent"), map[string]any{"kind": "MARKETING_SMS", "granted": true}).Decode(t, &consent)
	if !consent.UpdateConsent.Consent.Granted || consent.UpdateConsent.Consent.UpdatedAt == nil {
		t.Fatalf("consent: %+v", consent)
	}
	var profile struct {
		Me struct {
			ProfileCompleteness int
			Consents            []struct {
				Kind    string
				Granted bool
			}
		}
	}
	s.Do(member, apptest.Op(t, "MyProfile"), nil).Decode(t, &profile)
	if len(profile.Me.Consents) != 4 || profile.Me.ProfileCompleteness != 100 {
		t.Fatalf("profile: %+v", profile.Me)
	}

	var c1, c2 struct {
		CheckIn struct {
			AlreadyCheckedIn          bool
			StreakDays, GrowthAwarded int
		}
	}
	s.Do(member, apptest.Op(t, "CheckIn"), nil).Decode(t, &c1)
	s.Do(member, apptest.Op(t, "CheckIn"), nil).Decode(t, &c2)
	if c1.CheckIn.AlreadyCheckedIn || c1.CheckIn.GrowthAwarded != 5 || c1.CheckIn.StreakDays != 1 || !c2.CheckIn.AlreadyCheckedIn || c2.CheckIn.GrowthAwarded != 0 {
		t.Fatalf("check-ins: %+v %+v", c1, c2)
	}
	var growth struct {
		Me struct{ Growth struct{ Value int } }
	}
	s.Do(member, apptest.Op(t, "GrowthHistory"), nil).Decode(t, &growth)
	if growth.Me.Growth.Value != 15 {
		t.Fatalf("growth %d, want 10 (profile) + 5 (check-in)", growth.Me.Growth.Value)
	}
}

func TestTierPromotionNotifiesAndSkipsLevels(t *testing.T) {
	s := apptest.Start(t)
	s.Seed()
	till := s.Till(s.AdminToken())
	member, memberID := s.PhoneMember("13600000002")
	var out ingestOut
	// 1,600 yuan this month: growth 1,600 and monthly spend qualify for GOLD at once.
	s.Do(till, apptest.Op(t, "IngestOrder"), order("BIG-1", memberID, 160000, time.Now().Add(-time.Minute))).Decode(t, &out)
	if out.IngestOrder.Member.Tier.Code != "GOLD" {
		t.Fatalf("tier after a 1,600 yuan order: %s", out.IngestOrder.Member.Tier.Code)
	}
	var hist struct {
		Me struct {
			TierHistory []struct {
				Direction string
				From      *struct{ Code string }
				To        struct{ Code string }
			}
		}
	}
	s.Do(member, apptest.Op(t, "GrowthHistory"), nil).Decode(t, &hist)
	if len(hist.Me.TierHistory) != 1 || hist.Me.TierHistory[0].Direction != "UP" || hist.Me.TierHistory[0].To.Code != "GOLD" {
		t.Fatalf("tier history: %+v", hist.Me.TierHistory)
	}
	var inbox struct {
		Me struct {
			Notifications struct {
				TotalCount int
				Edges      []struct{ Node struct{ ID, Title string } }
			}
		}
	}
	s.Do(member, apptest.Op(t, "UnreadNotifications"), nil).Decode(t, &inbox)
	if inbox.Me.Notifications.TotalCount == 0 {
		t.Fatal("no notification of the tier-up")
	}
	ids := []string{}
	for _, e := range inbox.Me.Notifications.Edges {
		ids = append(ids, e.Node.ID)
	}
	var read struct{ MarkNotificationsRead struct{ Updated int } }
	s.Do(member, apptest.Op(t, "MarkNotificationsRead"), map[string]any{"ids": ids}).Decode(t, &read)
	if read.MarkNotificationsRead.Updated != len(ids) {
		t.Fatalf("marked %d of %d", read.MarkNotificationsRead.Updated, len(ids))
	}
	s.Do(member, apptest.Op(t, "UnreadNotifications"), nil).Decode(t, &inbox)
	if inbox.Me.Notifications.TotalCount != 0 {
		t.Fatalf("%d still unread", inbox.Me.Notifications.TotalCount)
	}
	// Another member cannot mark them.
	other, _ := s.PhoneMember("13600000003")
	s.Do(other, apptest.Op(t, "MarkNotificationsRead"), map[string]any{"ids": ids}).Decode(t, &read)
	if read.MarkNotificationsRead.Updated != 0 {
		t.Fatal("a member marked another member's notifications")
	}
}

// MemberHome renders the whole card in a bounded number of statements,
// however many coupons, benefits and memberships the member has.
func TestMemberHomeIsBatched(t *testing.T) {
	s := apptest.Start(t)
	s.Seed()
	till := s.Till(s.AdminToken())
	member, memberID := s.PhoneMember("13600000004")
	id, _ := strconv.Atoi(memberID)
	ctx := context.Background()
	tmpl := s.DB.CouponTemplate.Create().SetTitle("满100减10").SetKind("THRESHOLD").SetFaceValue(1000).SetMinSpend(10000).
		SetTotalStock(100).SetPerMemberLimit(100).SaveX(ctx)
	other := s.DB.CouponTemplate.Create().SetTitle("9折券").SetKind("PERCENT_OFF").SetDiscountPercent(90).
		SetTotalStock(100).SetPerMemberLimit(100).SaveX(ctx)
	addCoupons := func(n int) {
		for i := 0; i < n; i++ {
			t := tmpl
			if i%2 == 1 {
				t = other
			}
			s.DB.Coupon.Create().SetCode(fmt.Sprintf("C%d-%d-%d", id, n, i)).SetTemplateID(t.ID).SetMemberID(id).
				SetExpiresAt(time.Now().Add(72 * time.Hour)).ExecX(ctx)
		}
	}
	// Measured warm: configuration (the ladder) is cached for display. The
	// counters are the process's, so background work (the event bus, the
	// dashboard refresher) can add to one measurement: the least of three
	// is the request's own.
	measure := func(doc string, vars map[string]any, counter func() uint64) uint64 {
		s.Do(member, doc, vars).Decode(t, &struct{}{})
		least := uint64(math.MaxUint64)
		for range 3 {
			before := counter()
			s.Do(member, doc, vars).Decode(t, &struct{}{})
			least = min(least, counter()-before)
		}
		return least
	}
	statements := func(doc string, vars map[string]any) uint64 {
		return measure(doc, vars, func() uint64 { return uint64(s.Statements.Total()) })
	}
	goroutines := func(doc string) uint64 {
		sample := []metrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
		return measure(doc, nil, func() uint64 { metrics.Read(sample); return sample[0].Value.Uint64() })
	}
	addCoupons(1)
	s.Do(till, apptest.Op(t, "RecordPaidMembership"), map[string]any{"input": map[string]any{
		"member": map[string]any{"memberId": memberID}, "planCode": "PLUS_YEAR", "paymentRef": "plus-1", "amount": 16800}}).Decode(t, &struct{}{})
	home := apptest.Op(t, "MemberHome")
	few, fewGoroutines := statements(home, nil), goroutines(home)
	addCoupons(14)
	s.Do(till, apptest.Op(t, "RecordPaidMembership"), map[string]any{"input": map[string]any{
		"member": map[string]any{"memberId": memberID}, "planCode": "PLUS_MONTH", "paymentRef": "plus-2", "amount": 1990}}).Decode(t, &struct{}{})
	many, manyGoroutines := statements(home, nil), goroutines(home)
	if many != few {
		t.Fatalf("MemberHome costs %d statements with 1 coupon and %d with 15 coupons and 2 memberships", few, many)
	}
	// A coupon's fields resolve on its list element's goroutine
	// (cmd/gqlgen): one goroutine per coupon shown, not one per field. The
	// page shows 10, so 9 more than with 1 coupon.
	if extra := manyGoroutines - fewGoroutines; extra >= 2*9 {
		t.Fatalf("9 more coupons shown cost %d more goroutines (%d, then %d)", extra, fewGoroutines, manyGoroutines)
	}
	t.Logf("MemberHome: %d goroutines with 1 coupon, %d with 10", fewGoroutines, manyGoroutines)
	// The card with the coupons: the viewer comes from the authentication
	// cache, and me trusts it since the card's statement checks its row.
	if many > 1 {
		t.Fatalf("MemberHome costs %d statements", many)
	}
	t.Logf("MemberHome: %d SQL statements", many)
	// The page asked through variables is read with the card too.
	byVars := statements(`query($n: Int, $s: CouponStatus) { me { points { balance } coupons(first: $n, status: $s) { totalCount } } }`,
		map[string]any{"n": 5, "s": "AVAILABLE"})
	if byVars > 1 {
		t.Fatalf("a page asked through variables costs %d statements", byVars)
	}
}

// MemberHome answers, for the signed-in member, from one card statement
// (coupons included); staff reading the same fields of the same member get
// each field's own reads. Both must agree, before and after the member's
// figures change.
// Another replica changing the member's row (its tier, without this
// replica's authentication cache hearing of it): the home page read right
// after shows the new tier with the status computed for it, although me
// took the viewer from the cache.
func TestMemberHomeFollowsAnotherReplicasChange(t *testing.T) {
	s := apptest.Start(t)
	s.Seed()
	member, memberID := s.PhoneMember("13600000006")
	id, _ := strconv.Atoi(memberID)
	ctx := context.Background()
	home := apptest.Op(t, "MemberHome")
	type tierView struct{ Code string }
	var before struct {
		Me struct {
			Tier       tierView
			TierStatus *struct{ ProjectedTier tierView }
		}
	}
	s.Do(member, home, nil).Decode(t, &before)
	m := s.DB.Member.GetX(ctx, id)
	var target *ent.Tier
	for _, tr := range s.DB.Tier.Query().AllX(ctx) {
		if m.TierID == nil || tr.ID != *m.TierID {
			target = tr
			break
		}
	}
	if target == nil || target.Code == before.Me.Tier.Code {
		t.Fatalf("no other tier than %q to move to", before.Me.Tier.Code)
	}
	s.DB.Member.UpdateOneID(id).SetTierID(target.ID).ExecX(ctx) // not through the app: no Forget
	var after struct {
		Me struct {
			Tier       tierView
			TierStatus *struct{ ProjectedTier tierView }
		}
	}
	s.Do(member, home, nil).Decode(t, &after)
	if after.Me.Tier.Code != target.Code {
		t.Fatalf("tier %q right after another replica moved the member to %q (was %q)", after.Me.Tier.Code, target.Code, before.Me.Tier.Code)
	}
	if after.Me.TierStatus == nil {
		t.Fatalf("no tier status for tier %q", target.Code)
	}
}

func TestMemberHomeAnswersLikeTheFieldsOwnReads(t *testing.T) {
	s := apptest.Start(t)
	s.Seed()
	admin := s.AdminToken()
	till := s.Till(admin)
	member, memberID := s.PhoneMember("13600000005")
	id, _ := strconv.Atoi(memberID)
	ctx := context.Background()

	home := apptest.Op(t, "MemberHome")
	// The same selection on the member as staff see it (the operation's
	// text may end with the comment of the next one).
	staffHome := strings.Replace(strings.Replace(home, "query MemberHome {", "query StaffHome($id: ID!) {", 1),
		"me {", "node(id: $id) { ... on Member {", 1)
	end := strings.LastIndex(staffHome, "}")
	staffHome = staffHome[:end] + "}}" + staffHome[end+1:]
	type view = map[string]any
	compare := func(when string) view {
		t.Helper()
		var mine struct{ Me view }
		var staff struct{ Node view }
		s.Do(member, home, nil).Decode(t, &mine)
		s.Do(admin, staffHome, map[string]any{"id": memberID}).Decode(t, &staff)
		if mine.Me == nil || !reflect.DeepEqual(mine.Me, staff.Node) {
			t.Fatalf("%s: the member's home\n%v\nstaff's view of the same fields\n%v", when, mine.Me, staff.Node)
		}
		return mine.Me
	}
	compare("a new member")

	// Points and growth from an order, lots expiring soon (more expiry
	// instants in the window than a card reads, so the ledger answers
	// those), a paid membership, coupons of two templates.
	var out ingestOut
	s.Do(till, apptest.Op(t, "IngestOrder"), order("HOME-1", memberID, 88800, time.Now().Add(-time.Minute))).Decode(t, &out)
	entry := s.DB.PointsEntry.Query().Where(pointsentry.MemberID(id)).FirstX(ctx)
	s.DB.PointsLot.Update().Where(pointslot.MemberID(id)).SetExpiresAt(time.Now().Add(5 * 24 * time.Hour)).ExecX(ctx)
	s.Do(till, apptest.Op(t, "RecordPaidMembership"), map[string]any{"input": map[string]any{
		"member": map[string]any{"memberId": memberID}, "planCode": "PLUS_YEAR", "paymentRef": "home-plus-1", "amount": 16800}}).Decode(t, &struct{}{})
	tmpl := s.DB.CouponTemplate.Create().SetTitle("满100减10").SetKind("THRESHOLD").SetFaceValue(1000).SetMinSpend(10000).
		SetTotalStock(100).SetPerMemberLimit(100).SaveX(ctx)
	other := s.DB.CouponTemplate.Create().SetTitle("9折券").SetKind("PERCENT_OFF").SetDiscountPercent(90).
		SetTotalStock(100).SetPerMemberLimit(100).SaveX(ctx)
	for i := range 13 {
		c := s.DB.Coupon.Create().SetCode(fmt.Sprintf("HOME-%d", i)).SetTemplateID(tmpl.ID).SetMemberID(id).
			SetExpiresAt(time.Now().Add(time.Duration(72-i%4) * time.Hour)) // expiries tie: id decides
		if i%3 == 1 {
			c.SetTemplateID(other.ID)
		}
		if i%5 == 4 {
			c.SetStatus("REDEEMED")
		}
		c.ExecX(ctx)
	}
	got := compare("after an order, a membership and coupons")
	points := got["points"].(view)
	if points["balance"].(float64) != float64(out.IngestOrder.Member.Points.Balance) || len(points["expiringSoon"].([]any)) != 1 {
		t.Fatalf("points after the order: %v, want balance %d and one expiry", points, out.IngestOrder.Member.Points.Balance)
	}
	coupons := got["coupons"].(view)
	if coupons["totalCount"].(float64) != 11 || len(coupons["edges"].([]any)) != 10 {
		t.Fatalf("coupons: %v, want 10 of 11 available", coupons)
	}

	for i := range 20 {
		s.DB.PointsLot.Create().SetMemberID(id).SetEntryID(entry.ID).SetAmount(5).SetRemaining(5).
			SetEarnedAt(time.Now()).SetExpiresAt(time.Now().Add(time.Duration(i+1) * 24 * time.Hour)).ExecX(ctx)
	}
	got = compare("with more expiry instants than a card reads")
	if n := len(got["points"].(view)["expiringSoon"].([]any)); n != 21 {
		t.Fatalf("%d expiry instants within 30 days, want 21", n)
	}

	// The first page in one statement is the page Paginate builds: the
	// same coupons, cursors and count, and its cursor pages on.
	page := `query($first: Int, $after: Cursor) { me { coupons(first: $first, after: $after, status: AVAILABLE) {
		totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
		edges { cursor node { id code title kind faceValue discountPercent minSpend expiresAt template { id title } } } } } }`
	type conn struct {
		TotalCount int
		PageInfo   struct {
			HasNextPage, HasPreviousPage bool
			StartCursor, EndCursor       string
		}
		Edges []view
	}
	var first, all, rest struct{ Me struct{ Coupons conn } }
	s.Do(member, page, map[string]any{"first": 4}).Decode(t, &first)
	s.Do(member, page, nil).Decode(t, &all) // no first: Paginate
	s.Do(member, page, map[string]any{"first": 20, "after": first.Me.Coupons.PageInfo.EndCursor}).Decode(t, &rest)
	f, a := first.Me.Coupons, all.Me.Coupons
	if f.TotalCount != 11 || a.TotalCount != 11 || len(a.Edges) != 11 || !reflect.DeepEqual(f.Edges, a.Edges[:4]) ||
		!f.PageInfo.HasNextPage || f.PageInfo.HasPreviousPage ||
		f.PageInfo.StartCursor != a.Edges[0]["cursor"] || f.PageInfo.EndCursor != a.Edges[3]["cursor"] {
		t.Fatalf("first page %+v\nis not the start of %+v", f, a)
	}
	if r := rest.Me.Coupons; len(r.Edges) != 7 || !reflect.DeepEqual(r.Edges, a.Edges[4:]) || r.PageInfo.HasNextPage {
		t.Fatalf("the page after the first %+v, want the other 7 of %+v", r, a)
	}

	// A coupon claimed shows at once.
	var created struct {
		CreateCouponTemplate struct{ Template struct{ ID string } }
	}
	s.Do(admin, apptest.Op(t, "CreateCouponTemplate"), map[string]any{"input": map[string]any{
		"title": "满200减30", "kind": "THRESHOLD", "faceValue": 3000, "minSpend": 20000,
		"validity": map[string]any{"daysAfterIssue": 1}, "totalStock": 5, "perMemberLimit": 1, "claimable": true,
	}}).Decode(t, &created)
	s.Do(member, apptest.Op(t, "ClaimCoupon"), map[string]any{"templateId": created.CreateCouponTemplate.Template.ID}).Decode(t, &struct{}{})
	got = compare("after a claim")
	edges := got["coupons"].(view)["edges"].([]any)
	if got["coupons"].(view)["totalCount"].(float64) != 12 || edges[0].(view)["node"].(view)["title"] != "满200减30" {
		t.Fatalf("the claimed coupon (expiring first) is not on the page: %v", got["coupons"])
	}
}

// A mutation's top-level fields run one after another: each sees the
// member as the previous one left it, not a card read before.
func TestMemberCardIsFreshForEachMutationField(t *testing.T) {
	s := apptest.Start(t)
	s.Seed()
	member, _ := s.PhoneMember("13600000006")
	var out struct {
		A, B struct {
			GrowthAwarded int
			Member        struct {
				Growth struct{ Value int }
				Points struct{ Balance int }
			}
		}
	}
	s.Do(member, `mutation {
		a: updateMyProfile(input: {displayName: "小李"}) { growthAwarded member { growth { value } points { balance } } }
		b: updateMyProfile(input: {gender: FEMALE, birthday: "1992-02-29", regionCode: "310104", avatarUrl: "https://img.example.com/b.png"}) {
			growthAwarded member { growth { value } points { balance } } }
	}`, nil).Decode(t, &out)
	if out.A.GrowthAwarded != 0 || out.A.Member.Growth.Value != 0 || out.B.GrowthAwarded != 10 || out.B.Member.Growth.Value != 10 {
		t.Fatalf("growth through one mutation: %+v", out)
	}
}
