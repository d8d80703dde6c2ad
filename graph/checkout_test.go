package graph_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onemember/onemember/internal/apptest"
	"github.com/onemember/onemember/internal/ledger"
)

type ingestOut struct {
	IngestOrder struct {
		Duplicate bool
		Order     struct {
			ID, ExternalID, Status             string
			Amount, PointsEarned, PointsBurned int64
			GrowthEarned                       int64
			CouponsRedeemed                    []struct{ Code string }
		}
		Member struct {
			ID     string
			Tier   struct{ Code string }
			Points struct{ Balance int64 }
			Growth struct{ Value int64 }
		}
	}
}

type svOut struct {
	Transaction struct {
		ID                                                 string
		Kind                                               string
		Amount, PrincipalAmount, BonusAmount, BalanceAfter int64
	}
	Duplicate bool
}

func order(externalID, memberID string, amount int64, paidAt time.Time, payments ...map[string]any) map[string]any {
	if len(payments) == 0 {
		payments = []map[string]any{{"method": "WECHAT_PAY", "amount": amount}}
	}
	return map[string]any{"input": map[string]any{
		"externalId": externalID, "channel": "POS", "storeCode": "SUPER-SH-01",
		"member": map[string]any{"memberId": memberID}, "paidAt": paidAt.Format(time.RFC3339),
		"amount": amount, "payments": payments,
		"items": []map[string]any{{"sku": "SKU-1", "name": "有机牛奶", "category": "乳品", "quantity": 2, "unitPrice": amount / 2, "amount": amount}},
	}}
}

