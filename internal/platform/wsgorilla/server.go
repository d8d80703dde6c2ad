package wsgorilla

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

// graphql-transport-ws close codes
// (https://github.com/enisdenjo/graphql-ws/blob/master/PROTOCOL.md).
const (
	closeInvalidMessage = 4400
	closeUnauthorized   = 4401
	closeInitTimeout    = 4408
	closeDuplicateID    = 4409
	closeTooManyInits   = 4429
)

// Server serves GraphQL over websockets with the graphql-transport-ws
// protocol, built for many long-lived, mostly idle subscriptions: the one
// goroutine a connection keeps is its reader, and the net/http handler
// returns once the socket is upgraded, so net/http's buffers go with it.
//
// gqlgen's own transport (transport.Websocket, which still serves the
// legacy graphql-ws subprotocol through Implementation) keeps four
// goroutines and the whole operation state per subscription: 50–70 KB
// per idle connection on this project's benchmark, against the 20 KB it
// must stay under (docs/BENCHMARKS.md).
//
// Queries and mutations sent over the socket, and subscriptions whose
// resolver streams through a channel, run as with gqlgen: a goroutine per
// operation. A subscription resolver can instead hand the server a Source
// (PusherFrom): the server then keeps no goroutine and no gqlgen state for
// it but the operation as validated at subscribe time. When the source has
// items, a small shared pool of goroutines takes them and runs that
// operation once for each: the resolver finds the item with Pushed and
// returns it with One. The response is what gqlgen would have sent for it.
type Server struct {
	// Upgrader accepts the socket; graphql-transport-ws is the only
	// subprotocol it negotiates.
	Upgrader websocket.Upgrader
	// Init authenticates connection_init's payload and returns the
	// connection's context. An error closes the socket: with the code and
	// reason of a *CloseError, else 4403 Forbidden.
	Init func(ctx context.Context, p transport.InitPayload) (context.Context, error)
	// InitTimeout bounds the wait for connection_init (4408 after it).
	InitTimeout time.Duration
	// ReadLimit bounds a client message (a larger one closes the socket).
	ReadLimit int64
	// WriteTimeout bounds every message write.
	WriteTimeout time.Duration
	// Closed is called once when a connection Init accepted ends, with the
	// context Init returned.
	Closed func(ctx context.Context)
	// Log receives panics and write failures; nil discards them.
	Log *slog.Logger
}

// CloseError is an Init refusal with its close code.
type CloseError struct {
	Code   int
	Reason string
	Err    error
}

func (e *CloseError) Error() string { return e.Err.Error() }
func (e *CloseError) Unwrap() error { return e.Err }

var _ graphql.Transport = (*Server)(nil)

// Supports claims websocket upgrades that offer graphql-transport-ws.
func (s *Server) Supports(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket") &&
		slices.Contains(websocket.Subprotocols(r), subprotocolGraphQLTransportWS)
}

// Do upgrades the request and leaves the connection to its reader
// goroutine.
func (s *Server) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	up := s.Upgrader
	up.Subprotocols = []string{subprotocolGraphQLTransportWS}
	ws, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // gorilla has answered the request
	}
	if s.ReadLimit > 0 {
		ws.SetReadLimit(s.ReadLimit)
	}
	c := &serverConn{srv: s, ws: ws, exec: exec, closer: CloserFrom(r.Context())}
	// The handshake (authentication included) runs on this goroutine, whose
	// stack goes with it; the reader starts small and stays so. The
	// request's context ends when this handler returns; its values (request
	// id, the Closer) stay.
	if !c.init(context.WithoutCancel(r.Context())) {
		c.finish()
		return
	}
	go c.serve()
}

// message is one graphql-transport-ws message.
type message struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

type serverConn struct {
	srv    *Server
	ws     *websocket.Conn
	exec   graphql.GraphExecutor
	closer *Closer // nil unless the handler installed one

	ctx context.Context // the connection's, from Init: values only

	writeMu sync.Mutex // gorilla allows one writer at a time

	mu      sync.Mutex
	ops     []*operation // live operations: a handful at most, a slice is smaller than a map
	closing bool
}

