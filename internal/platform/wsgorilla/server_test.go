package wsgorilla_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/gorilla/websocket"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/onemember/onemember/internal/platform/gqlws"
	"github.com/onemember/onemember/internal/platform/wsgorilla"
)

// feed is a Source the test fills: items are ints, rendered {"n":<item>}.
type feed struct {
	mu     sync.Mutex
	items  []int
	ended  bool
	closed chan struct{}
	ready  func()
}

func (f *feed) Next(context.Context) (any, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.items) == 0 {
		return nil, false
	}
	n := f.items[0]
	f.items = f.items[1:]
	return n, true
}

func (f *feed) Ended() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ended
}

func (f *feed) Close() { close(f.closed) }

func (f *feed) push(n ...int) {
	f.mu.Lock()
	f.items = append(f.items, n...)
	f.mu.Unlock()
	f.ready()
}

func (f *feed) end() {
	f.mu.Lock()
	f.ended = true
	f.mu.Unlock()
	f.ready()
}

// executor stands in for a generated schema. Query "push" is a
// subscription whose resolver attaches a feed (sent on feeds); "query" is a
// query answering {"q":1}; "stream" a subscription streaming 3 results
// through a goroutine; "invalid" fails validation.
type executor struct{ feeds chan *feed }

func (e executor) CreateOperationContext(_ context.Context, p *graphql.RawParams) (*graphql.OperationContext, gqlerror.List) {
	op := ast.Subscription
	switch p.Query {
	case "invalid":
		err := gqlerror.Errorf("cannot query field")
		errcode.Set(err, errcode.ValidationFailed)
		return nil, gqlerror.List{err}
	case "query":
		op = ast.Query
	}
	return &graphql.OperationContext{RawQuery: p.Query, Variables: p.Variables,
		Operation: &ast.OperationDefinition{Operation: op}}, nil
}

func (e executor) DispatchOperation(ctx context.Context, rc *graphql.OperationContext) (graphql.ResponseHandler, context.Context) {
	switch rc.RawQuery {
	case "query":
		return graphql.OneShot(&graphql.Response{Data: json.RawMessage(`{"q":1}`)}), ctx
	case "stream":
		n := 0
		return func(ctx context.Context) *graphql.Response {
			if n == 3 {
				return nil
			}
			n++
			return &graphql.Response{Data: json.RawMessage(fmt.Sprintf(`{"s":%d}`, n))}
		}, ctx
	}
	if item, ok := wsgorilla.Pushed(ctx); ok {
		return graphql.OneShot(&graphql.Response{Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, item))}), ctx
	}
	p := wsgorilla.PusherFrom(ctx)
	if p == nil {
		return graphql.OneShot(graphql.ErrorResponse(ctx, "no pusher")), ctx
	}
	f := &feed{closed: make(chan struct{}), ready: p.Ready}
	p.Attach(f)
	e.feeds <- f
	return func(context.Context) *graphql.Response { panic("a pushed operation's handler was called") }, ctx
}

func (executor) DispatchError(_ context.Context, list gqlerror.List) *graphql.Response {
	return &graphql.Response{Errors: list}
}

type server struct {
	url    string
	feeds  chan *feed
	closed chan context.Context
}

func start(t *testing.T, initTimeout time.Duration) *server {
	t.Helper()
	s := &server{feeds: make(chan *feed, 64), closed: make(chan context.Context, 64)}
	ws := &wsgorilla.Server{
		Upgrader:    wsgorilla.New().Upgrader,
		InitTimeout: initTimeout,
		ReadLimit:   1 << 16,
		Init: func(ctx context.Context, p transport.InitPayload) (context.Context, error) {
			if p.Authorization() != "Bearer ok" {
				return ctx, &wsgorilla.CloseError{Code: 4401, Reason: "Unauthorized", Err: errors.New("bad token")}
			}
			return ctx, nil
		},
		Closed: func(ctx context.Context) { s.closed <- ctx },
	}
	hs := httptest.NewServer(wsHandler{ws, executor{s.feeds}})
	t.Cleanup(hs.Close)
	s.url = "ws" + strings.TrimPrefix(hs.URL, "http")
	return s
}

type wsHandler struct {
	ws   *wsgorilla.Server
	exec graphql.GraphExecutor
}

func (h wsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.ws.Supports(r) {
		w.WriteHeader(400)
		return
	}
	h.ws.Do(w, r, h.exec)
}

func dial(t *testing.T, url string) *gqlws.Client {
	t.Helper()
	c, err := gqlws.Dial(t.Context(), url, gqlws.SubprotocolGraphQLTransportWS, map[string]any{"authorization": "Bearer ok"})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func next(t *testing.T, sub *gqlws.Subscription) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	raw, err := sub.Next(ctx)
	if err != nil {
		t.Fatalf("next: %v", err)
	}
	return string(raw)
}

func awaitFeed(t *testing.T, s *server) *feed {
	t.Helper()
	select {
	case f := <-s.feeds:
		return f
	case <-time.After(5 * time.Second):
		t.Fatal("the resolver attached no source")
		return nil
	}
}

