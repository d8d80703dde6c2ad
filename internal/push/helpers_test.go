package push_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/identity"
	"github.com/onemember/onemember/ent/memberevent"
	"github.com/onemember/onemember/ent/predicate"
	"github.com/onemember/onemember/ent/pushdelivery"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/events"
	"github.com/onemember/onemember/internal/pii"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/testkit"
	"github.com/onemember/onemember/internal/push"
)

type env struct {
	db    *ent.Client
	sql   *sql.DB
	clock *testkit.Clock
	pii   *pii.Protector
	seq   atomic.Int64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	client, sqlDB := testkit.EntClient(t, 20)
	key := func(b byte) []byte {
		k := make([]byte, pii.KeySize)
		for i := range k {
			k[i] = b + byte(i)
		}
		return k
	}
	p, err := pii.NewProtector(key(1), key(100))
	if err != nil {
		t.Fatal(err)
	}
	return &env{db: client, sql: sqlDB, clock: testkit.NewClock(time.Date(2025, 3, 10, 4, 0, 0, 0, time.UTC)), pii: p}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func (e *env) dispatcher(opts push.Options, notifiers ...push.Notifier) *push.Dispatcher {
	opts.Now = e.clock.Now
	if opts.PII == nil {
		opts.PII = e.pii
	}
	return push.NewDispatcher(e.db, e.sql, quietLog(), notifiers, opts)
}

func (e *env) member(t *testing.T) int {
	t.Helper()
	m, err := e.db.Member.Create().SetMemberNo(fmt.Sprintf("P%06d", e.seq.Add(1))).
		SetSourceChannel(enum.ChannelMiniProgram).Save(t.Context())
	if err != nil {
		t.Fatalf("creating member: %v", err)
	}
	return m.ID
}

// consent records the member's MARKETING_WECHAT answer.
func (e *env) consent(t *testing.T, memberID int, granted bool) {
	t.Helper()
	err := e.db.Consent.Create().SetMemberID(memberID).SetKind(enum.ConsentKind("MARKETING_WECHAT")).
		SetGranted(granted).SetUpdatedAt(e.clock.Now()).
		OnConflictColumns("member_id", "kind").UpdateNewValues().Exec(t.Context())
	if err != nil {
		t.Fatalf("recording consent: %v", err)
	}
}

// openid binds a WeChat openid the way internal/identity stores it.
func (e *env) openid(t *testing.T, memberID int, openid string) {
	t.Helper()
	enc, err := e.pii.Encrypt(openid, "identity.value")
	if err != nil {
		t.Fatal(err)
	}
	err = e.db.Identity.Create().SetKind(identity.KindWECHAT_OPENID).SetAppID("wxapp").
		SetLookup(e.pii.BlindIndex(string(identity.KindWECHAT_OPENID), "wxapp\x00"+openid)).
		SetValueEnc(enc).SetMaskedValue("o***").SetMemberID(memberID).Exec(t.Context())
	if err != nil {
		t.Fatalf("binding openid: %v", err)
	}
}

func (e *env) device(t *testing.T, memberID int, token string) int {
	t.Helper()
	d, err := e.db.PushDevice.Create().SetMemberID(memberID).SetPlatform("IOS").SetToken(token).Save(t.Context())
	if err != nil {
		t.Fatalf("registering device: %v", err)
	}
	return d.ID
}

// emit writes one member event as the domain services do.
func (e *env) emit(t *testing.T, memberID int, typ memberevent.Type, payload map[string]any) int {
	t.Helper()
	ev, err := database.WithTx(t.Context(), e.db, func(tx *ent.Tx) (*ent.MemberEvent, error) {
		return emitIn(t.Context(), tx, memberID, e.clock.Now(), typ, payload)
	})
	if err != nil {
		t.Fatalf("emitting %s: %v", typ, err)
	}
	return ev.ID
}

func emitIn(ctx context.Context, tx *ent.Tx, memberID int, at time.Time, typ memberevent.Type, payload map[string]any) (*ent.MemberEvent, error) {
	acct, err := account.Lock(ctx, tx, memberID)
	if err != nil {
		return nil, err
	}
	return events.Emit(ctx, tx, acct, at, events.Event{Type: typ, Payload: payload})
}

func spend(points, balance int64) map[string]any {
	return map[string]any{"pointsDelta": -points, "pointsBalance": balance, "reason": "PAYMENT"}
}

// planAll runs Plan until the member events have want delivery rows. A
// transaction anywhere on the test server (other packages' tests share it)
// holds Plan's horizon back for a moment, so one Plan may not see an event
// committed just before.
func (e *env) planAll(t *testing.T, d *push.Dispatcher, want int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := d.Plan(t.Context()); err != nil {
			t.Fatalf("plan: %v", err)
		}
		n := e.count(t)
		switch {
		case n == want:
			return
		case n > want:
			t.Fatalf("plan wrote %d delivery rows, want %d", n, want)
		case time.Now().After(deadline):
			t.Fatalf("plan wrote %d delivery rows after 30s, want %d", n, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *env) delivery(t *testing.T, eventID int, ch enum.PushChannel) *ent.PushDelivery {
	t.Helper()
	r, err := e.db.PushDelivery.Query().
		Where(pushdelivery.EventID(eventID), pushdelivery.ChannelEQ(ch)).Only(t.Context())
	if err != nil {
		t.Fatalf("delivery of event %d on %s: %v", eventID, ch, err)
	}
	return r
}

func (e *env) deliver(t *testing.T, d *push.Dispatcher) int64 {
	t.Helper()
	n, err := d.Deliver(t.Context())
	if err != nil {
		t.Fatalf("deliver: %v", err)
	}
	return n
}

// fake is a Notifier that records what it sent. fail, when set, decides
// the outcome of the n-th send (1-based) of an event.
type fake struct {
	ch   enum.PushChannel
	fail func(m push.Message, n int) error

	mu    sync.Mutex
	calls map[int]int // event id → sends tried
	sent  []push.Message
}

func newFake(ch enum.PushChannel) *fake { return &fake{ch: ch, calls: map[int]int{}} }

func (f *fake) Channel() enum.PushChannel { return f.ch }

func (f *fake) Send(ctx context.Context, m push.Message) error {
	f.mu.Lock()
	f.calls[m.EventID]++
	n := f.calls[m.EventID]
	fail := f.fail
	f.mu.Unlock()
	if m.Channel != f.ch {
		return fmt.Errorf("message for %s sent through %s: %w", m.Channel, f.ch, push.ErrPermanent)
	}
	if fail != nil {
		if err := fail(m, n); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, m)
	return nil
}

func (f *fake) messages() []push.Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]push.Message(nil), f.sent...)
}

// sentPerEvent counts accepted messages per event.
func (f *fake) sentPerEvent() map[int]int {
	out := map[int]int{}
	for _, m := range f.messages() {
		out[m.EventID]++
	}
	return out
}

var errFlaky = errors.New("provider busy")

// count counts delivery rows matching ps.
func (e *env) count(t *testing.T, ps ...predicate.PushDelivery) int {
	t.Helper()
	n, err := e.db.PushDelivery.Query().Where(ps...).Count(t.Context())
	if err != nil {
		t.Fatalf("counting deliveries: %v", err)
	}
	return n
}
