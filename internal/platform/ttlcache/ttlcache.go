// Package ttlcache holds one value (configuration read on hot paths: the
// tier ladder, the benefit catalogue) for a short while. Readers that decide
// money or tiers must read the table instead; the cache serves what members
// are shown, which may lag an edit on another replica by the TTL.
package ttlcache

import (
	"context"
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
