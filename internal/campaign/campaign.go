// Package campaign owns campaigns (营销策略 / 事件营销): a trigger, an
// optional saved audience, one to five actions (issue a coupon, award
// points, send a message), a window, guards (consent, caps, priority,
// budget), a holdout group, and the report that measures their effect
// (营销复盘). internal/campaign/spec describes triggers and actions; this
// package validates campaigns, runs them and reports on them.
//
// # Life of a campaign
//
//	DRAFT ─Activate→ ACTIVE ─Pause→ PAUSED ─Activate→ ACTIVE …
//	any ─End→ ENDED (for good); ACTIVE or PAUSED past endsAt → ENDED (Plan).
//
// # Triggers and occurrences
//
// Every execution is one (campaign, member, occurrence) row of
// campaign_executions, unique, so it happens at most once whatever
// crashes, retries or replicas do. The occurrence names what the member
// reacted to:
//
//	ONE_OFF          "once"                      at trigger.at (at once when activated later)
//	SCHEDULED        "2026-11-23T09:00+08:00"     each cron slot (five fields, business zone)
//	HOLIDAY          "2027-02-06"                 the holiday's date, on date − daysBefore
//	BIRTHDAY         "birthday:2026"              daily: birthdays within daysBefore days
//	INACTIVITY       "inactive:<last order id>"   daily: last purchase inactiveDays or more ago
//	CHURN_RISK       "churn:2026-11-20"           daily: churn risk ≥ min in the last fit (its date)
//	POINTS_EXPIRING  "points-expiring:2026-11-30" daily: points whose last day is within daysBefore days
//	REGISTRATION     "registration"               a member registered
//	FIRST_PURCHASE   "first-purchase"             a member's first order
//	PURCHASE         "order:<order id>"           an order of at least minAmount
//	TIER_CHANGED     "tier-event:<tier change id>" a member entered tierCode
//
// Time triggers (the first seven) are planned by Plan: every due slot of
// an ACTIVE campaign becomes a durable RUN_CAMPAIGN job (jobqueue) with
// the idempotency key "campaign:<id>:<slot occurrence>" (the occurrence
// above, or the business day of a daily trigger), in the transaction that
// moves the campaign's next_run_at, so two planners (replicas) enqueue it
// once. Daily triggers run at Options.DailyAt (09:00) in the business
// zone. The job (RunHandler) selects the members when it runs and serves
// them in ascending id, Options.BatchSize per transaction, each ending
// with the job's checkpoint: a job resumed after a crash starts after the
// last committed batch.
//
// BIRTHDAY reads the full birthday, which is stored only encrypted
// (members.birthday_enc): each daily run decrypts the birthdays of the
// members whose clear birth_month falls in the window (a twelfth of them
// for a week's window), so no plaintext date is ever stored. A member
// with a month but no full date celebrates on the 1st; 29 February is
// celebrated on the 28th in other years. Running daily over a window
// (rather than on the exact day) means a member is still greeted when a
// campaign is activated, or the server was down, within the window.
//
// Event triggers (the last four) react within seconds: Pass, run every
// Options.Poll by Run, reads member_changes, the change log that triggers
// on members (insert, tier) and orders (insert, update) fill, and looks at
// the members it names. Its cursor is a transaction-id horizon
// (pg_snapshot_xmin, as internal/dashboard and internal/push do): each
// pass reads every change at or above the campaign's horizon and moves the
// horizon to the oldest transaction still running, so a transaction that
// commits after a later one (a late commit) is read by the next pass; the
// changes of transactions above the horizon that have committed are read
// at once, and again later, which the unique executions make harmless.
// What the pass reads is narrowed by time: only members registered,
// orders created and tier changes made since the campaign was activated
// (or reactivated) count. member_changes keeps an hour of rows
// (internal/audience prunes it); when no pass ran for longer than
// gapAfter, or a campaign is reactivated with replaySkipped, the pass
// finds the members by their timestamps instead (replay).
//
// # Guards, in this order
//
//  1. The member is ACTIVE (others are skipped without a row) and in the
//     campaign's audience; the campaign is ACTIVE and now is within
//     [startsAt, endsAt).
//  2. Consent: SMS needs MARKETING_SMS, WECHAT_SUBSCRIBE MARKETING_WECHAT,
//     EMAIL MARKETING_EMAIL. IN_APP (the member's own inbox) and APP_PUSH
//     (the operating system's notification permission is its opt-in, as
//     internal/push treats it) need none. A message the member may not
//     receive is left out; a member whose every action is such a message
//     is SUPPRESSED_CONSENT.
//  3. Caps, SUPPRESSED_CAP: maxPerMember REACHED executions of this
//     campaign, or a REACHED execution of any campaign within the last
//     frequencyCapDays days.
//  4. Priority, SUPPRESSED_PRIORITY (reported under suppressedByCap):
//     when campaigns match one member at once, those of the highest
//     priority act and those of a lower priority do not (campaigns of
//     equal priority do not exclude each other). "At once" is
//     the same Pass for event triggers (a member registering and
//     buying in the same few seconds), and the same business day for time
//     triggers: a job leaves out the members that an ACTIVE time-triggered
//     campaign of higher priority selects on the same day, whether that
//     campaign has run yet or not, so the outcome does not depend on which
//     job ran first. An event and a time trigger are never "at once"; the
//     frequency cap keeps them apart.
//  5. Holdout, HOLDOUT and nothing else: a stable hash of the campaign
//     (its name and start, which dryRunCampaign knows before the campaign
//     exists) and the member, mod 100, below holdoutPercent. The same
//     member is always in or out of a campaign's holdout.
//  6. Budget, SUPPRESSED_BUDGET: an execution's cost (below) is taken from
//     budget − spent under the campaign's row lock; what does not fit is
//     suppressed.
//
// An action that fails (no stock left, the per-member limit, a coupon
// template whose window ended) makes the execution FAILED, without its
// other actions and without cost. Costs: ISSUE_COUPON the face value of a
// FIXED_AMOUNT or THRESHOLD coupon (PERCENT_OFF and GIFT have no value
// known in advance: 0), AWARD_POINTS points × PointValueFen (100 points
// pay 1 yuan), SMS Options.SMSCost and EMAIL Options.EmailCost per
// message; the other channels cost nothing.
//
// # Transactions and locks
//
// One batch is one transaction: its executions, coupons, points, events,
// the campaigns' spent and the job's checkpoint commit together or not at
// all (a pass moves its cursors once all its batches have committed). Lock order, the same
// on every path: member accounts in ascending member id (created on first
// use), then the campaigns' rows in ascending id, then coupon templates in
// ascending id, then the job's row. Executions already recorded are read
// after the account locks, so two runners reaching one member take turns
// and the second sees what the first committed; the unique index is the
// last line.
//
// Messages: IN_APP writes a MESSAGE member event with a notification
// (inbox and app subscription); WECHAT_SUBSCRIBE and APP_PUSH write a
// MESSAGE event without one, which internal/push sends through that
// channel only; SMS and EMAIL go to the Messenger after the batch has
// committed, never for a batch rolled back and never twice (a crash
// between the commit and the send loses the message: at most once).
package campaign

