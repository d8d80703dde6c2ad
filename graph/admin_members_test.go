package graph_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/onemember/onemember/internal/apptest"
	"github.com/onemember/onemember/internal/ledger"
)

// One ID: binding a phone held by another member merges the two, the
// ledgers move with MERGE entries, and the merged member's token resolves
// to the survivor.
func TestBindPhoneMergesAccounts(t *testing.T) {
	s := apptest.Start(t)
	s.Seed()
	till := s.Till(s.AdminToken())
	_, holderID := s.PhoneMember("13500000001")
	wechat, wechatID := s.MemberToken("wx-user-1")
	s.Do(till, apptest.Op(t, "IngestOrder"), order("W-1", wechatID, 30000, time.Now().Add(-time.Minute))).Decode(t, &struct{}{})
	s.Do(till, apptest.Op(t, "IngestOrder"), order("H-1", holderID, 10000, time.Now().Add(-time.Minute))).Decode(t, &struct{}{})

	s.Do(wechat, apptest.Op(t, "RequestBindOtp"), map[string]any{"phone": "13500000001"}).Decode(t, &struct{}{})
	var bound struct {
		BindPhone struct {
			Merged bool
			Member struct {
				ID         string
				Identities []struct{ Kind string }
			}
		}
	}
	s.Do(wechat, apptest.Op(t, "BindPhone"), map[string]any{"phone": "13500000001", "otp": s.SMS.Code("13500000001", "BIND_PHONE")}).Decode(t, &bound)
	if !bound.BindPhone.Merged || bound.BindPhone.Member.ID != holderID || len(bound.BindPhone.Member.Identities) != 2 {
		t.Fatalf("bind: %+v", bound.BindPhone)
	}
	var home struct {
		Me struct {
			ID     string
			Points struct{ Balance int64 }
		}
	}
	s.Do(wechat, apptest.Op(t, "MemberHome"), nil).Decode(t, &home)
	if home.Me.ID != holderID || home.Me.Points.Balance != 400 {
		t.Fatalf("after merge the old token sees %+v, want the survivor with 400 points", home.Me)
	}
	report, err := ledger.Verify(context.Background(), s.DB)
	if err != nil || len(report.Problems) > 0 {
		t.Fatalf("ledgers: %v %v", err, report.Problems)
	}
}

