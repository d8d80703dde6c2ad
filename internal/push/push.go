// Package push owns the outside push channels fed from the member event
// log (member_events): WeChat subscribe messages and app push through a
// gateway standing in for APNs/FCM. It decides which events become pushes
// and for whom (consent, a WeChat openid, a live device), and records the
// state of every (event, channel) pair in push_deliveries so that a restart
// neither loses nor repeats a push.
//
// The work is split in two stages, each safe to run on several replicas:
//
//   - Plan reads the event log past the "push" cursor and writes one
//     push_deliveries row per (event, configured channel): PENDING, or
//     SKIPPED with the reason in last_error. The cursor is a transaction-id
//     horizon and moves in the same transaction as the rows it covers.
//   - Deliver claims due PENDING rows (FOR UPDATE SKIP LOCKED), renders and
//     sends them, and records SENT, a retry or FAILED in the claiming
//     transaction.
//
// Which events are pushed (see decide and compose):
//
//   - TIER_CHANGED: promotions only (direction UP): "恭喜升级为{等级}", or
//     "欢迎成为{等级}" for a first tier. Downgrades stay in-app only.
//   - POINTS_CHANGED: debits only (spend, expiry, reversal, downward
//     adjustment); earning is frequent and already shown at the till.
//   - STORED_VALUE_CHANGED: every movement; a balance change is a
//     transactional notice the member must not miss.
//   - COUPON_ISSUED and COUPON_EXPIRING: always.
//   - MESSAGE (a campaign's message, internal/campaign): only through the
//     channel its payload names (WECHAT_SUBSCRIBE or APP_PUSH), with the
//     payload's title and body; IN_APP, SMS and EMAIL messages are never
//     pushed here.
//
// Events of MERGED or ERASED members, and events older than Options.MaxAge
// when planned (a first deployment's backlog, a long outage), are SKIPPED.
//
// Consent: WECHAT_SUBSCRIBE needs MARKETING_WECHAT granted and a live
// WECHAT_OPENID identity. In production WeChat also needs the member's
// acceptance of each template (wx.requestSubscribeMessage in the
// mini-program, one message per acceptance); a send without it fails with
// errcode 43101, recorded as FAILED. APP_PUSH needs a live push_devices row;
// the operating system's notification permission is its opt-in, so it asks
// for no marketing consent (these are service notices).
package push

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/pii"
)

// ErrPermanent marks a send that must not be retried: the provider refused
// the message for a reason that a retry cannot change.
var ErrPermanent = errors.New("push: permanent failure")

// ErrInvalidTarget is a permanent failure because the target itself is
// gone (an unregistered device token, an unknown openid). It wraps
// ErrPermanent. A device whose token fails with it is disabled.
var ErrInvalidTarget = permanentError{msg: "push: target no longer valid"}

type permanentError struct{ msg string }

func (e permanentError) Error() string        { return e.msg }
func (e permanentError) Is(target error) bool { return target == ErrPermanent }

// Message is one push to one target.
type Message struct {
	EventID, MemberID int
	Channel           enum.PushChannel
	Title, Body       string
	// Data travels with the message to the app (eventId, type); clients
	// may drop a second message with an eventId they have shown.
	Data map[string]string
	// Target is the WeChat openid or the device token.
	Target string
}

// Notifier sends messages through one channel. Send returns an error
// wrapping ErrPermanent when retrying cannot help; any other error is
// retried with backoff.
type Notifier interface {
	Channel() enum.PushChannel
	Send(ctx context.Context, m Message) error
}

// Decrypter opens encrypted identity values (the WeChat openid).
type Decrypter interface {
	Decrypt(ct []byte, aad string) (string, error)
}

var _ Decrypter = (*pii.Protector)(nil)

// Options tune a Dispatcher. Zero fields take the defaults.
type Options struct {
	// Batch is how many events one Plan transaction reads (200). A
	// transaction's events are never split, so a batch may exceed it.
	Batch int
	// SendBatch is how many deliveries one Deliver transaction claims and
	// keeps locked while it sends them (20): it bounds both the time locks
	// are held and how many messages a crash can send twice.
	SendBatch int
	// SendTimeout bounds one Send (10s).
	SendTimeout time.Duration
	// MaxAttempts is how many sends a delivery gets before FAILED (8).
	MaxAttempts int
	// Backoff is the wait after the attempt-th failed send (exponential
	// from 5s, capped at 1h).
	Backoff func(attempt int) time.Duration
	// MaxAge: events older than this when planned are SKIPPED (24h).
	MaxAge time.Duration
	// Zone is the business time zone dates are shown in (UTC+8).
	Zone *time.Location
	// PII decrypts the WeChat openid. Without it WECHAT_SUBSCRIBE
	// deliveries are SKIPPED.
	PII Decrypter
	// WeChatAppID is the mini-program whose openid subscribe messages go
	// to (an openid is per app and must match the app of the access token
	// and template). Empty takes the member's most recently bound openid,
	// which is right only with a single mini-program.
	WeChatAppID string
	// Now is the clock (time.Now).
	Now func() time.Time
}

// Defaults.
const (
	DefaultBatch       = 200
	DefaultSendBatch   = 20
	DefaultSendTimeout = 10 * time.Second
	DefaultMaxAttempts = 8
	DefaultMaxAge      = 24 * time.Hour
)

// DefaultBackoff waits 5s after the first failure, doubling up to 1h.
func DefaultBackoff(attempt int) time.Duration {
	const first, ceiling = 5 * time.Second, time.Hour
	if attempt < 1 {
		attempt = 1
	}
	d := first
	for i := 1; i < attempt; i++ {
		d *= 2
		if d >= ceiling {
			return ceiling
		}
	}
	return d
}

func (o Options) withDefaults() Options {
	if o.Batch <= 0 {
		o.Batch = DefaultBatch
	}
	if o.SendBatch <= 0 {
		o.SendBatch = DefaultSendBatch
	}
	if o.SendTimeout <= 0 {
		o.SendTimeout = DefaultSendTimeout
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.Backoff == nil {
		o.Backoff = DefaultBackoff
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.Zone == nil {
		// China has no daylight saving time, so a fixed zone is exact and
		// needs no tzdata.
		o.Zone = time.FixedZone("CST", 8*60*60)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// LogNotifier is the development channel: it logs each message and never
// fails.
type LogNotifier struct {
	channel enum.PushChannel
	log     *slog.Logger
}

// NewLogNotifier returns a LogNotifier standing in for channel. A nil log
// discards.
func NewLogNotifier(channel enum.PushChannel, log *slog.Logger) *LogNotifier {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &LogNotifier{channel: channel, log: log}
}

var _ Notifier = (*LogNotifier)(nil)

// Channel implements Notifier.
func (n *LogNotifier) Channel() enum.PushChannel { return n.channel }

// Send implements Notifier.
func (n *LogNotifier) Send(ctx context.Context, m Message) error {
	n.log.InfoContext(ctx, "push (log only)", "channel", m.Channel, "event", m.EventID, "member", m.MemberID,
		"target", maskTarget(m.Target), "title", m.Title, "body", m.Body)
	return nil
}

// maskTarget keeps openids and device tokens out of logs.
func maskTarget(s string) string {
	if len(s) <= 6 {
		return "***"
	}
	return s[:4] + "***"
}