import (
	"context"
	"database/sql"
	"log/slog"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/coupon"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Defaults of zero Options fields.
const (
	DefaultPoll      = time.Second
	DefaultBatchSize = 1000
	DefaultDailyAt   = 9 * time.Hour
	DefaultSMSCost   = 5 // fen per SMS
	// DefaultAttributionDays is the attribution window of a campaign that
	// sets none.
	DefaultAttributionDays = 7
	// PointValueFen is what one awarded point costs: 100 points pay 1 yuan.
	PointValueFen = 1
)

// Errors. Each wraps the fault kind its extensions.code comes from.
var (
	ErrNotFound = fault.New(fault.NotFound, "campaign not found")
	// ErrTransition is a state change the campaign's status does not
	// allow (ENDED is for good; a DRAFT cannot be paused).
	ErrTransition = fault.New(fault.Conflict, "the campaign cannot make this change in its current status")
	// ErrWindowOver is an activation after the campaign's endsAt.
	ErrWindowOver = fault.New(fault.Conflict, "the campaign's window is over")
)

// AudienceMembers returns the member ids of a saved audience as computed,
// ascending (audience.Service).
type AudienceMembers interface {
	MemberIDs(ctx context.Context, audienceID int) ([]int, error)
}

// CouponIssuer issues one coupon of a template to each of several locked
// accounts (coupon.Service).
type CouponIssuer interface {
	IssueBatchInTx(ctx context.Context, tx *ent.Tx, accts []*ent.Account, templateID int, source string) ([]coupon.Issued, error)
}

// PointsEarner credits points to a locked account (ledger.Service).
type PointsEarner interface {
	EarnPoints(ctx context.Context, tx *ent.Tx, acct *ent.Account, e ledger.Entry) (*ent.PointsEntry, error)
}

// Jobs queues RUN_CAMPAIGN jobs (jobqueue.Queue).
type Jobs interface {
	EnqueueInTx(ctx context.Context, tx *ent.Tx, kind enum.JobKind, params map[string]any, idempotencyKey string, staffID *int) (*ent.Job, bool, error)
}

// Decrypter opens personal data (pii.Protector), for birthdays.
type Decrypter interface {
	Decrypt(ct []byte, aad string) (string, error)
}

// Options tune a Service; zero fields take the defaults.
type Options struct {
	// Poll is how often Run plans time triggers and reads event triggers
	// (DefaultPoll).
	Poll time.Duration
	// BatchSize is how many members one transaction serves
	// (DefaultBatchSize).
	BatchSize int
	// DailyAt is the time of day, in the business zone, at which daily
	// triggers run (DefaultDailyAt: 09:00, not at night).
	DailyAt time.Duration
	// SMSCost and EmailCost are the cost of one message (fen); SMSCost 0
	// means DefaultSMSCost, a negative value free.
	SMSCost, EmailCost int64
}

func (o Options) withDefaults() Options {
	if o.Poll <= 0 {
		o.Poll = DefaultPoll
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.DailyAt <= 0 || o.DailyAt >= 24*time.Hour {
		o.DailyAt = DefaultDailyAt
	}
	switch {
	case o.SMSCost == 0:
		o.SMSCost = DefaultSMSCost
	case o.SMSCost < 0:
		o.SMSCost = 0
	}
	o.EmailCost = max(o.EmailCost, 0)
	return o
}

// Deps are what a Service needs. Messenger nil logs messages (LogMessenger
// on Log); PII nil celebrates every birthday on the 1st of its month.
type Deps struct {
	DB        *ent.Client
	SQL       *sql.DB
	Audiences AudienceMembers
	Coupons   CouponIssuer
	Ledger    PointsEarner
	Messenger Messenger
	Jobs      Jobs
	PII       Decrypter
	Zone      *time.Location
	Now       func() time.Time
	Log       *slog.Logger
	Options   Options
}

// Service runs campaigns.
type Service struct {
	db        *ent.Client
	sql       *sql.DB
	audiences AudienceMembers
	coupons   CouponIssuer
	ledger    PointsEarner
	messenger Messenger
	jobs      Jobs
	pii       Decrypter
	zone      *time.Location
	now       func() time.Time
	log       *slog.Logger
	opts      Options
}

// New builds a Service.
func New(d Deps) *Service {
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Messenger == nil {
		d.Messenger = LogMessenger{Log: d.Log}
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Zone == nil {
		d.Zone = time.UTC
	}
	return &Service{db: d.DB, sql: d.SQL, audiences: d.Audiences, coupons: d.Coupons, ledger: d.Ledger,
		messenger: d.Messenger, jobs: d.Jobs, pii: d.PII, zone: d.Zone, now: d.Now, log: d.Log,
		opts: d.Options.withDefaults()}
}
