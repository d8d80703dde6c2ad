// Package app wires the server: configuration to database, services,
// GraphQL handler and HTTP routes. server.go and the end-to-end tests build
// the same App, so tests exercise exactly what production runs.
package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"sync"
	"time"

	entsql "entgo.io/ent/dialect/sql"
	"github.com/99designs/gqlgen/graphql"
	"github.com/99designs/gqlgen/graphql/playground"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"entgo.io/ent/dialect"

	"github.com/onemember/onemember/ent"
	entidentity "github.com/onemember/onemember/ent/identity"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/graph"
	"github.com/onemember/onemember/internal/analytics"
	"github.com/onemember/onemember/internal/audience"
	"github.com/onemember/onemember/internal/auth"
	"github.com/onemember/onemember/internal/auth/password"
	"github.com/onemember/onemember/internal/auth/signedcode"
	"github.com/onemember/onemember/internal/auth/token"
	"github.com/onemember/onemember/internal/behavior"
	"github.com/onemember/onemember/internal/campaign"
	"github.com/onemember/onemember/internal/coupon"
	"github.com/onemember/onemember/internal/dashboard"
	"github.com/onemember/onemember/internal/eventbus"
	"github.com/onemember/onemember/internal/events"
	"github.com/onemember/onemember/internal/identity"
	"github.com/onemember/onemember/internal/jobqueue"
	"github.com/onemember/onemember/internal/jobs"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/marketing"
	"github.com/onemember/onemember/internal/member"
	"github.com/onemember/onemember/internal/membercard"
	"github.com/onemember/onemember/internal/membership"
	"github.com/onemember/onemember/internal/order"
	"github.com/onemember/onemember/internal/pii"
	"github.com/onemember/onemember/internal/platform/config"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/gqlhttp"
	"github.com/onemember/onemember/internal/platform/loader"
	"github.com/onemember/onemember/internal/platform/migrate"
	"github.com/onemember/onemember/internal/platform/obs"
	"github.com/onemember/onemember/internal/platform/procstat"
	"github.com/onemember/onemember/internal/prediction"
	"github.com/onemember/onemember/internal/programme"
	"github.com/onemember/onemember/internal/push"
	"github.com/onemember/onemember/internal/tier"
	"github.com/onemember/onemember/migrations"
)

// App is a wired server.
type App struct {
	Config *config.Config
	Log    *slog.Logger
	SQL    *sql.DB
	DB     *ent.Client
	// CardSQL and CardDB are the pool member cards are read on
	// (membercard.New), nil when statements are not prepared.
	CardSQL *sql.DB
	CardDB  *ent.Client
	Metrics *obs.Metrics
	// Statements counts SQL statements sent through ent.
	Statements *database.StatementCounter

	Sessions   *auth.Sessions
	Accounts   *auth.Accounts
	Identity   *identity.Service
	Ledger     *ledger.Service
	Tiers      *tier.Service
	Orders     *order.Service
	Members    *member.Service
	Membership *membership.Service
	Programme  *programme.Service
	Coupons    *coupon.Service
	Marketing  *marketing.Service
	// Bus delivers member events to this replica's subscribers.
	Bus *eventbus.Bus
	// Push sends member events through WeChat and app push.
	Push *push.Dispatcher
	// The data centre: behaviour events, audiences and tags over this
	// replica's bitmap indexes, RFM / AIPL models, durable jobs.
	Behavior  *behavior.Service
	Audiences *audience.Service
	Analytics *analytics.Service
	Jobs      *jobqueue.Queue
	// Predictions fits BG/NBD and Gamma-Gamma on purchase histories;
	// Dashboard keeps the sales aggregates and the live sales feed.
	Predictions *prediction.Service
	Dashboard   *dashboard.Service
	// Campaigns runs event-triggered marketing.
	Campaigns *campaign.Service
	Zone      *time.Location
	auth      *auth.Authenticator
}

// Options adjust wiring for tests.
type Options struct {
	// Now replaces the clock.
	Now func() time.Time
	// PasswordParams replaces the argon2id cost (tests use a cheap one).
	PasswordParams *password.Params
	// SMS replaces the SMS sender.
	SMS identity.SMSSender
	// WeChat replaces the WeChat code exchanger.
	WeChat identity.WeChat
}

