package gqlws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// fakeServer speaks just enough of both subprotocols, driven by the "mode"
// field of the init payload:
//
//	"reject": refuse the connection with close 4403 (graphql-ws also sends
//	          connection_error first, like gqlgen).
//	"echo":   answer each subscription with two results echoing the query and
//	          variables, then complete.
//	"hold":   answer with one result and wait for the client to stop it.
//	"kick":   answer with one result, then close with 4401 "token expired".
//	"flood":  answer with 500 results and never complete.
type fakeServer struct {
	url      string
	received chan string // every text message the client sent, verbatim
	closed   chan int    // close code the client sent
}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	fs := &fakeServer{received: make(chan string, 1024), closed: make(chan int, 1)}
	upgrader := websocket.Upgrader{Subprotocols: []string{SubprotocolGraphQLTransportWS, SubprotocolGraphQLWS}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		fs.serve(conn)
	}))
	t.Cleanup(srv.Close)
	fs.url = "ws" + strings.TrimPrefix(srv.URL, "http")
	return fs
}

func (fs *fakeServer) serve(conn *websocket.Conn) {
	legacy := conn.Subprotocol() == SubprotocolGraphQLWS
	send := func(s string) { _ = conn.WriteMessage(websocket.TextMessage, []byte(s)) }
	closeWith := func(code int, reason string) {
		_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(code, reason), time.Now().Add(time.Second))
		// Let the client answer before dropping the socket.
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		_, _, _ = conn.ReadMessage()
	}
	resultType := "next"
	if legacy {
		resultType = "data"
	}
	result := func(id, payload string) {
		send(fmt.Sprintf(`{"id":%q,"type":%q,"payload":%s}`, id, resultType, payload))
	}

	var mode string
	for {
		_, data, err := conn.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				fs.closed <- ce.Code
			}
			return
		}
		fs.received <- string(data)
		var m message
		_ = json.Unmarshal(data, &m)

		switch m.Type {
		case "connection_init":
			var p struct{ Mode string }
			_ = json.Unmarshal(m.Payload, &p)
			mode = p.Mode
			if mode == "reject" {
				if legacy {
					send(`{"type":"connection_error","payload":{"message":"forbidden"}}`)
				}
				closeWith(4403, "forbidden")
				return
			}
			if legacy {
				send(`{"type":"ka"}`) // before the ack: must be skipped
				send(`{"type":"connection_ack"}`)
				send(`{"type":"ka"}`)
			} else {
				send(`{"type":"connection_ack"}`)
				send(`{"type":"ping","payload":{"n":1}}`)
			}
		case "subscribe", "start":
			switch mode {
			case "echo":
				result(m.ID, `{"data":{"echo":`+string(m.Payload)+`}}`)
				if legacy {
					send(`{"type":"ka"}`)
				}
				result(m.ID, `{"data":null,"errors":[{"message":"partial"}]}`)
				send(`{"id":"` + m.ID + `","type":"complete"}`)
			case "hold":
				result(m.ID, `{"data":{"n":1}}`)
			case "kick":
				result(m.ID, `{"data":{"n":1}}`)
				closeWith(4401, "token expired")
				return
			case "flood":
				for range 500 {
					result(m.ID, `{"data":{"n":1}}`)
				}
			}
		}
	}
}

func (fs *fakeServer) nextReceived(t *testing.T) string {
	t.Helper()
	select {
	case s := <-fs.received:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("server received nothing")
		return ""
	}
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dialT(t *testing.T, url, subprotocol string, payload map[string]any) *Client {
	t.Helper()
	c, err := Dial(testCtx(t), url, subprotocol, payload)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

var protocols = []string{SubprotocolGraphQLTransportWS, SubprotocolGraphQLWS}

func TestSubscribeEcho(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			ctx := testCtx(t)
			fs := newFakeServer(t)
			c := dialT(t, fs.url, proto, map[string]any{"mode": "echo"})
			if got := fs.nextReceived(t); got != `{"type":"connection_init","payload":{"mode":"echo"}}` {
				t.Fatalf("connection_init bytes = %s", got)
			}
			if proto == SubprotocolGraphQLTransportWS {
				if got := fs.nextReceived(t); got != `{"type":"pong","payload":{"n":1}}` {
					t.Fatalf("reply to ping = %s", got)
				}
			}

			sub, err := c.Subscribe(ctx, "subscription { echo }", map[string]any{"a": 1})
			if err != nil {
				t.Fatalf("Subscribe: %v", err)
			}
			start := "subscribe"
			if proto == SubprotocolGraphQLWS {
				start = "start"
			}
			want := `{"id":"1","type":"` + start + `","payload":{"query":"subscription { echo }","variables":{"a":1}}}`
			if got := fs.nextReceived(t); got != want {
				t.Fatalf("subscribe bytes\n got %s\nwant %s", got, want)
			}

			first, err := sub.Next(ctx)
			if err != nil {
				t.Fatalf("first Next: %v", err)
			}
			if want := `{"data":{"echo":{"query":"subscription { echo }","variables":{"a":1}}}}`; string(first) != want {
				t.Fatalf("first payload = %s, want %s", first, want)
			}
			second, err := sub.Next(ctx)
			if err != nil || string(second) != `{"data":null,"errors":[{"message":"partial"}]}` {
				t.Fatalf("second Next = %s, %v", second, err)
			}
			if _, err := sub.Next(ctx); err != io.EOF {
				t.Fatalf("Next after complete = %v, want io.EOF", err)
			}
			if _, err := sub.Next(ctx); err != io.EOF {
				t.Fatalf("Next stays io.EOF, got %v", err)
			}
		})
	}
}

