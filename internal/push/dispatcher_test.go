package push_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/logcursor"
	"github.com/onemember/onemember/ent/memberevent"
	"github.com/onemember/onemember/ent/pushdelivery"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/auth/password"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/push"
)

const (
	wechat = enum.PushWeChatSubscribe
	app    = enum.PushApp
)

func wantRow(t *testing.T, r *ent.PushDelivery, status pushdelivery.Status, reason string) {
	t.Helper()
	if r.Status != status || !strings.Contains(r.LastError, reason) || (reason == "" && r.LastError != "") {
		t.Errorf("event %d on %s: %s %q, want %s %q", r.EventID, r.Channel, r.Status, r.LastError, status, reason)
	}
}

func TestPlanOneRowPerEventAndChannel(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	full := e.member(t) // consent, openid and a device
	e.consent(t, full, true)
	e.openid(t, full, "openid-full")
	e.device(t, full, "token-full")
	noConsent := e.member(t) // openid and device, never asked
	e.openid(t, noConsent, "openid-nc")
	e.device(t, noConsent, "token-nc")
	withdrawn := e.member(t) // said no
	e.consent(t, withdrawn, false)
	e.openid(t, withdrawn, "openid-w")
	bare := e.member(t) // consent but no openid, no device
	e.consent(t, bare, true)

	spendFull := e.emit(t, full, memberevent.TypePOINTS_CHANGED, spend(300, 700))
	earnFull := e.emit(t, full, memberevent.TypePOINTS_CHANGED, map[string]any{"pointsDelta": 100, "pointsBalance": 800, "reason": "ORDER"})
	topUpNC := e.emit(t, noConsent, memberevent.TypeSTORED_VALUE_CHANGED, map[string]any{"amountDelta": 10000, "storedValueBalance": 10000, "reason": "TOP_UP"})
	couponW := e.emit(t, withdrawn, memberevent.TypeCOUPON_ISSUED, map[string]any{"title": "生日券"})
	couponBare := e.emit(t, bare, memberevent.TypeCOUPON_EXPIRING, map[string]any{"title": "生日券"})
	downFull := e.emit(t, full, memberevent.TypeTIER_CHANGED, map[string]any{"direction": "DOWN", "toTierId": 1})

	d := e.dispatcher(push.Options{}, newFake(wechat), newFake(app))
	e.planAll(t, d, 12)

	wantRow(t, e.delivery(t, spendFull, wechat), pushdelivery.StatusPENDING, "")
	wantRow(t, e.delivery(t, spendFull, app), pushdelivery.StatusPENDING, "")
	wantRow(t, e.delivery(t, earnFull, wechat), pushdelivery.StatusSKIPPED, "points earned are not pushed")
	wantRow(t, e.delivery(t, earnFull, app), pushdelivery.StatusSKIPPED, "points earned are not pushed")
	wantRow(t, e.delivery(t, topUpNC, wechat), pushdelivery.StatusSKIPPED, "no consent")
	wantRow(t, e.delivery(t, topUpNC, app), pushdelivery.StatusPENDING, "")
	wantRow(t, e.delivery(t, couponW, wechat), pushdelivery.StatusSKIPPED, "no consent")
	wantRow(t, e.delivery(t, couponW, app), pushdelivery.StatusSKIPPED, "no live push device")
	wantRow(t, e.delivery(t, couponBare, wechat), pushdelivery.StatusSKIPPED, "no WeChat openid")
	wantRow(t, e.delivery(t, couponBare, app), pushdelivery.StatusSKIPPED, "no live push device")
	wantRow(t, e.delivery(t, downFull, wechat), pushdelivery.StatusSKIPPED, "downgrades")
	wantRow(t, e.delivery(t, downFull, app), pushdelivery.StatusSKIPPED, "downgrades")

	// A second Plan, by this dispatcher or another, writes nothing.
	for _, p := range []*push.Dispatcher{d, e.dispatcher(push.Options{}, newFake(wechat), newFake(app))} {
		n, err := p.Plan(ctx)
		if err != nil || n != 0 {
			t.Fatalf("second plan: %d rows, %v; want 0", n, err)
		}
	}
	if n := e.count(t); n != 12 {
		t.Fatalf("%d delivery rows after replanning, want 12", n)
	}
	cur, err := e.db.LogCursor.Query().Where(logcursor.Name(push.CursorName)).Only(ctx)
	if err != nil {
		t.Fatalf("reading cursor: %v", err)
	}
	var maxTx int64
	if err := e.sql.QueryRowContext(ctx, `SELECT max(tx_id) FROM member_events`).Scan(&maxTx); err != nil {
		t.Fatal(err)
	}
	if cur.Position <= maxTx {
		t.Errorf("cursor at %d, want past the last event's transaction %d", cur.Position, maxTx)
	}
}

