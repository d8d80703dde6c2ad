package wsgorilla

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Application close codes (4000-4999 are free for applications).
const (
	// CloseTokenExpired: the access token of connection_init expired; the
	// client reconnects with a fresh token and its cursor.
	CloseTokenExpired = 4401
	// CloseSlowConsumer: the client fell behind by more than the server's
	// buffer; it reconnects and resumes by cursor.
	CloseSlowConsumer = 4429
)

// Closer lets the code serving a websocket end the whole connection with an
// application close code, and ends it when its credential expires.
//
// The HTTP handler puts a Closer in the request context (WithCloser)
// before the socket is accepted; the connection_init function records the
// credential's expiry (Expire); resolvers reach it with CloserFrom. The
// transport then follows it one of two ways: Server registers a callback
// (watch), with no goroutine or context per connection; gqlgen's transport,
// which closes a connection when its context ends (with 1000 "terminated"
// unless the adapter's WriteClose finds a better code here), gets a context
// from Bind.
type Closer struct {
	mu      sync.Mutex
	code    int
	reason  string
	expires time.Time
	cancel  context.CancelFunc
	ctx     context.Context
	onClose func(code int, reason string)
	timer   *time.Timer
	subs    int
}

type closerKey struct{}

// WithCloser returns ctx carrying a new Closer.
func WithCloser(ctx context.Context) (context.Context, *Closer) {
	c := &Closer{}
	return context.WithValue(ctx, closerKey{}, c), c
}

// CloserFrom returns the connection's Closer, or nil outside a websocket.
func CloserFrom(ctx context.Context) *Closer {
	c, _ := ctx.Value(closerKey{}).(*Closer)
	return c
}

// Expire records when the connection's credential expires: the connection
// then closes with CloseTokenExpired. Zero means never.
func (c *Closer) Expire(at time.Time) {
	c.mu.Lock()
	c.expires = at
	c.mu.Unlock()
}

// Bind derives a connection context from ctx for gqlgen's transport: it
// ends at the recorded expiry, or when Close is called. Release must be
// called when the connection ends.
func (c *Closer) Bind(ctx context.Context) context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	var cancel context.CancelFunc
	if c.expires.IsZero() {
		ctx, cancel = context.WithCancel(ctx)
	} else {
		ctx, cancel = context.WithDeadline(ctx, c.expires)
	}
	c.ctx, c.cancel = ctx, cancel
	return ctx
}

// watch makes Close, and the recorded expiry, call fn (once) with the
// close code and reason.
func (c *Closer) watch(fn func(code int, reason string)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onClose = fn
	if !c.expires.IsZero() {
		c.timer = time.AfterFunc(time.Until(c.expires), func() { c.Close(CloseTokenExpired, "access token expired") })
	}
}

// Close ends the connection with code and reason.
func (c *Closer) Close(code int, reason string) {
	c.mu.Lock()
	first := c.code == 0
	if first {
		c.code, c.reason = code, reason
	}
	cancel, fn := c.cancel, c.onClose
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if first && fn != nil {
		fn(code, reason)
	}
}

// Release frees what Bind or watch hold: the context's timer, the expiry
// timer.
func (c *Closer) Release() {
	c.mu.Lock()
	cancel, timer := c.cancel, c.timer
	c.onClose = nil
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	if timer != nil {
		timer.Stop()
	}
}

// Acquire counts one more live subscription on the connection, or reports
// false when max are live already. Release it with Drop.
func (c *Closer) Acquire(max int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.subs >= max {
		return false
	}
	c.subs++
	return true
}

// Drop ends a subscription counted by Acquire.
func (c *Closer) Drop() {
	c.mu.Lock()
	c.subs--
	c.mu.Unlock()
}

// override is the close frame to send instead of gqlgen's normal closure.
func (c *Closer) override() (int, string, bool) {
	if c == nil {
		return 0, "", false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.code != 0:
		return c.code, c.reason, true
	case c.ctx != nil && errors.Is(c.ctx.Err(), context.DeadlineExceeded):
		return CloseTokenExpired, "access token expired", true
	}
	return 0, "", false
}
