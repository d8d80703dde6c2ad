package behavior_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/businessunit"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/behavior"
	"github.com/onemember/onemember/internal/platform/database"
)

func (e *env) record(t testing.TB, ev behavior.Event) error {
	t.Helper()
	_, err := database.WithTx(context.Background(), e.db, func(tx *ent.Tx) (int, error) {
		return 0, behavior.Record(context.Background(), tx, ev)
	})
	return err
}

func TestRecord(t *testing.T) {
	t.Parallel()
	e := newEnv(t, behavior.Options{})
	if _, err := e.svc.MaintainPartitions(t.Context()); err != nil {
		t.Fatal(err)
	}
	m := e.member(t)
	bu := e.db.BusinessUnit.Create().SetCode("SM").SetName("超市").SetKind(businessunit.KindSUPERMARKET).SaveX(t.Context())
	at := e.clock.Now()
	reg := behavior.Event{MemberID: m, Kind: enum.BehaviorRegister, OccurredAt: at, Channel: enum.ChannelPOS,
		Key: fmt.Sprintf("REGISTER:%d", m)}
	if err := e.record(t, reg); err != nil {
		t.Fatalf("Record: %v", err)
	}
	// A repeat is ignored, and leaves the transaction usable.
	_, err := database.WithTx(t.Context(), e.db, func(tx *ent.Tx) (int, error) {
		if err := behavior.Record(t.Context(), tx, reg); err != nil {
			return 0, err
		}
		return 0, behavior.Record(t.Context(), tx, behavior.Event{MemberID: m, Kind: enum.BehaviorClaimCoupon,
			OccurredAt: at, Channel: enum.ChannelMiniProgram, BusinessUnitID: &bu.ID, TargetID: "42", Key: "CLAIM_COUPON:9"})
	})
	if err != nil {
		t.Fatalf("repeat: %v", err)
	}
	if n := e.count(t, "source = 's' AND event_id = $1 AND kind = 'REGISTER' AND member_id = $2 AND target_id IS NULL AND channel = 'POS'",
		reg.Key, m); n != 1 {
		t.Fatalf("%d REGISTER rows, want 1", n)
	}
	if n := e.count(t, "source = 's' AND event_id = 'CLAIM_COUPON:9' AND target_id = '42' AND business_unit_id = $1", bu.ID); n != 1 {
		t.Fatalf("%d CLAIM_COUPON rows, want 1", n)
	}

	// Rolled back with the caller's transaction.
	_, _ = database.WithTx(t.Context(), e.db, func(tx *ent.Tx) (int, error) {
		if err := behavior.Record(t.Context(), tx, behavior.Event{MemberID: m, Kind: enum.BehaviorShare,
			OccurredAt: at, Channel: enum.ChannelMiniProgram, Key: "SHARE:1"}); err != nil {
			return 0, err
		}
		return 0, fmt.Errorf("caller fails")
	})
	if n := e.count(t, "event_id = 'SHARE:1'"); n != 0 {
		t.Fatal("event of a rolled back transaction stored")
	}

	// A bug in the caller, and a month without partition.
	if err := e.record(t, behavior.Event{MemberID: m, Kind: "NAP", OccurredAt: at, Channel: enum.ChannelPOS, Key: "x"}); err == nil {
		t.Fatal("unknown kind recorded")
	}
	far := reg
	far.OccurredAt = time.Date(2040, 1, 1, 0, 0, 0, 0, e.zone)
	wantIs(t, e.record(t, far), behavior.ErrNoPartition)
}

// TestRecordRace: the same server event recorded by 8 transactions at
// once is stored once and fails none of them.
func TestRecordRace(t *testing.T) {
	t.Parallel()
	e := newEnv(t, behavior.Options{})
	if _, err := e.svc.MaintainPartitions(t.Context()); err != nil {
		t.Fatal(err)
	}
	m := e.member(t)
	ev := behavior.Event{MemberID: m, Kind: enum.BehaviorCheckIn, OccurredAt: e.clock.Now(), Channel: enum.ChannelPOS,
		TargetID: "5", Key: "CHECK_IN:5"}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := e.record(t, ev); err != nil {
				t.Errorf("Record: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if n := e.count(t, "event_id = 'CHECK_IN:5'"); n != 1 {
		t.Fatalf("%d rows, want 1", n)
	}
}

// TestRecordMany: many server events in one statement; an event stored
// before and a key repeated in the call are stored once, and a month
// without partition fails the call (and its transaction) as a whole.
func TestRecordMany(t *testing.T) {
	t.Parallel()
	e := newEnv(t, behavior.Options{})
	if _, err := e.svc.MaintainPartitions(t.Context()); err != nil {
		t.Fatal(err)
	}
	m1, m2 := e.member(t), e.member(t)
	at := e.clock.Now()
	ev := func(m int, key, target string) behavior.Event {
		return behavior.Event{MemberID: m, Kind: enum.BehaviorClaimCoupon, OccurredAt: at,
			Channel: enum.ChannelMiniProgram, TargetID: target, Key: key}
	}
	if err := e.record(t, ev(m1, "CLAIM_COUPON:1", "7")); err != nil {
		t.Fatal(err)
	}
	many := func(es ...behavior.Event) error {
		_, err := database.WithTx(t.Context(), e.db, func(tx *ent.Tx) (int, error) {
			return 0, behavior.RecordMany(t.Context(), tx, es)
		})
		return err
	}
	if err := many(); err != nil {
		t.Fatalf("no events: %v", err)
	}
	if err := many(ev(m1, "CLAIM_COUPON:1", "7"), ev(m2, "CLAIM_COUPON:2", "7"), ev(m2, "CLAIM_COUPON:2", "7"),
		ev(m1, "CLAIM_COUPON:3", "")); err != nil {
		t.Fatalf("RecordMany: %v", err)
	}
	if n := e.count(t, "source = 's' AND kind = 'CLAIM_COUPON' AND channel = 'MINI_PROGRAM' AND occurred_at = $1", at); n != 3 {
		t.Fatalf("%d rows, want 3", n)
	}
	if n := e.count(t, "event_id = 'CLAIM_COUPON:2' AND member_id = $1 AND target_id = '7'", m2); n != 1 {
		t.Fatalf("%d rows of CLAIM_COUPON:2, want 1", n)
	}
	if n := e.count(t, "event_id = 'CLAIM_COUPON:3' AND member_id = $1 AND target_id IS NULL", m1); n != 1 {
		t.Fatalf("%d rows of CLAIM_COUPON:3 without target, want 1", n)
	}

	far := ev(m2, "CLAIM_COUPON:5", "7")
	far.OccurredAt = time.Date(2040, 1, 1, 0, 0, 0, 0, e.zone)
	wantIs(t, many(ev(m2, "CLAIM_COUPON:4", "7"), far), behavior.ErrNoPartition)
	if n := e.count(t, "event_id IN ('CLAIM_COUPON:4', 'CLAIM_COUPON:5')"); n != 0 {
		t.Fatalf("%d rows of a failed call stored", n)
	}
	if err := many(behavior.Event{MemberID: m1, Kind: "NAP", OccurredAt: at, Channel: enum.ChannelPOS, Key: "x"}); err == nil {
		t.Fatal("unknown kind recorded")
	}
}
