package campaign_test

import (
	"slices"
	"testing"
	"time"

	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/campaign"
	"github.com/onemember/onemember/internal/campaign/spec"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/testkit"
)

func TestCreateReportsEveryProblem(t *testing.T) {
	e := newEnv(t)
	tpl := e.template(100, 10)
	now := e.clock.Now()
	for _, c := range []struct {
		name   string
		in     campaign.CreateInput
		fields []string
	}{
		{"guards", campaign.CreateInput{Name: " ", Trigger: &spec.Trigger{Kind: enum.TriggerRegistration},
			Actions: []*spec.Action{couponAction(tpl.ID)}, AudienceID: testkit.Ptr(1), StartsAt: now,
			EndsAt: testkit.Ptr(now.Add(-time.Hour)), HoldoutPercent: testkit.Ptr(51), MaxPerMember: testkit.Ptr(0),
			FrequencyCapDays: testkit.Ptr(366), Budget: testkit.Ptr[int64](-1), AttributionDays: testkit.Ptr(91)},
			[]string{"name", "audienceId", "endsAt", "holdoutPercent", "maxPerMember", "frequencyCapDays", "budget", "attributionDays"}},
		{"actions", campaign.CreateInput{Name: "a", Trigger: &spec.Trigger{Kind: enum.TriggerRegistration},
			Actions: []*spec.Action{couponAction(tpl.ID), couponAction(tpl.ID + 1000)}},
			[]string{"startsAt", "actions[1].kind"}},
		{"unknown template", campaign.CreateInput{Name: "a", Trigger: &spec.Trigger{Kind: enum.TriggerRegistration},
			Actions: []*spec.Action{couponAction(tpl.ID + 1000)}, StartsAt: now},
			[]string{"actions[0].couponTemplateId"}},
		{"cron", campaign.CreateInput{Name: "a", Trigger: &spec.Trigger{Kind: enum.TriggerScheduled, Cron: testkit.Ptr("0 25 * * *")},
			Actions: []*spec.Action{couponAction(tpl.ID)}, StartsAt: now}, []string{"trigger.cron"}},
		{"tier", campaign.CreateInput{Name: "a", Trigger: &spec.Trigger{Kind: enum.TriggerTierChanged, TierCode: testkit.Ptr("PLATINUM")},
			Actions: []*spec.Action{couponAction(tpl.ID)}, StartsAt: now}, []string{"trigger.tierCode"}},
		{"one-off outside the window", campaign.CreateInput{Name: "a", Trigger: &spec.Trigger{Kind: enum.TriggerOneOff, At: testkit.Ptr(now.Add(-time.Hour))},
			Actions: []*spec.Action{couponAction(tpl.ID)}, StartsAt: now}, []string{"trigger.at"}},
		{"spec", campaign.CreateInput{Name: "a", Trigger: &spec.Trigger{Kind: enum.TriggerHoliday},
			Actions: []*spec.Action{{Kind: enum.ActionAwardPoints}}, StartsAt: now}, []string{"trigger.date", "actions[0].points"}},
	} {
		_, err := e.svc.Create(t.Context(), nil, c.in)
		if fault.CodeOf(err) != fault.BadUserInput {
			t.Errorf("%s: %v, want BAD_USER_INPUT", c.name, err)
			continue
		}
		var got []string
		for _, f := range fault.Fields(err) {
			got = append(got, f.Field)
		}
		for _, f := range c.fields {
			if !slices.Contains(got, f) {
				t.Errorf("%s: problems on %v, want one on %s", c.name, got, f)
			}
		}
	}
	if n := e.count(`SELECT count(*) FROM campaigns`); n != 0 {
		t.Errorf("%d campaigns saved from bad input", n)
	}
}

func TestStatusTransitions(t *testing.T) {
	e := newEnv(t)
	tpl := e.template(100, 10)
	in := campaignInput("状态", spec.Trigger{Kind: enum.TriggerRegistration}, e.clock.Now(), couponAction(tpl.ID))
	in.EndsAt = testkit.Ptr(e.clock.Now().Add(48 * time.Hour))
	c, err := e.svc.Create(t.Context(), testkit.Ptr(7), in)
	if err != nil {
		t.Fatal(err)
	}
	if c.Status != enum.CampaignDraft || *c.CreatedByStaffID != 7 || c.AttributionDays != 7 {
		t.Fatalf("created %s by %v with %d attribution days, want DRAFT by 7 with the default 7", c.Status, c.CreatedByStaffID, c.AttributionDays)
	}
	ctx := t.Context()
	_, err = e.svc.Pause(ctx, c.ID)
	wantCode(t, err, fault.Conflict)
	for _, step := range []struct {
		do   func() (string, error)
		want enum.CampaignStatus
	}{
		{func() (string, error) { c, err := e.svc.Activate(ctx, c.ID, false); return string(c.Status), err }, enum.CampaignActive},
		{func() (string, error) { c, err := e.svc.Activate(ctx, c.ID, false); return string(c.Status), err }, enum.CampaignActive},
		{func() (string, error) { c, err := e.svc.Pause(ctx, c.ID); return string(c.Status), err }, enum.CampaignPaused},
		{func() (string, error) { c, err := e.svc.Activate(ctx, c.ID, true); return string(c.Status), err }, enum.CampaignActive},
		{func() (string, error) { c, err := e.svc.End(ctx, c.ID); return string(c.Status), err }, enum.CampaignEnded},
	} {
		got, err := step.do()
		if err != nil || got != string(step.want) {
			t.Fatalf("got %s (%v), want %s", got, err, step.want)
		}
	}
	_, err = e.svc.Activate(ctx, c.ID, false)
	wantCode(t, err, fault.Conflict)
	_, err = e.svc.Activate(ctx, c.ID+1000, false)
	wantCode(t, err, fault.NotFound)

	// Past its window: Plan ends it, and it cannot be activated.
	other, err := e.svc.Create(ctx, nil, in)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.Activate(ctx, other.ID, false); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(49 * time.Hour)
	if _, err := e.svc.Plan(ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.campaign(other.ID).Status; got != enum.CampaignEnded {
		t.Errorf("a campaign past its endsAt is %s, want ENDED", got)
	}
	draft, err := e.svc.Create(ctx, nil, in)
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.Activate(ctx, draft.ID, false)
	wantCode(t, err, fault.Conflict)

	// Newest first, by status.
	page, err := e.svc.List(ctx, testkit.Ptr(2), nil, nil)
	if err != nil || len(page.Edges) != 2 || page.Edges[0].Node.ID != draft.ID || page.Edges[1].Node.ID != other.ID || !page.PageInfo.HasNextPage {
		t.Fatalf("first page %+v (%v), want the draft then the other, and more", page, err)
	}
	rest, err := e.svc.List(ctx, testkit.Ptr(5), page.PageInfo.EndCursor, nil)
	if err != nil || len(rest.Edges) != 1 || rest.Edges[0].Node.ID != c.ID {
		t.Fatalf("second page %+v (%v), want the first campaign", rest, err)
	}
	ended, err := e.svc.List(ctx, nil, nil, testkit.Ptr(enum.CampaignEnded))
	if err != nil || ended.TotalCount != 2 {
		t.Fatalf("ENDED campaigns: %+v (%v), want 2", ended, err)
	}
}
