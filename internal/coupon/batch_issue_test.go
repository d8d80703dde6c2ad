package coupon_test

import (
	"context"
	stdsql "database/sql"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/account"
	entcoupon "github.com/onemember/onemember/ent/coupon"
	"github.com/onemember/onemember/ent/memberevent"
	"github.com/onemember/onemember/ent/notification"
	"github.com/onemember/onemember/internal/coupon"
	"github.com/onemember/onemember/internal/events"
	"github.com/onemember/onemember/internal/platform/database"
)

// lockAll locks the accounts of members (created on first use) in
// ascending member id, as a batch caller does.
func lockAll(ctx context.Context, tx *ent.Tx, members []int) ([]*ent.Account, error) {
	for _, id := range members {
		err := tx.Account.Create().SetMemberID(id).OnConflictColumns(account.FieldMemberID).DoNothing().Exec(ctx)
		if err != nil && !errors.Is(err, stdsql.ErrNoRows) {
			return nil, err
		}
	}
	return tx.Account.Query().Where(account.MemberIDIn(members...)).Order(account.ByMemberID()).ForUpdate().All(ctx)
}

func TestIssueBatchLimitsStockAndEvents(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	tpl := e.template(t, func(in *coupon.TemplateInput) { in.TotalStock = 4; in.PerMemberLimit = 1 })
	members := e.members(t, 5)
	e.issue(t, members[1], tpl) // at the limit already; takes one of the 4

	type result struct {
		issued []coupon.Issued
		seqs   []int64
	}
	res, err := database.WithTx(ctx, e.db, func(tx *ent.Tx) (result, error) {
		accts, err := lockAll(ctx, tx, members)
		if err != nil {
			return result{}, err
		}
		issued, err := e.svc.IssueBatchInTx(ctx, tx, accts, tpl.ID, "campaign:1")
		if err != nil {
			return result{}, err
		}
		// A later Emit in the same transaction continues each sequence.
		var seqs []int64
		for _, a := range accts {
			ev, err := events.Emit(ctx, tx, a, e.clock.Now(), events.Event{Type: events.Message, Payload: map[string]any{}})
			if err != nil {
				return result{}, err
			}
			seqs = append(seqs, ev.Seq)
		}
		return result{issued, seqs}, nil
	})
	if err != nil {
		t.Fatalf("issuing: %v", err)
	}
	want := []error{nil, coupon.ErrLimitExceeded, nil, nil, coupon.ErrOutOfStock}
	for i, r := range res.issued {
		switch {
		case want[i] == nil && (r.Err != nil || r.Coupon == nil || r.Coupon.MemberID != members[i]):
			t.Errorf("member %d: %+v, want a coupon", i, r)
		case want[i] != nil && !errors.Is(r.Err, want[i]):
			t.Errorf("member %d: %v, want %v", i, r.Err, want[i])
		}
	}
	if n := e.countCoupons(t, tpl.ID); n != 4 {
		t.Errorf("%d coupons of the template, want 4 (the stock)", n)
	}
	got, err := e.db.CouponTemplate.Get(ctx, tpl.ID)
	if err != nil || got.IssuedCount != 4 {
		t.Fatalf("issued_count %d (%v), want 4", got.IssuedCount, err)
	}
	for i, m := range members {
		evs := e.events(t, m, memberevent.TypeCOUPON_ISSUED)
		wantEvents := 0
		if want[i] == nil {
			wantEvents = 1
		}
		if i == 1 {
			wantEvents = 1 // its earlier coupon
		}
		if len(evs) != wantEvents {
			t.Fatalf("member %d: %d COUPON_ISSUED events, want %d", i, len(evs), wantEvents)
		}
		if want[i] != nil {
			continue
		}
		ev := evs[0]
		if ev.Seq != 1 || res.seqs[i] != 2 {
			t.Errorf("member %d: coupon event seq %d, next event seq %d; want 1 and 2", i, ev.Seq, res.seqs[i])
		}
		if id, _ := ev.Payload["couponId"].(float64); int(id) != res.issued[i].Coupon.ID {
			t.Errorf("member %d: event payload %v, want couponId %d", i, ev.Payload, res.issued[i].Coupon.ID)
		}
		n, err := e.db.Notification.Query().Where(notification.EventID(ev.ID), notification.MemberID(m)).Count(ctx)
		if err != nil || n != 1 {
			t.Errorf("member %d: %d notifications for the event (%v), want 1", i, n, err)
		}
	}
}

// Batches racing each other and single claims never oversell the stock,
// and no member gets more than the per-member limit.
func TestIssueBatchRacesKeepStockExact(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	const stock = 50
	tpl := e.template(t, func(in *coupon.TemplateInput) { in.TotalStock = stock; in.PerMemberLimit = 1 })
	members := e.members(t, 90)
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	// Three batches of 30 overlapping members each (0-29, 20-49, 40-69)
	// and twenty single claims of members 60-79, all at once.
	for b := range 3 {
		batch := members[b*20 : b*20+30]
		wg.Go(func() {
			<-start
			_, err := database.WithTx(ctx, e.db, func(tx *ent.Tx) (struct{}, error) {
				accts, err := lockAll(ctx, tx, batch)
				if err != nil {
					return struct{}{}, err
				}
				_, err = e.svc.IssueBatchInTx(ctx, tx, accts, tpl.ID, fmt.Sprintf("batch:%d", b))
				return struct{}{}, err
			})
			if err != nil {
				errs <- err
			}
		})
	}
	for _, m := range members[60:80] {
		wg.Go(func() {
			<-start
			_, err := e.svc.Claim(ctx, m, tpl.ID)
			if err != nil && !errors.Is(err, coupon.ErrOutOfStock) && !errors.Is(err, coupon.ErrLimitExceeded) {
				errs <- err
			}
		})
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("racing issuers: %v", err)
	}
	if n := e.countCoupons(t, tpl.ID); n != stock {
		t.Errorf("%d coupons issued, want exactly the stock %d", n, stock)
	}
	rows, err := e.db.Coupon.Query().Where(entcoupon.TemplateID(tpl.ID)).All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	per := map[int]int{}
	for _, c := range rows {
		per[c.MemberID]++
	}
	var over []int
	for m, n := range per {
		if n > 1 {
			over = append(over, m)
		}
	}
	sort.Ints(over)
	if len(over) > 0 {
		t.Errorf("members %v hold more than the per-member limit", over)
	}
}