func TestStaffMemberAdministration(t *testing.T) {
	s := apptest.Start(t)
	s.Seed()
	admin := s.AdminToken()
	till := s.Till(admin)
	_, a := s.PhoneMember("13500000011")
	bTok, b := s.PhoneMember("13500000012")
	s.Do(till, apptest.Op(t, "IngestOrder"), order("A-1", a, 50000, time.Now().Add(-time.Minute))).Decode(t, &struct{}{})
	s.Do(till, apptest.Op(t, "IngestOrder"), order("B-1", b, 20000, time.Now().Add(-time.Minute))).Decode(t, &struct{}{})

	var found struct {
		Members struct {
			TotalCount int
			Edges      []struct{ Node struct{ ID, Phone string } }
		}
	}
	s.Do(admin, apptest.Op(t, "FindMembers"), map[string]any{"where": map[string]any{"phone": "13500000011"}}).Decode(t, &found)
	if found.Members.TotalCount != 1 || found.Members.Edges[0].Node.ID != a {
		t.Fatalf("search by phone: %+v", found.Members)
	}
	s.Do(admin, apptest.Op(t, "FindMembers"), map[string]any{"where": map[string]any{"tierCodes": []string{"SILVER"}}}).Decode(t, &found)
	if found.Members.TotalCount != 1 {
		t.Fatalf("search by tier: %d SILVER members, want 1 (500 yuan of growth)", found.Members.TotalCount)
	}

	var preview struct {
		PreviewMerge struct {
			PointsBalance, GrowthValue int64
			ResultingTier              struct{ Code string }
		}
	}
	s.Do(admin, apptest.Op(t, "PreviewMerge"), map[string]any{"survivorId": a, "mergedId": b}).Decode(t, &preview)
	if preview.PreviewMerge.PointsBalance != 700 || preview.PreviewMerge.ResultingTier.Code != "SILVER" {
		t.Fatalf("preview: %+v", preview.PreviewMerge)
	}
	var merged struct {
		MergeMembers struct {
			Member struct {
				ID     string
				Points struct{ Balance int64 }
			}
		}
	}
	vars := map[string]any{"survivorId": a, "mergedId": b, "reason": "同一顾客两张卡"}
	s.Do(admin, apptest.Op(t, "MergeMembers"), vars).Decode(t, &merged)
	if merged.MergeMembers.Member.Points.Balance != 700 {
		t.Fatalf("merge: %+v", merged)
	}
	s.Do(admin, apptest.Op(t, "MergeMembers"), vars).Decode(t, &merged) // idempotent
	if merged.MergeMembers.Member.Points.Balance != 700 {
		t.Fatalf("merging again changed balances: %+v", merged)
	}
	var who struct{ Viewer struct{ ID string } }
	s.Do(bTok, apptest.Op(t, "WhoAmI"), nil).Decode(t, &who)
	if who.Viewer.ID != a {
		t.Fatalf("merged member's token resolves to %s, want %s", who.Viewer.ID, a)
	}

	adjust := map[string]any{"memberId": a, "amount": -200, "reason": "客诉补偿冲正", "idempotencyKey": "adj-1"}
	var adj, adj2 struct {
		AdjustPoints struct {
			Transaction struct {
				ID           string
				BalanceAfter int64
			}
		}
	}
	s.Do(admin, apptest.Op(t, "AdjustPoints"), adjust).Decode(t, &adj)
	s.Do(admin, apptest.Op(t, "AdjustPoints"), adjust).Decode(t, &adj2)
	if adj.AdjustPoints.Transaction.BalanceAfter != 500 || adj2.AdjustPoints.Transaction.ID != adj.AdjustPoints.Transaction.ID {
		t.Fatalf("adjustments: %+v %+v", adj, adj2)
	}
	wantCode(t, s.Do(admin, apptest.Op(t, "AdjustPoints"), map[string]any{"memberId": a, "amount": -100000, "reason": "x", "idempotencyKey": "adj-2"}), "INSUFFICIENT_BALANCE")

	var frozen struct {
		FreezeMember struct{ Member struct{ Status string } }
	}
	s.Do(admin, apptest.Op(t, "FreezeMember"), map[string]any{"memberId": a, "reason": "风控"}).Decode(t, &frozen)
	if frozen.FreezeMember.Member.Status != "FROZEN" {
		t.Fatalf("freeze: %+v", frozen)
	}
	wantCode(t, s.Do(till, apptest.Op(t, "PayWithStoredValue"), map[string]any{"input": map[string]any{
		"member": map[string]any{"memberId": a}, "amount": 100, "storeCode": "SUPER-SH-01", "orderRef": "F-1", "idempotencyKey": "f-1"}}), "FORBIDDEN")

	var erased struct {
		EraseMember struct{ Member struct{ Status string } }
	}
	s.Do(admin, apptest.Op(t, "EraseMember"), map[string]any{"memberId": a, "reason": "用户申请注销"}).Decode(t, &erased)
	if erased.EraseMember.Member.Status != "ERASED" {
		t.Fatalf("erase: %+v", erased)
	}
	s.Do(admin, apptest.Op(t, "FindMembers"), map[string]any{"where": map[string]any{"phone": "13500000011"}}).Decode(t, &found)
	if found.Members.TotalCount != 0 {
		t.Fatal("an erased member is still found by phone")
	}
	report, err := ledger.Verify(context.Background(), s.DB)
	if err != nil || len(report.Problems) > 0 {
		t.Fatalf("ledgers after erase: %v %v", err, report.Problems)
	}
}

