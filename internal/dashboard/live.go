package dashboard

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/onemember/onemember/internal/platform/calendar"
)

// LiveEvery is how often RunLive reads today's sales while someone
// watches: a subscriber hears of an order within LiveEvery plus one read
// (a few milliseconds), and at most once a LiveEvery.
const LiveEvery = 500 * time.Millisecond

// ErrLiveStopped is a subscription after RunLive has returned (the
// replica is shutting down).
var ErrLiveStopped = errors.New("dashboard: live sales have stopped")

// LiveSales is today's running sales (the liveSales subscription), with
// the definitions of the package comment: today is the business day of At,
// revenue is net of refunds, a fully refunded order counts in neither
// orders nor buyers, buyers are distinct.
type LiveSales struct {
	// At is when the figures were read.
	At           time.Time
	TodayRevenue int64
	TodayOrders  int
	TodayBuyers  int
	// LastOrder is today's latest order that counts (by paid_at, then
	// id), nil before the first.
	LastOrder *LastOrder
}

// LastOrder is an order as the live feed shows it.
type LastOrder struct {
	// Amount is what the order brought: its amount less what has been
	// refunded of it so far.
	Amount    int64
	PaidAt    time.Time
	StoreID   int
	StoreName string
}

// sameFigures compares everything but At.
func sameFigures(a, b LiveSales) bool {
	if a.TodayRevenue != b.TodayRevenue || a.TodayOrders != b.TodayOrders || a.TodayBuyers != b.TodayBuyers {
		return false
	}
	if a.LastOrder == nil || b.LastOrder == nil {
		return a.LastOrder == nil && b.LastOrder == nil
	}
	x, y := *a.LastOrder, *b.LastOrder
	return x.Amount == y.Amount && x.PaidAt.Equal(y.PaidAt) && x.StoreID == y.StoreID && x.StoreName == y.StoreName
}

// liveHub fans one reading per tick out to this replica's subscribers.
type liveHub struct {
	mu      sync.Mutex
	running bool
	stopped bool
	subs    map[*liveSub]struct{}
	// cur is the last reading; nil while nobody watches (it goes stale).
	cur *liveReading
	// wake asks the loop for a reading now (a subscriber and no reading).
	wake chan struct{}
}

// liveSub is one subscription: bu 0 is every business unit. Only the hub
// sends on ch and closes it, under mu.
type liveSub struct {
	bu   int
	ch   chan *LiveSales
	last *LiveSales
	day  calendar.Date
}

// liveReading is one tick's figures, for the whole group and per business
// unit.
type liveReading struct {
	day  calendar.Date
	all  LiveSales
	byBU map[int]LiveSales
}

func (r *liveReading) of(bu int) LiveSales {
	if bu == 0 {
		return r.all
	}
	if v, ok := r.byBU[bu]; ok {
		return v
	}
	return LiveSales{At: r.all.At}
}

func newLiveHub() *liveHub {
	return &liveHub{subs: map[*liveSub]struct{}{}, wake: make(chan struct{}, 1)}
}

// deliver hands v to sub without ever blocking: a value the subscriber
// has not taken yet is replaced by the newer one.
func (sub *liveSub) deliver(v LiveSales, day calendar.Date) {
	last := v
	sub.last, sub.day = &last, day
	// Each subscriber gets its own LastOrder, which it may change.
	if v.LastOrder != nil {
		lo := *v.LastOrder
		v.LastOrder = &lo
	}
	select {
	case sub.ch <- &v:
		return
	default:
	}
	select {
	case <-sub.ch:
	default:
	}
	select {
	case sub.ch <- &v:
	default:
	}
}

