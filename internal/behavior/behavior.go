// Package behavior owns behaviour events (行为事件), the raw material of
// AIPL stages, behaviour rules of audiences and the data centre's reports:
// what members track from the mini-program and the app (Track), what
// integrations send in bulk (Ingest), what the server observes itself
// (Record, RecordMany: registrations, coupon claims, check-ins,
// referrals), and the monthly partitions of the behavior_events table
// (MaintainPartitions).
//
// # Deduplication
//
// Every event is stored under a source that scopes its eventId: "m:<member
// id>" for Track, "c:<api client id>" for Ingest and "s" for Record (whose
// eventId is a key such as "REGISTER:<member id>"). A retry resends the
// same eventId and occurredAt and meets the unique index (source, event_id,
// occurred_at): it is counted as a duplicate and nothing is written twice.
// An eventId repeated inside one call is stored once (the later ones are
// duplicates).
//
// # Partitions
//
// behavior_events is partitioned by month of occurred_at, months reckoned
// in the business zone, one partition behavior_events_YYYYMM per month.
// MaintainPartitions (run by the server at start and daily) keeps the
// months from RetentionMonths-1 back to three ahead and drops those
// entirely older than RetentionMonths. Track and Ingest never fail for
// want of a partition: an insert refused for that creates the missing
// months of its events and runs again. Record writes inside a caller's
// transaction and cannot create partitions there; it relies on
// MaintainPartitions (the server's clock is always inside the kept range),
// and a missing month is an error (ErrNoPartition).
package behavior

import (
	"database/sql"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/platform/fault"
)

// Limits of the API.
const (
	// MaxTrack bounds the events of one Track call.
	MaxTrack = 100
	// MaxIngest bounds the events of one Ingest call.
	MaxIngest = 1000
	// MaxEventIDLen bounds an eventId, in characters.
	MaxEventIDLen = 64
	// MaxTargetIDLen bounds a targetId, in characters.
	MaxTargetIDLen = 128
	// TrackMaxAge is how old an event Track accepts may be.
	TrackMaxAge = 7 * 24 * time.Hour
	// MaxClockSkew is how far in the future an event may be (a client's
	// clock running ahead).
	MaxClockSkew = 5 * time.Minute
	// MonthsAhead is how many months after the current one
	// MaintainPartitions prepares.
	MonthsAhead = 3
)

// Defaults of Options.
const (
	DefaultRetentionMonths = 13
	DefaultMemberRate      = rate.Limit(10)
	DefaultMemberBurst     = 200
)

// Errors.
var (
	// ErrRateLimited is a member sending events faster than
	// Options.MemberRate allows; nothing of the call is stored.
	ErrRateLimited = fault.New(fault.RateLimited, "too many behaviour events: slow down and retry later")
	// ErrNoPartition is an event Record could not store because
	// behavior_events has no partition for its month (MaintainPartitions
	// has not run for it).
	ErrNoPartition = fault.New(fault.Internal, "no behaviour partition for the event's month")
)

// serverOnly are the kinds only the server records: purchases come with
// orders, the others from the server's own transactions.
var serverOnly = map[enum.BehaviorKind]bool{
	enum.BehaviorPurchase:    true,
	enum.BehaviorRepurchase:  true,
	enum.BehaviorRegister:    true,
	enum.BehaviorClaimCoupon: true,
	enum.BehaviorCheckIn:     true,
}

// Options tune a Service; zero fields take their defaults.
type Options struct {
	// RetentionMonths is how many months of events are kept (default 13).
	RetentionMonths int
	// MemberRate is how many events per second a member may track in the
	// long run (default 10).
	MemberRate rate.Limit
	// MemberBurst is how many events a member may track at once (default
	// 200). A Track call needs a token per event, so a burst below
	// MaxTrack refuses the largest calls.
	MemberBurst int
}

// Service stores behaviour events.
type Service struct {
	db     *ent.Client
	sql    *sql.DB
	zone   *time.Location
	now    func() time.Time
	opts   Options
	limits *limiters
}