func (s *Server) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log
}

// serve reads the connection's next message, handles it, and hands the
// reading on to a fresh goroutine. Handling a message (JSON, starting an
// operation) grows a goroutine's stack to 8 KB or more, and an idle reader
// blocked in gorilla's read does not use enough less for the runtime to
// shrink it back; a new goroutine starts small. Client messages are rare
// (connection_init, subscribe, complete, ping), so the hop costs nothing
// that shows, and halves an idle connection's stack.
func (c *serverConn) serve() {
	m, err := c.read()
	if err != nil {
		c.finish()
		return
	}
	switch m.Type {
	case "subscribe":
		c.subscribe(m)
	case "complete":
		c.stop(m.ID)
	case "ping":
		c.send(message{Type: "pong", Payload: m.Payload})
	case "pong":
	case "connection_init":
		c.close(closeTooManyInits, "Too many initialisation requests")
	default:
		c.close(closeInvalidMessage, "Invalid message")
	}
	go c.serve()
}

// init waits for connection_init and acknowledges it.
func (c *serverConn) init(ctx context.Context) bool {
	if c.srv.InitTimeout > 0 {
		_ = c.ws.SetReadDeadline(time.Now().Add(c.srv.InitTimeout))
	}
	m, err := c.read()
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		c.close(closeInitTimeout, "Connection initialisation timeout")
		return false
	case err != nil:
		return false
	case m.Type == "subscribe":
		c.close(closeUnauthorized, "Unauthorized")
		return false
	case m.Type != "connection_init":
		c.close(closeInvalidMessage, "Invalid message")
		return false
	}
	var p transport.InitPayload
	if len(m.Payload) > 0 && !bytes.Equal(m.Payload, []byte("null")) {
		if err := json.Unmarshal(m.Payload, &p); err != nil {
			c.close(closeInvalidMessage, "Invalid connection_init payload")
			return false
		}
	}
	if c.srv.Init != nil {
		ctx, err = c.srv.Init(ctx, p)
		if err != nil {
			ce := &CloseError{Code: 4403, Reason: "Forbidden"}
			errors.As(err, &ce)
			c.close(ce.Code, ce.Reason)
			return false
		}
	}
	_ = c.ws.SetReadDeadline(time.Time{})
	c.mu.Lock()
	c.ctx = ctx
	c.mu.Unlock()
	// The credential's expiry and a resolver's Closer.Close end the
	// connection. Its context has no cancellation of its own: nothing
	// hangs on it (a context per connection costs memory); operations
	// get theirs.
	if c.closer != nil {
		c.closer.watch(c.close)
	}
	return c.send(message{Type: "connection_ack"})
}

// read returns the next message; a malformed one closes the connection.
func (c *serverConn) read() (message, error) {
	var m message
	_, data, err := c.ws.ReadMessage()
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(data, &m); err != nil || m.Type == "" {
		c.close(closeInvalidMessage, "Invalid message")
		return m, fmt.Errorf("invalid message: %w", err)
	}
	return m, nil
}

// send writes one message; a failed write ends the connection.
func (c *serverConn) send(m message) bool {
	data, err := json.Marshal(m)
	if err != nil {
		c.srv.log().Error("websocket: encoding message", "err", err)
		return false
	}
	c.writeMu.Lock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(c.srv.writeTimeout()))
	err = c.ws.WriteMessage(websocket.TextMessage, data)
	c.writeMu.Unlock()
	if err != nil {
		c.abort()
		return false
	}
	return true
}

func (s *Server) writeTimeout() time.Duration {
	if s.WriteTimeout > 0 {
		return s.WriteTimeout
	}
	return DefaultWriteTimeout
}