// LiveSales subscribes to today's running sales of the group, or of one
// business unit when businessUnitID is set. The current figures come at
// once (or as soon as this replica's RunLive has read them, when nobody
// was watching), then a new value whenever they change: within LiveEvery
// plus one read of an order or refund committed by any replica, at most
// once a LiveEvery, and nothing while nothing changes. A new business day
// (midnight in the business zone) starts from zero and is sent even when
// nothing sells. A subscriber that reads slowly gets the latest value,
// never a backlog, and never holds the others up. The channel is closed
// when ctx ends (or RunLive returns).
func (s *Service) LiveSales(ctx context.Context, businessUnitID *int) (<-chan *LiveSales, error) {
	bu := 0
	if businessUnitID != nil {
		var exists bool
		if err := s.sql.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM business_units WHERE id = $1)`, *businessUnitID).Scan(&exists); err != nil {
			return nil, fmt.Errorf("looking up business unit: %w", err)
		}
		if !exists {
			return nil, ErrBusinessUnitNotFound
		}
		bu = *businessUnitID
	}
	h := s.live
	sub := &liveSub{bu: bu, ch: make(chan *LiveSales, 1)}
	h.mu.Lock()
	if h.stopped {
		h.mu.Unlock()
		return nil, ErrLiveStopped
	}
	if r := h.cur; r != nil && r.day == calendar.In(s.now(), s.zone) {
		sub.deliver(r.of(bu), r.day)
	} else {
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
	h.subs[sub] = struct{}{}
	h.mu.Unlock()
	context.AfterFunc(ctx, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[sub]; ok {
			delete(h.subs, sub)
			close(sub.ch)
		}
	})
	return sub.ch, nil
}

// RunLive feeds the LiveSales subscribers of this replica until ctx ends:
// every LiveEvery, while anyone watches, one statement reads today's sales
// for every business unit at once (however many subscribers there are),
// and each subscriber whose figures changed gets them. Run it once per
// replica, next to Run (App.Background). A failed read is logged and
// retried at the next tick; subscribers keep their last value.
//
// The statement reads today's orders directly, through the orders.paid_at
// index (today's rows only, never a scan of older orders): live figures
// cannot wait for the aggregates' refresh (about 2 s). It costs about 15
// ms for the 15,000 orders of a day of the dcbench data (1M members, 10M
// orders), once per tick per replica however many watch: some 3 % of a
// core while anyone does, nothing otherwise. The cost grows with the
// day's orders (a day of 150,000 would take some 150 ms a tick).
func (s *Service) RunLive(ctx context.Context, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := s.live
	h.mu.Lock()
	if h.running || h.stopped {
		h.mu.Unlock()
		return errors.New("dashboard: RunLive is already running or has stopped")
	}
	h.running = true
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		h.running, h.stopped, h.cur = false, true, nil
		for sub := range h.subs {
			delete(h.subs, sub)
			close(sub.ch)
		}
	}()
	t := time.NewTicker(LiveEvery)
	defer t.Stop()
	for {
		h.mu.Lock()
		watched := len(h.subs) > 0
		if !watched {
			h.cur = nil
		}
		h.mu.Unlock()
		if watched {
			if r, err := s.readLive(ctx); err != nil {
				if ctx.Err() == nil {
					log.WarnContext(ctx, "reading live sales failed", "err", err)
				}
			} else {
				h.publish(r)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-h.wake:
			// A new subscriber's first value; the next tick is a full
			// LiveEvery later, so nobody hears twice within one.
			t.Reset(LiveEvery)
		}
	}
}

// publish records r and sends each subscriber its figures if they
// changed (or the day did, or it has had nothing yet).
func (h *liveHub) publish(r *liveReading) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cur = r
	for sub := range h.subs {
		v := r.of(sub.bu)
		if sub.last == nil || sub.day != r.day || !sameFigures(*sub.last, v) {
			sub.deliver(v, r.day)
		}
	}
}

// readLive reads today's figures, per business unit and in all, in one
// statement: one pass over today's orders (the paid_at index) for the
// sums and the distinct buyers, and per business unit its latest order
// that counts, found from the end of the same index.
func (s *Service) readLive(ctx context.Context) (*liveReading, error) {
	now := s.now()
	day := calendar.In(now, s.zone)
	rows, err := s.sql.QueryContext(ctx, `WITH t AS MATERIALIZED (
  SELECT business_unit_id AS bu, member_id, amount - refunded_amount AS net, refunded_amount < amount AS counts
  FROM orders WHERE paid_at >= $1 AND paid_at < $2),
u AS (SELECT bu, coalesce(sum(net), 0)::bigint AS revenue, count(*) FILTER (WHERE counts) AS orders FROM t GROUP BY bu),
m AS (SELECT DISTINCT bu, member_id FROM t WHERE counts),
b AS (SELECT bu, count(*) AS buyers FROM m GROUP BY bu)
SELECT u.bu, u.revenue, u.orders, coalesce(b.buyers, 0), (SELECT count(DISTINCT member_id) FROM m),
  l.id, l.net, l.paid_at, l.store_id, st.name
FROM u LEFT JOIN b ON b.bu = u.bu
LEFT JOIN LATERAL (SELECT o.id, o.amount - o.refunded_amount AS net, o.paid_at, o.store_id FROM orders o
  WHERE o.business_unit_id = u.bu AND o.paid_at >= $1 AND o.paid_at < $2 AND o.refunded_amount < o.amount
  ORDER BY o.paid_at DESC, o.id DESC LIMIT 1) l ON true
LEFT JOIN stores st ON st.id = l.store_id`,
		day.Start(s.zone), day.AddDays(1).Start(s.zone))
	if err != nil {
		return nil, fmt.Errorf("reading today's sales: %w", err)
	}
	defer rows.Close()
	r := &liveReading{day: day, all: LiveSales{At: now}, byBU: map[int]LiveSales{}}
	var lastID int64
	for rows.Next() {
		var (
			bu               int64
			v                = LiveSales{At: now}
			id, net, storeID sql.NullInt64
			paidAt           sql.NullTime
			storeName        sql.NullString
		)
		if err := rows.Scan(&bu, &v.TodayRevenue, &v.TodayOrders, &v.TodayBuyers, &r.all.TodayBuyers,
			&id, &net, &paidAt, &storeID, &storeName); err != nil {
			return nil, err
		}
		r.all.TodayRevenue += v.TodayRevenue
		r.all.TodayOrders += v.TodayOrders
		if id.Valid {
			v.LastOrder = &LastOrder{Amount: net.Int64, PaidAt: paidAt.Time, StoreID: int(storeID.Int64), StoreName: storeName.String}
			// The group's last order is the latest of the units' last.
			if l := r.all.LastOrder; l == nil || cmp.Or(paidAt.Time.Compare(l.PaidAt), cmp.Compare(id.Int64, lastID)) > 0 {
				r.all.LastOrder, lastID = v.LastOrder, id.Int64
			}
		}
		r.byBU[int(bu)] = v
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return r, nil
}
