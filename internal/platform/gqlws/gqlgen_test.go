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

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/onemember/onemember/internal/platform/wsgorilla"
)

// These tests run gqlgen's own websocket transport, on the wsgorilla adapter,
// with a fake executor standing in for a generated schema.

// fakeExecutor streams `count` results ({"n":1}, {"n":2}, ...) and then ends,
// or blocks until cancelled when count is negative. Query "invalid" fails
// validation.
type fakeExecutor struct{}

func (fakeExecutor) CreateOperationContext(_ context.Context, p *graphql.RawParams) (*graphql.OperationContext, gqlerror.List) {
	if p.Query == "invalid" {
		err := gqlerror.Errorf("cannot query field")
		errcode.Set(err, errcode.ValidationFailed)
		return nil, gqlerror.List{err}
	}
	return &graphql.OperationContext{RawQuery: p.Query, Variables: p.Variables}, nil
}

func (fakeExecutor) DispatchOperation(ctx context.Context, rc *graphql.OperationContext) (graphql.ResponseHandler, context.Context) {
	count, _ := rc.Variables["count"].(json.Number).Int64()
	n := int64(0)
	return func(ctx context.Context) *graphql.Response {
		if count < 0 {
			<-ctx.Done()
			return nil
		}
		if n == count {
			return nil
		}
		n++
		return &graphql.Response{Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, n))}
	}, ctx
}

func (fakeExecutor) DispatchError(_ context.Context, list gqlerror.List) *graphql.Response {
	return &graphql.Response{Errors: list}
}

func gqlgenServer(t *testing.T) string {
	t.Helper()
	ws := transport.Websocket{
		Implementation: wsgorilla.New(),
		// Intervals short enough that the test outlives several, long enough
		// that a loaded machine (race detector, parallel packages) answers a
		// ping before gqlgen gives up on the pong.
		KeepAlivePingInterval: 150 * time.Millisecond, // graphql-ws "ka"
		PingPongInterval:      150 * time.Millisecond, // graphql-transport-ws ping, pong required
		InitFunc: func(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
			if p.Authorization() != "Bearer ok" {
				// gqlgen reads code and reason from the returned ctx.
				ctx = transport.WithWebsocketCloseCode(ctx, 4401)
				ctx = transport.AppendCloseReason(ctx, "unauthenticated")
				return ctx, nil, errors.New("invalid token")
			}
			return ctx, nil, nil
		},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws.Do(w, r, fakeExecutor{})
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

func TestGqlgenTransport(t *testing.T) {
	url := gqlgenServer(t)
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			ctx := testCtx(t)

			_, err := Dial(ctx, url, proto, map[string]any{"Authorization": "Bearer bad"})
			var ce *CloseError
			if !errors.As(err, &ce) || ce.Code != 4401 || ce.Reason != "unauthenticated" {
				t.Fatalf("Dial with bad token = %v, want CloseError 4401", err)
			}

			c := dialT(t, url, proto, map[string]any{"Authorization": "Bearer ok"})

			sub, err := c.Subscribe(ctx, "subscription { n }", map[string]any{"count": 3})
			if err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 3; i++ {
				got, err := sub.Next(ctx)
				if want := fmt.Sprintf(`{"data":{"n":%d}}`, i); err != nil || string(got) != want {
					t.Fatalf("Next = %s, %v; want %s", got, err, want)
				}
			}
			if _, err := sub.Next(ctx); err != io.EOF {
				t.Fatalf("Next after complete = %v, want io.EOF", err)
			}

			bad, err := c.Subscribe(ctx, "invalid", nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = bad.Next(ctx)
			var opErr *OperationError
			if !errors.As(err, &opErr) || !strings.Contains(string(opErr.Payload), "cannot query field") {
				t.Fatalf("Next on invalid query = %v, want OperationError", err)
			}
			if _, err := bad.Next(ctx); err != io.EOF {
				t.Fatalf("Next after error = %v, want io.EOF", err)
			}

			// Outlive several keep-alive and ping intervals: gqlgen drops the
			// connection if pongs go missing.
			endless, err := c.Subscribe(ctx, "subscription { n }", map[string]any{"count": -1})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(800 * time.Millisecond)
			select {
			case <-c.Done():
				t.Fatalf("connection ended: %v", c.Err())
			default:
			}
			endless.Stop()

			if err := c.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
		})
	}
}