func (c *serverConn) sendResponse(id string, resp *graphql.Response) {
	data, err := json.Marshal(resp)
	if err != nil {
		c.srv.log().Error("websocket: encoding response", "err", err)
		return
	}
	c.send(message{ID: id, Type: "next", Payload: data})
}

func (c *serverConn) sendErrors(id string, errs gqlerror.List) {
	data, err := json.Marshal(errs)
	if err != nil {
		c.srv.log().Error("websocket: encoding errors", "err", err)
		return
	}
	c.send(message{ID: id, Type: "error", Payload: data})
}

// close sends a close frame and ends every operation; the reader closes
// the socket when the peer answers, or closeGracePeriod later.
func (c *serverConn) close(code int, reason string) {
	if !c.shut() {
		return
	}
	if len(reason) > maxCloseReasonBytes {
		reason = reason[:maxCloseReasonBytes]
	}
	c.writeMu.Lock()
	_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason),
		time.Now().Add(closeWriteTimeout))
	c.writeMu.Unlock()
	time.AfterFunc(closeGracePeriod, func() { _ = c.ws.Close() })
}

// abort ends the connection without a close frame (the socket failed).
func (c *serverConn) abort() {
	c.shut()
	_ = c.ws.Close()
}

// shut marks the connection closing and ends its operations; it reports
// false when it was closing already.
func (c *serverConn) shut() bool {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return false
	}
	c.closing = true
	ops := c.ops
	c.ops = nil
	c.mu.Unlock()
	for _, op := range ops {
		op.end()
	}
	return true
}

// finish runs when the reader stops: the socket is done.
func (c *serverConn) finish() {
	c.shut()
	_ = c.ws.Close()
	if c.ctx == nil {
		return // Init never accepted the connection
	}
	if c.srv.Closed != nil {
		c.srv.Closed(c.ctx)
	}
}

// subscribe starts an operation.
func (c *serverConn) subscribe(m message) {
	start := graphql.Now()
	var params graphql.RawParams
	dec := json.NewDecoder(bytes.NewReader(m.Payload))
	dec.UseNumber()
	if err := dec.Decode(&params); err != nil || m.ID == "" {
		c.close(closeInvalidMessage, "Invalid subscribe message")
		return
	}
	params.ReadTime = graphql.TraceTiming{Start: start, End: graphql.Now()}

	op := &operation{c: c, id: m.ID}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	if c.find(m.ID) >= 0 {
		c.mu.Unlock()
		c.close(closeDuplicateID, "Subscriber for "+m.ID+" already exists")
		return
	}
	op.ctx, op.cancel = context.WithCancel(c.ctx)
	c.ops = append(c.ops, op)
	c.mu.Unlock()
	go op.run(&params)
}

// find returns the index of operation id in c.ops, or -1; c.mu is held.
func (c *serverConn) find(id string) int {
	return slices.IndexFunc(c.ops, func(op *operation) bool { return op.id == id })
}

// stop ends the operation the client completed.
func (c *serverConn) stop(id string) {
	c.mu.Lock()
	var op *operation
	if i := c.find(id); i >= 0 {
		op = c.ops[i]
		c.ops = slices.Delete(c.ops, i, i+1)
	}
	c.mu.Unlock()
	if op != nil {
		op.end()
	}
}

// done removes op and tells the client it completed, unless the client or
// the connection ended it first.
func (c *serverConn) done(op *operation) {
	c.mu.Lock()
	i := c.find(op.id)
	mine := i >= 0 && c.ops[i] == op // else the client or the connection ended it
	if mine {
		c.ops = slices.Delete(c.ops, i, i+1)
	}
	c.mu.Unlock()
	op.end() // may close the connection (a source ended by its bus)
	c.mu.Lock()
	closing := c.closing
	c.mu.Unlock()
	if mine && !closing {
		c.send(message{ID: op.id, Type: "complete"})
	}
}