// New opens the database, applies migrations (under golang-migrate's
// advisory lock, so replicas starting together never race) and builds the
// services.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger, opts Options) (*App, error) {
	db, err := database.Open(ctx, cfg.DatabaseURL, database.Options{
		MaxOpenConns: cfg.DBMaxOpenConns, MaxIdleConns: cfg.DBMaxIdleConns,
	})
	if err != nil {
		return nil, err
	}
	if err := migrate.Up(ctx, db, migrations.FS, log); err != nil {
		db.Close()
		return nil, err
	}
	var cards *sql.DB
	if !cfg.DBUnprepared {
		// Generic plans need prepared statements: through a pooler in
		// transaction mode, cards are read one by one on the main pool.
		cards, err = database.Open(ctx, cfg.DatabaseURL, database.Options{
			MaxOpenConns: membercard.Runners, Runtime: membercard.Session,
		})
		if err != nil {
			db.Close()
			return nil, err
		}
	}
	a, err := build(cfg, log, db, cards, opts)
	if err != nil {
		db.Close()
		if cards != nil {
			cards.Close()
		}
		return nil, err
	}
	return a, nil
}

func build(cfg *config.Config, log *slog.Logger, db, cards *sql.DB, opts Options) (*App, error) {
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	counter := &database.StatementCounter{}
	client, err := entClient(db, !cfg.DBUnprepared, counter)
	if err != nil {
		return nil, err
	}
	var cardClient *ent.Client
	if cards != nil {
		if cardClient, err = entClient(cards, true, counter); err != nil {
			return nil, err
		}
	}
	tokens, err := token.NewIssuer(cfg.Keys.JWT, "onemember", cfg.AccessTokenTTL, now)
	if err != nil {
		return nil, fmt.Errorf("token issuer: %w", err)
	}
	protector, err := pii.NewProtector(cfg.Keys.PIIEnc, cfg.Keys.PIIIndex)
	if err != nil {
		return nil, fmt.Errorf("pii keys: %w", err)
	}
	hasher := password.DefaultParams()
	if opts.PasswordParams != nil {
		hasher = *opts.PasswordParams
	}
	sessions := auth.NewSessions(client, tokens, cfg.RefreshTokenTTL, now)
	accounts, err := auth.NewAccounts(client, sessions, hasher, now)
	if err != nil {
		return nil, err
	}
	wechat, sms, err := senders(cfg, log, opts)
	if err != nil {
		return nil, err
	}
	memberCodes, err := signedcode.NewSigner(cfg.Keys.Signing, "member-code", now)
	if err != nil {
		return nil, fmt.Errorf("member code signer: %w", err)
	}
	zone, err := time.LoadLocation(cfg.BusinessZone)
	if err != nil {
		return nil, fmt.Errorf("business zone: %w", err)
	}
	ledgers := ledger.New(client, ledger.DefaultPolicy(zone), hasher, now)
	coupons := coupon.New(client, zone, now)
	tiers := tier.New(client, zone, now)
	authenticator := auth.NewAuthenticator(client, tokens, cfg.AuthCacheTTL, cfg.AuthCacheIdle, now)
	tickets, err := signedcode.NewSigner(cfg.Keys.Signing, marketing.TicketPurpose, now)
	if err != nil {
		return nil, fmt.Errorf("ticket signer: %w", err)
	}
	mkt := marketing.New(client, ledgers, tiers, coupons, tickets, zone, now)
	ident := identity.NewService(identity.Deps{
		DB: client, PII: protector, Sessions: sessions, WeChat: wechat, SMS: sms,
		OTP: identity.OTPPolicy{
			TTL: cfg.OTPTTL, MaxAttempts: cfg.OTPMaxAttempts, PerPhoneHour: cfg.OTPPerPhoneHour,
			PerIPHour: cfg.OTPPerIPHour, ResendAfter: cfg.OTPResendAfter,
		},
		OTPKey: cfg.Keys.Signing, Codes: memberCodes, Ledger: ledgers, Referrals: mkt, Forget: authenticator.Forget, Log: log, Now: now,
	})
	queue := jobqueue.New(client, log.With("component", "jobs"), jobqueue.Options{Now: now})
	an := analytics.New(client, db, zone, now)
	audiences := audience.New(audience.Deps{
		DB: client, SQL: db, Index: audience.NewIndex(db, zone, now, audience.IndexOptions{Log: log.With("component", "audience-index")}), Aipl: an, Jobs: queue,
		Zone: zone, Now: now, PhoneLookup: func(p string) []byte { return identity.LookupKey(protector, entidentity.KindPHONE, "", p) },
	})
	queue.Register(enum.JobIssueCoupons, coupons.IssueToAudience(audiences.MemberIDs))
	queue.Register(enum.JobRefreshAudience, audiences.RefreshHandler())
	queue.Register(enum.JobRefreshTag, audiences.RefreshTagHandler())
	queue.Register(enum.JobComputeRfm, an.ComputeRfmHandler())
	campaigns := campaign.New(campaign.Deps{
		DB: client, SQL: db, Audiences: audiences, Coupons: coupons, Ledger: ledgers,
		Messenger: messenger(cfg, log, client, protector), Jobs: queue, PII: protector,
		Zone: zone, Now: now, Log: log.With("component", "campaigns"),
	})
	queue.Register(enum.JobRunCampaign, campaigns.RunHandler())
	return &App{
		Behavior:  behavior.New(client, db, zone, now, behavior.Options{}),
		Audiences: audiences, Analytics: an, Jobs: queue, Campaigns: campaigns,
		Predictions: prediction.New(client, db, zone, now, log.With("component", "predictions")),
		Dashboard:   dashboard.New(client, db, zone, now, dashboard.WithMembers(audiences)),
		Config:      cfg, Log: log, SQL: db, DB: client, CardSQL: cards, CardDB: cardClient, Metrics: obs.NewMetrics(db, counter.Total),
		Statements: counter,
		Sessions:   sessions, Accounts: accounts, Identity: ident, Ledger: ledgers, Tiers: tiers,
		Orders: order.New(client, ledgers, tiers, ident, order.Hooks{Coupons: coupons, Referrals: mkt},
			order.Limits{MaxAmount: 100_000_000, MaxItems: 500}, now),
		Coupons:   coupons,
		Marketing: mkt,
		Bus:       eventbus.New(db, cfg.DatabaseURL, log, eventbus.Options{Now: now}),
		Push: push.NewDispatcher(client, db, log.With("component", "push"), notifiers(cfg, log),
			push.Options{Zone: zone, PII: protector, WeChatAppID: cfg.PushWeChatAppID, Now: now}),
		Members:    member.New(client, protector, ledgers, tiers, ident, authenticator.Forget, zone, now),
		Membership: membership.New(client, zone, now),
		Programme:  programme.New(client),
		Zone:       zone,
		auth:       authenticator,
	}, nil
}

