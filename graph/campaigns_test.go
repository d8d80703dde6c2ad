package graph_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/onemember/onemember/ent/campaignexecution"
	"github.com/onemember/onemember/ent/coupon"
	"github.com/onemember/onemember/internal/apptest"
	"github.com/onemember/onemember/internal/platform/pgtest"
	"github.com/onemember/onemember/migrations"
)

type campaignReport struct {
	Targeted, Reached, SuppressedByConsent, SuppressedByCap, Holdout int
	CouponsIssued, CouponsRedeemed, AttributedOrders                 int
	RedemptionRate, TreatedConversionRate, HoldoutConversionRate     float64
	AttributedRevenue, Cost                                          int64
	Roi, Lift                                                        *float64
}

// createTemplate makes a claimable-or-not FIXED_AMOUNT template of stock n.
func createTemplate(t *testing.T, s *apptest.Server, admin, title string, n int) string {
	t.Helper()
	var tpl struct {
		CreateCouponTemplate struct{ Template struct{ ID string } }
	}
	s.Do(admin, apptest.Op(t, "CreateCouponTemplate"), map[string]any{"input": map[string]any{
		"title": title, "kind": "FIXED_AMOUNT", "faceValue": 500, "validity": map[string]any{"daysAfterIssue": 30},
		"totalStock": n, "perMemberLimit": 1, "claimable": false}}).Decode(t, &tpl)
	return tpl.CreateCouponTemplate.Template.ID
}

// A ONE_OFF campaign through the admin operations: its dry run, creation,
// activation, the job that runs it, its report and executions; pausing,
// the list, and refused input.
func TestCampaignOperations(t *testing.T) {
	s := apptest.Start(t)
	members := seededMembers(t, s, 50)
	admin := s.AdminToken()
	tpl := createTemplate(t, s, admin, "回归礼 5 元", 1000)
	input := map[string]any{
		"name":    "全员回归礼",
		"trigger": map[string]any{"kind": "ONE_OFF", "at": time.Now().Format(time.RFC3339)},
		"actions": []any{
			map[string]any{"kind": "ISSUE_COUPON", "couponTemplateId": tpl},
			map[string]any{"kind": "SEND_MESSAGE", "channel": "IN_APP", "title": "送您一张券", "body": "{{displayName}}，{{couponTitle}} 已到账"},
		},
		"startsAt":       time.Now().Add(-time.Minute).Format(time.RFC3339),
		"holdoutPercent": 20,
		"budget":         1_000_000,
	}
	var dry struct {
		DryRunCampaign struct {
			Targeted, AfterConsent, AfterCaps, Holdout int
			EstimatedCost                              int64
		}
	}
	s.Do(admin, apptest.Op(t, "DryRunCampaign"), map[string]any{"input": input}).Decode(t, &dry)
	d := dry.DryRunCampaign
	if d.Targeted != len(members) || d.AfterConsent != d.Targeted || d.AfterCaps != d.Targeted || d.Holdout == 0 ||
		d.EstimatedCost != int64(d.AfterCaps-d.Holdout)*500 {
		t.Fatalf("dry run %+v for %d members", d, len(members))
	}
	if n, _ := s.DB.CampaignExecution.Query().Count(context.Background()); n != 0 {
		t.Fatalf("the dry run wrote %d executions", n)
	}

	var created struct {
		CreateCampaign struct {
			Campaign struct {
				ID, Name, Status string
				Trigger          struct{ Kind string }
			}
		}
	}
	s.Do(admin, apptest.Op(t, "CreateCampaign"), map[string]any{"input": input}).Decode(t, &created)
	c := created.CreateCampaign.Campaign
	if c.Status != "DRAFT" || c.Trigger.Kind != "ONE_OFF" {
		t.Fatalf("created %+v", c)
	}
	var act struct {
		ActivateCampaign struct{ Campaign struct{ ID, Status string } }
	}
	s.Do(admin, apptest.Op(t, "ActivateCampaign"), map[string]any{"id": c.ID}).Decode(t, &act)
	if act.ActivateCampaign.Campaign.Status != "ACTIVE" {
		t.Fatalf("activated: %+v", act)
	}

	// The job runs within seconds; the report then matches the dry run.
	var rep struct {
		Node struct {
			ID, Name, Status string
			Report           campaignReport
			Executions       struct {
				TotalCount int
				Edges      []struct {
					Node struct {
						Member         struct{ ID, MemberNo string }
						Action, Status string
						ExecutedAt     time.Time
					}
				}
			}
		}
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		s.Do(admin, apptest.Op(t, "CampaignReport"), map[string]any{"id": c.ID}).Decode(t, &rep)
		// report and executions are separate reads: the job may commit
		// between them, so wait until both show it.
		done := rep.Node.Report.Targeted == d.Targeted && rep.Node.Executions.TotalCount == d.Targeted
		if done || time.Now().After(deadline) {
			break
		}
	}
	r := rep.Node.Report
	issued, err := s.DB.Coupon.Query().Where(coupon.SourceContains("campaign")).Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r.Targeted != d.Targeted || r.Holdout != d.Holdout || r.Reached != d.AfterCaps-d.Holdout ||
		r.CouponsIssued != r.Reached || issued != r.Reached || r.Cost != d.EstimatedCost || rep.Node.Executions.TotalCount != r.Targeted {
		t.Fatalf("report %+v (coupons %d, executions %d), dry run %+v", r, issued, rep.Node.Executions.TotalCount, d)
	}
	for _, e := range rep.Node.Executions.Edges {
		if e.Node.Member.MemberNo == "" || e.Node.Action != "ISSUE_COUPON" || e.Node.ExecutedAt.IsZero() ||
			!slices.Contains([]string{"REACHED", "HOLDOUT"}, e.Node.Status) {
			t.Fatalf("execution %+v", e.Node)
		}
	}

	var paused struct {
		PauseCampaign struct{ Campaign struct{ ID, Status string } }
	}
	s.Do(admin, apptest.Op(t, "PauseCampaign"), map[string]any{"id": c.ID}).Decode(t, &paused)
	if paused.PauseCampaign.Campaign.Status != "PAUSED" {
		t.Fatalf("paused: %+v", paused)
	}
	var list struct {
		Campaigns struct {
			TotalCount int
			Edges      []struct {
				Node struct {
					ID, Name, Status string
					Audience         *struct{ ID string }
				}
			}
		}
	}
	s.Do(admin, apptest.Op(t, "Campaigns"), map[string]any{"status": "PAUSED"}).Decode(t, &list)
	if list.Campaigns.TotalCount != 1 || list.Campaigns.Edges[0].Node.ID != c.ID || list.Campaigns.Edges[0].Node.Audience != nil {
		t.Fatalf("paused campaigns: %+v", list)
	}
	s.Do(admin, apptest.Op(t, "Campaigns"), map[string]any{"status": "ACTIVE"}).Decode(t, &list)
	if list.Campaigns.TotalCount != 0 {
		t.Fatalf("active campaigns: %+v", list)
	}

	bad := map[string]any{"name": "坏", "trigger": map[string]any{"kind": "BIRTHDAY", "daysBefore": 400},
		"actions": []any{}, "startsAt": time.Now().Format(time.RFC3339), "holdoutPercent": 80}
	if got := s.Do(admin, apptest.Op(t, "CreateCampaign"), map[string]any{"input": bad}).Codes(); len(got) == 0 || got[0] != "BAD_USER_INPUT" {
		t.Fatalf("bad campaign: %v", got)
	}
	if got := s.Do(admin, apptest.Op(t, "ActivateCampaign"), map[string]any{"id": "1"}).Codes(); !slices.Equal(got, []string{"NOT_FOUND"}) {
		t.Fatalf("unknown campaign: %v", got)
	}
	member, _ := s.MemberToken("campaign-member")
	if got := s.Do(member, apptest.Op(t, "Campaigns"), nil).Codes(); !slices.Equal(got, []string{"FORBIDDEN"}) {
		t.Fatalf("a member listing campaigns: %v", got)
	}
}

