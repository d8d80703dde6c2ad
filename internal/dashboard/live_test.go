package dashboard_test

import (
	"context"
	"database/sql"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/dashboard"
	"github.com/onemember/onemember/internal/platform/calendar"
	"github.com/onemember/onemember/internal/platform/fault"
)

// runLive runs the world's live hub until the test ends.
func (w *world) runLive(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(w.ctx)
	done := make(chan error, 1)
	go func() { done <- w.dash.RunLive(ctx, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunLive: %v", err)
		}
	})
}

// expectLive is today's live figures in plain SQL over the raw orders:
// today is the business day of the world's clock.
func (w *world) expectLive(t *testing.T, bu *int) dashboard.LiveSales {
	t.Helper()
	today := calendar.In(w.clock.Now(), w.zone)
	lo, hi := today.Start(w.zone), today.AddDays(1).Start(w.zone)
	var v dashboard.LiveSales
	if err := w.sql.QueryRowContext(w.ctx, `SELECT coalesce(sum(amount - refunded_amount), 0)::bigint,
  count(*) FILTER (WHERE refunded_amount < amount), count(DISTINCT member_id) FILTER (WHERE refunded_amount < amount)
FROM orders WHERE paid_at >= $1 AND paid_at < $2 AND ($3::bigint IS NULL OR business_unit_id = $3)`,
		lo, hi, nullInt(bu)).Scan(&v.TodayRevenue, &v.TodayOrders, &v.TodayBuyers); err != nil {
		t.Fatalf("expected live sales: %v", err)
	}
	var last dashboard.LastOrder
	err := w.sql.QueryRowContext(w.ctx, `SELECT o.amount - o.refunded_amount, o.paid_at, o.store_id, s.name
FROM orders o JOIN stores s ON s.id = o.store_id
WHERE o.paid_at >= $1 AND o.paid_at < $2 AND ($3::bigint IS NULL OR o.business_unit_id = $3) AND o.refunded_amount < o.amount
ORDER BY o.paid_at DESC, o.id DESC LIMIT 1`, lo, hi, nullInt(bu)).Scan(&last.Amount, &last.PaidAt, &last.StoreID, &last.StoreName)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		t.Fatalf("expected last order: %v", err)
	default:
		v.LastOrder = &last
	}
	return v
}

// sameLive compares everything but At.
func sameLive(a, b dashboard.LiveSales) bool {
	if a.TodayRevenue != b.TodayRevenue || a.TodayOrders != b.TodayOrders || a.TodayBuyers != b.TodayBuyers ||
		(a.LastOrder == nil) != (b.LastOrder == nil) {
		return false
	}
	if a.LastOrder == nil {
		return true
	}
	x, y := *a.LastOrder, *b.LastOrder
	return x.Amount == y.Amount && x.PaidAt.Equal(y.PaidAt) && x.StoreID == y.StoreID && x.StoreName == y.StoreName
}

func show(v dashboard.LiveSales) any {
	if v.LastOrder == nil {
		return v
	}
	return struct {
		dashboard.LiveSales
		Last dashboard.LastOrder
	}{v, *v.LastOrder}
}

// receive waits up to d for a value.
func receive(t *testing.T, ch <-chan *dashboard.LiveSales, d time.Duration, what string) dashboard.LiveSales {
	t.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			t.Fatalf("%s: the channel closed", what)
		}
		return *v
	case <-time.After(d):
		t.Fatalf("%s: nothing within %v", what, d)
	}
	return dashboard.LiveSales{}
}

// quiet checks that nothing arrives for d.
func quiet(t *testing.T, ch <-chan *dashboard.LiveSales, d time.Duration, what string) {
	t.Helper()
	select {
	case v := <-ch:
		if v == nil {
			t.Errorf("%s: the channel closed", what)
			return
		}
		t.Errorf("%s: got %+v, want nothing", what, show(*v))
	case <-time.After(d):
	}
}

func (w *world) liveSale(member int, storeIdx int, paid time.Time, amount int64) sale {
	return sale{member: member, store: w.stores[storeIdx], channel: enum.ChannelPOS, paid: paid,
		lines: []orderItem{{SKU: "SKU-L", Name: "L", Quantity: 1, UnitPrice: amount, Amount: amount}}}
}

// The spec allows a second from commit to update; the hub reads every
// LiveEvery.
const within = time.Second

