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
// application close code. gqlgen itself closes a connection whose context
// ends with 1000 "terminated"; the adapter's WriteClose asks the Closer
// bound to the connection for a better code first.
//
// The HTTP handler puts a Closer in the request context (WithCloser)
// before gqlgen accepts the socket; the connection_init function binds the
// connection's context to it (Bind); resolvers reach it with CloserFrom.
type Closer struct {
	mu     sync.Mutex
	code   int
	reason string
	cancel context.CancelFunc
	ctx    context.Context
	subs   int
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

// Bind derives the connection context from ctx: it ends at expiresAt (when
// not zero), closing with CloseTokenExpired, or when Close is called.
// Release must be called when the connection ends.
func (c *Closer) Bind(ctx context.Context, expiresAt time.Time) context.Context {
	var cancel context.CancelFunc
	if expiresAt.IsZero() {
		ctx, cancel = context.WithCancel(ctx)
	} else {
		ctx, cancel = context.WithDeadline(ctx, expiresAt)
	}
	c.mu.Lock()
	c.ctx, c.cancel = ctx, cancel
	c.mu.Unlock()
	return ctx
}

// Close ends the connection with code and reason.
func (c *Closer) Close(code int, reason string) {
	c.mu.Lock()
	if c.code == 0 {
		c.code, c.reason = code, reason
	}
	cancel := c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// Release frees the connection context's timer.
func (c *Closer) Release() {
	c.mu.Lock()
	cancel := c.cancel
	c.mu.Unlock()
	if cancel != nil {
		cancel()
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
