package wsgorilla

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/gqlerror"
)

var gqlgenSubprotocols = []string{subprotocolGraphQLWS, subprotocolGraphQLTransportWS}

// serve runs handle on an accepted connection in a real HTTP server and
// returns the ws:// URL.
func serve(t *testing.T, impl transport.WebsocketImplementation, handle func(transport.WebsocketConn)) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := impl.Accept(w, r, transport.WebsocketAcceptOptions{
			ResponseHeader: http.Header{"X-Adapter": {"wsgorilla"}},
			Subprotocols:   gqlgenSubprotocols,
		})
		if err != nil {
			t.Errorf("accept: %v", err)
			return
		}
		handle(c)
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

func dial(t *testing.T, url string, subprotocols ...string) (*websocket.Conn, *http.Response) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: subprotocols, HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	return c, resp
}

func closeGracefully(c transport.WebsocketConn) {
	_ = c.WriteClose(websocket.CloseNormalClosure, "bye")
	_ = c.Close()
}

func TestSubprotocolNegotiation(t *testing.T) {
	tests := []struct {
		name    string
		impl    Implementation
		offered []string
		want    string
	}{
		{"transport-ws", New(), []string{"graphql-transport-ws"}, "graphql-transport-ws"},
		{"legacy graphql-ws", New(), []string{"graphql-ws"}, "graphql-ws"},
		{"both prefers transport-ws", New(), []string{"graphql-ws", "graphql-transport-ws"}, "graphql-transport-ws"},
		{"zero upgrader uses gqlgen list", Implementation{}, []string{"graphql-transport-ws"}, "graphql-transport-ws"},
		{"unknown protocol", New(), []string{"mqtt"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan string, 1)
			url := serve(t, tt.impl, func(c transport.WebsocketConn) {
				got <- c.Subprotocol()
				closeGracefully(c)
			})
			client, resp := dial(t, url, tt.offered...)
			if p := client.Subprotocol(); p != tt.want {
				t.Errorf("client negotiated %q, want %q", p, tt.want)
			}
			if p := <-got; p != tt.want {
				t.Errorf("server negotiated %q, want %q", p, tt.want)
			}
			if h := resp.Header.Get("X-Adapter"); h != "wsgorilla" {
				t.Errorf("response header X-Adapter = %q, want copied from options", h)
			}
		})
	}
}

func TestAcceptDoesNotMutateUpgrader(t *testing.T) {
	impl := New()
	impl.Upgrader.Subprotocols = make([]string, 1, 8)
	impl.Upgrader.Subprotocols[0] = "custom"
	url := serve(t, impl, closeGracefully)
	dial(t, url, "graphql-ws")
	if got := impl.Upgrader.Subprotocols[:cap(impl.Upgrader.Subprotocols)][1]; got != "" {
		t.Fatalf("Accept appended %q into the caller's backing array", got)
	}
}

func TestPeerCloseMapsToErrWebsocketClosed(t *testing.T) {
	tests := []struct {
		name          string
		payload       []byte
		wantErrClosed bool
	}{
		{"normal 1000", websocket.FormatCloseMessage(websocket.CloseNormalClosure, "done"), true},
		{"no status 1005", []byte{}, true},
		{"going away 1001", websocket.FormatCloseMessage(websocket.CloseGoingAway, ""), false},
		{"application 4000", websocket.FormatCloseMessage(4000, "app"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			readErr := make(chan error, 1)
			url := serve(t, New(), func(c transport.WebsocketConn) {
				_, _, err := c.NextReader()
				readErr <- err
				closeGracefully(c)
			})
			client, _ := dial(t, url, "graphql-transport-ws")
			if err := client.WriteControl(websocket.CloseMessage, tt.payload, time.Now().Add(time.Second)); err != nil {
				t.Fatalf("write close: %v", err)
			}
			err := <-readErr
			if got := errors.Is(err, transport.ErrWebsocketClosed); got != tt.wantErrClosed {
				t.Fatalf("NextReader error %v: ErrWebsocketClosed=%v, want %v", err, got, tt.wantErrClosed)
			}
			if !tt.wantErrClosed && !websocket.IsCloseError(err, 1001, 4000) {
				t.Fatalf("NextReader error %#v should stay a *websocket.CloseError", err)
			}
			// gorilla echoes the close frame; the client must see the handshake finish.
			if _, _, err := client.ReadMessage(); !errors.As(err, new(*websocket.CloseError)) {
				t.Fatalf("client read after close: %v, want close frame", err)
			}
		})
	}
}