func TestLiveSales(t *testing.T) {
	w := newWorld(t)
	mall, mart := w.unit(t, "MALL", 1), w.unit(t, "MART", 1)
	for range 12 {
		w.member(t)
	}
	w.clock.Set(time.Date(2026, 3, 20, 15, 0, 0, 0, w.zone))
	// Yesterday's sales are not today's.
	w.ingest(t, w.liveSale(w.members[0], 0, time.Date(2026, 3, 19, 23, 59, 59, 0, w.zone), 4_000))
	w.runLive(t)

	all, err := w.dash.LiveSales(w.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	mallCtx, stopMall := context.WithCancel(w.ctx)
	ofMall, err := w.dash.LiveSales(mallCtx, &mall.ID)
	if err != nil {
		t.Fatal(err)
	}
	ofMart, err := w.dash.LiveSales(w.ctx, &mart.ID)
	if err != nil {
		t.Fatal(err)
	}
	for name, ch := range map[string]<-chan *dashboard.LiveSales{"all": all, "mall": ofMall, "mart": ofMart} {
		v := receive(t, ch, within, "the first value of "+name)
		if v.TodayOrders != 0 || v.TodayRevenue != 0 || v.LastOrder != nil || v.At.IsZero() {
			t.Errorf("%s before today's first order: %+v", name, v)
		}
	}

	// One order at the mall: the group and the mall hear of it within a
	// second, the mart does not.
	start := time.Now()
	first := w.ingest(t, w.liveSale(w.members[1], 0, w.clock.Now().Add(-time.Minute), 12_345))
	for name, c := range map[string]struct {
		ch <-chan *dashboard.LiveSales
		bu *int
	}{"all": {all, nil}, "mall": {ofMall, &mall.ID}} {
		v := receive(t, c.ch, within, name+" after an order")
		if want := w.expectLive(t, c.bu); !sameLive(v, want) || v.TodayOrders != 1 {
			t.Errorf("%s after an order: %+v, want %+v", name, show(v), show(want))
		}
	}
	t.Logf("first update after %v", time.Since(start))
	quiet(t, ofMart, 1200*time.Millisecond, "the mart after a mall order")

	// A partial refund changes the revenue; a full one takes the order
	// out of orders, buyers and the last order.
	w.refund(t, first, 2_345)
	if v, want := receive(t, all, within, "after a refund"), w.expectLive(t, nil); !sameLive(v, want) || v.TodayRevenue != 10_000 {
		t.Errorf("after a partial refund: %+v, want %+v", show(v), show(want))
	}
	w.refund(t, first, 10_000)
	if v, want := receive(t, all, within, "after a full refund"), w.expectLive(t, nil); !sameLive(v, want) || v.TodayOrders != 0 || v.LastOrder != nil {
		t.Errorf("after a full refund: %+v, want %+v", show(v), show(want))
	}
	receive(t, ofMall, within, "the mall after the refunds")
	for len(ofMall) > 0 {
		<-ofMall
	}

	// A late upload of yesterday's order changes nothing today.
	w.ingest(t, w.liveSale(w.members[2], 0, time.Date(2026, 3, 19, 12, 0, 0, 0, w.zone), 999))
	quiet(t, all, 1200*time.Millisecond, "after yesterday's order")

	// A burst of 200 orders from four tills in both units: a few updates,
	// at most one a LiveEvery, the last of which is the SQL's totals. A
	// subscriber that does not read meanwhile gets only the latest.
	slow, err := w.dash.LiveSales(w.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	receive(t, slow, within, "the slow subscriber's first value")
	var (
		got   []time.Time
		final dashboard.LiveSales
		rmu   sync.Mutex
	)
	readerDone := make(chan struct{})
	stopReading := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			select {
			case v, ok := <-all:
				if !ok {
					return
				}
				rmu.Lock()
				got, final = append(got, time.Now()), *v
				rmu.Unlock()
			case <-stopReading:
				return
			}
		}
	}()
	gate := make(chan struct{})
	var writers sync.WaitGroup
	errs := make(chan error, 4)
	burstStart := time.Now()
	for g := range 4 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 200))
			<-gate
			for range 50 {
				s := w.liveSale(w.members[rng.IntN(len(w.members))], rng.IntN(2), w.clock.Now().Add(-time.Duration(rng.IntN(3600))*time.Second), 100+rng.Int64N(50_000))
				o, err := w.ingestE(s)
				if err == nil && rng.IntN(10) == 0 {
					err = w.refundE(o, 1+rng.Int64N(o.Amount))
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	close(gate)
	writers.Wait()
	burst := time.Since(burstStart)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	want := w.expectLive(t, nil)
	deadline := time.Now().Add(within + 500*time.Millisecond)
	for {
		rmu.Lock()
		done := sameLive(final, want)
		rmu.Unlock()
		if done || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(dashboard.LiveEvery + 200*time.Millisecond) // nothing more once caught up
	close(stopReading)
	<-readerDone
	rmu.Lock()
	if !sameLive(final, want) {
		t.Errorf("after the burst: %+v, want %+v", show(final), show(want))
	}
	if want.TodayOrders < 150 {
		t.Errorf("the burst left %d orders today", want.TodayOrders)
	}
	elapsed := got[len(got)-1].Sub(burstStart)
	if max := int(elapsed/dashboard.LiveEvery) + 2; len(got) > max || len(got) < 2 {
		t.Errorf("%d updates over %v (burst %v), want 2 to %d", len(got), elapsed, burst, max)
	}
	for i := 1; i < len(got); i++ {
		if gap := got[i].Sub(got[i-1]); gap < dashboard.LiveEvery/2 {
			t.Errorf("updates %d and %d came %v apart", i, i+1, gap)
		}
	}
	t.Logf("%d updates for 200 orders over %v", len(got), burst)
	rmu.Unlock()
	if v := receive(t, slow, within, "the slow subscriber"); !sameLive(v, want) {
		t.Errorf("the slow subscriber's value: %+v, want the latest %+v", show(v), show(want))
	}
	quiet(t, slow, 200*time.Millisecond, "the slow subscriber's backlog")

	// Each unit's figures are its own.
	for _, c := range []struct {
		ch <-chan *dashboard.LiveSales
		bu *int
	}{{ofMall, &mall.ID}, {ofMart, &mart.ID}} {
		var v dashboard.LiveSales
		for len(c.ch) > 0 {
			v = *<-c.ch
		}
		if want := w.expectLive(t, c.bu); !sameLive(v, want) || v.TodayOrders == 0 {
			t.Errorf("business unit %d after the burst: %+v, want %+v", *c.bu, show(v), show(want))
		}
	}

	// The subscription ends with its context.
	stopMall()
	closed := time.After(within)
	for {
		select {
		case _, ok := <-ofMall:
			if ok {
				continue
			}
		case <-closed:
			t.Fatal("the channel stayed open after its context ended")
		}
		break
	}

	missing := 42
	if _, err := w.dash.LiveSales(w.ctx, &missing); !errors.Is(err, fault.ErrNotFound) {
		t.Errorf("an unknown business unit: err = %v, want NOT_FOUND", err)
	}
}

// TestLiveSalesDayRollover crosses midnight in the business zone with the
// settable clock: the figures start again from zero without any order.
func TestLiveSalesDayRollover(t *testing.T) {
	w := newWorld(t)
	w.unit(t, "MALL", 1)
	m := w.member(t)
	w.clock.Set(time.Date(2026, 3, 20, 23, 59, 58, 0, w.zone))
	w.ingest(t, w.liveSale(m, 0, time.Date(2026, 3, 20, 23, 59, 57, 0, w.zone), 5_000))
	w.runLive(t)
	ch, err := w.dash.LiveSales(w.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if v := receive(t, ch, within, "before midnight"); v.TodayOrders != 1 || v.TodayRevenue != 5_000 || v.LastOrder == nil {
		t.Fatalf("before midnight: %+v", show(v))
	}
	w.clock.Set(time.Date(2026, 3, 21, 0, 0, 1, 0, w.zone))
	v := receive(t, ch, within, "after midnight")
	if v.TodayOrders != 0 || v.TodayRevenue != 0 || v.TodayBuyers != 0 || v.LastOrder != nil {
		t.Errorf("after midnight: %+v, want zeros", show(v))
	}
	if d := calendar.In(v.At, w.zone); d != day("2026-03-21") {
		t.Errorf("after midnight At is on %v", d)
	}
	w.ingest(t, w.liveSale(m, 0, time.Date(2026, 3, 21, 0, 0, 0, 0, w.zone), 700))
	if v, want := receive(t, ch, within, "the new day's first order"), w.expectLive(t, nil); !sameLive(v, want) || v.TodayOrders != 1 {
		t.Errorf("the new day's first order: %+v, want %+v", show(v), show(want))
	}
}
