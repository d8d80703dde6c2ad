// Package gqlws owns the GraphQL-over-websocket client that our tests and
// benchmarks use to drive the API's subscriptions. It speaks both
// subprotocols gqlgen serves, graphql-transport-ws and the legacy graphql-ws,
// and surfaces the server's close frame so callers can assert on close codes
// such as 4401 or 4403.
//
// One reader goroutine per Client demultiplexes server messages into a
// buffered channel per Subscription. When a subscription's buffer is full the
// reader waits, which stalls every subscription of that client: consume
// Next promptly or Stop subscriptions you no longer read.
package gqlws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Subprotocols understood by Dial.
const (
	SubprotocolGraphQLTransportWS = "graphql-transport-ws"
	SubprotocolGraphQLWS          = "graphql-ws"
)

// subscriptionBuffer absorbs bursts so one slow subscription rarely stalls
// the shared reader.
const subscriptionBuffer = 64

const (
	defaultWriteTimeout = 10 * time.Second
	// closeWait bounds how long Close waits for the server to answer the
	// close frame before dropping the socket.
	closeWait = time.Second
)

// ErrClosed is returned by Next and Subscribe once Close has been called.
var ErrClosed = errors.New("gqlws: client closed")

// CloseError reports that the connection ended. Code and Reason come from the
// server's close frame; when the socket dropped without one, Code is 1006
// (abnormal closure) as browsers report it.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("gqlws: connection closed with code %d", e.Code)
	}
	return fmt.Sprintf("gqlws: connection closed with code %d: %s", e.Code, e.Reason)
}

// OperationError is returned by Next when the server answers a subscription
// with an "error" message (validation failures, resolver errors). Payload is
// the raw list of GraphQL errors. The subscription is over afterwards.
type OperationError struct {
	Payload json.RawMessage
}

func (e *OperationError) Error() string {
	return "gqlws: operation failed: " + string(e.Payload)
}

