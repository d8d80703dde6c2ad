package auth

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/auth/token"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/pgtest"
	"github.com/onemember/onemember/internal/platform/testkit"
	"github.com/onemember/onemember/migrations"
)

// testCheck is the validation interval of the PostgreSQL tests.
const testCheck = 50 * time.Millisecond

// authEnv is an Authenticator on a fresh database whose statements are
// counted, with a raw pool standing for another replica.
type authEnv struct {
	a      *Authenticator
	db     *ent.Client
	raw    *sql.DB
	tokens *token.Issuer
	seq    atomic.Int64
}

func newAuthEnv(t *testing.T, ttl, check time.Duration) *authEnv {
	t.Helper()
	raw, err := database.Open(t.Context(), pgtest.New(t, migrations.FS), database.Options{MaxOpenConns: 4})
	if err != nil {
		t.Fatalf("opening database: %v", err)
	}
	db := ent.NewClient(ent.Driver(database.Counting(entsql.OpenDB(dialect.Postgres, raw), &database.StatementCounter{})))
	t.Cleanup(func() { db.Close() })
	tokens, err := token.NewIssuer(bytes.Repeat([]byte{1}, 32), "onemember", time.Hour, time.Now)
	if err != nil {
		t.Fatalf("token issuer: %v", err)
	}
	return &authEnv{a: newAuthenticator(db, tokens, ttl, check, time.Now), db: db, raw: raw, tokens: tokens}
}

func (e *authEnv) member(t *testing.T) (id int, header string) {
	t.Helper()
	m, err := e.db.Member.Create().SetMemberNo(fmt.Sprintf("T%06d", e.seq.Add(1))).
		SetSourceChannel(enum.ChannelPOS).Save(t.Context())
	if err != nil {
		t.Fatalf("creating member: %v", err)
	}
	raw, _, err := e.tokens.Issue(token.KindMember, m.ID, "session")
	if err != nil {
		t.Fatalf("issuing token: %v", err)
	}
	return m.ID, "Bearer " + raw
}

// auth authenticates header and returns the viewer with the number of
// statements it cost.
func (e *authEnv) auth(t *testing.T, header string) (Viewer, int64) {
	t.Helper()
	var n atomic.Int64
	v, err := e.a.Authenticate(database.CountStatements(t.Context(), &n), header)
	if err != nil {
		t.Fatalf("authenticating: %v", err)
	}
	return v, n.Load()
}

func (e *authEnv) exec(t *testing.T, query string, args ...any) {
	t.Helper()
	if _, err := e.raw.ExecContext(t.Context(), query, args...); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}

// waitFor polls cond every 5 ms until it holds, failing the test after 5 s.
func waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func (c *memberCache) size() (entries int, validating bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries), c.validating
}

