package graph_test

import (
	"slices"
	"testing"
	"time"

	"github.com/onemember/onemember/internal/apptest"
)

// A coupon's whole life through the client operations: the operator
// creates a claimable template, the member claims, a till locks it for a
// basket, the order redeems it, the statistics count it, and a full refund
// gives it back.
func TestCouponLifecycle(t *testing.T) {
	s := apptest.Start(t)
	s.Seed()
	admin := s.AdminToken()
	till := s.Till(admin)
	member, memberID := s.PhoneMember("13700000001")

	var created struct {
		CreateCouponTemplate struct{ Template struct{ ID string } }
	}
	s.Do(admin, apptest.Op(t, "CreateCouponTemplate"), map[string]any{"input": map[string]any{
		"title": "满100减20", "kind": "THRESHOLD", "faceValue": 2000, "minSpend": 10000,
		"validity": map[string]any{"daysAfterIssue": 30}, "totalStock": 2, "perMemberLimit": 1, "claimable": true,
	}}).Decode(t, &created)
	tmplID := created.CreateCouponTemplate.Template.ID

	bad := s.Do(admin, apptest.Op(t, "CreateCouponTemplate"), map[string]any{"input": map[string]any{
		"title": "折扣", "kind": "PERCENT_OFF", "discountPercent": 100,
		"validity": map[string]any{"daysAfterIssue": 30}, "totalStock": 0, "perMemberLimit": 1, "claimable": true,
	}})
	if got := bad.Codes(); !slices.Equal(got, []string{"BAD_USER_INPUT"}) {
		t.Fatalf("percent 100 and stock 0: codes %v", got)
	}

	var claimable struct {
		ClaimableCoupons []struct {
			ID                     string
			Remaining, ClaimedByMe int
		}
	}
	s.Do(member, apptest.Op(t, "ClaimableCoupons"), nil).Decode(t, &claimable)
	if len(claimable.ClaimableCoupons) != 1 || claimable.ClaimableCoupons[0].Remaining != 2 {
		t.Fatalf("claimable: %+v", claimable)
	}
	var claimed struct {
		ClaimCoupon struct {
			Coupon struct{ Code, Status string }
		}
	}
	s.Do(member, apptest.Op(t, "ClaimCoupon"), map[string]any{"templateId": tmplID}).Decode(t, &claimed)
	code := claimed.ClaimCoupon.Coupon.Code
	if code == "" || claimed.ClaimCoupon.Coupon.Status != "AVAILABLE" {
		t.Fatalf("claimed: %+v", claimed)
	}
	if got := s.Do(member, apptest.Op(t, "ClaimCoupon"), map[string]any{"templateId": tmplID}).Codes(); !slices.Equal(got, []string{"LIMIT_EXCEEDED"}) {
		t.Fatalf("second claim: %v", got)
	}

	lock := func(ref string, basket int64) apptest.Response {
		return s.Do(till, apptest.Op(t, "LockCoupons"), map[string]any{
			"orderRef": ref, "codes": []string{code}, "basketAmount": basket, "storeCode": "SUPER-SH-01"})
	}
	if got := lock("basket-1", 9999).Codes(); !slices.Equal(got, []string{"BAD_USER_INPUT"}) {
		t.Fatalf("below minSpend: %v", got)
	}
	var locked struct {
		LockCoupons struct {
			Discount int64
			Coupons  []struct{ Code, Status string }
		}
	}
	lock("basket-1", 15000).Decode(t, &locked)
	if locked.LockCoupons.Discount != 2000 || locked.LockCoupons.Coupons[0].Status != "LOCKED" {
		t.Fatalf("locked: %+v", locked)
	}
	if got := lock("basket-2", 15000).Codes(); !slices.Equal(got, []string{"CONFLICT"}) {
		t.Fatalf("locked by another basket: %v", got)
	}

	in := order("coupon-order-1", memberID, 13000, time.Now().Add(-time.Minute))
	o := in["input"].(map[string]any)
	o["couponOrderRef"] = "basket-1"
	o["items"] = []map[string]any{{"sku": "SKU-9", "name": "礼盒", "quantity": 1, "unitPrice": 15000, "amount": 15000}}
	var ingested ingestOut
	s.Do(till, apptest.Op(t, "IngestOrder"), in).Decode(t, &ingested)
	if r := ingested.IngestOrder.Order.CouponsRedeemed; len(r) != 1 || r[0].Code != code {
		t.Fatalf("couponsRedeemed: %+v", r)
	}

	var stats struct {
		Node struct {
			Issued, Redeemed, Expired        int
			RedemptionRate                   float64
			DiscountTotal, AttributedRevenue int64
		}
	}
	s.Do(admin, apptest.Op(t, "CouponTemplateStats"), map[string]any{"id": tmplID}).Decode(t, &stats)
	if n := stats.Node; n.Issued != 1 || n.Redeemed != 1 || n.RedemptionRate != 1 || n.DiscountTotal != 2000 || n.AttributedRevenue != 13000 {
		t.Fatalf("stats: %+v", n)
	}

	var released struct{ ReleaseCoupons struct{ Released int } }
	s.Do(till, apptest.Op(t, "ReleaseCoupons"), map[string]any{"orderRef": "basket-1"}).Decode(t, &released)
	if released.ReleaseCoupons.Released != 0 {
		t.Fatalf("a redeemed coupon was released: %+v", released)
	}

	s.Do(till, apptest.Op(t, "RefundOrder"), map[string]any{"input": map[string]any{
		"externalId": "coupon-order-1", "channel": "POS", "refundId": "r1", "amount": 13000}}).Decode(t, &struct{}{})
	var mine struct {
		Me struct {
			Coupons struct {
				TotalCount int
				Edges      []struct{ Node struct{ Code, Status string } }
			}
		}
	}
	s.Do(member, apptest.Op(t, "MyCoupons"), map[string]any{"status": "AVAILABLE"}).Decode(t, &mine)
	if mine.Me.Coupons.TotalCount != 1 || mine.Me.Coupons.Edges[0].Node.Code != code {
		t.Fatalf("after a full refund the coupon is not back: %+v", mine.Me.Coupons)
	}
}
