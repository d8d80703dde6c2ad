// Package ttlcache holds one value (configuration read on hot paths: the
// tier ladder, the benefit catalogue), or values by key (rows that never
// change once written: coupon templates' terms), for a short while.
// Readers that decide money or tiers must read the table instead; the
// cache serves what members are shown, which may lag an edit on another
// replica by the TTL.
package ttlcache

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Value is one cached value. The zero Value caches nothing; set TTL.
type Value[T any] struct {
	TTL time.Duration

	mu sync.Mutex
	v  T
	at time.Time
}

// Get returns the value, loading it when it is older than TTL. Concurrent
// misses may each load; the last one wins, which is harmless for
// configuration.
func (c *Value[T]) Get(ctx context.Context, load func(context.Context) (T, error)) (T, error) {
	c.mu.Lock()
	v, fresh := c.v, !c.at.IsZero() && time.Since(c.at) < c.TTL
	c.mu.Unlock()
	if fresh {
		return v, nil
	}
	v, err := load(ctx)
	if err != nil {
		return v, err
	}
	c.mu.Lock()
	c.v, c.at = v, time.Now()
	c.mu.Unlock()
	return v, nil
}

// Forget drops the value (this replica changed it).
func (c *Value[T]) Forget() {
	c.mu.Lock()
	var zero T
	c.v, c.at = zero, time.Time{}
	c.mu.Unlock()
}

// Map holds values by key, each for TTL after it was stored: rows read by
// id on hot paths that change rarely or never (coupon templates' terms).
// The zero Map caches nothing; set TTL. At Max entries (0: no bound) a
// store first drops the expired entries, then every entry.
type Map[K comparable, V any] struct {
	TTL time.Duration
	Max int

	mu      sync.Mutex
	entries map[K]entry[V]
}

type entry[V any] struct {
	v  V
	at time.Time
}

// Get returns the value of key when it is fresh.
func (c *Map[K, V]) Get(key K) (V, bool) {
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if !ok || time.Since(e.at) >= c.TTL {
		var zero V
		return zero, false
	}
	return e.v, true
}

// Put stores v as the value of key.
func (c *Map[K, V]) Put(key K, v V) {
	if c.TTL <= 0 {
		return
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[K]entry[V]{}
	}
	if _, ok := c.entries[key]; !ok && c.Max > 0 && len(c.entries) >= c.Max {
		for k, e := range c.entries {
			if now.Sub(e.at) >= c.TTL {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.Max {
			clear(c.entries)
		}
	}
	c.entries[key] = entry[V]{v: v, at: now}
}

// GetMany returns the values of keys: the fresh ones from the cache, the
// others from one call of load (given those keys, each once), which are
// stored. A key load does not answer is left out.
func (c *Map[K, V]) GetMany(ctx context.Context, keys []K, load func(context.Context, []K) (map[K]V, error)) (map[K]V, error) {
	out := make(map[K]V, len(keys))
	var missing []K
	for _, k := range keys {
		if _, done := out[k]; done {
			continue
		}
		if v, ok := c.Get(k); ok {
			out[k] = v
		} else if !slices.Contains(missing, k) {
			missing = append(missing, k)
		}
	}
	if len(missing) == 0 {
		return out, nil
	}
	loaded, err := load(ctx, missing)
	if err != nil {
		return nil, err
	}
	for k, v := range loaded {
		c.Put(k, v)
		out[k] = v
	}
	return out, nil
}

// Forget drops keys (this replica changed them).
func (c *Map[K, V]) Forget(keys ...K) {
	c.mu.Lock()
	for _, k := range keys {
		delete(c.entries, k)
	}
	c.mu.Unlock()
}
