// Package wsgorilla serves GraphQL over websockets with
// github.com/gorilla/websocket: Server is the lean graphql-transport-ws
// endpoint the app's subscriptions use (server.go), and Implementation the
// adapter that lets gqlgen's own websocket transport (the legacy
// graphql-ws subprotocol) run on gorilla instead of coder/websocket.
//
// gqlgen dropped its own gorilla adapter in v0.17.92; this package restores it
// behind transport.WebsocketImplementation with the semantics of gqlgen's
// coder adapter (websocket_coderws.go): a clean peer close surfaces as
// transport.ErrWebsocketClosed, WriteClose never stalls gqlgen's teardown, and
// read limits and read deadlines are enforced.
//
// Memory per connection is dominated by the read buffer and the write buffer.
// Callers building their own Upgrader should set ReadBufferSize and
// WriteBufferSize (1 KiB is plenty for GraphQL operations, larger messages
// simply take several reads/frames) and a WriteBufferPool, so that idle
// subscriptions hold no write buffer at all. New returns such a configuration.
package wsgorilla

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"
)

// DefaultWriteTimeout bounds every write when Implementation.WriteTimeout is
// zero.
const DefaultWriteTimeout = 10 * time.Second

const (
	// closeGracePeriod is how long the underlying connection stays open after
	// our close frame so the peer can read it and answer. Closing a TCP socket
	// with unread input makes the kernel send RST, which can destroy the close
	// frame in flight before the client reads it.
	closeGracePeriod = time.Second

	// closeWriteTimeout caps the close frame write: gqlgen calls WriteClose
	// while holding its per-connection mutex, so a slow peer must not keep
	// every other goroutine of that connection waiting for a full WriteTimeout.
	closeWriteTimeout = time.Second

	// maxCloseReasonBytes is the control frame limit (125) minus the 2-byte
	// status code.
	maxCloseReasonBytes = 123

	// bufferSize keeps per-connection memory small; GraphQL messages larger
	// than this are still fine, they just take more than one syscall.
	bufferSize = 1024

	subprotocolGraphQLTransportWS = "graphql-transport-ws"
	subprotocolGraphQLWS          = "graphql-ws"
)

// writeBufferPool is shared by every connection created through New. gorilla
// requires one pool per distinct WriteBufferSize, so it must only be used with
// bufferSize.
var writeBufferPool = &sync.Pool{}

// Implementation accepts gqlgen websocket connections with gorilla/websocket.
//
// The zero value works but gives every connection gorilla's default buffers
// (4 KiB each, reusing net/http's) and same-origin checking; prefer New.
type Implementation struct {
	// Upgrader is copied for every Accept; its Subprotocols are merged with
	// the ones gqlgen offers.
	Upgrader websocket.Upgrader
	// WriteTimeout bounds each message write so a peer that stops reading
	// cannot block gqlgen forever. Zero means DefaultWriteTimeout.
	WriteTimeout time.Duration
}

var _ transport.WebsocketImplementation = Implementation{}

// New returns an Implementation tuned for many mostly idle subscriptions:
// 1 KiB read and write buffers, a shared write buffer pool, no compression,
// graphql-transport-ws preferred over the legacy graphql-ws when a client
// offers both, and DefaultWriteTimeout.
//
// CheckOrigin allows every origin. Browsers send cookies on cross-site
// websocket handshakes, so origin checks matter for cookie-authenticated
// endpoints; this API authenticates with a bearer token carried in the
// connection_init payload, which a foreign page cannot read or forge, so a
// cross-site socket gains nothing. Replace CheckOrigin if the endpoint ever
// accepts cookie credentials.
func New() Implementation {
	return Implementation{
		Upgrader: websocket.Upgrader{
			HandshakeTimeout:  DefaultWriteTimeout,
			ReadBufferSize:    bufferSize,
			WriteBufferSize:   bufferSize,
			WriteBufferPool:   writeBufferPool,
			Subprotocols:      []string{subprotocolGraphQLTransportWS, subprotocolGraphQLWS},
			CheckOrigin:       func(*http.Request) bool { return true },
			EnableCompression: false,
		},
		WriteTimeout: DefaultWriteTimeout,
	}
}

// Accept upgrades the request. On failure gorilla has already written an HTTP
// error response.
func (i Implementation) Accept(
	w http.ResponseWriter,
	r *http.Request,
	options transport.WebsocketAcceptOptions,
) (transport.WebsocketConn, error) {
	upgrader := i.Upgrader
	// Clone so concurrent Accepts never append into a shared backing array.
	upgrader.Subprotocols = slices.Clone(i.Upgrader.Subprotocols)
	for _, p := range options.Subprotocols {
		if !slices.Contains(upgrader.Subprotocols, p) {
			upgrader.Subprotocols = append(upgrader.Subprotocols, p)
		}
	}

	ws, err := upgrader.Upgrade(w, r, options.ResponseHeader.Clone())
	if err != nil {
		return nil, fmt.Errorf("wsgorilla: upgrade: %w", err)
	}

	timeout := i.WriteTimeout
	if timeout <= 0 {
		timeout = DefaultWriteTimeout
	}
	return &conn{ws: ws, writeTimeout: timeout, closer: CloserFrom(r.Context())}, nil
}