func TestReadLimitClosesWith1009(t *testing.T) {
	readErr := make(chan error, 1)
	url := serve(t, New(), func(c transport.WebsocketConn) {
		c.(transport.WebsocketReadLimiter).SetReadLimit(64)
		_, r, err := c.NextReader()
		if err == nil {
			_, err = io.ReadAll(r)
		}
		readErr <- err
		// What gqlgen does after a read error.
		closeGracefully(c)
	})
	client, _ := dial(t, url, "graphql-transport-ws")

	if err := client.WriteMessage(websocket.TextMessage, []byte(strings.Repeat("x", 1024))); err != nil {
		t.Fatalf("write: %v", err)
	}
	if err := <-readErr; !errors.Is(err, websocket.ErrReadLimit) {
		t.Fatalf("server read error = %v, want ErrReadLimit", err)
	}
	_, _, err := client.ReadMessage()
	if !websocket.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Fatalf("client read error = %v, want close 1009", err)
	}
}

func TestReadLimitAllowsMessagesWithinLimit(t *testing.T) {
	got := make(chan string, 1)
	url := serve(t, New(), func(c transport.WebsocketConn) {
		c.(transport.WebsocketReadLimiter).SetReadLimit(4096)
		_, r, err := c.NextReader()
		if err != nil {
			got <- err.Error()
			return
		}
		b, _ := io.ReadAll(r)
		got <- string(b)
		closeGracefully(c)
	})
	client, _ := dial(t, url, "graphql-transport-ws")
	// Larger than the 1 KiB read buffer, to prove small buffers don't cap messages.
	msg := strings.Repeat("y", 3000)
	if err := client.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	if g := <-got; g != msg {
		t.Fatalf("server read %d bytes, want %d", len(g), len(msg))
	}
}

func TestWriteCloseDeliversCodeAndReason(t *testing.T) {
	longReason := strings.Repeat("é", 100) // 200 bytes, must be cut on a rune boundary
	tests := []struct {
		name       string
		code       int
		reason     string
		wantReason string
	}{
		{"token expired", 4401, "token expired", "token expired"},
		{"truncated reason", 4403, longReason, longReason[:122]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			writeCloseTook := make(chan time.Duration, 1)
			url := serve(t, New(), func(c transport.WebsocketConn) {
				start := time.Now()
				if err := c.WriteClose(tt.code, tt.reason); err != nil {
					t.Errorf("WriteClose: %v", err)
				}
				_ = c.Close()
				writeCloseTook <- time.Since(start)
			})
			client, _ := dial(t, url, "graphql-transport-ws")

			_, _, err := client.ReadMessage()
			var ce *websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("client read error = %v, want close frame", err)
			}
			if ce.Code != tt.code || ce.Text != tt.wantReason {
				t.Fatalf("close = %d %q, want %d %q", ce.Code, ce.Text, tt.code, tt.wantReason)
			}
			if !utf8.ValidString(ce.Text) || len(ce.Text) > maxCloseReasonBytes {
				t.Fatalf("reason %q is not a valid close reason", ce.Text)
			}
			if d := <-writeCloseTook; d > 500*time.Millisecond {
				t.Fatalf("WriteClose+Close blocked for %v", d)
			}

			// Nobody on the server reads the client's reply, so the grace
			// timer has to release the socket.
			netConn := client.NetConn()
			_ = netConn.SetReadDeadline(time.Now().Add(closeGracePeriod + 3*time.Second))
			if _, err := netConn.Read(make([]byte, 1)); err == nil || isTimeout(err) {
				t.Fatalf("server did not close the socket after the grace period: %v", err)
			}
		})
	}
}

func isTimeout(err error) bool {
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}

func TestConcurrentWriteJSON(t *testing.T) {
	const writers, perWriter = 50, 20
	url := serve(t, New(), func(c transport.WebsocketConn) {
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range perWriter {
					msg := map[string]any{"writer": w, "seq": i, "pad": strings.Repeat("z", 700)}
					if err := c.WriteJSON(msg); err != nil {
						t.Errorf("WriteJSON: %v", err)
						return
					}
				}
			})
		}
		wg.Wait()
		closeGracefully(c)
	})
	client, _ := dial(t, url, "graphql-transport-ws")

	next := make([]int, writers)
	for range writers * perWriter {
		_, data, err := client.ReadMessage()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		var msg struct{ Writer, Seq int }
		if err := json.Unmarshal(data, &msg); err != nil {
			t.Fatalf("interleaved frame %q: %v", data, err)
		}
		if msg.Seq != next[msg.Writer] {
			t.Fatalf("writer %d: got seq %d, want %d", msg.Writer, msg.Seq, next[msg.Writer])
		}
		next[msg.Writer]++
	}
	if _, _, err := client.ReadMessage(); !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
		t.Fatalf("want normal close after all messages, got %v", err)
	}
}

