package graph_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/member"
	"github.com/onemember/onemember/internal/apptest"
	"github.com/onemember/onemember/internal/platform/gqlws"
	"github.com/onemember/onemember/internal/platform/pgtest"
	"github.com/onemember/onemember/internal/seed"
	"github.com/onemember/onemember/migrations"
)

// seededMembers loads the demo organisation with n members (no history)
// and returns them by id.
func seededMembers(t *testing.T, s *apptest.Server, n int) []*ent.Member {
	t.Helper()
	if err := seed.Run(context.Background(), s.App, seed.Options{Seed: 3, Members: n, AdminPassword: "admin password 1", SkipHistory: true}); err != nil {
		t.Fatal(err)
	}
	ms, err := s.DB.Member.Query().Where(member.StatusEQ(member.StatusACTIVE)).Order(ent.Asc(member.FieldID)).All(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func gid(id int) string { return strconv.Itoa(id) }

type jobOut struct {
	ID, Kind, Status         string
	Total, Processed, Failed int
}

// waitJob follows a job through the JobProgress subscription until it
// ends, checking that progress never goes back.
func waitJob(t *testing.T, s *apptest.Server, token, id string) jobOut {
	t.Helper()
	c, err := gqlws.Dial(t.Context(), s.WSURL(), gqlws.SubprotocolGraphQLTransportWS, map[string]any{"authorization": "Bearer " + token})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	sub, err := c.Subscribe(t.Context(), apptest.Op(t, "JobProgress"), map[string]any{"id": id})
	if err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	last := -1
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		raw, err := sub.Next(ctx)
		cancel()
		if err != nil {
			t.Fatalf("job %s progress: %v", id, err)
		}
		var ev struct{ Data struct{ JobProgress jobOut } }
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatalf("decoding %s: %v", raw, err)
		}
		j := ev.Data.JobProgress
		if j.Processed < last {
			t.Fatalf("progress went back: %+v after %d", j, last)
		}
		last = j.Processed
		if j.Status == "SUCCEEDED" || j.Status == "FAILED" {
			return j
		}
	}
}

// upload posts a GraphQL multipart request (one file, variable "file").
func upload(t *testing.T, s *apptest.Server, token, query string, vars map[string]any, name string, file []byte) apptest.Response {
	t.Helper()
	vars["file"] = nil
	ops, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	var body bytes.Buffer
	w := multipart.NewWriter(&body)
	_ = w.WriteField("operations", string(ops))
	_ = w.WriteField("map", `{"0": ["variables.file"]}`)
	fw, _ := w.CreateFormFile("0", name)
	_, _ = fw.Write(file)
	_ = w.Close()
	req, _ := http.NewRequest(http.MethodPost, s.URL+"/query", &body)
	req.Header.Set("Content-Type", w.FormDataContentType())
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out apptest.Response
	if err := json.NewDecoder(res.Body).Decode(&out); err != nil {
		t.Fatalf("decoding upload answer: %v", err)
	}
	return out
}