// The till's day: identify the member by QR, top up, pay with stored
// value, ingest the order, refund part of it, then the rest.
func TestCheckoutIngestAndRefund(t *testing.T) {
	s := apptest.Start(t)
	s.Seed()
	admin := s.AdminToken()
	till := s.Till(admin)
	member, memberID := s.PhoneMember("13700000001")

	var code struct {
		Me struct{ MemberCode struct{ Code string } }
	}
	s.Do(member, apptest.Op(t, "MemberCode"), nil).Decode(t, &code)
	var who struct{ IdentifyMember struct{ ID string } }
	s.Do(till, apptest.Op(t, "IdentifyMember"), map[string]any{"memberCode": code.Me.MemberCode.Code}).Decode(t, &who)
	if who.IdentifyMember.ID != memberID {
		t.Fatalf("identified %s, want %s", who.IdentifyMember.ID, memberID)
	}
	wantCode(t, s.Do(till, apptest.Op(t, "IdentifyMember"), map[string]any{"memberCode": "NOTACODE"}), "BAD_USER_INPUT")

	topUp := map[string]any{"input": map[string]any{"member": map[string]any{"memberId": memberID}, "amount": 100000, "bonus": 10000, "storeCode": "SUPER-SH-01", "paymentRef": "wx-pay-1"}}
	var up struct{ TopUpStoredValue svOut }
	s.Do(till, apptest.Op(t, "TopUpStoredValue"), topUp).Decode(t, &up)
	if up.TopUpStoredValue.Duplicate || up.TopUpStoredValue.Transaction.BalanceAfter != 110000 {
		t.Fatalf("top-up: %+v", up.TopUpStoredValue)
	}
	var again struct{ TopUpStoredValue svOut }
	s.Do(till, apptest.Op(t, "TopUpStoredValue"), topUp).Decode(t, &again)
	if !again.TopUpStoredValue.Duplicate || again.TopUpStoredValue.Transaction.ID != up.TopUpStoredValue.Transaction.ID {
		t.Fatalf("retried top-up: %+v", again.TopUpStoredValue)
	}

	var pay struct{ PayWithStoredValue svOut }
	s.Do(till, apptest.Op(t, "PayWithStoredValue"), map[string]any{"input": map[string]any{
		"member": map[string]any{"memberId": memberID}, "amount": 5000, "storeCode": "SUPER-SH-01",
		"orderRef": "POS-1", "idempotencyKey": "pay-1"}}).Decode(t, &pay)
	if pay.PayWithStoredValue.Transaction.PrincipalAmount != -5000 || pay.PayWithStoredValue.Transaction.BalanceAfter != 105000 {
		t.Fatalf("payment: %+v", pay.PayWithStoredValue)
	}

	ingest := order("POS-1", memberID, 20000, time.Now().Add(-time.Minute),
		map[string]any{"method": "WECHAT_PAY", "amount": 15000},
		map[string]any{"method": "STORED_VALUE", "amount": 5000, "storedValueTransactionId": pay.PayWithStoredValue.Transaction.ID})
	var first, dup ingestOut
	s.Do(till, apptest.Op(t, "IngestOrder"), ingest).Decode(t, &first)
	o := first.IngestOrder
	if o.Duplicate || o.Order.PointsEarned != 200 || o.Order.GrowthEarned != 200 || o.Member.Points.Balance != 200 || o.Member.Growth.Value != 200 {
		t.Fatalf("ingest: %+v", o)
	}
	s.Do(till, apptest.Op(t, "IngestOrder"), ingest).Decode(t, &dup)
	if !dup.IngestOrder.Duplicate || dup.IngestOrder.Order.ID != o.Order.ID || dup.IngestOrder.Member.Points.Balance != 200 {
		t.Fatalf("retried ingest: %+v", dup.IngestOrder)
	}

	refund := func(id string, amount int64) apptest.Response {
		return s.Do(till, apptest.Op(t, "RefundOrder"), map[string]any{"input": map[string]any{
			"externalId": "POS-1", "channel": "POS", "refundId": id, "amount": amount}})
	}
	type refundOut struct {
		RefundOrder struct {
			Duplicate bool
			Order     struct {
				Status         string
				RefundedAmount int64
			}
			PointsReversed, GrowthReversed, StoredValueRestored int64
		}
	}
	var r1, r1again, r2 refundOut
	refund("R1", 10000).Decode(t, &r1)
	if r1.RefundOrder.PointsReversed != 100 || r1.RefundOrder.GrowthReversed != 100 || r1.RefundOrder.StoredValueRestored != 2500 || r1.RefundOrder.Order.Status != "PARTIALLY_REFUNDED" {
		t.Fatalf("half refund: %+v", r1.RefundOrder)
	}
	refund("R1", 10000).Decode(t, &r1again)
	if !r1again.RefundOrder.Duplicate || r1again.RefundOrder.Order.RefundedAmount != 10000 {
		t.Fatalf("retried refund: %+v", r1again.RefundOrder)
	}
	wantCode(t, refund("R2", 10001), "BAD_USER_INPUT")
	refund("R2", 10000).Decode(t, &r2)
	if r2.RefundOrder.Order.Status != "REFUNDED" || r2.RefundOrder.PointsReversed != 100 || r2.RefundOrder.StoredValueRestored != 2500 {
		t.Fatalf("final refund: %+v", r2.RefundOrder)
	}

	var home struct {
		Me struct {
			Points      struct{ Balance int64 }
			Growth      struct{ Value int64 }
			StoredValue struct{ Balance, Principal, Bonus int64 }
		}
	}
	s.Do(member, apptest.Op(t, "MemberHome"), nil).Decode(t, &home)
	if home.Me.Points.Balance != 0 || home.Me.Growth.Value != 0 || home.Me.StoredValue.Balance != 110000 || home.Me.StoredValue.Principal != 100000 {
		t.Fatalf("after full refund: %+v", home.Me)
	}
	for _, op := range []string{"PointsHistory", "StoredValueHistory", "GrowthHistory", "MyOrders"} {
		if r := s.Do(member, apptest.Op(t, op), nil); len(r.Errors) > 0 {
			t.Fatalf("%s: %+v", op, r.Errors)
		}
	}
	report, err := ledger.Verify(context.Background(), s.DB)
	if err != nil || len(report.Problems) > 0 {
		t.Fatalf("ledgers do not add up: %v %v", err, report.Problems)
	}
}