func TestWriteTimeoutUnblocksStuckPeer(t *testing.T) {
	impl := New()
	impl.WriteTimeout = 200 * time.Millisecond
	writeErr := make(chan error, 1)
	url := serve(t, impl, func(c transport.WebsocketConn) {
		big := map[string]string{"pad": strings.Repeat("p", 1<<20)}
		for {
			if err := c.WriteJSON(big); err != nil {
				writeErr <- err
				_ = c.Close()
				return
			}
		}
	})
	dial(t, url, "graphql-transport-ws") // never reads

	select {
	case err := <-writeErr:
		if !isTimeout(err) {
			t.Fatalf("write error = %v, want timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("WriteJSON blocked on a peer that stopped reading")
	}
}

// The tests below run gqlgen's own websocket transport on the adapter with a
// fake executor, so they cover gqlgen's use of the interface without codegen.

type fakeExecutor struct{}

func (fakeExecutor) CreateOperationContext(_ context.Context, p *graphql.RawParams) (*graphql.OperationContext, gqlerror.List) {
	return &graphql.OperationContext{RawQuery: p.Query, Variables: p.Variables}, nil
}

func (fakeExecutor) DispatchOperation(ctx context.Context, _ *graphql.OperationContext) (graphql.ResponseHandler, context.Context) {
	n := 0
	return func(context.Context) *graphql.Response {
		if n == 2 {
			return nil
		}
		n++
		return &graphql.Response{Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))}
	}, ctx
}

func (fakeExecutor) DispatchError(_ context.Context, list gqlerror.List) *graphql.Response {
	return &graphql.Response{Errors: list}
}

func gqlgenServer(t *testing.T, ws transport.Websocket) string {
	t.Helper()
	ws.Implementation = New()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws.Do(w, r, fakeExecutor{})
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

func TestGqlgenTransportSubscription(t *testing.T) {
	closeCode := make(chan int, 1)
	url := gqlgenServer(t, transport.Websocket{
		CloseFunc: func(_ context.Context, code int) { closeCode <- code },
		ErrorFunc: func(_ context.Context, err error) { t.Errorf("gqlgen ErrorFunc: %v", err) },
	})
	client, _ := dial(t, url, "graphql-transport-ws")

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(client.WriteMessage(websocket.TextMessage, []byte(`{"type":"connection_init","payload":{"token":"t"}}`)))
	expect := func(want string) {
		t.Helper()
		_, data, err := client.ReadMessage()
		must(err)
		if string(data) != want {
			t.Fatalf("got %s, want %s", data, want)
		}
	}
	expect(`{"type":"connection_ack"}`)
	must(client.WriteMessage(websocket.TextMessage, []byte(`{"id":"1","type":"subscribe","payload":{"query":"subscription { n }"}}`)))
	expect(`{"payload":{"data":{"n":1}},"id":"1","type":"next"}`)
	expect(`{"payload":{"data":{"n":2}},"id":"1","type":"next"}`)
	expect(`{"id":"1","type":"complete"}`)

	// A clean client close must not reach ErrorFunc (ErrWebsocketClosed).
	must(client.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second)))
	select {
	case code := <-closeCode:
		if code != websocket.CloseNormalClosure {
			t.Fatalf("CloseFunc code = %d, want 1000", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("gqlgen never ran CloseFunc")
	}
}

func TestGqlgenInitFuncCloseCode(t *testing.T) {
	url := gqlgenServer(t, transport.Websocket{
		InitFunc: func(ctx context.Context, _ transport.InitPayload) (context.Context, *transport.InitPayload, error) {
			// gqlgen reads the close code and reason from the returned ctx,
			// which therefore must not be nil.
			ctx = transport.WithWebsocketCloseCode(ctx, 4401)
			ctx = transport.AppendCloseReason(ctx, "token expired")
			return ctx, nil, errors.New("unauthenticated")
		},
	})
	client, _ := dial(t, url, "graphql-transport-ws")
	if err := client.WriteMessage(websocket.TextMessage, []byte(`{"type":"connection_init"}`)); err != nil {
		t.Fatal(err)
	}
	_, data, err := client.ReadMessage()
	if !websocket.IsCloseError(err, 4401) {
		t.Fatalf("got message %s / error %v, want close 4401", data, err)
	}
	if ce := err.(*websocket.CloseError); ce.Text != "token expired" {
		t.Fatalf("close reason = %q", ce.Text)
	}
}