// Source is a subscription's stream that the Server takes items from when
// told, instead of a goroutine blocking on a channel.
type Source interface {
	// Next returns the next waiting item, or false when none waits. ctx
	// is the connection's (its viewer, without gqlgen's operation state).
	Next(ctx context.Context) (any, bool)
	// Ended reports that the stream is over: the operation completes once
	// what waits is taken.
	Ended() bool
	// Close releases the stream; it is called once, however it ended.
	Close()
}

// operation is one subscribe message's operation.
type operation struct {
	c      *serverConn
	id     string
	ctx    context.Context
	cancel context.CancelFunc

	// Push mode: set once by run, before the first drain. rc is the
	// operation as validated at subscribe time, run again for each item.
	rc  *graphql.OperationContext
	src Source

	queued  atomic.Bool // waiting in the push queue
	drainMu sync.Mutex  // one drain at a time keeps the items in order
	ended   atomic.Bool

	mu        sync.Mutex // guards src
	closeOnce sync.Once
}

// end cancels the operation and closes its source.
func (op *operation) end() {
	if op.ended.Swap(true) {
		return
	}
	op.cancel()
	if src := op.source(); src != nil {
		op.closeOnce.Do(src.Close)
	}
}

func (op *operation) source() Source {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.src
}

// run executes the operation: once for a query or mutation, until the
// stream ends for a subscription streaming through a channel; a
// subscription whose resolver attached a Source is left to the push pool.
func (op *operation) run(params *graphql.RawParams) {
	c := op.c
	ctx := graphql.StartOperationTrace(op.ctx)
	rc, err := c.exec.CreateOperationContext(ctx, params)
	if err != nil {
		resp := c.exec.DispatchError(graphql.WithOperationContext(ctx, rc), err)
		if errcode.GetErrorKind(err) == errcode.KindProtocol {
			c.sendErrors(op.id, resp.Errors)
		} else {
			c.sendResponse(op.id, &graphql.Response{Errors: err})
		}
		c.done(op)
		return
	}
	ctx = graphql.WithOperationContext(ctx, rc)
	var p *Pusher
	if rc.Operation.Operation == ast.Subscription {
		p = &Pusher{op: op}
		ctx = context.WithValue(ctx, pusherKey{}, p)
	}
	defer func() {
		if r := recover(); r != nil {
			c.srv.log().ErrorContext(ctx, "websocket operation panic", "panic", r, "stack", string(debug.Stack()))
			c.sendErrors(op.id, gqlerror.List{{Message: "internal error", Extensions: map[string]any{"code": "INTERNAL"}}})
			c.done(op)
		}
	}()
	responses, ctx := c.exec.DispatchOperation(ctx, rc)
	if p != nil && p.src != nil {
		// Keep only what running it again needs: no statistics, no field
		// cache, one copy of the document's text for all connections.
		op.rc = bare(rc)
		op.rc.RawQuery = intern(ctx, rc.RawQuery)
		op.mu.Lock()
		op.src = p.src
		op.mu.Unlock()
		if op.ended.Load() { // the client or the connection ended it meanwhile
			op.closeOnce.Do(p.src.Close)
			return
		}
		p.Ready() // items may have arrived before the source was attached
		return
	}
	for {
		resp := responses(ctx)
		if resp == nil {
			break
		}
		c.sendResponse(op.id, resp)
	}
	c.done(op)
}

// drain sends what op's source has waiting, each item rendered as a
// response of op's document.
func (op *operation) drain() {
	op.drainMu.Lock()
	op.queued.Store(false) // a ready call from now on queues op again
	src := op.source()
	if src == nil || op.ended.Load() {
		op.drainMu.Unlock()
		return
	}
	for op.ctx.Err() == nil {
		item, ok := src.Next(op.ctx)
		if !ok {
			break
		}
		if resp := op.render(item); resp != nil {
			op.c.sendResponse(op.id, resp)
		}
	}
	ended := src.Ended()
	op.drainMu.Unlock()
	if ended {
		op.c.done(op)
	}
}

