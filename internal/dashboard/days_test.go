package dashboard_test

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/onemember/onemember/internal/dashboard"
)

// TestDayCacheFollowsOtherReplicas keeps a second replica's Service (its
// own day cache) answering while the first refreshes: once a refresh has
// committed, the second answers the new figures.
func TestDayCacheFollowsOtherReplicas(t *testing.T) {
	w := newWorld(t)
	for _, code := range []string{"MALL", "MART"} {
		w.unit(t, code, 2)
	}
	for range 15 {
		w.member(t)
	}
	rng := rand.New(rand.NewPCG(5, 5))
	from, to := time.Date(2026, 3, 1, 0, 0, 0, 0, w.zone), time.Date(2026, 3, 20, 17, 0, 0, 0, w.zone)
	for range 60 {
		w.maybeRefund(t, rng, w.ingest(t, w.randomSale(rng, from, to)))
	}
	if err := w.dash.Rebuild(w.ctx); err != nil {
		t.Fatal(err)
	}
	other := dashboard.New(w.db, w.sql, w.zone, w.clock.Now)
	check := func(when string) {
		t.Helper()
		for _, bu := range []*int{nil, &w.bus[1].ID} {
			got, err := other.SalesOverview(w.ctx, day("2026-03-01"), day("2026-03-20"), bu)
			if err != nil {
				t.Fatal(err)
			}
			if want := w.expectOverview(t, day("2026-03-01"), day("2026-03-20"), bu); !reflect.DeepEqual(got, want) {
				t.Errorf("%s, bu %v:\n got %+v\nwant %+v", when, deref(bu), got, want)
			}
		}
	}
	check("after the rebuild")
	before, err := other.SalesOverview(w.ctx, day("2026-03-01"), day("2026-03-20"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// New orders on cached days and refunds of old ones, refreshed by the
	// first replica.
	for range 20 {
		w.maybeRefund(t, rng, w.ingest(t, w.randomSale(rng, from, to)))
	}
	for _, o := range w.placed[:10] {
		if fresh, err := w.db.Order.Get(w.ctx, o.ID); err == nil && fresh.RefundedAmount < fresh.Amount {
			w.refund(t, fresh, fresh.Amount-fresh.RefundedAmount)
		}
	}
	if _, err := w.dash.Refresh(w.ctx); err != nil {
		t.Fatal(err)
	}
	check("after another replica's refresh")
	after, err := other.SalesOverview(w.ctx, day("2026-03-01"), day("2026-03-20"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if after.Revenue == before.Revenue && after.Orders == before.Orders {
		t.Errorf("the second replica's overview did not change: %+v", after)
	}
}
