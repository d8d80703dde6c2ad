package behavior_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/behavior"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/testkit"
)

type env struct {
	db    *ent.Client
	sql   *sql.DB
	svc   *behavior.Service
	clock *testkit.Clock
	zone  *time.Location
	seq   atomic.Int64
}

// start is the tests' "now": far from the real date, so that no partition
// the migration created covers it and the tests see partitions made on
// demand.
func newEnv(t *testing.T, opts behavior.Options) *env {
	t.Helper()
	client, sqlDB := testkit.EntClient(t, 16)
	zone := testkit.Shanghai(t)
	c := testkit.NewClock(time.Date(2030, 6, 15, 12, 0, 0, 0, zone))
	return &env{db: client, sql: sqlDB, svc: behavior.New(client, sqlDB, zone, c.Now, opts), clock: c, zone: zone}
}

func (e *env) member(t testing.TB) int {
	t.Helper()
	m, err := e.db.Member.Create().SetMemberNo(fmt.Sprintf("T%06d", e.seq.Add(1))).
		SetSourceChannel(enum.ChannelPOS).Save(context.Background())
	if err != nil {
		t.Fatalf("creating member: %v", err)
	}
	return m.ID
}

// count counts behaviour rows matching a condition on the table.
func (e *env) count(t testing.TB, where string, args ...any) int {
	t.Helper()
	var n int
	if err := e.sql.QueryRow("SELECT count(*) FROM behavior_events WHERE "+where, args...).Scan(&n); err != nil {
		t.Fatalf("counting behaviour rows: %v", err)
	}
	return n
}

// partitions lists the partitions of behavior_events, sorted.
func (e *env) partitions(t testing.TB) []string {
	t.Helper()
	rows, err := e.sql.Query(`SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'behavior_events'::regclass`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

// partitionOf names the partition holding the row of (source, eventID).
func (e *env) partitionOf(t testing.TB, source, eventID string) string {
	t.Helper()
	var s string
	err := e.sql.QueryRow(`SELECT tableoid::regclass::text FROM behavior_events WHERE source = $1 AND event_id = $2`,
		source, eventID).Scan(&s)
	if err != nil {
		t.Fatalf("finding row %s/%s: %v", source, eventID, err)
	}
	return s
}

func wantCode(t testing.TB, err error, code fault.Code, fields ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s", code)
	}
	if got := fault.CodeOf(err); got != code {
		t.Fatalf("error %v has code %s, want %s", err, got, code)
	}
	for _, f := range fields {
		found := false
		for _, inv := range fault.Fields(err) {
			if inv.Field == f {
				found = true
			}
		}
		if !found {
			t.Errorf("error %v does not name field %s", err, f)
		}
	}
}

func wantIs(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
}

func months(from, to string) []string {
	start, _ := time.Parse("200601", from)
	end, _ := time.Parse("200601", to)
	var out []string
	for m := start; !m.After(end); m = m.AddDate(0, 1, 0) {
		out = append(out, "behavior_events_"+m.Format("200601"))
	}
	return out
}

func eq(a, b []string) bool { return strings.Join(a, ",") == strings.Join(b, ",") }