// A REGISTRATION campaign with two server processes on one database: a
// member registering through either gets the welcome coupon within
// seconds, exactly once.
func TestRegistrationCampaignAcrossReplicas(t *testing.T) {
	dsn := pgtest.New(t, migrations.FS)
	a := apptest.StartOn(t, dsn)
	a.Seed()
	b := apptest.StartOn(t, dsn)
	admin := a.AdminToken()
	tpl := createTemplate(t, a, admin, "新人礼", 100)
	var created struct {
		CreateCampaign struct{ Campaign struct{ ID string } }
	}
	a.Do(admin, apptest.Op(t, "CreateCampaign"), map[string]any{"input": map[string]any{
		"name": "新人礼", "trigger": map[string]any{"kind": "REGISTRATION"},
		"actions":  []any{map[string]any{"kind": "ISSUE_COUPON", "couponTemplateId": tpl}},
		"startsAt": time.Now().Add(-time.Minute).Format(time.RFC3339)}}).Decode(t, &created)
	id := created.CreateCampaign.Campaign.ID
	a.Do(admin, apptest.Op(t, "ActivateCampaign"), map[string]any{"id": id}).Decode(t, &struct{}{})

	_, m1 := a.PhoneMember("13900000001")
	_, m2 := b.PhoneMember("13900000002")
	start := time.Now()
	ctx := context.Background()
	for _, m := range []string{m1, m2} {
		for {
			n, err := a.DB.Coupon.Query().Where(coupon.MemberID(atoi(m))).Count(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n == 1 {
				break
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("member %s has %d welcome coupons after 10 s", m, n)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	t.Logf("both welcome coupons issued %v after registration", time.Since(start).Round(time.Millisecond))
	// Both runners keep passing; nothing is issued twice.
	time.Sleep(3 * time.Second)
	for _, m := range []string{m1, m2} {
		n, _ := a.DB.Coupon.Query().Where(coupon.MemberID(atoi(m))).Count(ctx)
		e, _ := a.DB.CampaignExecution.Query().Where(campaignexecution.MemberID(atoi(m))).Count(ctx)
		if n != 1 || e != 1 {
			t.Fatalf("member %s: %d coupons, %d executions", m, n, e)
		}
	}
}
