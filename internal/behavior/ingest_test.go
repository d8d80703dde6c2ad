package behavior_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/onemember/onemember/ent/businessunit"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/behavior"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/testkit"
)

func TestIngest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, behavior.Options{}) // 13 months: from 1 June 2029 (Shanghai)
	m := e.member(t)
	bu, err := e.db.BusinessUnit.Create().SetCode("SM").SetName("超市").SetKind(businessunit.KindSUPERMARKET).Save(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	now := e.clock.Now()
	oldest := time.Date(2029, 6, 1, 0, 0, 0, 0, e.zone)
	ev := func(id string) behavior.IngestInput {
		return behavior.IngestInput{MemberID: m, Kind: enum.BehaviorView, OccurredAt: now.Add(-time.Hour),
			Channel: enum.ChannelEcommerce, EventID: id}
	}
	with := func(id string, f func(*behavior.IngestInput)) behavior.IngestInput {
		in := ev(id)
		f(&in)
		return in
	}
	in := []behavior.IngestInput{
		0: ev("ok1"),
		1: with("nomember", func(in *behavior.IngestInput) {
			in.MemberID = 0
			in.MemberErr = fault.New(fault.NotFound, "member not found")
		}),
		2: with("zero", func(in *behavior.IngestInput) { in.MemberID = 0 }),
		3: with("buy", func(in *behavior.IngestInput) { in.Kind = enum.BehaviorPurchase }),
		4: with("rebuy", func(in *behavior.IngestInput) { in.Kind = enum.BehaviorRepurchase }),
		5: with("claim", func(in *behavior.IngestInput) { in.Kind = enum.BehaviorClaimCoupon }),
		6: with("old", func(in *behavior.IngestInput) { in.OccurredAt = oldest.Add(-time.Microsecond) }),
		7: with("oldest", func(in *behavior.IngestInput) { in.OccurredAt = oldest }),
		8: with("ahead", func(in *behavior.IngestInput) { in.OccurredAt = now.Add(5*time.Minute + time.Second) }),
		9: with("", func(*behavior.IngestInput) {}),
		10: with("bu", func(in *behavior.IngestInput) {
			in.BusinessUnitCode = testkit.Ptr("SM")
			in.TargetID = testkit.Ptr("sku")
		}),
		11: with("nobu", func(in *behavior.IngestInput) { in.BusinessUnitCode = testkit.Ptr("NOPE") }),
		12: ev("ok1"), // repeated in the call
		13: with("fax", func(in *behavior.IngestInput) { in.Channel = "FAX" }),
		14: with("long", func(in *behavior.IngestInput) { in.TargetID = testkit.Ptr(strings.Repeat("t", 129)) }),
	}
	res, err := e.svc.Ingest(t.Context(), 7, in)
	if err != nil {
		t.Fatalf("Ingest: %v", err)
	}
	if res.Accepted != 4 || res.Duplicates != 1 || res.Rejected != 10 || len(res.Errors) != 10 {
		t.Fatalf("result %+v, want 4 accepted (ok1, claim, oldest, bu), 1 duplicate, 10 rejected", res)
	}
	want := map[int]struct {
		code  fault.Code
		field string
	}{
		1: {fault.NotFound, "events[1].member"}, 2: {fault.NotFound, "events[2].member"},
		3: {fault.BadUserInput, "events[3].kind"}, 4: {fault.BadUserInput, "events[4].kind"},
		6: {fault.BadUserInput, "events[6].occurredAt"}, 8: {fault.BadUserInput, "events[8].occurredAt"},
		9: {fault.BadUserInput, "events[9].eventId"}, 11: {fault.BadUserInput, "events[11].businessUnitCode"},
		13: {fault.BadUserInput, "events[13].channel"}, 14: {fault.BadUserInput, "events[14].targetId"},
	}
	for _, got := range res.Errors {
		w, ok := want[got.Index]
		if !ok || got.Code != w.code || !strings.Contains(got.Message, w.field) {
			t.Errorf("error %+v, want %+v", got, w)
		}
		delete(want, got.Index)
	}
	if len(want) > 0 {
		t.Errorf("no error for %v", want)
	}
	if !strings.Contains(res.Errors[2].Message, "ingestOrder") {
		t.Errorf("purchase refusal %q does not point at ingestOrder", res.Errors[2].Message)
	}
	if n := e.count(t, "source = 'c:7' AND member_id = $1 AND channel = 'ECOMMERCE'", m); n != 4 {
		t.Fatalf("%d rows of client 7, want 4", n)
	}
	if n := e.count(t, "event_id = 'bu' AND business_unit_id = $1 AND target_id = 'sku'", bu.ID); n != 1 {
		t.Fatal("business unit or target not stored")
	}
	if got := e.partitionOf(t, "c:7", "oldest"); got != "behavior_events_202906" {
		t.Errorf("oldest event in %s", got)
	}

	// A retry is all duplicates; another client's ids are its own.
	res, err = e.svc.Ingest(t.Context(), 7, []behavior.IngestInput{in[0], in[10]})
	if err != nil || res.Accepted != 0 || res.Duplicates != 2 || res.Rejected != 0 {
		t.Fatalf("retry: %+v, %v", res, err)
	}
	res, err = e.svc.Ingest(t.Context(), 8, []behavior.IngestInput{in[0], in[10]})
	if err != nil || res.Accepted != 2 || res.Duplicates != 0 {
		t.Fatalf("other client: %+v, %v", res, err)
	}
}

func TestIngestCallLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, behavior.Options{})
	m := e.member(t)
	_, err := e.svc.Ingest(t.Context(), 1, nil)
	wantCode(t, err, fault.BadUserInput, "events")
	many := make([]behavior.IngestInput, 1001)
	for i := range many {
		many[i] = behavior.IngestInput{MemberID: m, Kind: enum.BehaviorView, OccurredAt: e.clock.Now(),
			Channel: enum.ChannelPOS, EventID: fmt.Sprint(i)}
	}
	_, err = e.svc.Ingest(t.Context(), 1, many)
	wantCode(t, err, fault.BadUserInput, "events")

	// 1,000 is fine, in one statement.
	res, err := e.svc.Ingest(t.Context(), 1, many[:1000])
	if err != nil || res.Accepted != 1000 {
		t.Fatalf("1000 events: %+v, %v", res, err)
	}

	// A lookup that failed (not a member not found) fails the call.
	broken := many[0]
	broken.EventID = "x"
	broken.MemberErr = errors.New("connection reset")
	_, err = e.svc.Ingest(t.Context(), 1, []behavior.IngestInput{many[1], broken})
	if err == nil || fault.CodeOf(err) != fault.Internal {
		t.Fatalf("internal member error: %v", err)
	}
	if n := e.count(t, "event_id = 'x'"); n != 0 {
		t.Fatal("stored an event of a failed call")
	}
}
