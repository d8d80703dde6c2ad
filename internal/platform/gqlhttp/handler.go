// Package gqlhttp assembles the GraphQL HTTP and websocket endpoint: the
// transports (POST, GET, multipart, websocket on gorilla), the limits
// (complexity, depth, message size), automatic persisted queries,
// introspection in development only, the error presenter that writes
// extensions.code, and the per-operation metrics.
package gqlhttp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/errcode"
	"github.com/99designs/gqlgen/graphql/handler"
	"github.com/99designs/gqlgen/graphql/handler/extension"
	"github.com/99designs/gqlgen/graphql/handler/lru"
	"github.com/99designs/gqlgen/graphql/handler/transport"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"github.com/onemember/onemember/internal/auth"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/obs"
	"github.com/onemember/onemember/internal/platform/wsgorilla"
)

// Options configure the endpoint.
type Options struct {
	Introspection   bool
	ComplexityLimit int
	DepthLimit      int
	WSMaxMessage    int64
	MaxUploadBytes  int64
	Authenticator   *auth.Authenticator
	Metrics         *obs.Metrics
	Log             *slog.Logger
	// AroundOperations hooks run for every operation, e.g. to attach
	// per-operation dataloaders (a websocket keeps one request context
	// for its whole life, so loaders must not live on the request).
	AroundOperations []graphql.OperationMiddleware
}

// New returns the GraphQL handler for schema.
func New(schema graphql.ExecutableSchema, o Options) *handler.Server {
	srv := handler.New(pagedComplexity{schema})
	initWS := wsInit(o.Authenticator, o.Metrics)
	closedWS := func(ctx context.Context) {
		if c := wsgorilla.CloserFrom(ctx); c != nil {
			c.Release()
		}
		if auth.ViewerFrom(ctx).Kind != "" {
			o.Metrics.Websockets.Dec()
		}
	}
	// graphql-transport-ws (what the app speaks) on the lean server; the
	// legacy graphql-ws subprotocol on gqlgen's transport over gorilla.
	upgrader := wsgorilla.New().Upgrader
	// Clients send a few small messages (connection_init, subscribe,
	// pong); a larger one is read in several pieces.
	upgrader.ReadBufferSize = 256
	srv.AddTransport(&wsgorilla.Server{
		Upgrader:     upgrader,
		Init:         initWS,
		InitTimeout:  wsInitTimeout,
		ReadLimit:    o.WSMaxMessage,
		WriteTimeout: wsgorilla.DefaultWriteTimeout,
		Closed:       closedWS,
		Log:          o.Log,
	})
	srv.AddTransport(transport.Websocket{
		Implementation: wsgorilla.New(),
		InitFunc: func(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
			ctx, err := initWS(ctx, p)
			if ce := (*wsgorilla.CloseError)(nil); errors.As(err, &ce) {
				return transport.AppendCloseReason(transport.WithWebsocketCloseCode(ctx, ce.Code), ce.Reason), nil, err
			}
			if c := wsgorilla.CloserFrom(ctx); c != nil && err == nil {
				ctx = c.Bind(ctx) // gqlgen closes the socket when it ends
			}
			return ctx, nil, err
		},
		InitTimeout:           wsInitTimeout,
		KeepAlivePingInterval: 15 * time.Second,
		PayloadReadLimit:      &o.WSMaxMessage,
		CloseFunc:             func(ctx context.Context, _ int) { closedWS(ctx) },
	})
	srv.AddTransport(transport.Options{})
	srv.AddTransport(transport.GET{})
	srv.AddTransport(transport.POST{})
	srv.AddTransport(transport.MultipartForm{MaxUploadSize: o.MaxUploadBytes, MaxMemory: 8 << 20})

	srv.SetQueryCache(lru.New[*ast.QueryDocument](1000))
	if o.Introspection {
		srv.Use(extension.Introspection{})
	}
	srv.Use(extension.AutomaticPersistedQuery{Cache: lru.New[string](1000)})
	srv.Use(newComplexityLimit(o.ComplexityLimit))
	srv.Use(depthLimit{Max: o.DepthLimit})

	srv.SetErrorPresenter(presenter(o.Log, o.Metrics))
	srv.SetRecoverFunc(func(ctx context.Context, p any) error {
		o.Log.ErrorContext(ctx, "resolver panic", "panic", p, "stack", string(debug.Stack()))
		return fmt.Errorf("panic: %v", p)
	})
	for _, mw := range o.AroundOperations {
		srv.AroundOperations(mw)
	}
	srv.AroundResponses(measure(o.Metrics))
	return srv
}

const wsInitTimeout = 10 * time.Second