func TestOrderBadInputWritesNothing(t *testing.T) {
	s := apptest.Start(t)
	s.Seed()
	till := s.Till(s.AdminToken())
	_, memberID := s.PhoneMember("13700000002")
	now := time.Now().Add(-time.Minute)
	cases := map[string]struct {
		vars  map[string]any
		field string
	}{
		"negative amount": {order("B1", memberID, -100, now), "amount"},
		"unknown store": {func() map[string]any {
			v := order("B2", memberID, 1000, now)
			v["input"].(map[string]any)["storeCode"] = "NOPE"
			return v
		}(), "storeCode"},
		"item sum": {func() map[string]any {
			v := order("B3", memberID, 1000, now)
			v["input"].(map[string]any)["items"] = []map[string]any{{"sku": "A", "name": "a", "quantity": 1, "unitPrice": 900, "amount": 900}}
			return v
		}(), "items"},
		"zero quantity": {func() map[string]any {
			v := order("B4", memberID, 1000, now)
			v["input"].(map[string]any)["items"] = []map[string]any{{"sku": "A", "name": "a", "quantity": 0, "unitPrice": 1000, "amount": 1000}}
			return v
		}(), "items[0].quantity"},
		"malformed phone": {func() map[string]any {
			v := order("B5", memberID, 1000, now)
			v["input"].(map[string]any)["member"] = map[string]any{"phone": "12345"}
			return v
		}(), "member.phone"},
		"future":     {order("B6", memberID, 1000, time.Now().Add(time.Hour)), "paidAt"},
		"over limit": {order("B7", memberID, 200_000_000, now), "amount"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := s.Do(till, apptest.Op(t, "IngestOrder"), c.vars)
			wantCode(t, r, "BAD_USER_INPUT")
			fields, _ := r.Errors[0].Extensions["fields"].([]any)
			found := false
			for _, f := range fields {
				found = found || f == c.field
			}
			if !found {
				t.Fatalf("error %q does not name %s (fields %v)", r.Errors[0].Message, c.field, fields)
			}
		})
	}
	if n := s.DB.Order.Query().CountX(context.Background()); n != 0 {
		t.Fatalf("bad input wrote %d orders", n)
	}
	if n := s.DB.PointsEntry.Query().CountX(context.Background()); n != 0 {
		t.Fatalf("bad input wrote %d points entries", n)
	}
}

// 50 payments race for a balance that covers 10.
func TestConcurrentStoredValuePaymentsNeverOverspend(t *testing.T) {
	s := apptest.Start(t)
	s.Seed()
	till := s.Till(s.AdminToken())
	_, memberID := s.PhoneMember("13700000003")
	s.Do(till, apptest.Op(t, "TopUpStoredValue"), map[string]any{"input": map[string]any{
		"member": map[string]any{"memberId": memberID}, "amount": 10000, "paymentRef": "race-topup"}}).Decode(t, &struct{}{})
	var ok, insufficient atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := apptest.Post(s.URL+"/query", till, apptest.Op(t, "PayWithStoredValue"), map[string]any{"input": map[string]any{
				"member": map[string]any{"memberId": memberID}, "amount": 1000, "storeCode": "SUPER-SH-01",
				"orderRef": fmt.Sprintf("R-%d", i), "idempotencyKey": fmt.Sprintf("race-%d", i)}})
			switch {
			case err != nil:
				t.Error(err)
			case len(r.Errors) == 0:
				ok.Add(1)
			case r.Errors[0].Code() == "INSUFFICIENT_BALANCE":
				insufficient.Add(1)
			default:
				t.Errorf("unexpected error: %+v", r.Errors)
			}
		}()
	}
	wg.Wait()
	if ok.Load() != 10 || insufficient.Load() != 40 {
		t.Fatalf("%d payments succeeded and %d were refused; want 10 and 40", ok.Load(), insufficient.Load())
	}
	report, err := ledger.Verify(context.Background(), s.DB)
	if err != nil || len(report.Problems) > 0 {
		t.Fatalf("ledgers: %v %v", err, report.Problems)
	}
}

// 20 retries of one order race: one order, one set of entries.
func TestConcurrentDuplicateOrdersIngestOnce(t *testing.T) {
	s := apptest.Start(t)
	s.Seed()
	till := s.Till(s.AdminToken())
	_, memberID := s.PhoneMember("13700000004")
	vars := order("DUP-1", memberID, 12345, time.Now().Add(-time.Minute))
	var dups, created atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := apptest.Post(s.URL+"/query", till, apptest.Op(t, "IngestOrder"), vars)
			if err != nil || len(r.Errors) > 0 {
				t.Errorf("ingest: %v %+v", err, r.Errors)
				return
			}
			var out ingestOut
			r.Decode(t, &out)
			if out.IngestOrder.Duplicate {
				dups.Add(1)
			} else {
				created.Add(1)
			}
		}()
	}
	wg.Wait()
	if created.Load() != 1 || dups.Load() != 19 {
		t.Fatalf("created %d, duplicates %d; want 1 and 19", created.Load(), dups.Load())
	}
	ctx := context.Background()
	if n := s.DB.Order.Query().CountX(ctx); n != 1 {
		t.Fatalf("%d orders", n)
	}
	if n := s.DB.PointsEntry.Query().CountX(ctx); n != 1 {
		t.Fatalf("%d points entries, want one earning", n)
	}
}