// The data centre through the admin, mini-program and till operations:
// tags, behaviour, RFM and AIPL models computed by jobs followed over a
// websocket, audiences previewed, saved, imported, paged and described,
// coupons issued to an audience exactly once per member, and the
// member's 360° view.
func TestDataCentreOperations(t *testing.T) {
	s := apptest.Start(t)
	members := seededMembers(t, s, 120)
	admin := s.AdminToken()
	till := s.Till(admin)
	now := time.Now()

	// Orders for the first 40 members: member i buys i%4+1 times.
	for i, m := range members[:40] {
		for k := range i%4 + 1 {
			s.Do(till, apptest.Op(t, "IngestOrder"), order(fmt.Sprintf("dc-%d-%d", i, k), gid(m.ID), int64(1000*(i+1)),
				now.Add(-time.Duration(i*24+k)*time.Hour))).Decode(t, &struct{}{})
		}
	}

	var tag struct {
		CreateTag struct {
			Tag struct{ ID, Name, Kind string }
		}
	}
	s.Do(admin, apptest.Op(t, "CreateTag"), map[string]any{"input": map[string]any{"name": "咖啡控", "category": "兴趣"}}).Decode(t, &tag)
	tagID := tag.CreateTag.Tag.ID
	tagged := []string{}
	for _, m := range members[:30] {
		tagged = append(tagged, gid(m.ID))
	}
	var assigned struct{ AssignTags struct{ Assigned int } }
	s.Do(admin, apptest.Op(t, "AssignTags"), map[string]any{"memberIds": tagged, "tagIds": []string{tagID}}).Decode(t, &assigned)
	s.Do(admin, apptest.Op(t, "AssignTags"), map[string]any{"memberIds": tagged[:10], "tagIds": []string{tagID}}).Decode(t, &assigned)
	if assigned.AssignTags.Assigned != 0 {
		t.Fatalf("assigning again counted %d", assigned.AssignTags.Assigned)
	}
	var removed struct{ UnassignTags struct{ Removed int } }
	s.Do(admin, apptest.Op(t, "UnassignTags"), map[string]any{"memberIds": tagged[25:], "tagIds": []string{tagID}}).Decode(t, &removed)
	if removed.UnassignTags.Removed != 5 {
		t.Fatalf("removed %d, want 5", removed.UnassignTags.Removed)
	}
	if got := s.Do(admin, apptest.Op(t, "AssignTags"), map[string]any{"memberIds": []string{"1"}, "tagIds": []string{tagID}}).Codes(); !slices.Equal(got, []string{"NOT_FOUND"}) {
		t.Fatalf("unknown member: %v", got)
	}

	// The index catches up within seconds: the tag's count and a preview.
	rule := map[string]any{"and": []any{
		map[string]any{"tag": map[string]any{"tagIds": []string{tagID}, "match": "ANY"}},
		map[string]any{"not": map[string]any{"behavior": map[string]any{"kind": "PURCHASE", "withinDays": 30, "minCount": 3}}},
	}}
	// Members 0-24 hold the tag; of the first 40 those with i%4+1 >= 3
	// orders all within 30 days bought 3 or 4 times: i%4 >= 2 and i < 30.
	want := 0
	for i := range 25 {
		if !(i%4 >= 2) {
			want++
		}
	}
	var preview struct {
		PreviewAudience struct {
			Size   int
			TookMs float64
			Sample []struct{ ID, MemberNo string }
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.Do(admin, apptest.Op(t, "PreviewAudience"), map[string]any{"rule": rule}).Decode(t, &preview)
		if preview.PreviewAudience.Size == want || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if p := preview.PreviewAudience; p.Size != want || len(p.Sample) != 5 || p.TookMs <= 0 || p.Sample[0].ID != gid(members[0].ID) {
		t.Fatalf("preview: %+v, want size %d", p, want)
	}
	var tags struct {
		Tags struct {
			Edges []struct {
				Node struct {
					ID, Name, Kind string
					MemberCount    int
				}
			}
		}
	}
	s.Do(admin, apptest.Op(t, "Tags"), nil).Decode(t, &tags)
	if n := tags.Tags.Edges[0].Node; n.ID != tagID || n.MemberCount != 25 || n.Kind != "MANUAL" {
		t.Fatalf("tags: %+v", tags)
	}
	if got := s.Do(admin, apptest.Op(t, "PreviewAudience"), map[string]any{"rule": map[string]any{"tag": map[string]any{"tagIds": []string{tagID}, "match": "ANY"}, "audience": "1"}}).Codes(); !slices.Equal(got, []string{"BAD_USER_INPUT"}) {
		t.Fatalf("two fields in a rule node: %v", got)
	}

	// Saved audience, its members page by page, its insight.
	var created struct {
		CreateAudience struct {
			Audience struct {
				ID, Status, Refresh string
				Size                int
			}
		}
	}
	s.Do(admin, apptest.Op(t, "CreateAudience"), map[string]any{"input": map[string]any{"name": "咖啡控·少购", "rule": rule, "priority": 3}}).Decode(t, &created)
	aud := created.CreateAudience.Audience
	if aud.Size != want || aud.Status != "READY" || aud.Refresh != "STATIC" {
		t.Fatalf("created audience: %+v", aud)
	}
	var seen []string
	var after any
	for page := 0; ; page++ {
		var res struct {
			Node struct {
				Members struct {
					Edges []struct {
						Node struct{ ID, MemberNo, Phone string }
					}
					PageInfo struct {
						HasNextPage bool
						EndCursor   string
					}
				}
			}
		}
		s.Do(admin, apptest.Op(t, "AudienceMembers"), map[string]any{"id": aud.ID, "first": 7, "after": after}).Decode(t, &res)
		for _, e := range res.Node.Members.Edges {
			seen = append(seen, e.Node.ID)
		}
		if !res.Node.Members.PageInfo.HasNextPage {
			break
		}
		after = res.Node.Members.PageInfo.EndCursor
		if page > 10 {
			t.Fatal("paging does not end")
		}
	}
	byID := func(a, b string) int { x, _ := strconv.Atoi(a); y, _ := strconv.Atoi(b); return x - y }
	if len(seen) != want || len(slices.Compact(slices.Clone(seen))) != want || !slices.IsSortedFunc(seen, byID) {
		t.Fatalf("paged %d members %v, want %d in id order", len(seen), seen, want)
	}
	var insight struct {
		Node struct {
			Size    int
			Insight map[string][]struct {
				Key   string
				Count int
				Share float64
			}
		}
	}
	s.Do(admin, apptest.Op(t, "AudienceInsight"), map[string]any{"id": aud.ID}).Decode(t, &insight)
	for _, dim := range []string{"gender", "ageBand", "region", "tier", "channel", "lifecycle"} {
		sum := 0
		for _, d := range insight.Node.Insight[dim] {
			sum += d.Count
		}
		if sum != want {
			t.Errorf("insight %s sums to %d, want %d", dim, sum, want)
		}
	}
	var audiences struct {
		Audiences struct {
			Edges []struct{ Node struct{ ID string } }
		}
	}
	s.Do(admin, apptest.Op(t, "Audiences"), nil).Decode(t, &audiences)
	if len(audiences.Audiences.Edges) != 1 {
		t.Fatalf("audiences: %+v", audiences)
	}
	var refreshed struct{ RefreshAudience struct{ Job jobOut } }
	s.Do(admin, apptest.Op(t, "RefreshAudience"), map[string]any{"id": aud.ID}).Decode(t, &refreshed)
	if j := waitJob(t, s, admin, refreshed.RefreshAudience.Job.ID); j.Status != "SUCCEEDED" || j.Processed != want {
		t.Fatalf("refresh job: %+v", j)
	}

	// Import: member numbers with bad and unknown lines.
	list := "member_no\n" + members[50].MemberNo + "\n" + members[51].MemberNo + "\n\nNOPE-1\nbad line!\n" + members[50].MemberNo + "\n"
	var imported struct {
		ImportAudience struct {
			Audience struct {
				ID   string
				Size int
			}
			Matched, Unmatched int
		}
	}
	upload(t, s, admin, apptest.Op(t, "ImportAudience"), map[string]any{"name": "导入名单", "key": "MEMBER_NO"}, "list.csv", []byte(list)).Decode(t, &imported)
	if im := imported.ImportAudience; im.Audience.Size != 2 || im.Matched != 3 || im.Unmatched != 1 {
		t.Fatalf("import: %+v", im)
	}

	// Coupons to the saved audience, once per member, the key answering
	// the same job.
	var tmpl struct {
		CreateCouponTemplate struct{ Template struct{ ID string } }
	}
	s.Do(admin, apptest.Op(t, "CreateCouponTemplate"), map[string]any{"input": map[string]any{
		"title": "回归礼", "kind": "FIXED_AMOUNT", "faceValue": 500,
		"validity": map[string]any{"daysAfterIssue": 30}, "totalStock": 1000, "perMemberLimit": 1, "claimable": false,
	}}).Decode(t, &tmpl)
	issue := map[string]any{"templateId": tmpl.CreateCouponTemplate.Template.ID, "audienceId": aud.ID, "idempotencyKey": "winback-1"}
	var issued, again struct{ IssueCoupons struct{ Job jobOut } }
	s.Do(admin, apptest.Op(t, "IssueCoupons"), issue).Decode(t, &issued)
	j := waitJob(t, s, admin, issued.IssueCoupons.Job.ID)
	if j.Kind != "ISSUE_COUPONS" || j.Status != "SUCCEEDED" || j.Total != want || j.Processed != want || j.Failed != 0 {
		t.Fatalf("issue job: %+v", j)
	}
	s.Do(admin, apptest.Op(t, "IssueCoupons"), issue).Decode(t, &again)
	if again.IssueCoupons.Job.ID != issued.IssueCoupons.Job.ID {
		t.Fatal("the same idempotency key made a second job")
	}
	var stats struct{ Node struct{ Issued int } }
	s.Do(admin, apptest.Op(t, "CouponTemplateStats"), map[string]any{"id": tmpl.CreateCouponTemplate.Template.ID}).Decode(t, &stats)
	if stats.Node.Issued != want {
		t.Fatalf("issued %d coupons to %d members", stats.Node.Issued, want)
	}

	// RFM: 40 members bought; the report's segments add up to them.
	var rfm struct {
		CreateRfmModel struct{ Model struct{ ID string } }
	}
	s.Do(admin, apptest.Op(t, "CreateRfmModel"), map[string]any{"input": map[string]any{
		"name": "RFM", "windowDays": 365, "split": map[string]any{"mode": "MEDIAN"}}}).Decode(t, &rfm)
	rfmID := rfm.CreateRfmModel.Model.ID
	var computed struct{ ComputeRfmModel struct{ Job jobOut } }
	s.Do(admin, apptest.Op(t, "ComputeRfmModel"), map[string]any{"id": rfmID}).Decode(t, &computed)
	if j := waitJob(t, s, admin, computed.ComputeRfmModel.Job.ID); j.Status != "SUCCEEDED" || j.Processed != 40 {
		t.Fatalf("rfm job: %+v", j)
	}
	var report struct {
		Node struct {
			ComputedAt *time.Time
			Thresholds *struct {
				RecencyDays, Frequency float64
				Monetary               int64
			}
			Segments []struct {
				Segment     string
				MemberCount int
				Share       float64
			}
		}
	}
	s.Do(admin, apptest.Op(t, "RfmReport"), map[string]any{"id": rfmID}).Decode(t, &report)
	total := 0
	for _, seg := range report.Node.Segments {
		total += seg.MemberCount
	}
	if total != 40 || len(report.Node.Segments) != 8 || report.Node.ComputedAt == nil || report.Node.Thresholds == nil || report.Node.Thresholds.Frequency != 2.5 {
		t.Fatalf("rfm report: %+v", report.Node)
	}
	if got := s.Do(admin, apptest.Op(t, "CreateRfmModel"), map[string]any{"input": map[string]any{
		"name": "bad", "windowDays": 365, "split": map[string]any{"mode": "CUSTOM"}}}).Codes(); !slices.Equal(got, []string{"BAD_USER_INPUT"}) {
		t.Fatalf("custom split without values: %v", got)
	}

	// Behaviour: the member tracks, the till ingests; AIPL counts them.
	memberToken, memberID := s.PhoneMember("13900000077")
	events := []map[string]any{
		{"kind": "VIEW", "occurredAt": now.Add(-time.Hour).Format(time.RFC3339), "eventId": "v1", "targetId": "sku-1"},
		{"kind": "ADD_TO_CART", "occurredAt": now.Add(-time.Minute).Format(time.RFC3339), "eventId": "c1"},
	}
	var tracked struct {
		TrackEvents struct{ Accepted, Duplicates int }
	}
	s.Do(memberToken, apptest.Op(t, "TrackEvents"), map[string]any{"events": events}).Decode(t, &tracked)
	if tracked.TrackEvents.Accepted != 2 {
		t.Fatalf("tracked: %+v", tracked)
	}
	s.Do(memberToken, apptest.Op(t, "TrackEvents"), map[string]any{"events": events}).Decode(t, &tracked)
	if tracked.TrackEvents.Accepted != 0 { // the operation does not ask for duplicates
		t.Fatalf("tracked again: %+v", tracked)
	}
	if got := s.Do(memberToken, apptest.Op(t, "TrackEvents"), map[string]any{"events": []map[string]any{
		{"kind": "PURCHASE", "occurredAt": now.Format(time.RFC3339), "eventId": "p1"}}}).Codes(); !slices.Equal(got, []string{"BAD_USER_INPUT"}) {
		t.Fatalf("a member sending PURCHASE: %v", got)
	}
	var ingested struct {
		IngestEvents struct{ Accepted, Rejected int }
	}
	s.Do(till, apptest.Op(t, "IngestEvents"), map[string]any{"events": []map[string]any{
		{"member": map[string]any{"memberNo": members[0].MemberNo}, "kind": "VIEW", "occurredAt": now.Format(time.RFC3339), "channel": "ECOMMERCE", "eventId": "x1", "businessUnitCode": "SUPER"},
		{"member": map[string]any{"memberNo": "NO-SUCH"}, "kind": "VIEW", "occurredAt": now.Format(time.RFC3339), "channel": "ECOMMERCE", "eventId": "x2"},
	}}).Decode(t, &ingested)
	if ingested.IngestEvents.Accepted != 1 || ingested.IngestEvents.Rejected != 1 {
		t.Fatalf("ingested: %+v", ingested)
	}
	var aipl struct {
		CreateAiplModel struct{ Model struct{ ID string } }
	}
	s.Do(admin, apptest.Op(t, "CreateAiplModel"), map[string]any{"input": map[string]any{
		"name": "AIPL", "windowDays": 90, "awareness": []string{"VIEW", "CLICK", "WATCH"},
		"interest": []string{"REGISTER", "FAVORITE", "ADD_TO_CART"}, "purchase": []string{"PURCHASE"},
		"loyalty": map[string]any{"minPurchases": 2}}}).Decode(t, &aipl)
	today := now.In(s.Zone).Format("2006-01-02")
	var aiplReport struct {
		Node struct {
			Snapshot struct{ Awareness, Interest, Purchase, Loyalty int }
			Trend    []struct{ At string }
			Flow     []struct {
				From, To string
				Members  int
			}
		}
	}
	s.Do(admin, apptest.Op(t, "AiplReport"), map[string]any{"id": aipl.CreateAiplModel.Model.ID, "at": today,
		"from": now.AddDate(0, 0, -28).In(s.Zone).Format("2006-01-02")}).Decode(t, &aiplReport)
	// 40 buyers: 10 bought once (PURCHASE), 30 at least twice (LOYALTY);
	// the new member added to cart (INTEREST); member 0 viewed but bought.
	if sn := aiplReport.Node.Snapshot; sn.Loyalty != 30 || sn.Purchase != 10 || sn.Interest < 1 || len(aiplReport.Node.Trend) != 5 {
		t.Fatalf("aipl report: %+v", aiplReport.Node)
	}

	var lifecycle struct {
		LifecycleStats []struct {
			Stage   string
			Members int
		}
	}
	s.Do(admin, apptest.Op(t, "Lifecycle"), nil).Decode(t, &lifecycle)
	var active int
	for _, l := range lifecycle.LifecycleStats {
		if l.Stage == "ACTIVE" {
			active = l.Members
		}
	}
	if active != 40 {
		t.Fatalf("lifecycle: %+v (40 members bought within 90 days)", lifecycle)
	}

	var m360 struct {
		Node struct {
			Tags           []struct{ ID, Name string }
			LifecycleStage string
			Rfm            []struct {
				Model     struct{ ID string }
				Segment   string
				Frequency int
			}
			Aipl []struct{ Stage string }
		}
	}
	s.Do(admin, apptest.Op(t, "Member360"), map[string]any{"id": gid(members[3].ID)}).Decode(t, &m360)
	n := m360.Node
	if len(n.Tags) != 1 || n.Tags[0].ID != tagID || n.LifecycleStage != "ACTIVE" || len(n.Rfm) != 1 || n.Rfm[0].Frequency != 4 ||
		len(n.Aipl) != 1 || n.Aipl[0].Stage != "LOYALTY" {
		t.Fatalf("member 360: %+v", n)
	}
	s.Do(admin, apptest.Op(t, "Member360"), map[string]any{"id": memberID}).Decode(t, &m360)
	if n := m360.Node; n.LifecycleStage != "NEW" || n.Aipl[0].Stage != "INTEREST" || len(n.Rfm) != 0 {
		t.Fatalf("new member 360: %+v", n)
	}
}

// A tag assigned through one replica reaches the bitmap index of another
// within the 5 seconds the issue allows.
func TestAudienceIndexAcrossReplicas(t *testing.T) {
	dsn := pgtest.New(t, migrations.FS)
	a := apptest.StartOn(t, dsn)
	members := seededMembers(t, a, 30)
	b := apptest.StartOn(t, dsn)
	admin := a.AdminToken()
	var tag struct {
		CreateTag struct{ Tag struct{ ID string } }
	}
	a.Do(admin, apptest.Op(t, "CreateTag"), map[string]any{"input": map[string]any{"name": "跨副本", "category": "测试"}}).Decode(t, &tag)
	ids := []string{gid(members[1].ID), gid(members[7].ID), gid(members[20].ID)}
	a.Do(admin, apptest.Op(t, "AssignTags"), map[string]any{"memberIds": ids, "tagIds": []string{tag.CreateTag.Tag.ID}}).Decode(t, &struct{}{})
	start := time.Now()
	rule := map[string]any{"tag": map[string]any{"tagIds": []string{tag.CreateTag.Tag.ID}, "match": "ANY"}}
	for {
		var p struct{ PreviewAudience struct{ Size int } }
		b.Do(b.AdminToken(), apptest.Op(t, "PreviewAudience"), map[string]any{"rule": rule}).Decode(t, &p)
		if p.PreviewAudience.Size == len(ids) {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("replica b still sees %d members after 5 s", p.PreviewAudience.Size)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("replica b saw the tag after %v", time.Since(start).Round(time.Millisecond))
}