// wsInit authenticates the connection_init payload
// ({"authorization": "Bearer …"}). A missing or rejected credential closes
// the socket with 4401, a disabled account with 4403, a failing
// authenticator with 4500: the app then signs in again or refreshes, and
// reconnects with its cursor.
func wsInit(a *auth.Authenticator, m *obs.Metrics) func(context.Context, transport.InitPayload) (context.Context, error) {
	return func(ctx context.Context, p transport.InitPayload) (context.Context, error) {
		v, err := a.Authenticate(ctx, p.Authorization())
		if err != nil {
			return ctx, &wsgorilla.CloseError{Code: 4500, Reason: "authentication unavailable", Err: err}
		}
		switch {
		case errors.Is(v.Err, auth.ErrAccountDisabled):
			return ctx, &wsgorilla.CloseError{Code: 4403, Reason: "Forbidden", Err: v.Err}
		case v.Err != nil:
			return ctx, &wsgorilla.CloseError{Code: 4401, Reason: "Unauthorized", Err: v.Err}
		case v.Kind == "":
			return ctx, &wsgorilla.CloseError{Code: 4401, Reason: "Unauthorized", Err: auth.ErrNoCredentials}
		}
		m.Websockets.Inc()
		// The connection ends when the access token expires (4401): the app
		// reconnects with a fresh token and its cursor.
		if c := wsgorilla.CloserFrom(ctx); c != nil {
			c.Expire(v.ExpiresAt)
		}
		return auth.WithViewer(ctx, v), nil
	}
}

// presenter writes extensions.code on every error. Domain errors keep their
// message; GraphQL syntax and validation failures become BAD_USER_INPUT;
// anything else is logged once with the request id and shown as INTERNAL,
// never with its internal text.
func presenter(log *slog.Logger, m *obs.Metrics) graphql.ErrorPresenterFunc {
	return func(ctx context.Context, err error) *gqlerror.Error {
		gqlErr := graphql.DefaultErrorPresenter(ctx, err)
		code := fault.CodeOf(err)
		switch {
		case code != fault.Internal:
			gqlErr.Message = fault.Message(err)
			if fields := fault.Fields(err); len(fields) > 0 {
				names := make([]string, len(fields))
				for i, f := range fields {
					names[i] = f.Field
				}
				setExt(gqlErr, "fields", names)
			}
		case isAPQError(gqlErr):
			// APQ clients resend the full document on this exact code.
			m.Errors.WithLabelValues("PERSISTED_QUERY").Inc()
			return gqlErr
		case isRequestError(gqlErr):
			code = fault.BadUserInput
		case gqlErr.Extensions["code"] == string(fault.BadUserInput):
			code = fault.BadUserInput // our own extensions (depth limit)
		default:
			log.ErrorContext(ctx, "internal error", "err", err, "path", gqlErr.Path.String())
			gqlErr.Message = "internal error"
			gqlErr.Extensions = nil
		}
		setExt(gqlErr, "code", string(code))
		if id := obs.RequestID(ctx); id != "" && code == fault.Internal {
			setExt(gqlErr, "requestId", id)
		}
		m.Errors.WithLabelValues(string(code)).Inc()
		return gqlErr
	}
}

// isRequestError reports errors about the document or its variables, which
// gqlgen classifies as user errors (parse, validation, complexity, input
// coercion).
func isRequestError(e *gqlerror.Error) bool {
	c, _ := e.Extensions["code"].(string)
	return c == errcode.ValidationFailed || c == errcode.ParseFailed || c == errComplexityLimit
}

func isAPQError(e *gqlerror.Error) bool {
	c, _ := e.Extensions["code"].(string)
	return c == "PERSISTED_QUERY_NOT_FOUND" || c == "PERSISTED_QUERY_NOT_SUPPORTED"
}

func setExt(e *gqlerror.Error, k string, v any) {
	if e.Extensions == nil {
		e.Extensions = map[string]any{}
	}
	e.Extensions[k] = v
}

// measure records count and latency per operation. Subscriptions count
// each response they push.
func measure(m *obs.Metrics) graphql.ResponseMiddleware {
	return func(ctx context.Context, next graphql.ResponseHandler) *graphql.Response {
		resp := next(ctx)
		name, start := "unknown", time.Now()
		if oc := graphql.GetOperationContext(ctx); oc != nil {
			start = oc.Stats.OperationStart
			if oc.Operation != nil {
				name = m.OperationLabel(oc.Operation.Name)
			}
		}
		outcome := "ok"
		if resp != nil && len(resp.Errors) > 0 {
			outcome = "error"
		}
		m.Requests.WithLabelValues(name, outcome).Inc()
		m.Latency.WithLabelValues(name).Observe(time.Since(start).Seconds())
		return resp
	}
}

// WebsocketCloser gives every websocket handshake a wsgorilla.Closer, so
// the connection can close with 4401 when its token expires and resolvers
// can close it with an application code (slow consumers).
func WebsocketCloser(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			ctx, _ := wsgorilla.WithCloser(r.Context())
			r = r.WithContext(ctx)
		}
		next.ServeHTTP(w, r)
	})
}
