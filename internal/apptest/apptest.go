// Package apptest starts the real server for end-to-end tests: a fresh
// PostgreSQL database with the migrations applied, the App wired exactly as
// in production, served over real HTTP (and websockets) on loopback, and a
// small GraphQL client. It also loads the client operations of
// ../shared/clients, which are the API contract.
package apptest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/app"
	"github.com/onemember/onemember/internal/auth"
	"github.com/onemember/onemember/internal/auth/password"
	"github.com/onemember/onemember/internal/platform/config"
	"github.com/onemember/onemember/internal/platform/obs"
	"github.com/onemember/onemember/internal/platform/pgtest"
	"github.com/onemember/onemember/internal/seed"
	"github.com/onemember/onemember/migrations"
)

// Server is a running OneMember server.
type Server struct {
	*app.App
	URL string
	SMS *SMSOutbox
	t   testing.TB
}

// Option adjusts a test server's configuration or wiring.
type Option func(*config.Config, *app.Options)

// Production runs the server in production mode.
func Production() Option {
	return func(c *config.Config, _ *app.Options) {
		c.Env = config.Production
		c.SMSGatewayURL = "http://127.0.0.1:1/unused"
	}
}

// Start runs a server on a brand-new database.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	dsn := pgtest.New(t, migrations.FS)
	return StartOn(t, dsn, opts...)
}

// StartOn runs a server on an existing database (two servers may share
// one).
func StartOn(t testing.TB, dsn string, opts ...Option) *Server {
	t.Helper()
	cfg := Config(dsn)
	sms := &SMSOutbox{}
	cheap := password.Params{Memory: 1024, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	o := app.Options{PasswordParams: &cheap, SMS: sms}
	for _, opt := range opts {
		opt(cfg, &o)
	}
	log := obs.NewLogger(io.Discard, "text", "error")
	if testing.Verbose() {
		log = obs.NewLogger(testWriter{t}, "text", "warn")
	}
	a, err := app.New(context.Background(), cfg, log, o)
	if err != nil {
		t.Fatalf("starting app: %v", err)
	}
	srv := httptest.NewServer(a.Handler())
	// The streams run (subscriptions need the bus, audiences the index,
	// jobs the workers); the periodic maintenance does not, so that tests
	// decide when it happens.
	busCtx, stopBus := context.WithCancel(context.Background())
	busDone := make(chan struct{})
	go func() { defer close(busDone); a.RunStreams(busCtx) }()
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		stopBus()
		<-busDone
		_ = a.Close()
	})
	return &Server{App: a, URL: srv.URL, SMS: sms, t: t}
}

