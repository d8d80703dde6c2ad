package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
)

// maxCheckIDs bounds the ids sent in one validation statement.
const maxCheckIDs = 10_000

// versionsFunc reads the current row versions of members; a member whose
// row is gone is absent from the result.
type versionsFunc func(ctx context.Context, ids []int) (map[int]int64, error)

// memberCache keeps authenticated members so that the hot path (every
// request of every member) does not cost a PostgreSQL round trip;
// docs/BENCHMARKS.md measured that lookup as most of a request's CPU.
//
// An entry stays valid while its row has not changed rather than for a
// fixed time: it keeps the row version read with the member (PostgreSQL's
// xmin, new with every UPDATE), and a validator compares the versions of
// all cached members with one statement (per maxCheckIDs ids) every check
// interval, dropping the entries whose row changed or is gone. Merges,
// erasures, freezes and profile changes on this replica still drop their
// entries at once (forget). Spending never trusts the cache: ledgers
// re-read the member under its account lock.
//
// An entry's validated time is the start of the latest statement (its
// load, or a check) that found its version current; a statement reads its
// snapshot after it starts, so the row still had that version at validated
// or later, and a check never moves validated back (an entry loaded after a
// check's snapshot keeps its load time). Bounds, on the clock now:
//   - an entry is served only while now - validated < 2×check and it was
//     used less than ttl ago (idle expiry, which bounds memory with max);
//   - so a change committed at C on another replica is no longer served
//     after C + 2×check, whatever happens to the checks (failures, a slow
//     database: such entries are dropped, not served); when checks succeed
//     it is dropped by the first check that starts after C, by
//     C + check + the statement's time.
//
// Only the member the token resolved to is checked: a MERGED subject cached
// as its survivor is dropped when the survivor changes, not when the merged
// row does (it no longer changes once merged).
type memberCache struct {
	ttl      time.Duration // idle expiry
	check    time.Duration // interval between validations
	max      int
	now      func() time.Time
	versions versionsFunc

	mu         sync.Mutex
	entries    map[int]*cachedMember // by token subject
	aliased    int                   // entries whose member is not their subject (merged)
	validating bool                  // a validation is scheduled or running
}

type cachedMember struct {
	m         *ent.Member
	version   int64     // the row's xmin when m was read
	validated time.Time // see memberCache
	used      time.Time
}

// newMemberCache makes a cache; ttl <= 0 or check <= 0 disables it.
func newMemberCache(ttl, check time.Duration, max int, now func() time.Time, versions versionsFunc) *memberCache {
	return &memberCache{ttl: ttl, check: check, max: max, now: now, versions: versions, entries: map[int]*cachedMember{}}
}

func (c *memberCache) enabled() bool { return c != nil && c.ttl > 0 && c.check > 0 }

// get returns a copy of the cached member (callers own their copy) and
// the row version it was read with.
func (c *memberCache) get(id int) (*ent.Member, int64, bool) {
	if !c.enabled() {
		return nil, 0, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	if !ok {
		return nil, 0, false
	}
	now := c.now()
	if c.expired(e, now) {
		c.deleteLocked(id)
		return nil, 0, false
	}
	e.used = now
	cp := *e.m
	return &cp, e.version, true
}

// put caches m, read with row version version by a statement started at
// loaded, for the token subject id.
func (c *memberCache) put(id int, m *ent.Member, version int64, loaded time.Time) {
	if !c.enabled() {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if _, ok := c.entries[id]; !ok && len(c.entries) >= c.max {
		c.evictLocked(now)
		if len(c.entries) >= c.max { // all fresh: start over
			clear(c.entries)
			c.aliased = 0
		}
	}
	c.deleteLocked(id)
	cp := *m
	c.entries[id] = &cachedMember{m: &cp, version: version, validated: loaded, used: now}
	if m.ID != id {
		c.aliased++
	}
	if !c.validating {
		c.validating = true
		time.AfterFunc(c.check, c.validate)
	}
}

// forget drops the entries of members ids, whether cached under their own
// id or as the survivor of a merged subject.
func (c *memberCache) forget(ids ...int) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		c.deleteLocked(id)
	}
	if c.aliased == 0 {
		return
	}
	for k, e := range c.entries {
		if slices.Contains(ids, e.m.ID) {
			c.deleteLocked(k)
		}
	}
}