func TestCacheServesUnchangedRowWithoutStatements(t *testing.T) {
	// A longer interval than the other tests: a check delayed past the
	// 2×check bound (a busy machine under -race) would fail the test.
	check := 2 * testCheck
	e := newAuthEnv(t, 3*check, check)
	id, header := e.member(t)

	v, n := e.auth(t, header)
	if v.Err != nil || v.Member == nil || v.Member.ID != id || v.Cached {
		t.Fatalf("first authentication: %+v", v)
	}
	if n != 1 {
		t.Fatalf("loading the member took %d statements, want 1 (row version in the same statement)", n)
	}
	e.a.members.mu.Lock()
	version := e.a.members.entries[id].version
	e.a.members.mu.Unlock()
	var want int64
	if err := e.raw.QueryRowContext(t.Context(), "SELECT xmin::text::bigint FROM members WHERE id = $1", id).Scan(&want); err != nil {
		t.Fatal(err)
	}
	if version != want || version == 0 {
		t.Fatalf("cached version %d, row's xmin %d", version, want)
	}

	// Well past the 2×check validity of the load and the idle TTL: only
	// the checks (and use) keep the entry.
	until := time.Now().Add(10 * check)
	for time.Now().Before(until) {
		v, n := e.auth(t, header)
		if !v.Cached || v.Member.ID != id || n != 0 {
			t.Fatalf("cached authentication: cached %v, %d statements", v.Cached, n)
		}
		v.Member.DisplayName = "scribbled" // callers own their copy
		time.Sleep(20 * time.Millisecond)
	}
	if v, _ := e.auth(t, header); v.Member.DisplayName != "" {
		t.Fatalf("the cache shares its copy: %q", v.Member.DisplayName)
	}
	// A row lock is not a change.
	tx, err := e.raw.BeginTx(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.ExecContext(t.Context(), "SELECT id FROM members WHERE id = $1 FOR UPDATE", id); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(check)
	e.auth(t, header) // in use
	time.Sleep(check)
	if v, n := e.auth(t, header); !v.Cached || n != 0 {
		t.Fatalf("after a row lock: cached %v, %d statements", v.Cached, n)
	}
}

func TestCacheSeesAnotherReplicasUpdate(t *testing.T) {
	e := newAuthEnv(t, time.Minute, testCheck) // no idle expiry in the test
	id, header := e.member(t)
	other, otherHeader := e.member(t)
	e.auth(t, header)
	e.auth(t, otherHeader)

	e.exec(t, "UPDATE members SET display_name = 'renamed' WHERE id = $1", id)
	took := waitFor(t, "update seen", func() bool {
		v, _ := e.auth(t, header)
		return v.Member.DisplayName == "renamed"
	})
	t.Logf("update seen after %v (check %v)", took, testCheck)
	// The hard bound (2×check after the commit) plus polling slack.
	if took > 2*testCheck+100*time.Millisecond {
		t.Fatalf("update seen after %v, bound %v", took, 2*testCheck)
	}
	if v, n := e.auth(t, otherHeader); !v.Cached || n != 0 {
		t.Fatalf("unchanged member %d dropped too", other)
	}

	// Any UPDATE writes a new row version, even one changing nothing.
	e.exec(t, "UPDATE members SET status = 'FROZEN' WHERE id = $1", id)
	e.exec(t, "UPDATE members SET status = status WHERE id = $1", other)
	waitFor(t, "freeze seen", func() bool {
		v, _ := e.auth(t, header)
		return v.Member.Status == "FROZEN"
	})
	waitFor(t, "no-op update seen", func() bool {
		v, _ := e.auth(t, otherHeader)
		return !v.Cached
	})

	e.exec(t, "UPDATE members SET status = 'ERASED' WHERE id = $1", id)
	waitFor(t, "erasure seen", func() bool {
		v, _ := e.auth(t, header)
		return errors.Is(v.Err, ErrAccountDisabled)
	})
}

func TestCacheDropsDeletedRow(t *testing.T) {
	e := newAuthEnv(t, time.Minute, testCheck)
	id, header := e.member(t)
	if v, _ := e.auth(t, header); v.Member == nil {
		t.Fatalf("authentication: %+v", v)
	}
	e.exec(t, "DELETE FROM members WHERE id = $1", id)
	waitFor(t, "deletion seen", func() bool {
		_, _, ok := e.a.members.get(id)
		return !ok
	})
	if v, _ := e.auth(t, header); !errors.Is(v.Err, ErrBadCredentials) {
		t.Fatalf("deleted member authenticated: %+v", v)
	}
}

func TestCacheIdleEntriesExpireAndValidatorStops(t *testing.T) {
	e := newAuthEnv(t, 150*time.Millisecond, testCheck)
	_, header := e.member(t)
	_, other := e.member(t)
	e.auth(t, header)
	e.auth(t, other)
	// header keeps being used past the TTL; other is not.
	until := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(until) {
		if v, _ := e.auth(t, header); !v.Cached {
			t.Fatal("member in use dropped")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n, _ := e.a.members.size(); n != 1 {
		t.Fatalf("%d entries after the idle one's TTL, want 1", n)
	}
	waitFor(t, "cache empty and validator stopped", func() bool {
		n, validating := e.a.members.size()
		return n == 0 && !validating
	})
}

func TestCacheDisabled(t *testing.T) {
	e := newAuthEnv(t, 0, 0)
	_, header := e.member(t)
	for range 2 {
		if v, n := e.auth(t, header); v.Cached || n != 1 {
			t.Fatalf("cache off: cached %v, %d statements", v.Cached, n)
		}
	}
}

// The staleness bound sets the check interval; the idle expiry is its own,
// never shorter than the bound; no bound, no cache.
func TestNewAuthenticatorSeparatesStalenessFromIdleExpiry(t *testing.T) {
	for _, c := range []struct {
		ttl, idle, wantIdle, wantCheck time.Duration
		enabled                        bool
	}{
		{2 * time.Second, 10 * time.Second, 10 * time.Second, time.Second, true},
		{2 * time.Second, 0, 2 * time.Second, time.Second, true},
		{10 * time.Second, 2 * time.Second, 10 * time.Second, 5 * time.Second, true},
		{0, 10 * time.Second, 10 * time.Second, 0, false},
	} {
		m := NewAuthenticator(nil, nil, c.ttl, c.idle, time.Now).members
		if m.ttl != c.wantIdle || m.check != c.wantCheck || m.enabled() != c.enabled {
			t.Errorf("ttl %v idle %v: idle expiry %v, check every %v, enabled %v; want %v, %v, %v",
				c.ttl, c.idle, m.ttl, m.check, m.enabled(), c.wantIdle, c.wantCheck, c.enabled)
		}
	}
}

// fakeVersions answers checks from a map, or fails.
type fakeVersions struct {
	mu     sync.Mutex
	rows   map[int]int64
	err    error
	chunks []int
	during func() // runs inside the check, after its start
}

func (f *fakeVersions) get(_ context.Context, ids []int) (map[int]int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.during != nil {
		f.during()
	}
	f.chunks = append(f.chunks, len(ids))
	if f.err != nil {
		return nil, f.err
	}
	out := map[int]int64{}
	for _, id := range ids {
		if v, ok := f.rows[id]; ok {
			out[id] = v
		}
	}
	return out, nil
}

// unitCache is a cache on a settable clock whose timers never fire in a
// test (the test calls validate).
func unitCache(f *fakeVersions) (*memberCache, *testkit.Clock) {
	clock := testkit.NewClock(time.Date(2026, 6, 15, 10, 0, 0, 0, time.UTC))
	return newMemberCache(10*time.Hour, time.Hour, 100_000, clock.Now, f.get), clock
}

func TestCacheCheckErrorDropsEntriesPastTheBound(t *testing.T) {
	f := &fakeVersions{rows: map[int]int64{1: 5, 2: 7}}
	c, clock := unitCache(f)
	c.put(1, &ent.Member{ID: 1}, 5, clock.Now())
	clock.Advance(30 * time.Minute)
	c.put(2, &ent.Member{ID: 2}, 7, clock.Now())

	f.err = errors.New("connection refused")
	clock.Advance(90*time.Minute - time.Second) // member 1 validated 2h-1s ago
	c.validate()
	if _, _, ok := c.get(1); !ok {
		t.Fatal("entry dropped before the bound")
	}
	clock.Advance(time.Second) // 2×check since member 1's load
	if _, _, ok := c.get(1); ok {
		t.Fatal("entry served 2×check after its last validation")
	}
	c.validate()
	if n, _ := c.size(); n != 1 {
		t.Fatalf("%d entries, want member 2 only", n)
	}

	// A check that works again extends member 2 from its start.
	f.err = nil
	c.validate()
	clock.Advance(2*time.Hour - time.Second)
	if _, _, ok := c.get(2); !ok {
		t.Fatal("validated entry dropped")
	}
	f.err = errors.New("connection refused")
	clock.Advance(time.Second)
	c.validate()
	if n, validating := c.size(); n != 0 || validating {
		t.Fatalf("%d entries, validating %v after the bound", n, validating)
	}
}

func TestCacheCheckNeverValidatesLaterLoads(t *testing.T) {
	f := &fakeVersions{rows: map[int]int64{1: 5}}
	c, clock := unitCache(f)
	c.put(1, &ent.Member{ID: 1}, 5, clock.Now())
	clock.Advance(time.Hour)
	checkStart := clock.Now()

	// The row changes (version 6) and the member is reloaded while a
	// check that read version 6 too is running.
	f.during = func() {
		clock.Advance(time.Minute)
		c.forget(1)
		c.put(1, &ent.Member{ID: 1, DisplayName: "new"}, 6, clock.Now())
		f.rows[1] = 6
	}
	c.validate()
	c.mu.Lock()
	e := c.entries[1]
	c.mu.Unlock()
	if e == nil || e.version != 6 {
		t.Fatalf("entry %+v, want version 6", e)
	}
	if !e.validated.Equal(checkStart.Add(time.Minute)) {
		t.Fatalf("validated at %v, want its load %v (not the check's start %v)", e.validated, checkStart.Add(time.Minute), checkStart)
	}

	// A check that read another version than the entry's (its snapshot
	// and the reload's are in either order) drops it.
	f.during = func() {
		c.put(1, &ent.Member{ID: 1}, 7, clock.Now())
	}
	c.validate()
	if _, _, ok := c.get(1); ok {
		t.Fatal("entry with a version the check did not see was kept")
	}
}

func TestCacheForgetsMergedSubjects(t *testing.T) {
	f := &fakeVersions{rows: map[int]int64{9: 1}}
	c, clock := unitCache(f)
	c.put(7, &ent.Member{ID: 9}, 1, clock.Now()) // 7 merged into 9
	c.put(9, &ent.Member{ID: 9}, 1, clock.Now())
	c.put(3, &ent.Member{ID: 3}, 1, clock.Now())
	c.forget(9)
	for _, id := range []int{7, 9} {
		if _, _, ok := c.get(id); ok {
			t.Fatalf("subject %d still cached after forgetting member 9", id)
		}
	}
	if _, _, ok := c.get(3); !ok {
		t.Fatal("unrelated member forgotten")
	}
	if c.aliased != 0 {
		t.Fatalf("aliased %d, want 0", c.aliased)
	}
}

func TestCacheChecksInChunks(t *testing.T) {
	f := &fakeVersions{rows: map[int]int64{}}
	c, clock := unitCache(f)
	for id := 1; id <= 2*maxCheckIDs+5; id++ {
		f.rows[id] = 1
		c.put(id, &ent.Member{ID: id}, 1, clock.Now())
	}
	delete(f.rows, 5) // gone
	c.validate()
	slices.Sort(f.chunks)
	if !slices.Equal(f.chunks, []int{5, maxCheckIDs, maxCheckIDs}) {
		t.Fatalf("chunks %v", f.chunks)
	}
	if n, _ := c.size(); n != 2*maxCheckIDs+4 {
		t.Fatalf("%d entries, want all but the gone row", n)
	}
}

func TestCacheMaxEntries(t *testing.T) {
	f := &fakeVersions{}
	c, clock := unitCache(f)
	c.max = 2
	c.put(1, &ent.Member{ID: 1}, 1, clock.Now())
	clock.Advance(2 * time.Hour) // 1 is past the validation bound
	c.put(2, &ent.Member{ID: 2}, 1, clock.Now())
	c.put(3, &ent.Member{ID: 3}, 1, clock.Now())
	if n, _ := c.size(); n != 2 {
		t.Fatalf("%d entries, want 2 (the stale one evicted)", n)
	}
	c.put(4, &ent.Member{ID: 4}, 1, clock.Now())
	if n, _ := c.size(); n != 1 {
		t.Fatalf("%d entries, want 1 (all fresh: started over)", n)
	}
}