// Config is a development configuration with fixed test keys.
func Config(dsn string) *config.Config {
	key := func(b byte) []byte { return bytes.Repeat([]byte{b}, 32) }
	return &config.Config{
		Env: config.Development, DatabaseURL: dsn, BusinessZone: "Asia/Shanghai",
		AccessTokenTTL: 15 * time.Minute, RefreshTokenTTL: 720 * time.Hour,
		OTPTTL: 5 * time.Minute, OTPMaxAttempts: 5, OTPPerPhoneHour: 5, OTPPerIPHour: 1000,
		OTPResendAfter: 0, ComplexityLimit: 5000, DepthLimit: 12, WSMaxMessageBytes: 65536,
		DBMaxOpenConns: 20, AuthCacheTTL: 2 * time.Second, AuthCacheIdle: 10 * time.Second, EventBus: true,
		Keys: config.Keys{JWT: key(1), PIIEnc: key(2), PIIIndex: key(3), Signing: key(4)},
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// SMSOutbox records the codes the server "sent".
type SMSOutbox struct {
	mu   sync.Mutex
	last map[string]string
}

// SendOTP implements identity.SMSSender.
func (o *SMSOutbox) SendOTP(_ context.Context, phone, code, purpose string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.last == nil {
		o.last = map[string]string{}
	}
	o.last[phone+"/"+purpose] = code
	return nil
}

// Code returns the last code sent to phone (normalized) for purpose.
func (o *SMSOutbox) Code(phone, purpose string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last[phone+"/"+purpose]
}

// Response is a GraphQL response.
type Response struct {
	Data   json.RawMessage `json:"data"`
	Errors []Error         `json:"errors"`
}

// Error is one GraphQL error.
type Error struct {
	Message    string         `json:"message"`
	Path       []any          `json:"path"`
	Extensions map[string]any `json:"extensions"`
}

// Code returns extensions.code.
func (e Error) Code() string { s, _ := e.Extensions["code"].(string); return s }

// Codes lists the codes of all errors.
func (r Response) Codes() []string {
	out := make([]string, len(r.Errors))
	for i, e := range r.Errors {
		out[i] = e.Code()
	}
	return out
}

// Decode unmarshals data into v, failing the test on errors.
func (r Response) Decode(t testing.TB, v any) {
	t.Helper()
	if len(r.Errors) > 0 {
		t.Fatalf("unexpected GraphQL errors: %+v", r.Errors)
	}
	if err := json.Unmarshal(r.Data, v); err != nil {
		t.Fatalf("decoding data %s: %v", r.Data, err)
	}
}

// Do posts a GraphQL document over HTTP with an optional bearer token.
func (s *Server) Do(bearer, query string, vars map[string]any) Response {
	s.t.Helper()
	resp, err := Post(s.URL+"/query", bearer, query, vars)
	if err != nil {
		s.t.Fatalf("graphql request: %v", err)
	}
	return resp
}

// Post sends a GraphQL request to url.
func Post(url, bearer, query string, vars map[string]any) (Response, error) {
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return Response{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return Response{}, err
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	var out Response
	if err := json.Unmarshal(raw, &out); err != nil {
		return Response{}, fmt.Errorf("HTTP %d: %s", res.StatusCode, raw)
	}
	return out, nil
}

// MemberToken signs a member in through the mini-program flow (development
// WeChat codes) and returns its access token and member id.
func (s *Server) MemberToken(openid string) (string, string) {
	s.t.Helper()
	var out struct {
		LoginWithWeChat struct {
			AccessToken string
			Member      struct{ ID string }
		}
	}
	s.Do("", `mutation($code: String!) { loginWithWeChat(input: {appId: "wx-test", code: $code}) { accessToken member { id } } }`,
		map[string]any{"code": "dev:" + openid}).Decode(s.t, &out)
	return out.LoginWithWeChat.AccessToken, out.LoginWithWeChat.Member.ID
}

// StaffToken creates a staff account with roles (directly, as the seed
// does for the first ADMIN) and signs it in through adminLogin.
func (s *Server) StaffToken(email string, roles ...enum.StaffRole) string {
	s.t.Helper()
	const pw = "correct horse battery"
	if _, err := s.Accounts.CreateStaff(context.Background(), auth.CreateStaffInput{
		Email: email, DisplayName: email, Password: pw, Roles: roles,
	}); err != nil {
		s.t.Fatalf("creating staff %s: %v", email, err)
	}
	var out struct{ AdminLogin struct{ AccessToken string } }
	s.Do("", `mutation($e: String!, $p: String!) { adminLogin(input: {email: $e, password: $p}) { accessToken } }`,
		map[string]any{"e": email, "p": pw}).Decode(s.t, &out)
	return out.AdminLogin.AccessToken
}

// WSURL is the websocket address of /query.
func (s *Server) WSURL() string { return "ws" + strings.TrimPrefix(s.URL, "http") + "/query" }

// Seed loads the demo organisation and programme (business units, stores,
// tiers, benefits, plans, the ADMIN account) without members.
func (s *Server) Seed() {
	s.t.Helper()
	if err := seed.Run(context.Background(), s.App, seed.Options{Seed: 1, AdminPassword: "admin password 1"}); err != nil {
		s.t.Fatalf("seeding: %v", err)
	}
}

// AdminToken signs in the seeded ADMIN.
func (s *Server) AdminToken() string {
	s.t.Helper()
	var out struct{ AdminLogin struct{ AccessToken string } }
	s.Do("", `mutation { adminLogin(input: {email: "admin@onemember.local", password: "admin password 1"}) { accessToken } }`, nil).Decode(s.t, &out)
	return out.AdminLogin.AccessToken
}

// Till creates an API client with every scope and returns its secret.
func (s *Server) Till(admin string, storeCodes ...string) string {
	s.t.Helper()
	var out struct{ CreateApiClient struct{ Secret string } }
	s.Do(admin, `mutation($stores: [String!]) { createApiClient(input: {name: "till", storeCodes: $stores,
		scopes: [ORDERS_WRITE, COUPONS_REDEEM, MEMBERS_READ, EVENTS_WRITE, STORED_VALUE_WRITE]}) { secret } }`,
		map[string]any{"stores": storeCodes}).Decode(s.t, &out)
	return out.CreateApiClient.Secret
}

// PhoneMember signs a member in with a phone (registering it) and returns
// its access token and id.
func (s *Server) PhoneMember(phone string) (string, string) {
	s.t.Helper()
	s.Do("", `mutation($p: String!) { requestOtp(input: {phone: $p, purpose: LOGIN}) { retryAfterSeconds } }`,
		map[string]any{"p": phone}).Decode(s.t, &struct{}{})
	var out struct {
		LoginWithPhone struct {
			AccessToken string
			Member      struct{ ID string }
		}
	}
	s.Do("", `mutation($p: String!, $o: String!) { loginWithPhone(input: {phone: $p, otp: $o}) { accessToken member { id } } }`,
		map[string]any{"p": phone, "o": s.SMS.Code(phone, "LOGIN")}).Decode(s.t, &out)
	return out.LoginWithPhone.AccessToken, out.LoginWithPhone.Member.ID
}