// New builds a Service. zone is the business zone partitions are reckoned
// in, now the clock; sqlDB is the pool under db (for the set-based inserts
// and the partition DDL).
func New(db *ent.Client, sqlDB *sql.DB, zone *time.Location, now func() time.Time, opts Options) *Service {
	if opts.RetentionMonths <= 0 {
		opts.RetentionMonths = DefaultRetentionMonths
	}
	if opts.MemberRate <= 0 {
		opts.MemberRate = DefaultMemberRate
	}
	if opts.MemberBurst <= 0 {
		opts.MemberBurst = DefaultMemberBurst
	}
	return &Service{
		db: db, sql: sqlDB, zone: zone, now: now, opts: opts,
		limits: newLimiters(opts.MemberRate, opts.MemberBurst),
	}
}

// retentionStart is the oldest instant Ingest accepts: the start of the
// month RetentionMonths-1 months before the current one.
func (s *Service) retentionStart(now time.Time) time.Time {
	return addMonths(monthStart(now, s.zone), -(s.opts.RetentionMonths - 1))
}

// monthStart is the first instant of t's month in zone.
func monthStart(t time.Time, zone *time.Location) time.Time {
	l := t.In(zone)
	return time.Date(l.Year(), l.Month(), 1, 0, 0, 0, 0, zone)
}

// addMonths moves a month start by n months.
func addMonths(month time.Time, n int) time.Time {
	return time.Date(month.Year(), month.Month()+time.Month(n), 1, 0, 0, 0, 0, month.Location())
}

// validKind reports whether k is one of enum.BehaviorKind's values.
func validKind(k enum.BehaviorKind) bool {
	for _, v := range k.Values() {
		if string(k) == v {
			return true
		}
	}
	return false
}

// validChannel reports whether c is one of enum.Channel's values.
func validChannel(c enum.Channel) bool {
	for _, v := range c.Values() {
		if string(c) == v {
			return true
		}
	}
	return false
}

func memberSource(memberID int) string { return fmt.Sprintf("m:%d", memberID) }
func clientSource(clientID int) string { return fmt.Sprintf("c:%d", clientID) }

// serverSource is the source of the events Record stores.
const serverSource = "s"

// limiters holds one token bucket per member. The map stays bounded:
// buckets idle (full) for idleAfter are dropped, which loses nothing since
// a new bucket starts full; past maxLimiters, full buckets go first, then
// arbitrary ones (those members get a fresh burst, a small price for a
// bounded memory).
type limiters struct {
	rate  rate.Limit
	burst int

	mu        sync.Mutex
	m         map[int]*limiter
	lastSweep time.Time
}

type limiter struct {
	lim  *rate.Limiter
	used time.Time
}

const (
	maxLimiters = 100_000
	idleAfter   = 10 * time.Minute
	sweepEvery  = time.Minute
)

func newLimiters(r rate.Limit, burst int) *limiters {
	return &limiters{rate: r, burst: burst, m: map[int]*limiter{}}
}

// allow takes n tokens of memberID's bucket at now, or none when it holds
// fewer.
func (l *limiters) allow(memberID, n int, now time.Time) bool {
	l.mu.Lock()
	if len(l.m) >= maxLimiters || now.Sub(l.lastSweep) >= sweepEvery || now.Before(l.lastSweep) {
		l.sweep(now)
	}
	e := l.m[memberID]
	if e == nil {
		e = &limiter{lim: rate.NewLimiter(l.rate, l.burst)}
		l.m[memberID] = e
	}
	if now.After(e.used) {
		e.used = now
	}
	l.mu.Unlock()
	return e.lim.AllowN(now, n)
}

// sweep drops idle buckets and, when still too many, enough others to get
// back under 90% of maxLimiters. l.mu is held.
func (l *limiters) sweep(now time.Time) {
	l.lastSweep = now
	full := func(e *limiter) bool { return e.lim.TokensAt(now) >= float64(l.burst) }
	for id, e := range l.m {
		if now.Sub(e.used) > idleAfter && full(e) {
			delete(l.m, id)
		}
	}
	target := maxLimiters * 9 / 10
	if len(l.m) < target {
		return
	}
	for id, e := range l.m {
		if len(l.m) < target {
			return
		}
		if full(e) {
			delete(l.m, id)
		}
	}
	for id := range l.m {
		if len(l.m) < target {
			return
		}
		delete(l.m, id)
	}
}

// size is how many buckets are held (for tests).
func (l *limiters) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
