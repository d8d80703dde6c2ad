package graph_test

import (
	"slices"
	"testing"
	"time"

	"github.com/onemember/onemember/internal/apptest"
)

// points gives a member points through the operator's adjustment.
func points(t *testing.T, s *apptest.Server, admin, memberID string, n int) {
	t.Helper()
	s.Do(admin, apptest.Op(t, "AdjustPoints"), map[string]any{"memberId": memberID, "amount": n,
		"reason": "test", "idempotencyKey": "pts-" + memberID}).Decode(t, &struct{}{})
}

func TestPointsMallAndLottery(t *testing.T) {
	s := apptest.Start(t)
	s.Seed()
	admin := s.AdminToken()
	member, memberID := s.PhoneMember("13700000011")
	points(t, s, admin, memberID, 1000)

	var item struct {
		CreateMallItem struct{ Item struct{ ID string } }
	}
	s.Do(admin, apptest.Op(t, "CreateMallItem"), map[string]any{"input": map[string]any{
		"title": "帆布袋", "pointsPrice": 300, "stock": 1, "perMemberLimit": 2}}).Decode(t, &item)
	var items struct {
		MallItems struct {
			Edges []struct{ Node struct{ ID, ImageUrl string } }
		}
	}
	s.Do(member, apptest.Op(t, "MallItems"), nil).Decode(t, &items)
	if len(items.MallItems.Edges) != 1 {
		t.Fatalf("mall items: %+v", items)
	}
	redeem := func(key string, qty int) apptest.Response {
		return s.Do(member, apptest.Op(t, "RedeemMallItem"), map[string]any{
			"itemId": item.CreateMallItem.Item.ID, "quantity": qty, "idempotencyKey": key})
	}
	if got := redeem("k0", 0).Codes(); !slices.Equal(got, []string{"BAD_USER_INPUT"}) {
		t.Fatalf("quantity 0: %v", got)
	}
	var r1, r2 struct {
		RedeemMallItem struct {
			Redemption    struct{ ID string }
			PointsBalance int
		}
	}
	redeem("k1", 1).Decode(t, &r1)
	redeem("k1", 1).Decode(t, &r2)
	if r1.RedeemMallItem.PointsBalance != 700 || r2.RedeemMallItem.Redemption.ID != r1.RedeemMallItem.Redemption.ID || r2.RedeemMallItem.PointsBalance != 700 {
		t.Fatalf("redeem then retry: %+v %+v", r1, r2)
	}
	if got := redeem("k2", 1).Codes(); !slices.Equal(got, []string{"OUT_OF_STOCK"}) {
		t.Fatalf("stock gone: %v", got)
	}

	var lottery struct {
		CreateLottery struct {
			Lottery struct {
				ID     string
				Prizes []struct{ ID, Kind string }
			}
		}
	}
	s.Do(admin, apptest.Op(t, "CreateLottery"), map[string]any{"input": map[string]any{
		"title": "幸运转盘", "costPoints": 100, "dailyDrawLimit": 2,
		"startsAt": time.Now().Add(-time.Hour).Format(time.RFC3339), "endsAt": time.Now().Add(24 * time.Hour).Format(time.RFC3339),
		"prizes": []map[string]any{{"name": "50积分", "kind": "POINTS", "weight": 1, "points": 50}},
	}}).Decode(t, &lottery)
	id := lottery.CreateLottery.Lottery.ID
	var before struct {
		Lottery struct{ DrawsLeftToday int }
	}
	s.Do(member, apptest.Op(t, "Lottery"), map[string]any{"id": id}).Decode(t, &before)
	if before.Lottery.DrawsLeftToday != 2 {
		t.Fatalf("draws left: %+v", before)
	}
	draw := func(key string) apptest.Response {
		return s.Do(member, apptest.Op(t, "DrawLottery"), map[string]any{"lotteryId": id, "idempotencyKey": key})
	}
	var d struct {
		DrawLottery struct {
			Won                          bool
			PointsAwarded, PointsBalance int
		}
	}
	draw("d1").Decode(t, &d)
	if !d.DrawLottery.Won || d.DrawLottery.PointsAwarded != 50 || d.DrawLottery.PointsBalance != 650 {
		t.Fatalf("draw: %+v", d)
	}
	draw("d1").Decode(t, &d)
	if d.DrawLottery.PointsBalance != 650 {
		t.Fatalf("a retried draw changed the balance: %+v", d)
	}
	draw("d2").Decode(t, &struct{}{})
	if got := draw("d3").Codes(); !slices.Equal(got, []string{"LIMIT_EXCEEDED"}) {
		t.Fatalf("third draw of the day: %v", got)
	}
}