// senders picks the WeChat and SMS adapters: development accepts dev:
// login codes and logs SMS codes; production calls WeChat and the SMS
// gateway.
func senders(cfg *config.Config, log *slog.Logger, opts Options) (identity.WeChat, identity.SMSSender, error) {
	wechat, sms := opts.WeChat, opts.SMS
	if wechat == nil {
		if cfg.IsProduction() {
			secrets, err := cfg.WeChatSecrets()
			if err != nil {
				return nil, nil, err
			}
			wechat = identity.WeChatAPI{BaseURL: cfg.WeChatAPIBase, Secrets: secrets}
		} else {
			wechat = identity.DevWeChat{}
		}
	}
	if sms == nil {
		if cfg.IsProduction() {
			sms = identity.WebhookSender{URL: cfg.SMSGatewayURL}
		} else {
			sms = identity.LogSender{Log: log}
		}
	}
	return wechat, sms, nil
}

// messenger sends campaigns' SMS and e-mail: through the gateway in
// production once configured, to the log otherwise.
func messenger(cfg *config.Config, log *slog.Logger, db *ent.Client, protector *pii.Protector) campaign.Messenger {
	if !cfg.IsProduction() || cfg.CampaignMessageURL == "" {
		return campaign.LogMessenger{Log: log}
	}
	return campaign.WebhookMessenger{URL: cfg.CampaignMessageURL, Phone: func(ctx context.Context, id int) (string, error) {
		m, err := db.Member.Get(ctx, id)
		if err != nil || len(m.PhoneEnc) == 0 {
			return "", err
		}
		return protector.Decrypt(m.PhoneEnc, "member.phone")
	}}
}

// notifiers are the push channels: both log in development; in production
// each runs once configured (README, Configuration).
func notifiers(cfg *config.Config, log *slog.Logger) []push.Notifier {
	if !cfg.IsProduction() {
		return []push.Notifier{push.NewLogNotifier(enum.PushWeChatSubscribe, log), push.NewLogNotifier(enum.PushApp, log)}
	}
	var out []push.Notifier
	secrets, _ := cfg.WeChatSecrets() // validated at start
	if secret, ok := secrets[cfg.PushWeChatAppID]; ok && cfg.PushWeChatTemplateID != "" {
		tok := &push.WeChatToken{BaseURL: cfg.WeChatAPIBase, AppID: cfg.PushWeChatAppID, Secret: secret}
		out = append(out, &push.WeChatSubscribe{BaseURL: cfg.WeChatAPIBase, TemplateID: cfg.PushWeChatTemplateID, Token: tok.Token})
	}
	if cfg.PushGatewayURL != "" {
		out = append(out, &push.AppPush{URL: cfg.PushGatewayURL})
	}
	return out
}