func TestPlanBatchesAndSkipsStaleEvents(t *testing.T) {
	e := newEnv(t)
	m := e.member(t)
	e.device(t, m, "token")
	var ids []int
	for i := range 7 {
		ids = append(ids, e.emit(t, m, memberevent.TypePOINTS_CHANGED, spend(int64(i+1), 100)))
	}
	e.clock.Advance(25 * time.Hour) // the events are a day old when planned
	fresh := e.emit(t, m, memberevent.TypePOINTS_CHANGED, spend(9, 91))

	d := e.dispatcher(push.Options{Batch: 3}, newFake(app))
	e.planAll(t, d, 8)
	for _, id := range ids {
		wantRow(t, e.delivery(t, id, app), pushdelivery.StatusSKIPPED, "older than 24h")
	}
	wantRow(t, e.delivery(t, fresh, app), pushdelivery.StatusPENDING, "")
}

// An event written by a transaction that began first but commits last is
// below the position an id cursor would have moved past.
func TestPlanEventCommittedOutOfOrder(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	early, late := e.member(t), e.member(t)
	e.device(t, early, "token-early")
	e.device(t, late, "token-late")
	d := e.dispatcher(push.Options{}, newFake(app))

	tx1, err := e.db.Tx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx1.Rollback()
	ev1, err := emitIn(ctx, tx1, early, e.clock.Now(), memberevent.TypePOINTS_CHANGED, spend(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	ev2 := e.emit(t, late, memberevent.TypePOINTS_CHANGED, spend(2, 2)) // tx2 commits while tx1 is open
	if ev2 <= ev1.ID {
		t.Fatalf("event ids %d then %d: want the committed event to have the larger id", ev1.ID, ev2)
	}

	// With tx1 open, Plan must not move past it: it plans nothing at
	// tx1's id or later, the committed event included.
	for range 3 {
		if _, err := d.Plan(ctx); err != nil {
			t.Fatalf("plan: %v", err)
		}
	}
	if n := e.count(t); n != 0 {
		t.Fatalf("%d rows planned while an older transaction was open, want 0", n)
	}

	if err := tx1.Commit(); err != nil {
		t.Fatal(err)
	}
	e.planAll(t, d, 2)
	wantRow(t, e.delivery(t, ev1.ID, app), pushdelivery.StatusPENDING, "")
	wantRow(t, e.delivery(t, ev2, app), pushdelivery.StatusPENDING, "")
}

func TestDeliverSendsEachOnce(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	m := e.member(t)
	e.consent(t, m, true)
	e.openid(t, m, "openid-m")
	e.device(t, m, "token-a")
	e.device(t, m, "token-b")
	gold, err := e.db.Tier.Create().SetCode("GOLD").SetName("金卡").SetRank(3).SetThreshold(1000).Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := e.db.CouponTemplate.Create().SetTitle("满100减10").SetKind(enum.CouponKind("THRESHOLD")).
		SetFaceValue(1000).SetMinSpend(10000).SetTotalStock(10).SetPerMemberLimit(1).Save(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := e.db.Coupon.Create().SetCode("C1").SetTemplateID(tmpl.ID).SetMemberID(m).
		SetExpiresAt(time.Date(2025, 3, 31, 16, 0, 0, 0, time.UTC)).Save(ctx)
	if err != nil {
		t.Fatal(err)
	}

	up := e.emit(t, m, memberevent.TypeTIER_CHANGED, map[string]any{"direction": "UP", "fromTierId": 1, "toTierId": gold.ID, "toCode": "GOLD"})
	sv := e.emit(t, m, memberevent.TypeSTORED_VALUE_CHANGED, map[string]any{"amountDelta": -12345, "storedValueBalance": 100005, "reason": "PAYMENT"})
	coupon := e.emit(t, m, memberevent.TypeCOUPON_ISSUED, map[string]any{"couponId": cp.ID})

	wx, ap := newFake(wechat), newFake(app)
	d := e.dispatcher(push.Options{Zone: time.FixedZone("CST", 8*3600)}, wx, ap)
	e.planAll(t, d, 6)
	if n := e.deliver(t, d); n != 6 {
		t.Fatalf("deliver changed %d rows, want 6", n)
	}
	for _, id := range []int{up, sv, coupon} {
		for _, ch := range []enum.PushChannel{wechat, app} {
			r := e.delivery(t, id, ch)
			if r.Status != pushdelivery.StatusSENT || r.Attempts != 1 || r.SentAt == nil || !r.SentAt.Equal(e.clock.Now()) {
				t.Errorf("event %d on %s: %s attempts %d sent %v", id, ch, r.Status, r.Attempts, r.SentAt)
			}
		}
	}

	want := map[int]struct{ title, body string }{
		up:     {"恭喜升级为金卡", "您已升级为金卡，尽享更多会员权益。"},
		sv:     {"储值支出提醒", "您的储值账户支出¥123.45（消费），当前余额¥1000.05。"},
		coupon: {"优惠券到账提醒", "您获得一张「满100减10」，有效期至2025-03-31 23:59。"},
	}
	wxMsgs := wx.messages()
	if len(wxMsgs) != 3 {
		t.Fatalf("WeChat sent %d messages, want 3", len(wxMsgs))
	}
	for _, msg := range wxMsgs {
		w := want[msg.EventID]
		if msg.Target != "openid-m" || msg.MemberID != m || msg.Title != w.title || msg.Body != w.body ||
			msg.Data["eventId"] != fmt.Sprint(msg.EventID) {
			t.Errorf("WeChat message %+v, want %q / %q to openid-m", msg, w.title, w.body)
		}
	}
	// APP_PUSH goes to every live device: 3 events × 2 devices.
	appMsgs := ap.messages()
	targets := map[string]int{}
	for _, msg := range appMsgs {
		targets[msg.Target]++
		if w := want[msg.EventID]; msg.Title != w.title || msg.Body != w.body {
			t.Errorf("app message %+v", msg)
		}
	}
	if len(appMsgs) != 6 || targets["token-a"] != 3 || targets["token-b"] != 3 {
		t.Errorf("app sent %d messages to %v, want 3 to each device", len(appMsgs), targets)
	}

	if n := e.deliver(t, d); n != 0 || len(wx.messages()) != 3 || len(ap.messages()) != 6 {
		t.Errorf("a second Deliver changed %d rows and sent more", n)
	}
}

func TestDeliverRetriesWithBackoffThenSent(t *testing.T) {
	e := newEnv(t)
	m := e.member(t)
	e.device(t, m, "token")
	ev := e.emit(t, m, memberevent.TypePOINTS_CHANGED, spend(10, 0))
	f := newFake(app)
	f.fail = func(_ push.Message, n int) error {
		if n <= 2 {
			return errFlaky
		}
		return nil
	}
	d := e.dispatcher(push.Options{}, f)
	e.planAll(t, d, 1)

	start := e.clock.Now()
	e.deliver(t, d)
	r := e.delivery(t, ev, app)
	if r.Status != pushdelivery.StatusPENDING || r.Attempts != 1 || !r.NextAttemptAt.Equal(start.Add(5*time.Second)) ||
		!strings.Contains(r.LastError, "provider busy") {
		t.Fatalf("after a failure: %s attempts %d next %s error %q", r.Status, r.Attempts, r.NextAttemptAt, r.LastError)
	}
	// Not due yet: nothing is tried.
	e.clock.Advance(4 * time.Second)
	if n := e.deliver(t, d); n != 0 || f.calls[ev] != 1 {
		t.Fatalf("retried before its time: %d rows, %d calls", n, f.calls[ev])
	}
	e.clock.Advance(time.Second)
	e.deliver(t, d)
	r = e.delivery(t, ev, app)
	if r.Status != pushdelivery.StatusPENDING || r.Attempts != 2 || !r.NextAttemptAt.Equal(e.clock.Now().Add(10*time.Second)) {
		t.Fatalf("after the second failure: %s attempts %d next %s", r.Status, r.Attempts, r.NextAttemptAt)
	}
	e.clock.Advance(10 * time.Second)
	e.deliver(t, d)
	r = e.delivery(t, ev, app)
	if r.Status != pushdelivery.StatusSENT || r.Attempts != 3 || r.SentAt == nil {
		t.Fatalf("after the third try: %s attempts %d sent %v", r.Status, r.Attempts, r.SentAt)
	}
	if got := f.sentPerEvent()[ev]; got != 1 {
		t.Fatalf("accepted %d times, want 1", got)
	}
}

func TestDeliverFailures(t *testing.T) {
	e := newEnv(t)
	m := e.member(t)
	e.device(t, m, "token")
	permanent := e.emit(t, m, memberevent.TypePOINTS_CHANGED, spend(1, 0))
	flaky := e.emit(t, m, memberevent.TypePOINTS_CHANGED, spend(2, 0))
	f := newFake(app)
	f.fail = func(msg push.Message, _ int) error {
		if msg.EventID == permanent {
			return fmt.Errorf("template rejected: %w", push.ErrPermanent)
		}
		return errFlaky
	}
	d := e.dispatcher(push.Options{MaxAttempts: 3}, f)
	e.planAll(t, d, 2)

	for range 5 {
		e.deliver(t, d)
		e.clock.Advance(time.Hour)
	}
	r := e.delivery(t, permanent, app)
	if r.Status != pushdelivery.StatusFAILED || r.Attempts != 1 || !strings.Contains(r.LastError, "template rejected") {
		t.Errorf("permanent failure: %s attempts %d %q", r.Status, r.Attempts, r.LastError)
	}
	r = e.delivery(t, flaky, app)
	if r.Status != pushdelivery.StatusFAILED || r.Attempts != 3 || f.calls[flaky] != 3 {
		t.Errorf("transient failures: %s attempts %d calls %d, want FAILED after 3", r.Status, r.Attempts, f.calls[flaky])
	}
}

func TestDeliverDisablesDeadDevices(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	both, deadOnly := e.member(t), e.member(t)
	live := e.device(t, both, "live")
	dead := e.device(t, both, "dead")
	dead2 := e.device(t, deadOnly, "dead-2")
	ev1 := e.emit(t, both, memberevent.TypePOINTS_CHANGED, spend(1, 0))
	ev2 := e.emit(t, deadOnly, memberevent.TypePOINTS_CHANGED, spend(1, 0))
	f := newFake(app)
	f.fail = func(msg push.Message, _ int) error {
		if strings.HasPrefix(msg.Target, "dead") {
			return fmt.Errorf("gateway: HTTP 410: %w", push.ErrInvalidTarget)
		}
		return nil
	}
	d := e.dispatcher(push.Options{}, f)
	e.planAll(t, d, 2)
	e.deliver(t, d)

	if r := e.delivery(t, ev1, app); r.Status != pushdelivery.StatusSENT || !strings.Contains(r.LastError, "410") {
		t.Errorf("one live device: %s %q, want SENT noting the dead one", r.Status, r.LastError)
	}
	if r := e.delivery(t, ev2, app); r.Status != pushdelivery.StatusFAILED {
		t.Errorf("only a dead device: %s, want FAILED", r.Status)
	}
	for id, wantDisabled := range map[int]bool{live: false, dead: true, dead2: true} {
		dv, err := e.db.PushDevice.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if (dv.DisabledAt != nil) != wantDisabled {
			t.Errorf("device %s disabled_at %v, want disabled %v", dv.Token, dv.DisabledAt, wantDisabled)
		}
	}

	// Later events skip the member whose only device is dead.
	ev3 := e.emit(t, deadOnly, memberevent.TypePOINTS_CHANGED, spend(1, 0))
	e.planAll(t, d, 3)
	wantRow(t, e.delivery(t, ev3, app), pushdelivery.StatusSKIPPED, "no live push device")
}

func TestDeliverRechecksConsent(t *testing.T) {
	e := newEnv(t)
	m := e.member(t)
	e.consent(t, m, true)
	e.openid(t, m, "openid")
	ev := e.emit(t, m, memberevent.TypeCOUPON_ISSUED, map[string]any{"title": "券"})
	f := newFake(wechat)
	d := e.dispatcher(push.Options{}, f)
	e.planAll(t, d, 1)
	wantRow(t, e.delivery(t, ev, wechat), pushdelivery.StatusPENDING, "")

	e.consent(t, m, false)
	e.deliver(t, d)
	wantRow(t, e.delivery(t, ev, wechat), pushdelivery.StatusSKIPPED, "no consent")
	if n := len(f.messages()); n != 0 {
		t.Fatalf("sent %d messages after consent was withdrawn", n)
	}
}

func TestWeChatNeedsDecrypter(t *testing.T) {
	e := newEnv(t)
	m := e.member(t)
	e.consent(t, m, true)
	e.openid(t, m, "openid")
	ev := e.emit(t, m, memberevent.TypeCOUPON_ISSUED, map[string]any{"title": "券"})
	d := push.NewDispatcher(e.db, e.sql, quietLog(), []push.Notifier{newFake(wechat)}, push.Options{Now: e.clock.Now})
	e.planAll(t, d, 1)
	wantRow(t, e.delivery(t, ev, wechat), pushdelivery.StatusSKIPPED, "no PII decrypter")
}

// A new Dispatcher on the same database (a restart, another replica)
// never sends a SENT row again.
func TestRestartNeverResends(t *testing.T) {
	e := newEnv(t)
	m := e.member(t)
	e.device(t, m, "token")
	var ids []int
	for i := range 5 {
		ids = append(ids, e.emit(t, m, memberevent.TypePOINTS_CHANGED, spend(int64(i+1), 0)))
	}
	first := newFake(app)
	d1 := e.dispatcher(push.Options{}, first)
	e.planAll(t, d1, 5)
	e.deliver(t, d1)

	second := newFake(app)
	d2 := e.dispatcher(push.Options{}, second)
	if n, err := d2.Plan(t.Context()); err != nil || n != 0 {
		t.Fatalf("restarted plan: %d rows, %v", n, err)
	}
	e.clock.Advance(48 * time.Hour)
	if n := e.deliver(t, d2); n != 0 || len(second.messages()) != 0 {
		t.Fatalf("restarted dispatcher changed %d rows and sent %d messages, want none", n, len(second.messages()))
	}
	if got := first.sentPerEvent(); len(got) != 5 {
		t.Fatalf("first dispatcher sent %v", got)
	}
}

// Stopping mid-batch (shutdown) keeps what was sent and leaves the rest
// for the next Deliver: nothing is lost or sent twice.
func TestDeliverStopsCleanly(t *testing.T) {
	e := newEnv(t)
	m := e.member(t)
	e.device(t, m, "token")
	for i := range 6 {
		e.emit(t, m, memberevent.TypePOINTS_CHANGED, spend(int64(i+1), 0))
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	first := newFake(app)
	var sends int
	first.fail = func(push.Message, int) error {
		sends++ // Deliver sends one message at a time
		if sends == 3 {
			cancel()
			return ctx.Err()
		}
		return nil
	}
	d1 := e.dispatcher(push.Options{}, first)
	e.planAll(t, d1, 6)
	if _, err := d1.Deliver(ctx); err != nil {
		t.Fatalf("deliver: %v", err)
	}
	if n := e.count(t, pushdelivery.StatusEQ(pushdelivery.StatusSENT)); n != 2 {
		t.Fatalf("%d rows SENT after stopping at the third send, want 2", n)
	}
	if n := e.count(t, pushdelivery.StatusEQ(pushdelivery.StatusPENDING), pushdelivery.Attempts(0)); n != 4 {
		t.Fatalf("%d rows untouched, want 4", n)
	}

	second := newFake(app)
	d2 := e.dispatcher(push.Options{}, second)
	e.deliver(t, d2)
	total := first.sentPerEvent()
	for id, n := range second.sentPerEvent() {
		total[id] += n
	}
	if len(total) != 6 {
		t.Fatalf("sent %v, want all 6 events", total)
	}
	for id, n := range total {
		if n != 1 {
			t.Errorf("event %d sent %d times", id, n)
		}
	}
}

func TestConcurrentDeliverSendsExactlyOnce(t *testing.T) {
	e := newEnv(t)
	const members, perMember = 6, 10
	var want []int
	for range members {
		m := e.member(t)
		e.device(t, m, fmt.Sprintf("token-%d", m))
		for i := range perMember {
			want = append(want, e.emit(t, m, memberevent.TypePOINTS_CHANGED, spend(int64(i+1), 0)))
		}
	}
	f := newFake(app)
	f.fail = func(push.Message, int) error { time.Sleep(time.Millisecond); return nil }
	planner := e.dispatcher(push.Options{}, f)
	e.planAll(t, planner, len(want))

	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for range 2 {
		d := e.dispatcher(push.Options{SendBatch: 4}, f)
		wg.Go(func() {
			if _, err := d.Deliver(t.Context()); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("deliver: %v", err)
	}
	// A dispatcher stops when its claim comes back short, which can happen
	// while the other holds the last rows; those it then sends itself.
	got := f.sentPerEvent()
	for _, id := range want {
		if got[id] != 1 {
			t.Errorf("event %d sent %d times, want exactly once", id, got[id])
		}
	}
	if n := e.count(t, pushdelivery.StatusNEQ(pushdelivery.StatusSENT)); n != 0 {
		t.Errorf("%d rows not SENT", n)
	}
}

// The ledger's own events (not hand-made payloads) render as documented.
func TestLedgerEventsRender(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	m := e.member(t)
	e.device(t, m, "token")
	svc := ledger.New(e.db, ledger.DefaultPolicy(time.UTC), password.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}, e.clock.Now)
	_, err := database.WithTx(ctx, e.db, func(tx *ent.Tx) (struct{}, error) {
		acct, err := account.Lock(ctx, tx, m)
		if err != nil {
			return struct{}{}, err
		}
		if _, err := svc.EarnPoints(ctx, tx, acct, ledger.Entry{Amount: 1000, Source: ledger.SourceOrder}); err != nil {
			return struct{}{}, err
		}
		_, err = svc.BurnPoints(ctx, tx, acct, ledger.Entry{Amount: 300, Source: ledger.SourceMall})
		return struct{}{}, err
	})
	if err != nil {
		t.Fatalf("earning and burning: %v", err)
	}
	if _, _, err := svc.TopUp(ctx, ledger.TopUpInput{MemberID: m, Amount: 10050, Bonus: 1000, PaymentRef: "pay-1"}); err != nil {
		t.Fatalf("top-up: %v", err)
	}
	f := newFake(app)
	d := e.dispatcher(push.Options{}, f)
	e.planAll(t, d, 3)
	e.deliver(t, d)
	got := map[string]string{}
	for _, msg := range f.messages() {
		got[msg.Title] = msg.Body
	}
	want := map[string]string{
		"积分变动提醒": "您的账户扣减300积分（积分商城兑换），当前可用积分700。",
		"储值到账提醒": "您的储值账户到账¥110.50（充值），当前余额¥110.50。",
	}
	if len(got) != len(want) {
		t.Errorf("sent %v, want %v (the earning is not pushed)", got, want)
	}
	for title, body := range want {
		if got[title] != body {
			t.Errorf("%s: %q, want %q", title, got[title], body)
		}
	}
}