// message is the envelope of both subprotocols. Field order fixes the bytes
// we send: {"id":...,"type":...,"payload":...}.
type message struct {
	ID      string          `json:"id,omitempty"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

type subscribePayload struct {
	Query     string         `json:"query"`
	Variables map[string]any `json:"variables,omitempty"`
}

// Client is one websocket connection. Its methods are safe for concurrent use.
type Client struct {
	conn        *websocket.Conn
	subprotocol string

	writeMu sync.Mutex // gorilla allows a single concurrent writer

	closing   chan struct{} // closed by Close; unblocks the reader's deliveries
	closeOnce sync.Once
	done      chan struct{} // closed when the reader exits

	mu          sync.Mutex
	nextID      uint64
	subs        map[string]*Subscription
	err         error // why the connection ended; set before done closes
	closeCode   int
	closeReason string
}

// Dial connects, negotiates subprotocol and completes the connection_init /
// connection_ack handshake with initPayload. ctx bounds the handshake only.
//
// If the server rejects the connection the error wraps a *CloseError carrying
// the close code; for graphql-ws it also quotes the connection_error payload.
func Dial(ctx context.Context, url string, subprotocol string, initPayload map[string]any) (*Client, error) {
	if subprotocol != SubprotocolGraphQLTransportWS && subprotocol != SubprotocolGraphQLWS {
		return nil, fmt.Errorf("gqlws: unsupported subprotocol %q", subprotocol)
	}

	dialer := websocket.Dialer{
		Subprotocols:    []string{subprotocol},
		ReadBufferSize:  1024,
		WriteBufferSize: 1024,
	}
	conn, resp, err := dialer.DialContext(ctx, url, nil)
	if err != nil {
		if resp != nil {
			return nil, fmt.Errorf("gqlws: dial %s: HTTP %s: %w", url, resp.Status, err)
		}
		return nil, fmt.Errorf("gqlws: dial %s: %w", url, err)
	}
	if got := conn.Subprotocol(); got != subprotocol {
		_ = conn.Close()
		return nil, fmt.Errorf("gqlws: server negotiated subprotocol %q, want %q", got, subprotocol)
	}

	c := &Client{
		conn:        conn,
		subprotocol: subprotocol,
		closing:     make(chan struct{}),
		done:        make(chan struct{}),
		subs:        make(map[string]*Subscription),
	}
	if err := c.handshake(ctx, initPayload); err != nil {
		_ = conn.Close()
		return nil, err
	}

	go c.readLoop()
	return c, nil
}

func (c *Client) handshake(ctx context.Context, initPayload map[string]any) error {
	// Closing the socket is the only way to interrupt a blocked gorilla read.
	stop := context.AfterFunc(ctx, func() { _ = c.conn.Close() })
	err := c.awaitAck(ctx, initPayload)
	if !stop() && err == nil {
		// ctx expired just as the ack arrived and the socket is being closed.
		return fmt.Errorf("gqlws: handshake: %w", ctx.Err())
	}
	return err
}

func (c *Client) awaitAck(ctx context.Context, initPayload map[string]any) error {
	init := message{Type: "connection_init"}
	if initPayload != nil {
		b, err := json.Marshal(initPayload)
		if err != nil {
			return fmt.Errorf("gqlws: encode init payload: %w", err)
		}
		init.Payload = b
	}
	if err := c.write(ctx, init); err != nil {
		return ctxErrOr(ctx, err)
	}

	var connectionError json.RawMessage
	for {
		_, data, err := c.conn.ReadMessage()
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("gqlws: waiting for connection_ack: %w", ctx.Err())
			}
			err = closeErrorFrom(err)
			if connectionError != nil {
				return fmt.Errorf("gqlws: connection rejected: %s: %w", connectionError, err)
			}
			return fmt.Errorf("gqlws: connection rejected: %w", err)
		}
		var m message
		if err := json.Unmarshal(data, &m); err != nil {
			return fmt.Errorf("gqlws: decode %q: %w", data, err)
		}
		switch m.Type {
		case "connection_ack":
			return nil
		case "connection_error":
			// gqlgen follows this with the close frame that carries the code.
			connectionError = m.Payload
		case "ping":
			if err := c.write(ctx, message{Type: "pong", Payload: m.Payload}); err != nil {
				return ctxErrOr(ctx, err)
			}
		case "ka", "pong":
		default:
			return fmt.Errorf("gqlws: unexpected %q before connection_ack", m.Type)
		}
	}
}

func ctxErrOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("gqlws: handshake: %w", ctx.Err())
	}
	return err
}

// closeErrorFrom turns gorilla's close errors into *CloseError; gorilla
// reports a dropped socket as a 1006 CloseError too.
func closeErrorFrom(err error) error {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return &CloseError{Code: ce.Code, Reason: ce.Text}
	}
	return &CloseError{Code: websocket.CloseAbnormalClosure, Reason: err.Error()}
}

// write sends one message. The deadline comes from ctx when it has one so a
// server that stopped reading cannot block the caller forever.
func (c *Client) write(ctx context.Context, m message) error {
	data, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("gqlws: encode %s: %w", m.Type, err)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(defaultWriteTimeout)
	}

	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = c.conn.SetWriteDeadline(deadline)
	if err := c.conn.WriteMessage(websocket.TextMessage, data); err != nil {
		return fmt.Errorf("gqlws: write %s: %w", m.Type, err)
	}
	return nil
}

func (c *Client) readLoop() {
	var err error
	for {
		var data []byte
		_, data, err = c.conn.ReadMessage()
		if err != nil {
			break
		}
		var m message
		if json.Unmarshal(data, &m) != nil {
			// A server speaking garbage is a protocol error; stop like a
			// browser client would rather than guessing.
			err = &CloseError{Code: websocket.CloseProtocolError, Reason: fmt.Sprintf("undecodable message %q", data)}
			break
		}
		c.dispatch(m)
	}
	c.finish(err)
}

func (c *Client) dispatch(m message) {
	switch m.Type {
	case "next", "data":
		if sub := c.lookup(m.ID); sub != nil {
			c.deliver(sub, event{payload: m.Payload})
		}
	case "error":
		if sub := c.remove(m.ID); sub != nil {
			c.deliver(sub, event{err: &OperationError{Payload: m.Payload}})
			sub.end(io.EOF)
		}
	case "complete":
		if sub := c.remove(m.ID); sub != nil {
			sub.end(io.EOF)
		}
	case "ping":
		// graphql-transport-ws requires a pong; echo the payload like gqlgen.
		_ = c.write(context.Background(), message{Type: "pong", Payload: m.Payload})
	}
	// "ka" (graphql-ws keep-alive), "pong", a repeated "connection_ack" and
	// unknown types carry nothing for subscribers.
}

// deliver blocks while the subscription's buffer is full so no event is
// dropped, but gives up when the subscription or the client goes away.
func (c *Client) deliver(sub *Subscription, ev event) {
	select {
	case sub.events <- ev:
	case <-sub.stopped:
	case <-c.closing:
	}
}

// finish records why the connection ended and ends every subscription.
func (c *Client) finish(readErr error) {
	_ = c.conn.Close()

	var termErr error
	select {
	case <-c.closing:
		termErr = ErrClosed
	default:
		termErr = closeErrorFrom(readErr)
	}

	c.mu.Lock()
	var ce *websocket.CloseError
	// 1006 is synthesised by gorilla, never sent by the server.
	if errors.As(readErr, &ce) && ce.Code != websocket.CloseAbnormalClosure {
		c.closeCode, c.closeReason = ce.Code, ce.Text
	}
	c.err = termErr
	subs := c.subs
	c.subs = nil
	c.mu.Unlock()

	for _, sub := range subs {
		sub.end(termErr)
	}
	close(c.done)
}

func (c *Client) lookup(id string) *Subscription {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.subs[id]
}

func (c *Client) remove(id string) *Subscription {
	c.mu.Lock()
	defer c.mu.Unlock()
	sub := c.subs[id]
	delete(c.subs, id)
	return sub
}

// Subprotocol returns the negotiated subprotocol.
func (c *Client) Subprotocol() string {
	return c.subprotocol
}

// Done is closed when the connection has ended, whoever closed it.
func (c *Client) Done() <-chan struct{} {
	return c.done
}

// CloseCode returns the code and reason of the close frame the server sent,
// or 0 and "" if the connection is still open or ended without one.
func (c *Client) CloseCode() (int, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeCode, c.closeReason
}

// Err returns why the connection ended (a *CloseError or ErrClosed), or nil
// while it is open.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close sends a normal close frame, waits briefly for the server's answer and
// releases the socket; the reader goroutine has exited when it returns. It is
// safe to call more than once and after the server closed the connection.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		close(c.closing)
		select {
		case <-c.done:
			return
		default:
		}
		werr := c.conn.WriteControl(websocket.CloseMessage,
			websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""),
			time.Now().Add(closeWait))
		// ErrCloseSent and net.ErrClosed mean the connection was already
		// ending on its own; there is nothing left to report.
		if werr != nil && !errors.Is(werr, websocket.ErrCloseSent) && !errors.Is(werr, net.ErrClosed) {
			err = fmt.Errorf("gqlws: write close frame: %w", werr)
		}
		select {
		case <-c.done:
		case <-time.After(closeWait):
		}
		// Unblocks the reader if the server never answered.
		_ = c.conn.Close()
		<-c.done
	})
	return err
}

// Subscribe starts an operation. ctx bounds sending it; use Next's ctx to
// bound waiting for results.
func (c *Client) Subscribe(ctx context.Context, query string, variables map[string]any) (*Subscription, error) {
	// A write that times out breaks the whole connection in gorilla, so don't
	// start one with an already expired ctx.
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("gqlws: subscribe: %w", err)
	}
	payload, err := json.Marshal(subscribePayload{Query: query, Variables: variables})
	if err != nil {
		return nil, fmt.Errorf("gqlws: encode subscription: %w", err)
	}

	c.mu.Lock()
	if c.subs == nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.nextID++
	sub := &Subscription{
		id:      strconv.FormatUint(c.nextID, 10),
		client:  c,
		events:  make(chan event, subscriptionBuffer),
		stopped: make(chan struct{}),
	}
	// Registered before sending so an immediate answer is not lost.
	c.subs[sub.id] = sub
	c.mu.Unlock()

	start := "subscribe"
	if c.subprotocol == SubprotocolGraphQLWS {
		start = "start"
	}
	if err := c.write(ctx, message{ID: sub.id, Type: start, Payload: payload}); err != nil {
		c.remove(sub.id)
		return nil, err
	}
	return sub, nil
}

type event struct {
	payload json.RawMessage
	err     error
}

// Subscription is one operation on a Client.
type Subscription struct {
	id     string
	client *Client

	// events is written and closed only by the client's reader goroutine.
	events chan event
	endErr error // set before events is closed

	stopped  chan struct{}
	stopOnce sync.Once
}

// ID returns the operation id used on the wire.
func (s *Subscription) ID() string {
	return s.id
}

func (s *Subscription) end(err error) {
	s.endErr = err
	close(s.events)
}

// Next returns the next result's payload, {"data":...,"errors":...}. It
// returns io.EOF after the server completed the operation or after Stop, an
// *OperationError when the server sent "error", and a *CloseError (or
// ErrClosed) when the connection ended; results received before the end are
// returned first.
func (s *Subscription) Next(ctx context.Context) (json.RawMessage, error) {
	select {
	case <-s.stopped:
		return nil, io.EOF
	default:
	}
	select {
	case ev, ok := <-s.events:
		if !ok {
			return nil, s.endErr
		}
		return ev.payload, ev.err
	case <-s.stopped:
		return nil, io.EOF
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Stop ends the operation: it sends "complete" (graphql-transport-ws) or
// "stop" (graphql-ws) unless the server already finished it. Results still
// buffered are discarded.
func (s *Subscription) Stop() {
	s.stopOnce.Do(func() {
		close(s.stopped)
		if s.client.remove(s.id) == nil {
			return // already completed, failed or disconnected
		}
		stop := "complete"
		if s.client.subprotocol == SubprotocolGraphQLWS {
			stop = "stop"
		}
		// Best effort: if the write fails the connection is gone and the
		// server drops the operation anyway.
		_ = s.client.write(context.Background(), message{ID: s.id, Type: stop})
	})
}