// Payments above the password-free limit need the pay password, set after
// an SMS code; the member's coupons page lists what they hold.
func TestPayPasswordAndMyCoupons(t *testing.T) {
	s := apptest.Start(t)
	s.Seed()
	till := s.Till(s.AdminToken())
	member, memberID := s.PhoneMember("13700000009")
	s.Do(till, apptest.Op(t, "TopUpStoredValue"), map[string]any{"input": map[string]any{
		"member": map[string]any{"memberId": memberID}, "amount": 100000, "paymentRef": "pw-topup"}}).Decode(t, &struct{}{})
	pay := func(key string, password any) apptest.Response {
		return s.Do(till, apptest.Op(t, "PayWithStoredValue"), map[string]any{"input": map[string]any{
			"member": map[string]any{"phone": "13700000009"}, "amount": 30000, "storeCode": "SUPER-SH-01",
			"orderRef": key, "idempotencyKey": key, "payPassword": password}})
	}
	wantCode(t, pay("big-1", nil), "FORBIDDEN")
	s.Do(member, `mutation { requestOtp(input: {phone: "13700000009", purpose: PAY_PASSWORD}) { retryAfterSeconds } }`, nil).Decode(t, &struct{}{})
	wantCode(t, s.Do(member, apptest.Op(t, "SetPayPassword"), map[string]any{"otp": "000000", "password": "123456"}), "BAD_USER_INPUT")
	code := s.SMS.Code("13700000009", "PAY_PASSWORD")
	wantCode(t, s.Do(member, apptest.Op(t, "SetPayPassword"), map[string]any{"otp": code, "password": "12ab"}), "BAD_USER_INPUT")
	var ok struct{ SetPayPassword struct{ Ok bool } }
	s.Do(member, apptest.Op(t, "SetPayPassword"), map[string]any{"otp": code, "password": "246810"}).Decode(t, &ok)
	wantCode(t, pay("big-2", "111111"), "FORBIDDEN")
	var paid struct{ PayWithStoredValue svOut }
	pay("big-3", "246810").Decode(t, &paid)
	if paid.PayWithStoredValue.Transaction.BalanceAfter != 70000 {
		t.Fatalf("payment with password: %+v", paid)
	}

	ctx := context.Background()
	id := 0
	fmt.Sscan(memberID, &id)
	tmpl := s.DB.CouponTemplate.Create().SetTitle("满200减20").SetKind("THRESHOLD").SetFaceValue(2000).SetMinSpend(20000).
		SetTotalStock(10).SetPerMemberLimit(2).SaveX(ctx)
	s.DB.Coupon.Create().SetCode("MYC-1").SetTemplateID(tmpl.ID).SetMemberID(id).SetExpiresAt(time.Now().Add(48 * time.Hour)).ExecX(ctx)
	s.DB.Coupon.Create().SetCode("MYC-2").SetTemplateID(tmpl.ID).SetMemberID(id).SetStatus("REDEEMED").SetExpiresAt(time.Now().Add(48 * time.Hour)).ExecX(ctx)
	var mine struct {
		Me struct {
			Coupons struct {
				TotalCount int
				Edges      []struct {
					Node struct {
						Code, Title, Status string
						FaceValue           int64
					}
				}
			}
		}
	}
	s.Do(member, apptest.Op(t, "MyCoupons"), map[string]any{"status": "AVAILABLE"}).Decode(t, &mine)
	if mine.Me.Coupons.TotalCount != 1 || mine.Me.Coupons.Edges[0].Node.Title != "满200减20" || mine.Me.Coupons.Edges[0].Node.FaceValue != 2000 {
		t.Fatalf("my coupons: %+v", mine.Me.Coupons)
	}
	s.Do(member, apptest.Op(t, "MyCoupons"), nil).Decode(t, &mine)
	if mine.Me.Coupons.TotalCount != 2 {
		t.Fatalf("all my coupons: %d", mine.Me.Coupons.TotalCount)
	}
}
