// Package config owns the server's settings: read from the environment with
// documented defaults, checked once at start so that a bad or missing
// setting stops the process with a message naming it.
package config

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// Environments.
const (
	Development = "development"
	Production  = "production"
)

// Config is every setting of the server. The env tags are the variable
// names; README.md lists them.
type Config struct {
	Env        string `env:"APP_ENV" envDefault:"development"`
	ListenAddr string `env:"LISTEN_ADDR" envDefault:":8080"`
	// DatabaseURL is a lib/pq connection string; required.
	DatabaseURL    string `env:"DATABASE_URL"`
	DBMaxOpenConns int    `env:"DB_MAX_OPEN_CONNS" envDefault:"0"`
	DBMaxIdleConns int    `env:"DB_MAX_IDLE_CONNS" envDefault:"0"`
	// DBUnprepared sends ent's statements unprepared (parsed and planned
	// every time), for a pooler in transaction mode; see
	// database.Prepared.
	DBUnprepared    bool          `env:"DB_UNPREPARED" envDefault:"false"`
	LogLevel        string        `env:"LOG_LEVEL" envDefault:"info"`
	LogFormat       string        `env:"LOG_FORMAT" envDefault:"text"`
	BusinessZone    string        `env:"BUSINESS_TIMEZONE" envDefault:"Asia/Shanghai"`
	AccessTokenTTL  time.Duration `env:"ACCESS_TOKEN_TTL" envDefault:"15m"`
	RefreshTokenTTL time.Duration `env:"REFRESH_TOKEN_TTL" envDefault:"720h"`
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"20s"`
	// AuthCacheTTL bounds how stale a member kept in the authentication
	// cache may be (0: no cache); AuthCacheIdle evicts the entries unused
	// that long (at least AuthCacheTTL). See auth.NewAuthenticator.
	AuthCacheTTL  time.Duration `env:"AUTH_CACHE_TTL" envDefault:"2s"`
	AuthCacheIdle time.Duration `env:"AUTH_CACHE_IDLE" envDefault:"10s"`

	// Key material, each base64 of 32 random bytes. In development missing
	// keys are generated once into DevKeysFile (ignored by git).
	JWTSecret     string `env:"JWT_SECRET"`
	PIIEncKey     string `env:"PII_ENCRYPTION_KEY"`
	PIIIndexKey   string `env:"PII_INDEX_KEY"`
	SigningKey    string `env:"CODE_SIGNING_KEY"`
	DevKeysFile   string `env:"DEV_KEYS_FILE" envDefault:".onemember-dev-keys.json"`
	WeChatApps    string `env:"WECHAT_APPS"` // appid:secret[,appid:secret]
	WeChatAPIBase string `env:"WECHAT_API_BASE" envDefault:"https://api.weixin.qq.com"`
	// SMSGatewayURL receives {"phone","code","purpose"} posts in
	// production; required there.
	SMSGatewayURL string `env:"SMS_GATEWAY_URL"`
	// CampaignMessageURL receives campaigns' SMS and e-mail in production
	// (campaign.WebhookMessenger); without it they are logged, not sent.
	CampaignMessageURL string `env:"CAMPAIGN_MESSAGE_URL"`
	// Push channels of member events. In development both log; in
	// production a channel runs only when configured: PUSH_GATEWAY_URL is
	// the APNs/FCM gateway of the app, PUSH_WECHAT_APP_ID (one of
	// WECHAT_APPS) and PUSH_WECHAT_TEMPLATE_ID send WeChat subscribe
	// messages.
	PushGatewayURL       string `env:"PUSH_GATEWAY_URL"`
	PushWeChatAppID      string `env:"PUSH_WECHAT_APP_ID"`
	PushWeChatTemplateID string `env:"PUSH_WECHAT_TEMPLATE_ID"`
	// TrustProxyHeaders takes the client address from X-Forwarded-For
	// (set it only behind a proxy that overwrites that header).
	TrustProxyHeaders bool `env:"TRUST_PROXY_HEADERS" envDefault:"false"`

	OTPTTL         time.Duration `env:"OTP_TTL" envDefault:"5m"`
	OTPMaxAttempts int           `env:"OTP_MAX_ATTEMPTS" envDefault:"5"`
	// OTP sends allowed per phone per hour and per client address per hour.
	OTPPerPhoneHour int           `env:"OTP_PER_PHONE_PER_HOUR" envDefault:"5"`
	OTPPerIPHour    int           `env:"OTP_PER_IP_PER_HOUR" envDefault:"30"`
	OTPResendAfter  time.Duration `env:"OTP_RESEND_AFTER" envDefault:"60s"`

	ComplexityLimit int `env:"GRAPHQL_COMPLEXITY_LIMIT" envDefault:"5000"`
	DepthLimit      int `env:"GRAPHQL_DEPTH_LIMIT" envDefault:"12"`
	// EventBus runs this replica's event bus (memberEvents delivery);
	// false refuses subscriptions here, as for a write-only replica, and
	// lets benchmarks measure the writers without it.
	EventBus bool `env:"EVENT_BUS" envDefault:"true"`
	// Websocket limits.
	WSMaxMessageBytes int64 `env:"WS_MAX_MESSAGE_BYTES" envDefault:"65536"`

	// Decoded forms, filled by Load.
	Keys Keys   `env:"-"`
	Zone string `env:"-"`
}

// Keys holds decoded key material.
type Keys struct {
	JWT      []byte `json:"jwt"`
	PIIEnc   []byte `json:"pii_encryption"`
	PIIIndex []byte `json:"pii_index"`
	Signing  []byte `json:"code_signing"`
}

// IsProduction reports whether the server runs in production mode.
func (c *Config) IsProduction() bool { return c.Env == Production }

// WeChatSecrets parses WECHAT_APPS into appId → secret.
func (c *Config) WeChatSecrets() (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(c.WeChatApps) == "" {
		return out, nil
	}
	for _, pair := range strings.Split(c.WeChatApps, ",") {
		id, secret, ok := strings.Cut(strings.TrimSpace(pair), ":")
		if !ok || id == "" || secret == "" {
			return nil, fmt.Errorf("WECHAT_APPS: %q is not appid:secret", pair)
		}
		out[id] = secret
	}
	return out, nil
}

// Load reads the environment and validates it, naming every bad setting.
func Load() (*Config, error) {
	var c Config
	if err := env.Parse(&c); err != nil {
		return nil, fmt.Errorf("config: %w", nameVariables(err))
	}
	var errs []error
	if c.Env != Development && c.Env != Production {
		errs = append(errs, fmt.Errorf("APP_ENV must be %q or %q, not %q", Development, Production, c.Env))
	}
	if c.DatabaseURL == "" {
		errs = append(errs, errors.New("DATABASE_URL is required (README: `make run` starts a local PostgreSQL and sets it)"))
	}
	if _, err := time.LoadLocation(c.BusinessZone); err != nil {
		errs = append(errs, fmt.Errorf("BUSINESS_TIMEZONE: %w", err))
	}
	if c.AccessTokenTTL <= 0 || c.RefreshTokenTTL <= c.AccessTokenTTL {
		errs = append(errs, errors.New("ACCESS_TOKEN_TTL must be positive and shorter than REFRESH_TOKEN_TTL"))
	}
	if c.OTPMaxAttempts < 1 {
		errs = append(errs, errors.New("OTP_MAX_ATTEMPTS must be at least 1"))
	}
	if c.IsProduction() && c.SMSGatewayURL == "" {
		errs = append(errs, errors.New("SMS_GATEWAY_URL is required in production"))
	}
	if _, err := c.WeChatSecrets(); err != nil {
		errs = append(errs, err)
	}
	keys, err := c.loadKeys()
	if err != nil {
		errs = append(errs, err)
	}
	c.Keys = keys
	if len(errs) > 0 {
		return nil, fmt.Errorf("config: %w", errors.Join(errs...))
	}
	return &c, nil
}

// nameVariables rewrites the env library's parse errors, which name Go
// fields, to name the environment variables an operator sets.
func nameVariables(err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	t := reflect.TypeOf(Config{})
	out := make([]error, 0, len(agg.Errors))
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			if f, ok := t.FieldByName(pe.Name); ok {
				out = append(out, fmt.Errorf("%s: %w", f.Tag.Get("env"), pe.Err))
				continue
			}
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// loadKeys decodes the key settings. In development a missing key is taken
// from (or generated into) DevKeysFile, so a fresh checkout runs without
// setup while production never falls back to generated keys.
func (c *Config) loadKeys() (Keys, error) {
	var dev Keys
	if !c.IsProduction() {
		var err error
		if dev, err = devKeys(c.DevKeysFile); err != nil {
			return Keys{}, err
		}
	}
	var errs []error
	decode := func(name, v string, fallback []byte) []byte {
		if v == "" {
			if c.IsProduction() {
				errs = append(errs, fmt.Errorf("%s is required in production (base64 of 32 random bytes)", name))
			}
			return fallback
		}
		b, err := base64.StdEncoding.DecodeString(v)
		if err != nil || len(b) != 32 {
			errs = append(errs, fmt.Errorf("%s must be base64 of exactly 32 bytes", name))
		}
		return b
	}
	k := Keys{
		JWT:      decode("JWT_SECRET", c.JWTSecret, dev.JWT),
		PIIEnc:   decode("PII_ENCRYPTION_KEY", c.PIIEncKey, dev.PIIEnc),
		PIIIndex: decode("PII_INDEX_KEY", c.PIIIndexKey, dev.PIIIndex),
		Signing:  decode("CODE_SIGNING_KEY", c.SigningKey, dev.Signing),
	}
	return k, errors.Join(errs...)
}

func devKeys(path string) (Keys, error) {
	var k Keys
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &k); err != nil {
			return k, fmt.Errorf("DEV_KEYS_FILE %s: %w", path, err)
		}
		return k, nil
	case !errors.Is(err, os.ErrNotExist):
		return k, fmt.Errorf("DEV_KEYS_FILE %s: %w", path, err)
	}
	for _, dst := range []*[]byte{&k.JWT, &k.PIIEnc, &k.PIIIndex, &k.Signing} {
		*dst = make([]byte, 32)
		_, _ = rand.Read(*dst)
	}
	b, _ = json.MarshalIndent(k, "", "  ")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return k, fmt.Errorf("writing DEV_KEYS_FILE %s: %w", path, err)
	}
	return k, nil
}
