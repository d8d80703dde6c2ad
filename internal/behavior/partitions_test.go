package behavior_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/behavior"
)

// TestMigrationPartitionsMatch: on the real clock, the partitions the
// migration made are exactly those MaintainPartitions keeps (same names,
// nothing to create or drop).
func TestMigrationPartitionsMatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, behavior.Options{})
	svc := behavior.New(e.db, e.sql, e.zone, time.Now, behavior.Options{})
	before := e.partitions(t)
	n, err := svc.MaintainPartitions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 || !eq(before, e.partitions(t)) {
		t.Fatalf("%d changes on the migration's partitions %v", n, before)
	}
}

func TestMaintainPartitions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, behavior.Options{}) // 15 June 2030
	m := e.member(t)
	n, err := e.svc.MaintainPartitions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// June 2029 .. September 2030 created (13 months kept and 3 ahead);
	// the migration's 17 months (2025-2027) dropped.
	if got, want := e.partitions(t), months("202906", "203009"); n != 33 || !eq(got, want) {
		t.Fatalf("%d changes, partitions %v; want 33 and %v", n, got, want)
	}
	if n, err := e.svc.MaintainPartitions(t.Context()); n != 0 || err != nil {
		t.Fatalf("second run: %d, %v", n, err)
	}
	ingest := func(id string, at time.Time) {
		t.Helper()
		res, err := e.svc.Ingest(t.Context(), 1, []behavior.IngestInput{{MemberID: m, Kind: enum.BehaviorView,
			OccurredAt: at, Channel: enum.ChannelPOS, EventID: id}})
		if err != nil || res.Accepted != 1 {
			t.Fatalf("ingest %s: %+v, %v", id, res, err)
		}
	}
	ingest("jun", time.Date(2029, 6, 30, 23, 0, 0, 0, e.zone))
	ingest("jul", time.Date(2029, 7, 1, 0, 0, 0, 0, e.zone))

	// Just before August 2030: June 2029 ended less than 13 months ago.
	e.clock.Set(time.Date(2030, 8, 1, 0, 0, 0, 0, e.zone).Add(-time.Second))
	if n, err := e.svc.MaintainPartitions(t.Context()); n != 2 || err != nil {
		t.Fatalf("end of July: %d, %v; want 2 (Oct and Nov 2030 created)", n, err)
	}
	e.clock.Set(time.Date(2030, 8, 1, 0, 0, 0, 0, e.zone))
	if n, err := e.svc.MaintainPartitions(t.Context()); n != 1 || err != nil {
		t.Fatalf("1 August: %d, %v; want 1 (June 2029 dropped)", n, err)
	}
	if got, want := e.partitions(t), months("202907", "203011"); !eq(got, want) {
		t.Fatalf("partitions %v, want %v", got, want)
	}
	if e.count(t, "event_id = 'jun'") != 0 || e.count(t, "event_id = 'jul'") != 1 {
		t.Fatal("June's row should be gone with its partition, July's kept")
	}
}

func TestMaintainPartitionsRetention(t *testing.T) {
	t.Parallel()
	e := newEnv(t, behavior.Options{RetentionMonths: 3})
	n, err := e.svc.MaintainPartitions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := e.partitions(t), months("203004", "203009"); n != 6+17 || !eq(got, want) {
		t.Fatalf("%d changes, partitions %v; want 23 and %v", n, got, want)
	}
}

// TestMaintainPartitionsReplicas: six replicas maintain at once; the work
// is done exactly once and none fails.
func TestMaintainPartitionsReplicas(t *testing.T) {
	t.Parallel()
	e := newEnv(t, behavior.Options{})
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		total atomic.Int64
	)
	for range 6 {
		wg.Add(1)
		svc := behavior.New(e.db, e.sql, e.zone, e.clock.Now, behavior.Options{})
		go func() {
			defer wg.Done()
			<-start
			n, err := svc.MaintainPartitions(context.Background())
			if err != nil {
				t.Errorf("MaintainPartitions: %v", err)
			}
			total.Add(n)
		}()
	}
	close(start)
	wg.Wait()
	if total.Load() != 33 {
		t.Fatalf("%d changes in all, want 33", total.Load())
	}
	if got, want := e.partitions(t), months("202906", "203009"); !eq(got, want) {
		t.Fatalf("partitions %v, want %v", got, want)
	}
}