func TestDialRejected(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			fs := newFakeServer(t)
			c, err := Dial(testCtx(t), fs.url, proto, map[string]any{"mode": "reject"})
			if err == nil {
				_ = c.Close()
				t.Fatal("Dial succeeded, want rejection")
			}
			var ce *CloseError
			if !errors.As(err, &ce) || ce.Code != 4403 || ce.Reason != "forbidden" {
				t.Fatalf("Dial error = %v, want CloseError 4403 forbidden", err)
			}
			if proto == SubprotocolGraphQLWS && !strings.Contains(err.Error(), `"message":"forbidden"`) {
				t.Fatalf("graphql-ws error should quote connection_error: %v", err)
			}
		})
	}
}

func TestServerClosesDuringSubscription(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			ctx := testCtx(t)
			fs := newFakeServer(t)
			c := dialT(t, fs.url, proto, map[string]any{"mode": "kick"})
			sub, err := c.Subscribe(ctx, "subscription { n }", nil)
			if err != nil {
				t.Fatal(err)
			}
			// The result sent before the close must not be lost.
			if got, err := sub.Next(ctx); err != nil || string(got) != `{"data":{"n":1}}` {
				t.Fatalf("Next = %s, %v", got, err)
			}
			_, err = sub.Next(ctx)
			var ce *CloseError
			if !errors.As(err, &ce) || ce.Code != 4401 || ce.Reason != "token expired" {
				t.Fatalf("Next = %v, want CloseError 4401", err)
			}
			select {
			case <-c.Done():
			case <-ctx.Done():
				t.Fatal("Done not closed")
			}
			if code, reason := c.CloseCode(); code != 4401 || reason != "token expired" {
				t.Fatalf("CloseCode = %d %q", code, reason)
			}
			if _, err := c.Subscribe(ctx, "subscription { n }", nil); !errors.As(err, &ce) {
				t.Fatalf("Subscribe after close = %v, want CloseError", err)
			}
		})
	}
}

func TestStop(t *testing.T) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			ctx := testCtx(t)
			fs := newFakeServer(t)
			c := dialT(t, fs.url, proto, map[string]any{"mode": "hold"})
			sub, err := c.Subscribe(ctx, "subscription { n }", nil)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := sub.Next(ctx); err != nil {
				t.Fatal(err)
			}
			sub.Stop()
			sub.Stop() // idempotent

			want := `{"id":"1","type":"complete"}`
			if proto == SubprotocolGraphQLWS {
				want = `{"id":"1","type":"stop"}`
			}
			for {
				got := fs.nextReceived(t)
				if strings.Contains(got, `"subscribe"`) || strings.Contains(got, `"start"`) ||
					strings.Contains(got, "connection_init") || strings.Contains(got, "pong") {
					continue
				}
				if got != want {
					t.Fatalf("stop bytes = %s, want %s", got, want)
				}
				break
			}
			if _, err := sub.Next(ctx); err != io.EOF {
				t.Fatalf("Next after Stop = %v, want io.EOF", err)
			}
		})
	}
}

func TestCloseSendsNormalClosure(t *testing.T) {
	ctx := testCtx(t)
	fs := newFakeServer(t)
	c, err := Dial(ctx, fs.url, SubprotocolGraphQLTransportWS, map[string]any{"mode": "hold"})
	if err != nil {
		t.Fatal(err)
	}
	sub, err := c.Subscribe(ctx, "subscription { n }", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	select {
	case code := <-fs.closed:
		if code != websocket.CloseNormalClosure {
			t.Fatalf("server saw close %d, want 1000", code)
		}
	case <-ctx.Done():
		t.Fatal("server never saw a close frame")
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Done must be closed when Close returns")
	}
	// Drain the result that may have arrived before Close.
	for {
		_, err := sub.Next(ctx)
		if err == nil {
			continue
		}
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("Next after Close = %v, want ErrClosed", err)
		}
		break
	}
	if _, err := c.Subscribe(ctx, "subscription { n }", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Subscribe after Close = %v, want ErrClosed", err)
	}
}

func TestCloseWithUnreadSubscription(t *testing.T) {
	// The reader is blocked on a full subscription buffer; Close must still
	// stop it.
	ctx := testCtx(t)
	fs := newFakeServer(t)
	c, err := Dial(ctx, fs.url, SubprotocolGraphQLTransportWS, map[string]any{"mode": "flood"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Subscribe(ctx, "subscription { n }", nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // let the buffer fill
	done := make(chan struct{})
	go func() {
		_ = c.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked behind an unread subscription")
	}
}

func TestNextHonoursContext(t *testing.T) {
	fs := newFakeServer(t)
	c := dialT(t, fs.url, SubprotocolGraphQLWS, map[string]any{"mode": "hold"})
	sub, err := c.Subscribe(testCtx(t), "subscription { n }", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Next(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := sub.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next = %v, want deadline exceeded", err)
	}
}

func TestDialHandshakeTimeout(t *testing.T) {
	// A server that upgrades but never acks.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := websocket.Upgrader{Subprotocols: protocols}
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		for {
			if _, _, err := conn.ReadMessage(); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http"), SubprotocolGraphQLTransportWS, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial = %v, want deadline exceeded", err)
	}
}

func TestDialRejectsUnknownSubprotocol(t *testing.T) {
	if _, err := Dial(context.Background(), "ws://127.0.0.1:1", "mqtt", nil); err == nil {
		t.Fatal("want error")
	}
}
