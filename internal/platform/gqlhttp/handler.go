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
	srv.AddTransport(transport.Websocket{
		Implementation:        wsgorilla.New(),
		InitFunc:              wsInit(o.Authenticator, o.Metrics),
		InitTimeout:           10 * time.Second,
		KeepAlivePingInterval: 15 * time.Second,
		PayloadReadLimit:      &o.WSMaxMessage,
		CloseFunc: func(ctx context.Context, _ int) {
			if c := wsgorilla.CloserFrom(ctx); c != nil {
				c.Release()
			}
			if auth.ViewerFrom(ctx).Kind != "" {
				o.Metrics.Websockets.Dec()
			}
		},
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
	srv.Use(extension.FixedComplexityLimit(o.ComplexityLimit))
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

// wsInit authenticates the connection_init payload
// ({"authorization": "Bearer …"}). A missing or rejected credential closes
// the socket with 4401, a disabled account with 4403: the app then signs in
// again or refreshes, and reconnects with its cursor.
func wsInit(a *auth.Authenticator, m *obs.Metrics) transport.WebsocketInitFunc {
	return func(ctx context.Context, p transport.InitPayload) (context.Context, *transport.InitPayload, error) {
		v, err := a.Authenticate(ctx, p.Authorization())
		if err != nil {
			return transport.WithWebsocketCloseCode(ctx, 4500), nil, errors.New("authentication unavailable")
		}
		switch {
		case errors.Is(v.Err, auth.ErrAccountDisabled):
			return transport.AppendCloseReason(transport.WithWebsocketCloseCode(ctx, 4403), "Forbidden"), nil, v.Err
		case v.Err != nil:
			return transport.AppendCloseReason(transport.WithWebsocketCloseCode(ctx, 4401), "Unauthorized"), nil, v.Err
		case v.Kind == "":
			return transport.AppendCloseReason(transport.WithWebsocketCloseCode(ctx, 4401), "Unauthorized"), nil, auth.ErrNoCredentials
		}
		m.Websockets.Inc()
		// The connection ends when the access token expires (4401): the app
		// reconnects with a fresh token and its cursor.
		if c := wsgorilla.CloserFrom(ctx); c != nil {
			ctx = c.Bind(ctx, v.ExpiresAt)
		}
		return auth.WithViewer(ctx, v), nil, nil
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
	return c == errcode.ValidationFailed || c == errcode.ParseFailed || c == "COMPLEXITY_LIMIT_EXCEEDED"
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