// entClient is an ent client on db whose statements counter counts, run
// prepared (database.Prepared) when prepared is set.
func entClient(db *sql.DB, prepared bool, counter *database.StatementCounter) (*ent.Client, error) {
	var drv dialect.Driver = entsql.OpenDB(dialect.Postgres, db)
	if prepared {
		var err error
		if drv, err = database.Prepared(entsql.OpenDB(dialect.Postgres, db), db, 0); err != nil {
			return nil, err
		}
	}
	return ent.NewClient(ent.Driver(database.Counting(drv, counter))), nil
}

// Close releases the database.
func (a *App) Close() error {
	if a.CardSQL != nil {
		return errors.Join(a.SQL.Close(), a.CardSQL.Close())
	}
	return a.SQL.Close()
}

// Handler is the HTTP surface: /query (HTTP and websocket), GraphiQL at /
// in development, /healthz, /readyz and /metrics.
func (a *App) Handler() http.Handler {
	schema := graph.NewSchema(&graph.Resolver{
		DB: a.DB, Log: a.Log, Sessions: a.Sessions, Accounts: a.Accounts, Identity: a.Identity,
		MemberService: a.Members, Ledger: a.Ledger, TierService: a.Tiers, Orders: a.Orders, Membership: a.Membership,
		Programme: a.Programme, Coupons: a.Coupons, Marketing: a.Marketing, Bus: a.Bus, Zone: a.Zone,
		Behavior: a.Behavior, AudienceService: a.Audiences, Analytics: a.Analytics, Jobs: a.Jobs,
		Dashboard: a.Dashboard, Predictions: a.Predictions, CampaignService: a.Campaigns,
		Cards: membercard.New(a.DB, a.CardDB, a.Tiers, a.Membership),
	})
	gql := gqlhttp.New(schema, gqlhttp.Options{
		Introspection:    !a.Config.IsProduction(),
		ComplexityLimit:  a.Config.ComplexityLimit,
		DepthLimit:       a.Config.DepthLimit,
		WSMaxMessage:     a.Config.WSMaxMessageBytes,
		MaxUploadBytes:   512 << 20,
		Authenticator:    a.auth,
		Metrics:          a.Metrics,
		Log:              a.Log,
		AroundOperations: []graphql.OperationMiddleware{loader.Middleware(a.DB)},
	})
	mux := http.NewServeMux()
	mux.Handle("/query", a.authenticate(gqlhttp.WebsocketCloser(gql)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", a.ready)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.Metrics.Registry, promhttp.HandlerOpts{}))
	if !a.Config.IsProduction() {
		mux.Handle("GET /{$}", playground.Handler("OneMember GraphiQL", "/query"))
		// Benchmarks measure memory per connection after returning what
		// is free to the OS (scripts/bench-realtime.sh).
		mux.HandleFunc("POST /debug/free-memory", procstat.FreeMemory)
		// CPU and heap profiles (BENCH_PROFILE=1 scripts/bench.sh saves one
		// per scenario).
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	}
	return a.requestContext(mux)
}

// requestContext stamps every request with a request id (taken from
// X-Request-Id when the caller sent a sane one) and the client address.
func (a *App) requestContext(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Request-Id")
		if len(id) == 0 || len(id) > 64 || strings.ContainsFunc(id, func(c rune) bool { return c < '!' || c > '~' }) {
			id = obs.NewRequestID()
		}
		w.Header().Set("X-Request-Id", id)
		ctx := obs.WithRequestID(r.Context(), id)
		ctx = obs.WithClientIP(ctx, clientIP(r, a.Config.TrustProxyHeaders))
		ctx = events.WithWaker(ctx, a.Bus)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

func clientIP(r *http.Request, trustProxy bool) string {
	if trustProxy {
		if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
			first, _, _ := strings.Cut(xff, ",")
			return strings.TrimSpace(first)
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// authenticate resolves the Authorization header of HTTP requests into the
// viewer. Websockets authenticate in connection_init instead.
func (a *App) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" {
			next.ServeHTTP(w, r)
			return
		}
		v, err := a.auth.Authenticate(r.Context(), r.Header.Get("Authorization"))
		if err != nil {
			a.Log.ErrorContext(r.Context(), "authenticating", "err", err)
			http.Error(w, `{"errors":[{"message":"service unavailable","extensions":{"code":"INTERNAL"}}]}`, http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, r.WithContext(auth.WithViewer(r.Context(), v)))
	})
}

// ready answers 200 when the database answers, every migration is
// applied and the audience indexes are built, so a load balancer only
// sends traffic to a usable replica.
func (a *App) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.SQL.PingContext(ctx); err != nil {
		http.Error(w, "database unreachable", http.StatusServiceUnavailable)
		return
	}
	current, latest, dirty, err := migrate.Status(ctx, a.SQL, migrations.FS)
	// A newer schema (a later replica already migrated) is fine during a
	// rolling deploy; an older one is not.
	if err != nil || dirty || current < latest {
		http.Error(w, fmt.Sprintf("migrations not applied (at %d of %d, dirty=%v)", current, latest, dirty), http.StatusServiceUnavailable)
		return
	}
	select {
	case <-a.Audiences.Index().Ready():
	default:
		http.Error(w, "audience indexes loading", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// Background runs everything a serving replica runs besides HTTP: the
// streams (RunStreams), the sales aggregates' refresher and the periodic
// maintenance, until ctx ends.
// Events the jobs write wake the bus after their commits.
func (a *App) Background(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { a.RunStreams(ctx) })
	wg.Go(func() {
		if err := a.Dashboard.Run(ctx, 0, a.Log.With("component", "dashboard")); err != nil && ctx.Err() == nil {
			a.Log.ErrorContext(ctx, "dashboard refresher stopped", "err", err)
		}
	})
	a.Maintenance().Run(events.WithWaker(ctx, a.Bus))
	wg.Wait()
}

// RunStreams runs what requests depend on, until ctx ends: the event bus,
// this replica's audience indexes (built, then kept current), the live
// sales feed, the campaign runner and the durable job workers. Tests run
// these without the periodic maintenance.
func (a *App) RunStreams(ctx context.Context) {
	var wg sync.WaitGroup
	run := func(name string, fn func(context.Context) error) {
		wg.Go(func() {
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				a.Log.ErrorContext(ctx, name+" stopped", "err", err)
			}
		})
	}
	if a.Config.EventBus {
		run("event bus", a.Bus.Run)
	} else {
		a.Bus.Disable()
	}
	run("audience index", a.Audiences.Index().Run)
	run("live sales", func(ctx context.Context) error {
		return a.Dashboard.RunLive(ctx, a.Log.With("component", "live-sales"))
	})
	run("campaign runner", func(ctx context.Context) error { return a.Campaigns.Run(events.WithWaker(ctx, a.Bus)) })
	run("job workers", func(ctx context.Context) error {
		a.Jobs.Run(events.WithWaker(ctx, a.Bus))
		return nil
	})
	wg.Wait()
}

// Maintenance is the periodic upkeep of this app.
func (a *App) Maintenance() *jobs.Scheduler {
	return jobs.New(a.Log,
		jobs.Job{Name: "points-expiry", Every: time.Minute, Run: a.Ledger.ExpirePoints},
		jobs.Job{Name: "tier-review", Every: 5 * time.Minute, Run: func(ctx context.Context) (int64, error) {
			n, err := a.Tiers.Review(ctx)
			return int64(n), err
		}},
		jobs.Job{Name: "paid-membership-expiry", Every: time.Minute, Run: func(ctx context.Context) (int64, error) {
			n, err := a.Membership.Expire(ctx)
			return int64(n), err
		}},
		jobs.Job{Name: "coupon-lock-release", Every: time.Minute, Run: a.Coupons.ReleaseExpiredLocks},
		jobs.Job{Name: "coupon-expiry", Every: time.Minute, Run: a.Coupons.Expire},
		jobs.Job{Name: "coupon-expiring-notice", Every: 10 * time.Minute, Run: a.Coupons.NotifyExpiring},
		jobs.Job{Name: "member-event-retention", Every: time.Hour, Run: a.Bus.Prune},
		jobs.Job{Name: "push-plan", Every: 5 * time.Second, Run: a.Push.Plan},
		jobs.Job{Name: "push-deliver", Every: 5 * time.Second, Run: a.Push.Deliver},
		jobs.Job{Name: "behavior-partitions", Every: 6 * time.Hour, Run: a.Behavior.MaintainPartitions},
		jobs.Job{Name: "member-changes-prune", Every: 10 * time.Minute, Run: a.Audiences.Index().Prune},
		jobs.Job{Name: "audience-refresh", Every: time.Minute, Run: a.Audiences.RefreshDue},
		jobs.Job{Name: "rule-tag-refresh", Every: time.Hour, Run: a.Audiences.RefreshRuleTags},
		a.Predictions.Job(24*time.Hour),
	)
}