func TestPromoCodesAndReferrals(t *testing.T) {
	s := apptest.Start(t)
	s.Seed()
	admin := s.AdminToken()
	till := s.Till(admin)
	referrer, referrerID := s.PhoneMember("13700000021")

	var tmpl struct {
		CreateCouponTemplate struct{ Template struct{ ID string } }
	}
	s.Do(admin, apptest.Op(t, "CreateCouponTemplate"), map[string]any{"input": map[string]any{
		"title": "10元券", "kind": "FIXED_AMOUNT", "faceValue": 1000,
		"validity": map[string]any{"daysAfterIssue": 7}, "totalStock": 100, "perMemberLimit": 5, "claimable": false,
	}}).Decode(t, &tmpl)
	s.Do(admin, apptest.Op(t, "CreatePromoCode"), map[string]any{"input": map[string]any{
		"code": "Spring-2026", "couponTemplateIds": []string{tmpl.CreateCouponTemplate.Template.ID}, "points": 20,
		"usageLimit": 10, "perMemberLimit": 1}}).Decode(t, &struct{}{})
	var promo struct {
		RedeemPromoCode struct {
			Coupons       []struct{ ID string }
			PointsAwarded int
		}
	}
	s.Do(referrer, apptest.Op(t, "RedeemPromoCode"), map[string]any{"code": "  spring-2026 "}).Decode(t, &promo)
	if len(promo.RedeemPromoCode.Coupons) != 1 || promo.RedeemPromoCode.PointsAwarded != 20 {
		t.Fatalf("promo: %+v", promo)
	}
	if got := s.Do(referrer, apptest.Op(t, "RedeemPromoCode"), map[string]any{"code": "SPRING-2026"}).Codes(); !slices.Equal(got, []string{"LIMIT_EXCEEDED"}) {
		t.Fatalf("second use: %v", got)
	}
	if got := s.Do(referrer, apptest.Op(t, "RedeemPromoCode"), map[string]any{"code": "NOPE-0000"}).Codes(); !slices.Equal(got, []string{"NOT_FOUND"}) {
		t.Fatalf("unknown code: %v", got)
	}

	var ref struct {
		Me struct {
			Referral struct {
				Code                        string
				InvitedCount, RewardedCount int
			}
		}
	}
	s.Do(referrer, apptest.Op(t, "MyReferral"), nil).Decode(t, &ref)
	code := ref.Me.Referral.Code
	if code == "" {
		t.Fatal("no referral code")
	}
	phone := "13700000022"
	s.Do("", `mutation($p: String!) { requestOtp(input: {phone: $p, purpose: LOGIN}) { retryAfterSeconds } }`,
		map[string]any{"p": phone}).Decode(t, &struct{}{})
	var login struct {
		LoginWithPhone struct {
			IsNewMember bool
			Member      struct{ ID string }
		}
	}
	s.Do("", apptest.Op(t, "LoginWithPhone"), map[string]any{"phone": phone, "otp": s.SMS.Code(phone, "LOGIN"), "inviteCode": code}).Decode(t, &login)
	if !login.LoginWithPhone.IsNewMember {
		t.Fatal("not a new member")
	}
	for i, ext := range []string{"ref-order-1", "ref-order-2"} {
		s.Do(till, apptest.Op(t, "IngestOrder"), order(ext, login.LoginWithPhone.Member.ID, 5000, time.Now().Add(-time.Duration(i+1)*time.Minute))).Decode(t, &struct{}{})
	}
	s.Do(referrer, apptest.Op(t, "MyReferral"), nil).Decode(t, &ref)
	if ref.Me.Referral.InvitedCount != 1 || ref.Me.Referral.RewardedCount != 1 {
		t.Fatalf("referral after two orders: %+v", ref.Me.Referral)
	}
	var growth struct {
		Me struct{ Growth struct{ Value int64 } }
	}
	s.Do(referrer, `query { me { growth { value } } }`, nil).Decode(t, &growth)
	if growth.Me.Growth.Value != 50 {
		t.Fatalf("referrer growth %d, want 50 once", growth.Me.Growth.Value)
	}
	_ = referrerID
}