// Pushed items arrive in order, each rendered by the executor, and the
// operation completes when its source ends.
func TestServerPushesInOrderAndCompletes(t *testing.T) {
	s := start(t, time.Second)
	c := dial(t, s.url)
	sub, err := c.Subscribe(t.Context(), "push", nil)
	if err != nil {
		t.Fatal(err)
	}
	f := awaitFeed(t, s)
	for i := 1; i <= 200; i++ {
		f.push(i)
	}
	for i := 1; i <= 200; i++ {
		if got, want := next(t, sub), fmt.Sprintf(`{"data":{"n":%d}}`, i); got != want {
			t.Fatalf("item %d: %s, want %s", i, got, want)
		}
	}
	f.end()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if raw, err := sub.Next(ctx); err == nil {
		t.Fatalf("after the source ended: %s, want completion", raw)
	}
	select {
	case <-f.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the ended source was not closed")
	}
}

// The client completing a pushed subscription closes its source; a
// query runs once; a stream runs to its end; invalid documents get an
// error message.
func TestServerOperations(t *testing.T) {
	s := start(t, time.Second)
	c := dial(t, s.url)
	sub, err := c.Subscribe(t.Context(), "push", nil)
	if err != nil {
		t.Fatal(err)
	}
	f := awaitFeed(t, s)
	sub.Stop()
	select {
	case <-f.closed:
	case <-time.After(5 * time.Second):
		t.Fatal("completing the subscription did not close its source")
	}

	q, _ := c.Subscribe(t.Context(), "query", nil)
	if got := next(t, q); got != `{"data":{"q":1}}` {
		t.Fatalf("query: %s", got)
	}
	st, _ := c.Subscribe(t.Context(), "stream", nil)
	for i := 1; i <= 3; i++ {
		if got := next(t, st); got != fmt.Sprintf(`{"data":{"s":%d}}`, i) {
			t.Fatalf("stream %d: %s", i, got)
		}
	}
	bad, _ := c.Subscribe(t.Context(), "invalid", nil)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	var opErr *gqlws.OperationError
	if _, err := bad.Next(ctx); !errors.As(err, &opErr) || !strings.Contains(string(opErr.Payload), "cannot query field") {
		t.Fatalf("invalid document: %v, want an error message", err)
	}
}

// A connection with a pushed subscription keeps one goroutine (its
// reader), not one per subscription; closing it closes the sources and
// calls Closed once.
func TestServerGoroutinesPerConnection(t *testing.T) {
	s := start(t, time.Second)
	const n = 50
	// Warm the push pool and the server up first.
	warm := dial(t, s.url)
	if _, err := warm.Subscribe(t.Context(), "push", nil); err != nil {
		t.Fatal(err)
	}
	awaitFeed(t, s).push(1)
	time.Sleep(100 * time.Millisecond)

	before := runtime.NumGoroutine()
	clients := make([]*gqlws.Client, n)
	feeds := make([]*feed, n)
	for i := range clients {
		clients[i] = dial(t, s.url)
		if _, err := clients[i].Subscribe(t.Context(), "push", nil); err != nil {
			t.Fatal(err)
		}
		feeds[i] = awaitFeed(t, s)
	}
	time.Sleep(200 * time.Millisecond)
	// Each client (gqlws) runs one reader goroutine of its own; the server
	// one per connection.
	if grew := runtime.NumGoroutine() - before; grew > 2*n+5 {
		t.Fatalf("%d subscribed connections added %d goroutines, want at most %d (one per side)", n, grew, 2*n+5)
	}
	for _, c := range clients {
		_ = c.Close()
	}
	for i, f := range feeds {
		select {
		case <-f.closed:
		case <-time.After(5 * time.Second):
			t.Fatalf("source %d not closed with its connection", i)
		}
	}
	for range n {
		select {
		case <-s.closed:
		case <-time.After(5 * time.Second):
			t.Fatal("Closed not called for every connection")
		}
	}
}

// Protocol errors close the socket with graphql-transport-ws codes.
func TestServerCloseCodes(t *testing.T) {
	s := start(t, 200*time.Millisecond)
	if _, err := gqlws.Dial(t.Context(), s.url, gqlws.SubprotocolGraphQLTransportWS, map[string]any{"authorization": "Bearer nope"}); !isClose(err, 4401) {
		t.Errorf("bad token: %v, want close 4401", err)
	}

	raw := func() *websocket.Conn {
		d := websocket.Dialer{Subprotocols: []string{"graphql-transport-ws"}}
		ws, _, err := d.Dial(s.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ws.Close() })
		return ws
	}
	closeCode := func(ws *websocket.Conn) int {
		_ = ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				var ce *websocket.CloseError
				if errors.As(err, &ce) {
					return ce.Code
				}
				return -1
			}
		}
	}
	if code := closeCode(raw()); code != 4408 {
		t.Errorf("no connection_init: close %d, want 4408", code)
	}
	ws := raw()
	_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"connection_init","payload":{"authorization":"Bearer ok"}}`))
	_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"id":"1","type":"subscribe","payload":{"query":"push"}}`))
	_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"id":"1","type":"subscribe","payload":{"query":"push"}}`))
	if code := closeCode(ws); code != 4409 {
		t.Errorf("duplicate id: close %d, want 4409", code)
	}
	ws = raw()
	_ = ws.WriteMessage(websocket.TextMessage, []byte(`{"id":"1","type":"subscribe","payload":{"query":"push"}}`))
	if code := closeCode(ws); code != 4401 {
		t.Errorf("subscribe before connection_init: close %d, want 4401", code)
	}
	ws = raw()
	_ = ws.WriteMessage(websocket.TextMessage, []byte(`not json`))
	if code := closeCode(ws); code != 4400 {
		t.Errorf("invalid message: close %d, want 4400", code)
	}
}

func isClose(err error, code int) bool {
	var ce *gqlws.CloseError
	return errors.As(err, &ce) && ce.Code == code
}
