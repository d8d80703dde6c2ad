package push

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	entsql "entgo.io/ent/dialect/sql"
	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/consent"
	"github.com/onemember/onemember/ent/coupon"
	"github.com/onemember/onemember/ent/identity"
	"github.com/onemember/onemember/ent/memberevent"
	"github.com/onemember/onemember/ent/pushdelivery"
	"github.com/onemember/onemember/ent/pushdevice"
	"github.com/onemember/onemember/ent/schema/enum"
)

// CursorName is the log_cursors row of the push dispatcher.
const CursorName = "push"

// wechatConsent is the consent WECHAT_SUBSCRIBE requires.
const wechatConsent = enum.ConsentKind("MARKETING_WECHAT")

// identityAAD is the column the identity value is encrypted for (see
// internal/identity).
const identityAAD = "identity.value"

// maxLastError bounds push_deliveries.last_error.
const maxLastError = 500

// Dispatcher plans and delivers pushes. It holds no state between calls
// besides its configuration: everything it knows is in the database, so any
// number of Dispatchers (replicas, restarts) share the work.
type Dispatcher struct {
	db        *ent.Client
	sqlDB     *sql.DB
	log       *slog.Logger
	notifiers map[enum.PushChannel]Notifier
	channels  []enum.PushChannel // configured, sorted
	opts      Options
}

// NewDispatcher builds a Dispatcher for notifiers, one per channel (a
// second notifier for a channel is ignored). db and sqlDB are the same
// database: Plan's set-oriented statements go through sqlDB. A nil log
// discards.
func NewDispatcher(db *ent.Client, sqlDB *sql.DB, log *slog.Logger, notifiers []Notifier, opts Options) *Dispatcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Dispatcher{db: db, sqlDB: sqlDB, log: log, notifiers: map[enum.PushChannel]Notifier{}, opts: opts.withDefaults()}
	for _, n := range notifiers {
		ch := n.Channel()
		if _, dup := d.notifiers[ch]; dup {
			log.Warn("push: second notifier for a channel ignored", "channel", ch)
			continue
		}
		d.notifiers[ch] = n
		d.channels = append(d.channels, ch)
	}
	slices.Sort(d.channels)
	if _, ok := d.notifiers[enum.PushWeChatSubscribe]; ok && d.opts.PII == nil {
		log.Warn("push: WECHAT_SUBSCRIBE configured without a PII decrypter: its deliveries will be SKIPPED")
	}
	return d
}

// Plan turns the events committed since the last Plan into
// push_deliveries rows and returns how many rows it wrote.
//
// The cursor is a transaction-id horizon, not an event id: ids are drawn
// when a row is written, not when it commits, so a transaction that began
// first and commits last would be passed over by an id cursor. Plan reads
// events with tx_id in [cursor, xmin), where xmin is the oldest transaction
// still running: every transaction below it has ended, so no event can
// still appear below the new cursor. The price is latency: a long
// transaction anywhere in the cluster (Deliver's own claims included) holds
// the horizon back until it ends. Events whose tx_id is NULL are never
// planned (the column's default always sets it).
func (d *Dispatcher) Plan(ctx context.Context) (int64, error) {
	if len(d.channels) == 0 {
		return 0, nil
	}
	var total int64
	for {
		n, more, err := d.planBatch(ctx)
		total += n
		if err != nil || !more {
			return total, err
		}
	}
}