func TestActivityRegistrationAndTickets(t *testing.T) {
	s := apptest.Start(t)
	s.Seed()
	admin := s.AdminToken()
	first, _ := s.PhoneMember("13700000031")
	second, _ := s.PhoneMember("13700000032")

	var created struct {
		CreateActivity struct{ Activity struct{ ID string } }
	}
	s.Do(admin, apptest.Op(t, "CreateActivity"), map[string]any{"input": map[string]any{
		"title": "烘焙课", "capacity": 1, "location": "上海店",
		"startsAt": time.Now().Add(24 * time.Hour).Format(time.RFC3339), "endsAt": time.Now().Add(26 * time.Hour).Format(time.RFC3339),
	}}).Decode(t, &created)
	id := created.CreateActivity.Activity.ID
	type reg struct {
		RegisterActivity struct {
			Registration struct {
				ID, Status string
				TicketCode *string
			}
		}
	}
	var r1, r2 reg
	s.Do(first, apptest.Op(t, "RegisterActivity"), map[string]any{"activityId": id}).Decode(t, &r1)
	s.Do(second, apptest.Op(t, "RegisterActivity"), map[string]any{"activityId": id}).Decode(t, &r2)
	if r1.RegisterActivity.Registration.Status != "REGISTERED" || r1.RegisterActivity.Registration.TicketCode == nil ||
		r2.RegisterActivity.Registration.Status != "WAITLISTED" || r2.RegisterActivity.Registration.TicketCode != nil {
		t.Fatalf("registrations: %+v %+v", r1, r2)
	}
	var list struct {
		Activities struct {
			Edges []struct {
				Node struct {
					RegisteredCount int
					Eligible        bool
					MyRegistration  *struct{ Status string }
				}
			}
		}
	}
	s.Do(second, apptest.Op(t, "Activities"), nil).Decode(t, &list)
	if n := list.Activities.Edges[0].Node; n.RegisteredCount != 1 || !n.Eligible || n.MyRegistration == nil || n.MyRegistration.Status != "WAITLISTED" {
		t.Fatalf("activities: %+v", list)
	}
	var cancelled struct {
		CancelActivityRegistration struct{ Registration struct{ Status string } }
	}
	s.Do(first, apptest.Op(t, "CancelActivityRegistration"), map[string]any{"registrationId": r1.RegisterActivity.Registration.ID}).Decode(t, &cancelled)
	if cancelled.CancelActivityRegistration.Registration.Status != "CANCELLED" {
		t.Fatalf("cancel: %+v", cancelled)
	}
	// The waitlisted member moved up and now has a ticket.
	s.Do(second, apptest.Op(t, "RegisterActivity"), map[string]any{"activityId": id}).Decode(t, &r2)
	if r2.RegisterActivity.Registration.Status != "REGISTERED" || r2.RegisterActivity.Registration.TicketCode == nil {
		t.Fatalf("promoted: %+v", r2)
	}
	ticket := *r2.RegisterActivity.Registration.TicketCode
	var scan struct {
		CheckInTicket struct {
			Registration struct {
				Status      string
				CheckedInAt *time.Time
			}
		}
	}
	s.Do(admin, apptest.Op(t, "CheckInTicket"), map[string]any{"ticketCode": ticket}).Decode(t, &scan)
	if scan.CheckInTicket.Registration.Status != "CHECKED_IN" || scan.CheckInTicket.Registration.CheckedInAt == nil {
		t.Fatalf("check-in: %+v", scan)
	}
	if got := s.Do(admin, apptest.Op(t, "CheckInTicket"), map[string]any{"ticketCode": ticket}).Codes(); !slices.Equal(got, []string{"CONFLICT"}) {
		t.Fatalf("second scan: %v", got)
	}
	if got := s.Do(admin, apptest.Op(t, "CheckInTicket"), map[string]any{"ticketCode": "FORGED"}).Codes(); !slices.Equal(got, []string{"BAD_USER_INPUT"}) {
		t.Fatalf("forged ticket: %v", got)
	}
	var scans struct {
		Node struct{ RegisteredCount, WaitlistedCount, CheckedInCount int }
	}
	s.Do(admin, apptest.Op(t, "ActivityScans"), map[string]any{"id": id}).Decode(t, &scans)
	if n := scans.Node; n.RegisteredCount != 1 || n.WaitlistedCount != 0 || n.CheckedInCount != 1 {
		t.Fatalf("scans: %+v", n)
	}
}