func TestProgrammeConfiguration(t *testing.T) {
	s := apptest.Start(t)
	s.Seed()
	admin := s.AdminToken()
	var prog struct {
		BusinessUnits []struct {
			Code   string
			Stores []struct{ Code string }
		}
		Tiers []struct {
			Code      string
			Threshold int
			Benefits  []struct{ Code string }
		}
		Benefits     []struct{ Code string }
		EarningRules []struct {
			PointsPerYuan   float64
			TierMultipliers []struct{ Multiplier float64 }
		}
		PaidMembershipPlans []struct {
			Code  string
			Price int64
		}
	}
	s.Do(admin, apptest.Op(t, "Programme"), nil).Decode(t, &prog)
	if len(prog.BusinessUnits) != 4 || len(prog.Tiers) != 4 || len(prog.PaidMembershipPlans) != 3 || len(prog.EarningRules) != 4 {
		t.Fatalf("programme: %+v", prog)
	}
	var rule struct {
		SetEarningRule struct {
			Rule struct{ PointsPerYuan, GrowthPerYuan float64 }
		}
	}
	s.Do(admin, apptest.Op(t, "SetEarningRule"), map[string]any{"input": map[string]any{"businessUnitCode": "DINING", "pointsPerYuan": 2, "growthPerYuan": 1}}).Decode(t, &rule)
	if rule.SetEarningRule.Rule.PointsPerYuan != 2 {
		t.Fatalf("earning rule: %+v", rule)
	}
	wantCode(t, s.Do(admin, apptest.Op(t, "SetEarningRule"), map[string]any{"input": map[string]any{"businessUnitCode": "DINING", "pointsPerYuan": -1, "growthPerYuan": 1}}), "BAD_USER_INPUT")
	var benefit struct {
		UpsertBenefit struct{ Benefit struct{ Code, Kind string } }
	}
	s.Do(admin, apptest.Op(t, "UpsertBenefit"), map[string]any{"input": map[string]any{"code": "FAST_RETURNS", "name": "极速退货", "kind": "FAST_RETURNS", "businessUnitCodes": []string{"MALL"}}}).Decode(t, &benefit)
	var tierOut struct {
		UpsertTier struct {
			Tier struct {
				Code      string
				Threshold int
			}
		}
	}
	s.Do(admin, apptest.Op(t, "UpsertTier"), map[string]any{"input": map[string]any{"code": "SILVER", "name": "银卡会员", "rank": 1, "threshold": 600}}).Decode(t, &tierOut)
	if tierOut.UpsertTier.Tier.Threshold != 600 {
		t.Fatalf("upsert tier: %+v", tierOut)
	}
	wantCode(t, s.Do(admin, apptest.Op(t, "UpsertTier"), map[string]any{"input": map[string]any{"code": "SILVER", "name": "银卡会员", "rank": 1, "threshold": 5000}}), "BAD_USER_INPUT")

	var sim struct {
		SimulateTiers struct {
			MembersByTier []struct {
				Tier    struct{ Code string }
				Members int
			}
		}
	}
	s.Do(admin, apptest.Op(t, "SimulateTiers"), map[string]any{"tiers": []map[string]any{
		{"code": "NORMAL", "name": "普通", "rank": 0, "threshold": 0},
		{"code": "VIP", "name": "VIP", "rank": 1, "threshold": 100},
	}}).Decode(t, &sim)
	if len(sim.SimulateTiers.MembersByTier) != 2 {
		t.Fatalf("simulation: %+v", sim)
	}
	var plans struct{ PaidMembershipPlans []struct{ Code string } }
	member, _ := s.MemberToken("plan-viewer")
	s.Do(member, apptest.Op(t, "PaidMembershipPlans"), nil).Decode(t, &plans)
	if len(plans.PaidMembershipPlans) != 3 {
		t.Fatalf("plans: %+v", plans)
	}
}

// A merge racing with an order for the merged member: the order and its
// points end on the survivor, nothing lost, nothing counted twice.
func TestMergeRacingWithIngestion(t *testing.T) {
	s := apptest.Start(t)
	s.Seed()
	admin := s.AdminToken()
	till := s.Till(admin)
	for round := 0; round < 8; round++ {
		_, survivor := s.PhoneMember(fmt.Sprintf("1350000100%d", round))
		_, merged := s.MemberToken(fmt.Sprintf("race-merged-%d", round))
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			r, err := apptest.Post(s.URL+"/query", till, apptest.Op(t, "IngestOrder"),
				order(fmt.Sprintf("RACE-%d", round), merged, 10000, time.Now().Add(-time.Minute)))
			if err != nil || len(r.Errors) > 0 {
				t.Errorf("ingest: %v %+v", err, r.Errors)
			}
		}()
		go func() {
			defer wg.Done()
			r, err := apptest.Post(s.URL+"/query", admin, apptest.Op(t, "MergeMembers"),
				map[string]any{"survivorId": survivor, "mergedId": merged, "reason": "race"})
			if err != nil || len(r.Errors) > 0 {
				t.Errorf("merge: %v %+v", err, r.Errors)
			}
		}()
		wg.Wait()
		var home struct {
			Node struct {
				Points struct{ Balance int64 }
				Orders struct{ TotalCount int }
			}
		}
		s.Do(admin, `query($id: ID!) { node(id: $id) { ... on Member { points { balance } orders { totalCount } } } }`,
			map[string]any{"id": survivor}).Decode(t, &home)
		if home.Node.Points.Balance != 100 || home.Node.Orders.TotalCount != 1 {
			t.Fatalf("round %d: survivor has %d points and %d orders, want 100 and 1", round, home.Node.Points.Balance, home.Node.Orders.TotalCount)
		}
	}
	report, err := ledger.Verify(context.Background(), s.DB)
	if err != nil || len(report.Problems) > 0 {
		t.Fatalf("ledgers: %v %v", err, report.Problems)
	}
}