// planBatch plans up to Batch events (never splitting a transaction's
// events, which share one tx_id) and moves the cursor past them, all in one
// transaction. more reports that events below the horizon remain.
func (d *Dispatcher) planBatch(ctx context.Context) (n int64, more bool, err error) {
	tx, err := d.sqlDB.BeginTx(ctx, nil)
	if err != nil {
		return 0, false, fmt.Errorf("beginning plan transaction: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	// The horizon comes first, before this transaction writes anything.
	var horizon int64
	if err := tx.QueryRowContext(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint`).Scan(&horizon); err != nil {
		return 0, false, fmt.Errorf("reading transaction horizon: %w", err)
	}
	now := d.opts.Now()
	if _, err := tx.ExecContext(ctx, `INSERT INTO log_cursors (name, position, updated_at) VALUES ($1, 0, $2)
		ON CONFLICT (name) DO NOTHING`, CursorName, now); err != nil {
		return 0, false, fmt.Errorf("creating cursor: %w", err)
	}
	// The lock serialises Plans of several replicas; the horizon read
	// before waiting for it stays valid (it only ever grows).
	var cursor int64
	if err := tx.QueryRowContext(ctx, `SELECT position FROM log_cursors WHERE name = $1 FOR UPDATE`, CursorName).Scan(&cursor); err != nil {
		return 0, false, fmt.Errorf("locking cursor: %w", err)
	}
	if horizon <= cursor {
		return 0, false, tx.Rollback()
	}

	upper := horizon
	var last sql.NullInt64
	var count int
	if err := tx.QueryRowContext(ctx, `SELECT max(tx_id), count(*) FROM (
			SELECT tx_id FROM member_events WHERE tx_id >= $1 AND tx_id < $2 ORDER BY tx_id LIMIT $3) s`,
		cursor, horizon, d.opts.Batch).Scan(&last, &count); err != nil {
		return 0, false, fmt.Errorf("sizing event batch: %w", err)
	}
	if count >= d.opts.Batch && last.Valid {
		upper = last.Int64 + 1
		more = upper < horizon
	}

	evs, statuses, err := d.readEvents(ctx, tx, cursor, upper)
	if err != nil {
		return 0, false, err
	}
	if len(evs) > 0 {
		rows, err := d.planRows(ctx, tx, evs, statuses, now)
		if err != nil {
			return 0, false, err
		}
		if n, err = insertDeliveries(ctx, tx, rows, now); err != nil {
			return 0, false, err
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE log_cursors SET position = $2, updated_at = $3 WHERE name = $1`,
		CursorName, upper, now); err != nil {
		return 0, false, fmt.Errorf("advancing cursor: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, false, fmt.Errorf("committing plan: %w", err)
	}
	return n, more, nil
}

// readEvents returns the events with tx_id in [from, to) and the status of
// each event's member.
func (d *Dispatcher) readEvents(ctx context.Context, tx *sql.Tx, from, to int64) ([]event, map[int]string, error) {
	rows, err := tx.QueryContext(ctx, `SELECT e.id, e.member_id, e.type, e.payload, e.occurred_at, COALESCE(m.status, '')
		FROM member_events e LEFT JOIN members m ON m.id = e.member_id
		WHERE e.tx_id >= $1 AND e.tx_id < $2 ORDER BY e.tx_id, e.id`, from, to)
	if err != nil {
		return nil, nil, fmt.Errorf("reading events: %w", err)
	}
	defer rows.Close()
	var evs []event
	statuses := map[int]string{}
	for rows.Next() {
		var (
			ev     event
			raw    []byte
			status string
		)
		if err := rows.Scan(&ev.ID, &ev.MemberID, &ev.Type, &raw, &ev.OccurredAt, &status); err != nil {
			return nil, nil, fmt.Errorf("scanning event: %w", err)
		}
		if ev.Payload, err = decodePayload(raw); err != nil {
			// A payload no rule can read is planned as SKIPPED rather
			// than blocking the log.
			ev.Payload = payload{}
		}
		evs = append(evs, ev)
		statuses[ev.MemberID] = status
	}
	if err := rows.Err(); err != nil {
		return nil, nil, fmt.Errorf("reading events: %w", err)
	}
	return evs, statuses, nil
}

type plannedRow struct {
	eventID, memberID int
	channel           enum.PushChannel
	status            pushdelivery.Status
	reason            string
}

// planRows decides, for each event and configured channel, PENDING or
// SKIPPED with the reason.
func (d *Dispatcher) planRows(ctx context.Context, tx *sql.Tx, evs []event, statuses map[int]string, now time.Time) ([]plannedRow, error) {
	members := make([]int64, 0, len(statuses))
	for id := range statuses {
		members = append(members, int64(id))
	}
	var consented, withOpenID, withDevice map[int]bool
	var err error
	if _, ok := d.notifiers[enum.PushWeChatSubscribe]; ok {
		if consented, err = memberSet(ctx, tx, `SELECT member_id FROM consents
			WHERE member_id = ANY($1) AND kind = $2 AND granted`, pq.Array(members), string(wechatConsent)); err != nil {
			return nil, fmt.Errorf("reading consents: %w", err)
		}
		if withOpenID, err = memberSet(ctx, tx, `SELECT member_id FROM identities
			WHERE member_id = ANY($1) AND kind = $2 AND unbound_at IS NULL AND value_enc IS NOT NULL
			AND ($3 = '' OR app_id = $3)`, pq.Array(members), string(identity.KindWECHAT_OPENID), d.opts.WeChatAppID); err != nil {
			return nil, fmt.Errorf("reading WeChat identities: %w", err)
		}
	}
	if _, ok := d.notifiers[enum.PushApp]; ok {
		if withDevice, err = memberSet(ctx, tx, `SELECT member_id FROM push_devices
			WHERE member_id = ANY($1) AND disabled_at IS NULL`, pq.Array(members)); err != nil {
			return nil, fmt.Errorf("reading push devices: %w", err)
		}
	}

	out := make([]plannedRow, 0, len(evs)*len(d.channels))
	for _, ev := range evs {
		common := eventSkip(ev, statuses[ev.MemberID], now, d.opts.MaxAge)
		for _, ch := range d.channels {
			reason := common
			if reason == "" {
				reason = decideChannel(ev.Type, ev.Payload, ch)
			}
			if reason == "" {
				switch ch {
				case enum.PushWeChatSubscribe:
					switch {
					case !consented[ev.MemberID]:
						reason = "no consent: MARKETING_WECHAT not granted"
					case !withOpenID[ev.MemberID]:
						reason = "no WeChat openid bound" + d.appSuffix()
					case d.opts.PII == nil:
						reason = "openid cannot be decrypted: no PII decrypter configured"
					}
				case enum.PushApp:
					if !withDevice[ev.MemberID] {
						reason = "no live push device"
					}
				}
			}
			row := plannedRow{eventID: ev.ID, memberID: ev.MemberID, channel: ch, status: pushdelivery.StatusPENDING}
			if reason != "" {
				row.status, row.reason = pushdelivery.StatusSKIPPED, reason
			}
			out = append(out, row)
		}
	}
	return out, nil
}

func (d *Dispatcher) appSuffix() string {
	if d.opts.WeChatAppID == "" {
		return ""
	}
	return " for app " + d.opts.WeChatAppID
}

// eventSkip is why an event goes to no channel, or "".
func eventSkip(ev event, memberStatus string, now time.Time, maxAge time.Duration) string {
	switch memberStatus {
	case "":
		return "member not found"
	case "MERGED", "ERASED":
		return "member is " + memberStatus
	}
	if now.Sub(ev.OccurredAt) > maxAge {
		return fmt.Sprintf("event is older than %s when planned: stale notices are not pushed", maxAge)
	}
	return decide(ev.Type, ev.Payload)
}

func memberSet(ctx context.Context, tx *sql.Tx, query string, args ...any) (map[int]bool, error) {
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	set := map[int]bool{}
	for rows.Next() {
		var id int
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		set[id] = true
	}
	return set, rows.Err()
}

// insertDeliveries writes rows in one statement; rows that exist already
// (a replayed range) are left alone.
func insertDeliveries(ctx context.Context, tx *sql.Tx, rows []plannedRow, now time.Time) (int64, error) {
	var (
		events, members          = make([]int64, len(rows)), make([]int64, len(rows))
		channels, status, reason = make([]string, len(rows)), make([]string, len(rows)), make([]string, len(rows))
	)
	for i, r := range rows {
		events[i], members[i] = int64(r.eventID), int64(r.memberID)
		channels[i], status[i], reason[i] = string(r.channel), string(r.status), r.reason
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO push_deliveries
			(event_id, member_id, channel, status, attempts, next_attempt_at, last_error, created_at)
		SELECT e, m, c, s, 0, $6, r, $6
		FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[]) AS u(e, m, c, s, r)
		ON CONFLICT (event_id, channel) DO NOTHING`,
		pq.Array(events), pq.Array(members), pq.Array(channels), pq.Array(status), pq.Array(reason), now)
	if err != nil {
		return 0, fmt.Errorf("writing push deliveries: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("counting push deliveries: %w", err)
	}
	return n, nil
}

// Deliver sends the due PENDING deliveries and returns how many rows it
// changed. It claims SendBatch rows at a time with FOR UPDATE SKIP LOCKED,
// so replicas share the work without waiting on each other, sends them,
// and records each outcome in the transaction that claimed them:
//
//   - accepted by the provider: SENT with sent_at;
//   - a permanent failure, or the MaxAttempts-th failure: FAILED;
//   - any other failure: attempts+1, next_attempt_at = now + Backoff;
//   - consent withdrawn or no target left since Plan: SKIPPED.
//
// Delivery is at least once. The only window for a duplicate is between a
// provider accepting a message and the commit of its batch: a crash (or a
// lost connection) there rolls the batch back and the next Deliver sends
// those messages again. That is the usual trade-off for pushing to APNs,
// FCM or WeChat, none of which takes an idempotency key: marking SENT
// before sending would close the window by losing the message instead,
// which is worse for balance and coupon notices than a rare repeat.
// SendBatch bounds both how many messages can repeat and how long the row
// locks (and this transaction's hold on Plan's horizon) last; eventId in
// Data lets clients or a collapse key drop the repeat. When ctx ends,
// Deliver stops sending but still commits the outcomes it has.
func (d *Dispatcher) Deliver(ctx context.Context) (int64, error) {
	if len(d.channels) == 0 {
		return 0, nil
	}
	var total int64
	for ctx.Err() == nil {
		n, claimed, err := d.deliverBatch(ctx)
		total += n
		if err != nil {
			return total, err
		}
		if claimed < d.opts.SendBatch {
			break
		}
	}
	return total, nil
}

func (d *Dispatcher) deliverBatch(ctx context.Context) (changed int64, claimed int, err error) {
	// The transaction outlives a cancelled ctx long enough to record what
	// was sent: database/sql rolls back a transaction whose context ends.
	txCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx),
		time.Duration(d.opts.SendBatch)*d.opts.SendTimeout+time.Minute)
	defer cancel()
	tx, err := d.db.Tx(txCtx)
	if err != nil {
		return 0, 0, fmt.Errorf("beginning delivery transaction: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	now := d.opts.Now()
	rows, err := tx.PushDelivery.Query().
		Where(
			// A literal, not a parameter: the due index holds PENDING rows
			// only, and a cached generic plan can use it only when the
			// statement itself says PENDING.
			func(s *entsql.Selector) {
				s.Where(entsql.ExprP(s.C(pushdelivery.FieldStatus) + " = 'PENDING'"))
			},
			pushdelivery.NextAttemptAtLTE(now),
			pushdelivery.ChannelIn(d.channels...),
		).
		Order(pushdelivery.ByNextAttemptAt(), pushdelivery.ByID()).
		Limit(d.opts.SendBatch).
		ForUpdate(entsql.WithLockAction(entsql.SkipLocked)).
		All(txCtx)
	if err != nil {
		return 0, 0, fmt.Errorf("claiming deliveries: %w", err)
	}
	if len(rows) == 0 {
		return 0, 0, tx.Rollback()
	}
	ids := make([]int64, len(rows))
	for i, r := range rows {
		ids[i] = int64(r.EventID)
	}
	evs, err := d.loadEvents(txCtx, ids)
	if err != nil {
		return 0, 0, err
	}
	for _, r := range rows {
		if ctx.Err() != nil {
			break
		}
		o, err := d.attempt(ctx, txCtx, tx, r, evs[r.EventID])
		if err != nil {
			return 0, 0, err
		}
		if o.untouched {
			continue
		}
		if err := d.record(txCtx, tx, r, o); err != nil {
			return 0, 0, err
		}
		changed++
	}
	if err := tx.Commit(); err != nil {
		return 0, 0, fmt.Errorf("committing deliveries: %w", err)
	}
	return changed, len(rows), nil
}

// loadEvents reads the claimed rows' events. Events never change, so
// reading them outside the claiming transaction is consistent.
func (d *Dispatcher) loadEvents(ctx context.Context, ids []int64) (map[int]event, error) {
	rows, err := d.sqlDB.QueryContext(ctx, `SELECT id, member_id, type, payload, occurred_at
		FROM member_events WHERE id = ANY($1)`, pq.Array(ids))
	if err != nil {
		return nil, fmt.Errorf("reading events: %w", err)
	}
	defer rows.Close()
	out := make(map[int]event, len(ids))
	for rows.Next() {
		var ev event
		var raw []byte
		if err := rows.Scan(&ev.ID, &ev.MemberID, &ev.Type, &raw, &ev.OccurredAt); err != nil {
			return nil, fmt.Errorf("scanning event: %w", err)
		}
		if ev.Payload, err = decodePayload(raw); err != nil {
			ev.Payload = payload{}
		}
		out[ev.ID] = ev
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading events: %w", err)
	}
	return out, nil
}

// outcome is what one attempt did to a delivery.
type outcome struct {
	status    pushdelivery.Status
	attempted bool // a send was made: attempts+1
	lastError string
	// untouched: nothing was sent because ctx ended; the row stays as it
	// was for the next Deliver.
	untouched bool
	disable   []int // device ids whose token is dead
}

// target is one address of a delivery: an openid, or a device's token.
type target struct {
	address  string
	deviceID int
}

// attempt renders and sends one delivery. Its error is a database
// failure, which aborts the batch.
func (d *Dispatcher) attempt(ctx, txCtx context.Context, tx *ent.Tx, r *ent.PushDelivery, ev event) (outcome, error) {
	if ev.ID == 0 {
		return outcome{status: pushdelivery.StatusFAILED, lastError: "event not found"}, nil
	}
	reason := decide(ev.Type, ev.Payload)
	if reason == "" {
		reason = decideChannel(ev.Type, ev.Payload, r.Channel)
	}
	if reason != "" {
		return outcome{status: pushdelivery.StatusSKIPPED, lastError: reason}, nil
	}
	targets, stop, err := d.targets(txCtx, tx, r)
	if err != nil {
		return outcome{}, err
	}
	if stop != nil {
		return *stop, nil
	}
	rf, err := lookupRefs(txCtx, tx, ev)
	if err != nil {
		return outcome{}, err
	}
	title, body := compose(ev, rf, d.opts.Zone)
	msg := Message{
		EventID: ev.ID, MemberID: ev.MemberID, Channel: r.Channel, Title: title, Body: body,
		Data: map[string]string{"eventId": strconv.Itoa(ev.ID), "type": string(ev.Type)},
	}

	// One delivery row covers every live device of the member. It is SENT
	// when any device accepted (retrying would repeat the message on that
	// one); retried when none accepted and some failure was transient;
	// FAILED when every target failed permanently.
	notifier := d.notifiers[r.Channel]
	var (
		sent, transient bool
		errs            []string
		disable         []int
	)
	for _, t := range targets {
		m := msg
		m.Target = t.address
		sendCtx, cancel := context.WithTimeout(ctx, d.opts.SendTimeout)
		err := notifier.Send(sendCtx, m)
		cancel()
		switch {
		case err == nil:
			sent = true
		case ctx.Err() != nil:
			// Shutting down: this send's fate is unknown and not the
			// provider's fault; count it as not made.
			if !sent {
				return outcome{untouched: true}, nil
			}
		case errors.Is(err, ErrPermanent):
			errs = append(errs, err.Error())
			if errors.Is(err, ErrInvalidTarget) && t.deviceID != 0 {
				disable = append(disable, t.deviceID)
			}
		default:
			transient = true
			errs = append(errs, err.Error())
		}
	}
	o := outcome{attempted: true, lastError: strings.Join(errs, "; "), disable: disable}
	switch {
	case sent:
		o.status = pushdelivery.StatusSENT
	case transient && r.Attempts+1 < d.opts.MaxAttempts:
		o.status = pushdelivery.StatusPENDING
	default:
		o.status = pushdelivery.StatusFAILED
	}
	return o, nil
}

func skipped(reason string) *outcome {
	return &outcome{status: pushdelivery.StatusSKIPPED, lastError: reason}
}

// targets resolves where a delivery goes now (consent may have been
// withdrawn, devices removed, since Plan), or the outcome when it goes
// nowhere.
func (d *Dispatcher) targets(ctx context.Context, tx *ent.Tx, r *ent.PushDelivery) ([]target, *outcome, error) {
	switch r.Channel {
	case enum.PushWeChatSubscribe:
		ok, err := tx.Consent.Query().
			Where(consent.MemberID(r.MemberID), consent.KindEQ(wechatConsent), consent.Granted(true)).
			Exist(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("reading consent of member %d: %w", r.MemberID, err)
		}
		if !ok {
			return nil, skipped("no consent: MARKETING_WECHAT not granted"), nil
		}
		if d.opts.PII == nil {
			return nil, skipped("openid cannot be decrypted: no PII decrypter configured"), nil
		}
		q := tx.Identity.Query().Where(identity.MemberID(r.MemberID), identity.KindEQ(identity.KindWECHAT_OPENID),
			identity.UnboundAtIsNil(), identity.ValueEncNotNil())
		if d.opts.WeChatAppID != "" {
			q.Where(identity.AppID(d.opts.WeChatAppID))
		}
		id, err := q.Order(identity.ByBoundAt(entsql.OrderDesc()), identity.ByID(entsql.OrderDesc())).First(ctx)
		if ent.IsNotFound(err) {
			return nil, skipped("no WeChat openid bound" + d.appSuffix()), nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("reading WeChat identity of member %d: %w", r.MemberID, err)
		}
		openid, err := d.opts.PII.Decrypt(id.ValueEnc, identityAAD)
		if err != nil {
			// A key problem, not the member's: retrying cannot fix it, and
			// FAILED is loud in the log and in the row.
			d.log.ErrorContext(ctx, "push: decrypting WeChat openid", "identity", id.ID, "err", err)
			return nil, &outcome{status: pushdelivery.StatusFAILED, lastError: "decrypting WeChat openid: " + err.Error()}, nil
		}
		return []target{{address: openid}}, nil, nil
	case enum.PushApp:
		devs, err := tx.PushDevice.Query().
			Where(pushdevice.MemberID(r.MemberID), pushdevice.DisabledAtIsNil()).
			Order(pushdevice.ByID()).All(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("reading push devices of member %d: %w", r.MemberID, err)
		}
		if len(devs) == 0 {
			return nil, skipped("no live push device"), nil
		}
		out := make([]target, len(devs))
		for i, dv := range devs {
			out[i] = target{address: dv.Token, deviceID: dv.ID}
		}
		return out, nil, nil
	}
	return nil, skipped("channel " + string(r.Channel) + " has no notifier"), nil
}

// lookupRefs reads the names an event's message shows. A campaign's
// MESSAGE needs none: its payload holds the text as rendered for the
// member when the campaign reached them.
func lookupRefs(ctx context.Context, tx *ent.Tx, ev event) (refs, error) {
	var r refs
	switch ev.Type {
	case memberevent.TypeMESSAGE:
	case memberevent.TypeTIER_CHANGED:
		id, _ := ev.Payload.int("toTierId")
		t, err := tx.Tier.Get(ctx, int(id))
		switch {
		case ent.IsNotFound(err): // compose falls back to the code
		case err != nil:
			return r, fmt.Errorf("reading tier %d: %w", id, err)
		default:
			r.TierName = t.Name
		}
	case memberevent.TypeCOUPON_ISSUED, memberevent.TypeCOUPON_EXPIRING:
		id, ok := ev.Payload.int("couponId")
		if !ok {
			return r, nil
		}
		c, err := tx.Coupon.Query().Where(coupon.ID(int(id))).WithTemplate().Only(ctx)
		switch {
		case ent.IsNotFound(err): // compose falls back to the payload
		case err != nil:
			return r, fmt.Errorf("reading coupon %d: %w", id, err)
		default:
			r.CouponExpires = c.ExpiresAt
			if c.Edges.Template != nil {
				r.CouponTitle = c.Edges.Template.Title
			}
		}
	}
	return r, nil
}

// record writes an outcome to its row, and disables dead devices.
func (d *Dispatcher) record(ctx context.Context, tx *ent.Tx, r *ent.PushDelivery, o outcome) error {
	now := d.opts.Now()
	up := tx.PushDelivery.UpdateOneID(r.ID).SetStatus(o.status).SetLastError(truncate(o.lastError, maxLastError))
	attempts := r.Attempts
	if o.attempted {
		attempts++
		up.SetAttempts(attempts)
	}
	switch o.status {
	case pushdelivery.StatusSENT:
		up.SetSentAt(now)
	case pushdelivery.StatusPENDING:
		up.SetNextAttemptAt(now.Add(d.opts.Backoff(attempts)))
	}
	if err := up.Exec(ctx); err != nil {
		return fmt.Errorf("recording delivery %d: %w", r.ID, err)
	}
	if len(o.disable) > 0 {
		if err := tx.PushDevice.Update().
			Where(pushdevice.IDIn(o.disable...), pushdevice.DisabledAtIsNil()).
			SetDisabledAt(now).Exec(ctx); err != nil {
			return fmt.Errorf("disabling dead push devices: %w", err)
		}
	}
	level := slog.LevelDebug
	switch o.status {
	case pushdelivery.StatusFAILED:
		level = slog.LevelWarn
	case pushdelivery.StatusPENDING:
		level = slog.LevelInfo
	}
	d.log.Log(ctx, level, "push delivery", "delivery", r.ID, "event", r.EventID, "channel", r.Channel,
		"status", o.status, "attempts", attempts, "err", o.lastError, "disabledDevices", len(o.disable))
	return nil
}
