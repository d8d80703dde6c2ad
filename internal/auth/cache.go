package auth

import (
	"sync"
	"time"

	"github.com/onemember/onemember/ent"
)

// memberCache keeps authenticated members for a short TTL so that the hot
// path (every request of every member) does not cost a PostgreSQL round
// trip; docs/BENCHMARKS.md measured that lookup as most of a request's CPU.
// Merges, erasures and freezes on this replica drop the entry at once;
// other replicas see the change within the TTL. Spending never trusts the
// cache: ledgers re-read the member under its account lock.
type memberCache struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu       sync.Mutex
	entries  map[int]cachedMember
	sweeping bool // a sweep of expired entries is scheduled
}

type cachedMember struct {
	m       *ent.Member
	expires time.Time
}

func newMemberCache(ttl time.Duration, max int, now func() time.Time) *memberCache {
	return &memberCache{ttl: ttl, max: max, now: now, entries: map[int]cachedMember{}}
}

// get returns a copy of the cached member (callers own their copy).
func (c *memberCache) get(id int) (*ent.Member, bool) {
	if c == nil || c.ttl <= 0 {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	if !ok || !c.now().Before(e.expires) {
		return nil, false
	}
	cp := *e.m
	return &cp, true
}

func (c *memberCache) put(id int, m *ent.Member) {
	if c == nil || c.ttl <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if len(c.entries) >= c.max {
		c.sweepLocked(now)
		if len(c.entries) >= c.max { // all fresh: start over
			clear(c.entries)
		}
	}
	cp := *m
	c.entries[id] = cachedMember{m: &cp, expires: now.Add(c.ttl)}
	// Expired entries go within two TTLs, so that members seen once (a
	// websocket's handshake) are not kept until the cache fills.
	if !c.sweeping {
		c.sweeping = true
		time.AfterFunc(2*c.ttl, c.sweep)
	}
}

func (c *memberCache) sweep() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweeping = false
	c.sweepLocked(c.now())
	if len(c.entries) > 0 {
		c.sweeping = true
		time.AfterFunc(2*c.ttl, c.sweep)
	}
}

func (c *memberCache) sweepLocked(now time.Time) {
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
}

func (c *memberCache) forget(ids ...int) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range ids {
		delete(c.entries, id)
	}
}