type conn struct {
	ws           *websocket.Conn
	writeTimeout time.Duration
	closer       *Closer // nil unless the handler installed one

	// writeMu serialises data frames: gorilla supports a single concurrent
	// writer and its write deadline is a plain field shared by all writes.
	writeMu sync.Mutex

	mu         sync.Mutex
	closeSent  bool // WriteClose has run; the close timer or reader now owns the socket
	peerClosed bool // a close frame arrived from the peer; gorilla already answered it
	closed     bool
	closeTimer *time.Timer
}

var (
	_ transport.WebsocketConn          = (*conn)(nil)
	_ transport.WebsocketReadLimiter   = (*conn)(nil)
	_ transport.WebsocketReadDeadliner = (*conn)(nil)
)

// NextReader returns gorilla's errors unwrapped so that gqlgen's ErrorFunc can
// use websocket.IsCloseError and friends, which rely on type assertions.
func (c *conn) NextReader() (int, io.Reader, error) {
	messageType, r, err := c.ws.NextReader()
	if err == nil {
		return messageType, r, nil
	}

	var closeErr *websocket.CloseError
	// gorilla reports a vanished peer as a synthetic 1006 CloseError; only a
	// real close frame means the peer is done sending.
	gotCloseFrame := errors.As(err, &closeErr) && closeErr.Code != websocket.CloseAbnormalClosure

	c.mu.Lock()
	if gotCloseFrame {
		c.peerClosed = true
	}
	handshakeDone := c.closeSent && gotCloseFrame
	c.mu.Unlock()
	if handshakeDone {
		_ = c.closeNow()
	}

	if gotCloseFrame && (closeErr.Code == websocket.CloseNormalClosure ||
		closeErr.Code == websocket.CloseNoStatusReceived) {
		return messageType, nil, transport.ErrWebsocketClosed
	}
	return messageType, nil, err
}

func (c *conn) WriteJSON(v any) error {
	// Encode outside the lock so a large payload doesn't hold up other writers.
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("wsgorilla: encode message: %w", err)
	}

	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = c.ws.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	if err := c.ws.WriteMessage(websocket.TextMessage, data); err != nil {
		return fmt.Errorf("wsgorilla: write message: %w", err)
	}
	return nil
}

// WriteClose sends the close frame and schedules the socket close instead of
// waiting for the peer's answer, mirroring gqlgen's coder adapter: gqlgen calls
// it with its connection mutex held and before running CloseFunc.
func (c *conn) WriteClose(closeCode int, message string) error {
	if closeCode == websocket.CloseNormalClosure {
		if code, reason, ok := c.closer.override(); ok {
			closeCode, message = code, reason
		}
	}
	c.mu.Lock()
	if c.closeSent || c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closeSent = true
	peerClosed := c.peerClosed
	c.mu.Unlock()

	if peerClosed {
		// gorilla echoed the peer's close frame already; the handshake is over.
		_ = c.closeNow()
		return nil
	}

	deadline := time.Now().Add(min(c.writeTimeout, closeWriteTimeout))
	payload := websocket.FormatCloseMessage(closeCode, truncateReason(message))
	err := c.ws.WriteControl(websocket.CloseMessage, payload, deadline)

	c.mu.Lock()
	if !c.closed {
		c.closeTimer = time.AfterFunc(closeGracePeriod, func() { _ = c.closeNow() })
	}
	c.mu.Unlock()

	// ErrCloseSent means gorilla closed first itself (read limit, protocol
	// error); the peer already has a close frame.
	if err != nil && !errors.Is(err, websocket.ErrCloseSent) {
		return fmt.Errorf("wsgorilla: write close frame: %w", err)
	}
	return nil
}

// Close closes the socket immediately unless WriteClose started a close
// handshake, which then owns the socket: closing now could reset the
// connection before the peer reads the close frame.
func (c *conn) Close() error {
	c.mu.Lock()
	handshake := c.closeSent
	c.mu.Unlock()
	if handshake {
		return nil
	}
	return c.closeNow()
}

func (c *conn) closeNow() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	if c.closeTimer != nil {
		c.closeTimer.Stop()
		c.closeTimer = nil
	}
	c.mu.Unlock()

	if err := c.ws.Close(); err != nil {
		return fmt.Errorf("wsgorilla: close: %w", err)
	}
	return nil
}

func (c *conn) Subprotocol() string {
	return c.ws.Subprotocol()
}

// SetReadLimit makes gorilla answer an oversized message with close code 1009
// and fail the read with websocket.ErrReadLimit.
func (c *conn) SetReadLimit(limit int64) {
	c.ws.SetReadLimit(limit)
}

// SetReadDeadline is how gqlgen detects a missing pong. A timed-out read
// leaves gorilla's reader unusable, which is fine: gqlgen closes the
// connection after it.
func (c *conn) SetReadDeadline(t time.Time) error {
	if err := c.ws.SetReadDeadline(t); err != nil {
		return fmt.Errorf("wsgorilla: set read deadline: %w", err)
	}
	return nil
}

// truncateReason keeps the reason within the control frame limit without
// splitting a UTF-8 sequence; peers fail the connection on an invalid reason.
func truncateReason(reason string) string {
	if len(reason) <= maxCloseReasonBytes {
		return reason
	}
	cut := maxCloseReasonBytes
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut]
}