// validate checks the row versions of every cached member, then evicts
// expired entries and schedules the next run while entries remain. A
// failed statement leaves the entries it covered unvalidated: they expire
// 2×check after their last validation.
func (c *memberCache) validate() {
	began := time.Now() // real time: it schedules the next run
	c.mu.Lock()
	c.evictLocked(c.now())
	seen := make(map[int]struct{}, len(c.entries))
	ids := make([]int, 0, len(c.entries))
	for _, e := range c.entries {
		if _, ok := seen[e.m.ID]; !ok {
			seen[e.m.ID] = struct{}{}
			ids = append(ids, e.m.ID)
		}
	}
	c.mu.Unlock()

	checked := make(map[int]time.Time, len(ids)) // member → its statement's start
	versions := make(map[int]int64, len(ids))
	for chunk := range slices.Chunk(ids, maxCheckIDs) {
		start := c.now()
		// A check that outlasts the interval is useless: its entries
		// are about to expire anyway.
		ctx, cancel := context.WithTimeout(context.Background(), c.check)
		vs, err := c.versions(ctx, chunk)
		cancel()
		if err != nil {
			break
		}
		for _, id := range chunk {
			checked[id] = start
		}
		for id, v := range vs {
			versions[id] = v
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.entries {
		at, ok := checked[e.m.ID]
		if !ok {
			continue // not checked (cached since, or its statement failed)
		}
		if v, ok := versions[e.m.ID]; !ok || v != e.version {
			c.deleteLocked(k)
			continue
		}
		if at.After(e.validated) {
			e.validated = at
		}
	}
	c.evictLocked(c.now())
	if len(c.entries) == 0 {
		c.validating = false
		return
	}
	// Runs start every check interval (a slow statement delays the next
	// one, which still gets a quarter of the interval's rest), so that an
	// entry is normally re-validated one interval after the last check,
	// well before its 2×check bound.
	time.AfterFunc(max(c.check-time.Since(began), c.check/4), c.validate)
}

// expired says e may no longer be served: idle for ttl, or not validated
// for 2×check.
func (c *memberCache) expired(e *cachedMember, now time.Time) bool {
	return now.Sub(e.used) >= c.ttl || now.Sub(e.validated) >= 2*c.check
}

func (c *memberCache) evictLocked(now time.Time) {
	for k, e := range c.entries {
		if c.expired(e, now) {
			c.deleteLocked(k)
		}
	}
}

func (c *memberCache) deleteLocked(id int) {
	e, ok := c.entries[id]
	if !ok {
		return
	}
	if e.m.ID != id {
		c.aliased--
	}
	delete(c.entries, id)
}

// rowVersionColumn names the row version the authenticator reads with a
// member: xmin (as a bigint, xmin::text::bigint) changes with every UPDATE
// (a new row version), and not with row locks (SELECT ... FOR UPDATE).
const rowVersionColumn = "row_version"

// errRowVersionType says the row version was not read as an int64.
var errRowVersionType = errors.New("unexpected row version type")

// rowVersions reads members' row versions in one statement.
func rowVersions(db *ent.Client) versionsFunc {
	return func(ctx context.Context, ids []int) (map[int]int64, error) {
		arg := make([]int64, len(ids))
		for i, id := range ids {
			arg[i] = int64(id)
		}
		rows, err := db.QueryContext(ctx, "SELECT id, xmin::text::bigint FROM members WHERE id = ANY($1)", pq.Array(arg))
		if err != nil {
			return nil, fmt.Errorf("reading member row versions: %w", err)
		}
		defer rows.Close()
		out := make(map[int]int64, len(ids))
		for rows.Next() {
			var id int
			var v int64
			if err := rows.Scan(&id, &v); err != nil {
				return nil, fmt.Errorf("reading member row versions: %w", err)
			}
			out[id] = v
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("reading member row versions: %w", err)
		}
		return out, nil
	}
}