// render executes op's operation for one pushed item.
func (op *operation) render(item any) (resp *graphql.Response) {
	c, rc := op.c, bare(op.rc)
	rc.Stats.OperationStart = graphql.Now()
	ctx := graphql.WithOperationContext(context.WithValue(op.ctx, pushedKey{}, item), rc)
	defer func() {
		if r := recover(); r != nil {
			c.srv.log().ErrorContext(ctx, "websocket push panic", "panic", r, "stack", string(debug.Stack()))
			resp = nil
		}
	}()
	responses, ctx := c.exec.DispatchOperation(ctx, rc)
	return responses(ctx)
}

// bare copies what executing rc takes: a new operation context with rc's
// document, operation and variables, and none of its run's state.
func bare(rc *graphql.OperationContext) *graphql.OperationContext {
	return &graphql.OperationContext{
		RawQuery: rc.RawQuery, Variables: rc.Variables, OperationName: rc.OperationName, Doc: rc.Doc,
		Extensions: rc.Extensions, Headers: rc.Headers, Operation: rc.Operation,
		DisableIntrospection: rc.DisableIntrospection, RecoverFunc: rc.RecoverFunc,
		ResolverMiddleware: rc.ResolverMiddleware, RootResolverMiddleware: rc.RootResolverMiddleware,
	}
}

// documents holds one copy of each pushed operation's document: every app
// connection sends the same text.
var documents = lru.New[string](1000)

func intern(ctx context.Context, query string) string {
	if q, ok := documents.Get(ctx, query); ok {
		return q
	}
	documents.Add(ctx, query, query)
	return query
}

// Pusher lets a subscription resolver served by Server hand its stream
// over as a Source.
type Pusher struct {
	op  *operation
	src Source
}

type (
	pusherKey struct{}
	pushedKey struct{}
)

// PusherFrom returns the Pusher of the subscription being set up, or nil
// when ctx is not that of a Server's subscription (another transport, or
// an item being rendered).
func PusherFrom(ctx context.Context) *Pusher {
	p, _ := ctx.Value(pusherKey{}).(*Pusher)
	return p
}

// Ready tells the server that the source has items waiting or has ended.
// It never blocks; give it to the source as its callback.
func (p *Pusher) Ready() {
	if p.op.queued.CompareAndSwap(false, true) {
		pushers.add(p.op)
	}
}

// Attach hands src to the server. The resolver then returns any channel
// (nil is fine): it is never read.
func (p *Pusher) Attach(src Source) { p.src = src }

// Pushed returns the item being rendered when the resolver is called for
// one (see Server).
func Pushed(ctx context.Context) (any, bool) {
	v := ctx.Value(pushedKey{})
	return v, v != nil
}

// One returns a closed channel holding v: what a resolver rendering a
// pushed item returns.
func One[T any](v T) <-chan T {
	ch := make(chan T, 1)
	ch <- v
	close(ch)
	return ch
}

// pushers is the process's pool of goroutines draining sources; writes
// are bounded by the write timeout, so a stalled client holds one of them
// for at most that long.
var pushers = &pushPool{wake: make(chan struct{}, 1)}

const pushWorkers = 32

type pushPool struct {
	once sync.Once
	wake chan struct{}
	mu   sync.Mutex
	ops  []*operation
}

func (q *pushPool) add(op *operation) {
	q.once.Do(func() {
		for range pushWorkers {
			go q.work()
		}
	})
	q.mu.Lock()
	q.ops = append(q.ops, op)
	q.mu.Unlock()
	signal(q.wake)
}

func (q *pushPool) work() {
	for range q.wake {
		for {
			q.mu.Lock()
			if len(q.ops) == 0 {
				q.ops = nil
				q.mu.Unlock()
				break
			}
			op := q.ops[0]
			q.ops[0] = nil
			q.ops = q.ops[1:]
			more := len(q.ops) > 0
			q.mu.Unlock()
			if more {
				signal(q.wake) // another worker takes the next one
			}
			op.drain()
		}
	}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}
