package ledger_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/memberevent"
	"github.com/onemember/onemember/ent/pointsallocation"
	"github.com/onemember/onemember/ent/pointsentry"
	"github.com/onemember/onemember/ent/pointslot"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/platform/fault"
	"github.com/onemember/onemember/internal/platform/testkit"
)

func TestLotExpiry(t *testing.T) {
	t.Parallel()
	sh := testkit.Shanghai(t)
	p := ledger.DefaultPolicy(sh)
	tests := []struct {
		name     string
		months   int
		earned   time.Time
		wantDate time.Time // in Shanghai
	}{
		{"mid-month", 12, time.Date(2025, 3, 15, 10, 0, 0, 0, sh), time.Date(2026, 4, 1, 0, 0, 0, 0, sh)},
		{"first instant of a month", 12, time.Date(2025, 3, 1, 0, 0, 0, 0, sh), time.Date(2026, 4, 1, 0, 0, 0, 0, sh)},
		{"last instant of a month", 12, time.Date(2025, 3, 31, 23, 59, 59, 0, sh), time.Date(2026, 4, 1, 0, 0, 0, 0, sh)},
		{"December rolls into January", 12, time.Date(2025, 12, 10, 9, 0, 0, 0, sh), time.Date(2027, 1, 1, 0, 0, 0, 0, sh)},
		{"November ends in December", 12, time.Date(2025, 11, 30, 9, 0, 0, 0, sh), time.Date(2026, 12, 1, 0, 0, 0, 0, sh)},
		// 23:30 UTC on 31 January is 07:30 on 1 February in Shanghai.
		{"23:30 UTC is already the next month", 12, time.Date(2025, 1, 31, 23, 30, 0, 0, time.UTC), time.Date(2026, 3, 1, 0, 0, 0, 0, sh)},
		{"23:30 UTC on 31 December is next year", 12, time.Date(2025, 12, 31, 23, 30, 0, 0, time.UTC), time.Date(2027, 2, 1, 0, 0, 0, 0, sh)},
		{"15:59 UTC on 31 December is still December", 12, time.Date(2025, 12, 31, 15, 59, 59, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, sh)},
		{"leap February", 12, time.Date(2024, 2, 29, 12, 0, 0, 0, sh), time.Date(2025, 3, 1, 0, 0, 0, 0, sh)},
		{"one-month lifetime", 1, time.Date(2025, 12, 5, 0, 0, 0, 0, sh), time.Date(2026, 2, 1, 0, 0, 0, 0, sh)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := p
			p.PointsLifetimeMonths = tt.months
			got := p.LotExpiry(tt.earned)
			if !got.Equal(tt.wantDate) {
				t.Errorf("LotExpiry(%s) = %s, want %s", tt.earned, got.In(sh), tt.wantDate)
			}
			if got.Location() != time.UTC {
				t.Errorf("LotExpiry returned %s, want UTC", got.Location())
			}
		})
	}
}

func TestEarnCreatesLotAndEvent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.member(t)
	bu, _ := e.store(t)
	at := time.Date(2025, 3, 15, 10, 0, 0, 0, e.zone)
	pe := e.earn(t, m, 120, at, &bu)
	if pe.Kind != pointsentry.KindEARN || pe.Amount != 120 || pe.BalanceAfter != 120 {
		t.Errorf("entry = %s %d after %d, want EARN 120 after 120", pe.Kind, pe.Amount, pe.BalanceAfter)
	}
	lot, err := e.db.PointsLot.Query().Where(pointslot.EntryID(pe.ID)).Only(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 4, 1, 0, 0, 0, 0, e.zone)
	if lot.Amount != 120 || lot.Remaining != 120 || !lot.ExpiresAt.Equal(want) || lot.BusinessUnitID == nil || *lot.BusinessUnitID != bu {
		t.Errorf("lot = %+v, want 120/120 expiring %s in BU %d", lot, want, bu)
	}
	if pe.ExpiresAt == nil || !pe.ExpiresAt.Equal(want) {
		t.Errorf("entry expires_at = %v, want %s", pe.ExpiresAt, want)
	}
	ev, err := e.db.MemberEvent.Query().Where(memberevent.MemberID(m)).Only(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if ev.Type != memberevent.TypePOINTS_CHANGED || ev.Seq != 1 ||
		ev.Payload["pointsDelta"] != float64(120) || ev.Payload["pointsBalance"] != float64(120) || ev.Payload["reason"] != "ORDER" {
		t.Errorf("event = %s seq %d %v", ev.Type, ev.Seq, ev.Payload)
	}
	e.verifyClean(t)
}

func TestBurnTakesEarliestExpiringLotsFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.member(t)
	// Earned out of expiry order, so that creation order and expiry
	// order differ.
	may := e.earn(t, m, 100, time.Date(2025, 5, 3, 0, 0, 0, 0, e.zone), nil)
	jan := e.earn(t, m, 50, time.Date(2025, 1, 20, 0, 0, 0, 0, e.zone), nil)
	mar := e.earn(t, m, 80, time.Date(2025, 3, 1, 0, 0, 0, 0, e.zone), nil)

	burn := mustTx(t, e, m, func(tx *ent.Tx, acct *ent.Account) (*ent.PointsEntry, error) {
		return e.svc.BurnPoints(t.Context(), tx, acct, ledger.Entry{Amount: 170, Source: ledger.SourceOrder, OrderID: testkit.Ptr(1)})
	})
	if burn.Amount != -170 || burn.BalanceAfter != 60 || burn.Kind != pointsentry.KindBURN {
		t.Fatalf("burn = %s %d after %d", burn.Kind, burn.Amount, burn.BalanceAfter)
	}
	remaining := map[int]int64{}
	lots, err := e.db.PointsLot.Query().Where(pointslot.MemberID(m)).All(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lots {
		remaining[l.EntryID] = l.Remaining
	}
	want := map[int]int64{jan.ID: 0, mar.ID: 0, may.ID: 60}
	for id, w := range want {
		if remaining[id] != w {
			t.Errorf("lot of entry %d has %d left, want %d", id, remaining[id], w)
		}
	}
	allocs, err := e.db.PointsAllocation.Query().Where(pointsallocation.EntryID(burn.ID)).All(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, a := range allocs {
		sum += a.Amount
	}
	if len(allocs) != 3 || sum != 170 {
		t.Errorf("burn has %d allocations summing %d, want 3 summing 170", len(allocs), sum)
	}

	_, err = inTx(t.Context(), e, m, func(tx *ent.Tx, acct *ent.Account) (*ent.PointsEntry, error) {
		return e.svc.BurnPoints(t.Context(), tx, acct, ledger.Entry{Amount: 61, Source: ledger.SourceMall})
	})
	if !errors.Is(err, ledger.ErrInsufficientPoints) || fault.CodeOf(err) != fault.InsufficientBalance {
		t.Errorf("burning 61 of 60: %v (code %s), want ErrInsufficientPoints", err, fault.CodeOf(err))
	}
	e.verifyClean(t)
}

func TestBurnSkipsExpiredLots(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.member(t)
	e.earn(t, m, 40, time.Date(2024, 1, 10, 0, 0, 0, 0, e.zone), nil) // expired 2025-02-01
	e.earn(t, m, 30, time.Date(2025, 3, 1, 0, 0, 0, 0, e.zone), nil)
	_, err := inTx(t.Context(), e, m, func(tx *ent.Tx, acct *ent.Account) (*ent.PointsEntry, error) {
		return e.svc.BurnPoints(t.Context(), tx, acct, ledger.Entry{Amount: 50, Source: ledger.SourceMall})
	})
	if !errors.Is(err, ledger.ErrInsufficientPoints) {
		t.Fatalf("burning 50 with 30 unexpired: %v, want ErrInsufficientPoints", err)
	}
	burn := mustTx(t, e, m, func(tx *ent.Tx, acct *ent.Account) (*ent.PointsEntry, error) {
		return e.svc.BurnPoints(t.Context(), tx, acct, ledger.Entry{Amount: 30, Source: ledger.SourceMall})
	})
	if burn.BalanceAfter != 0 {
		t.Errorf("balance after = %d, want 0", burn.BalanceAfter)
	}
	kinds, err := e.db.PointsEntry.Query().Where(pointsentry.MemberID(m)).Order(pointsentry.ByID()).
		Select(pointsentry.FieldKind).Strings(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if got := len(kinds); got != 4 || kinds[2] != "EXPIRE" || kinds[3] != "BURN" {
		t.Errorf("entries = %v, want EARN EARN EXPIRE BURN", kinds)
	}
	e.verifyClean(t)
}

func TestDebtIsRepaidByLaterEarnings(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.member(t)
	at := e.clock.Now()
	e.earn(t, m, 100, at, nil)
	mustTx(t, e, m, func(tx *ent.Tx, acct *ent.Account) (*ent.PointsEntry, error) {
		return e.svc.BurnPoints(t.Context(), tx, acct, ledger.Entry{Amount: 70, Source: ledger.SourceOrder})
	})
	// The order that earned the 100 is refunded: only 30 are left to
	// take, so 70 become a debt.
	rev := mustTx(t, e, m, func(tx *ent.Tx, acct *ent.Account) (*ent.PointsEntry, error) {
		return e.svc.ReverseEarnedPoints(t.Context(), tx, acct, ledger.Entry{Amount: 100, Source: ledger.SourceRefund})
	})
	if rev.Kind != pointsentry.KindREVERSAL || rev.Amount != -100 || rev.BalanceAfter != -70 {
		t.Fatalf("reversal = %s %d after %d, want REVERSAL -100 after -70", rev.Kind, rev.Amount, rev.BalanceAfter)
	}
	e.verifyClean(t)

	tests := []struct {
		earn        int64
		wantBalance int64
		wantLot     int64 // 0: no lot
	}{
		{50, -20, 0},
		{50, 30, 30},
		{10, 40, 10},
	}
	for _, tt := range tests {
		pe := e.earn(t, m, tt.earn, at, nil)
		if pe.BalanceAfter != tt.wantBalance {
			t.Errorf("earning %d: balance %d, want %d", tt.earn, pe.BalanceAfter, tt.wantBalance)
		}
		lots, err := e.db.PointsLot.Query().Where(pointslot.EntryID(pe.ID)).All(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case tt.wantLot == 0 && (len(lots) != 0 || pe.ExpiresAt != nil):
			t.Errorf("earning %d while owing: lots %v, expires_at %v, want none", tt.earn, lots, pe.ExpiresAt)
		case tt.wantLot > 0 && (len(lots) != 1 || lots[0].Amount != tt.wantLot || lots[0].Remaining != tt.wantLot):
			t.Errorf("earning %d: lots %v, want one of %d", tt.earn, lots, tt.wantLot)
		}
		e.verifyClean(t)
	}
}

func TestRestoreBurnedPoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.member(t)
	jan := e.earn(t, m, 50, time.Date(2025, 1, 20, 0, 0, 0, 0, e.zone), nil)
	mar := e.earn(t, m, 80, time.Date(2025, 3, 1, 0, 0, 0, 0, e.zone), nil)
	orderID := 4242
	burn := mustTx(t, e, m, func(tx *ent.Tx, acct *ent.Account) (*ent.PointsEntry, error) {
		return e.svc.BurnPoints(t.Context(), tx, acct, ledger.Entry{Amount: 100, Source: ledger.SourceOrder, OrderID: &orderID})
	})
	restore := func(n int64) (*ent.PointsEntry, error) {
		return inTx(t.Context(), e, m, func(tx *ent.Tx, acct *ent.Account) (*ent.PointsEntry, error) {
			return e.svc.RestoreBurnedPoints(t.Context(), tx, acct, burn.ID, ledger.Entry{Amount: n, Source: ledger.SourceRefund})
		})
	}
	left := func() map[int]int64 {
		out := map[int]int64{}
		for _, l := range e.db.PointsLot.Query().Where(pointslot.MemberID(m)).AllX(t.Context()) {
			out[l.EntryID] = l.Remaining
		}
		return out
	}
	// The burn took 50 from January and 50 from March: giving back 40
	// refills the later-expiring March lot first.
	r1, err := restore(40)
	if err != nil {
		t.Fatal(err)
	}
	if r1.Kind != pointsentry.KindREVERSAL || r1.Amount != 40 || r1.BalanceAfter != 70 || r1.OrderID == nil || *r1.OrderID != orderID {
		t.Errorf("restore = %s %d after %d order %v", r1.Kind, r1.Amount, r1.BalanceAfter, r1.OrderID)
	}
	if got := left(); got[jan.ID] != 0 || got[mar.ID] != 70 {
		t.Errorf("after restoring 40: %v, want jan 0 mar 70", got)
	}
	if _, err := restore(20); err != nil {
		t.Fatal(err)
	}
	if got := left(); got[jan.ID] != 10 || got[mar.ID] != 80 {
		t.Errorf("after restoring 60: %v, want jan 10 mar 80", got)
	}
	if _, err := restore(41); !errors.Is(err, ledger.ErrRestoreExceedsBurn) {
		t.Errorf("restoring 41 of 40 left: %v, want ErrRestoreExceedsBurn", err)
	}
	if _, err := restore(40); err != nil {
		t.Fatal(err)
	}
	if _, err := restore(1); !errors.Is(err, ledger.ErrRestoreExceedsBurn) {
		t.Errorf("restoring past the burn: %v, want ErrRestoreExceedsBurn", err)
	}
	if got := e.account(t, m).PointsBalance; got != 130 {
		t.Errorf("balance = %d, want 130", got)
	}
	e.verifyClean(t)
}

func TestAdjustPoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.member(t)
	adjust := func(delta int64) (*ent.PointsEntry, error) {
		return inTx(t.Context(), e, m, func(tx *ent.Tx, acct *ent.Account) (*ent.PointsEntry, error) {
			return e.svc.AdjustPoints(t.Context(), tx, acct, delta, ledger.Entry{Reason: "goodwill"})
		})
	}
	up, err := adjust(30)
	if err != nil {
		t.Fatal(err)
	}
	if up.Kind != pointsentry.KindADJUST || up.Source != pointsentry.SourceADJUSTMENT || up.Amount != 30 {
		t.Errorf("adjust +30 = %s %s %d", up.Kind, up.Source, up.Amount)
	}
	if _, err := adjust(-31); !errors.Is(err, ledger.ErrInsufficientPoints) {
		t.Errorf("adjust -31 of 30: %v, want ErrInsufficientPoints", err)
	}
	down, err := adjust(-30)
	if err != nil || down.BalanceAfter != 0 {
		t.Errorf("adjust -30: %v, %v", down, err)
	}
	_, err = adjust(0)
	if fs := fault.Fields(err); len(fs) != 1 || fs[0].Field != "delta" {
		t.Errorf("adjust 0: %v, want one problem naming delta", err)
	}
	e.verifyClean(t)
}

func TestEntryValidationAndIdempotency(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.member(t)
	_, err := inTx(t.Context(), e, m, func(tx *ent.Tx, acct *ent.Account) (*ent.PointsEntry, error) {
		return e.svc.EarnPoints(t.Context(), tx, acct, ledger.Entry{Amount: -5, Source: "GIFT"})
	})
	fs := fault.Fields(err)
	if len(fs) != 2 || fs[0].Field != "amount" || fs[1].Field != "source" || fault.CodeOf(err) != fault.BadUserInput {
		t.Errorf("invalid entry: %v, want amount and source reported together", err)
	}

	key := "order:77:points"
	earn := func() *ent.PointsEntry {
		return mustTx(t, e, m, func(tx *ent.Tx, acct *ent.Account) (*ent.PointsEntry, error) {
			return e.svc.EarnPoints(t.Context(), tx, acct, ledger.Entry{Amount: 10, Source: ledger.SourceOrder, Key: &key})
		})
	}
	first, again := earn(), earn()
	if first.ID != again.ID || e.account(t, m).PointsBalance != 10 {
		t.Errorf("retry wrote again: entries %d, %d; balance %d", first.ID, again.ID, e.account(t, m).PointsBalance)
	}
	other := e.member(t)
	_, err = inTx(t.Context(), e, other, func(tx *ent.Tx, acct *ent.Account) (*ent.PointsEntry, error) {
		return e.svc.EarnPoints(t.Context(), tx, acct, ledger.Entry{Amount: 10, Source: ledger.SourceOrder, Key: &key})
	})
	if !errors.Is(err, ledger.ErrIdempotencyConflict) {
		t.Errorf("another member's key: %v, want ErrIdempotencyConflict", err)
	}
	e.verifyClean(t)
}

func TestExpirePoints(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	a, b := e.member(t), e.member(t)
	e.earn(t, a, 10, time.Date(2024, 1, 5, 0, 0, 0, 0, e.zone), nil) // expires 2025-02-01
	e.earn(t, a, 20, time.Date(2024, 2, 5, 0, 0, 0, 0, e.zone), nil) // expires 2025-03-01
	e.earn(t, a, 40, time.Date(2024, 3, 5, 0, 0, 0, 0, e.zone), nil) // expires 2025-04-01
	e.earn(t, b, 5, time.Date(2024, 2, 29, 0, 0, 0, 0, e.zone), nil) // expires 2025-03-01

	soon, err := e.svc.ExpiringSoon(t.Context(), e.db, a, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(soon) != 1 || soon[0].Amount != 40 || !soon[0].ExpiresAt.Equal(time.Date(2025, 4, 1, 0, 0, 0, 0, e.zone)) {
		t.Errorf("ExpiringSoon = %+v, want 40 on 2025-04-01", soon)
	}

	n, err := e.svc.ExpirePoints(t.Context())
	if err != nil || n != 35 {
		t.Fatalf("ExpirePoints = %d, %v; want 35", n, err)
	}
	if n, err := e.svc.ExpirePoints(t.Context()); err != nil || n != 0 {
		t.Errorf("second run = %d, %v; want 0", n, err)
	}
	exp, err := e.db.PointsEntry.Query().Where(pointsentry.MemberID(a), pointsentry.KindEQ(pointsentry.KindEXPIRE)).Only(t.Context())
	if err != nil {
		t.Fatalf("one EXPIRE entry for member a: %v", err)
	}
	if exp.Amount != -30 || exp.BalanceAfter != 40 || exp.Source != pointsentry.SourceEXPIRY {
		t.Errorf("EXPIRE entry = %d after %d (%s)", exp.Amount, exp.BalanceAfter, exp.Source)
	}
	if got := e.account(t, b).PointsBalance; got != 0 {
		t.Errorf("member b balance = %d, want 0", got)
	}
	e.verifyClean(t)
}

// TestBurnsRaceExpiry runs burns, earnings and several ExpirePoints at
// once against PostgreSQL: the account lock and the lot locks must keep
// every lot within [0, amount] and every balance equal to its entries.
func TestBurnsRaceExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	old := time.Date(2024, 1, 5, 0, 0, 0, 0, e.zone) // expired
	recent := e.clock.Now()
	var members []int
	for range 8 {
		m := e.member(t)
		members = append(members, m)
		for i := range 4 {
			e.earn(t, m, int64(10+i), old.AddDate(0, i%2, 0), nil)
			e.earn(t, m, int64(20+i), recent, nil)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for range 3 {
		wg.Go(func() {
			if _, err := e.svc.ExpirePoints(t.Context()); err != nil {
				errs <- err
			}
		})
	}
	for _, m := range members {
		for range 6 {
			wg.Go(func() {
				_, err := inTx(t.Context(), e, m, func(tx *ent.Tx, acct *ent.Account) (*ent.PointsEntry, error) {
					return e.svc.BurnPoints(t.Context(), tx, acct, ledger.Entry{Amount: 17, Source: ledger.SourceMall})
				})
				if err != nil && !errors.Is(err, ledger.ErrInsufficientPoints) {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	negative, err := e.db.PointsLot.Query().Where(pointslot.RemainingLT(0)).Count(t.Context())
	if err != nil || negative != 0 {
		t.Errorf("%d lots below zero (%v)", negative, err)
	}
	expiredLeft, err := e.db.PointsLot.Query().Where(pointslot.RemainingGT(0), pointslot.ExpiresAtLTE(e.clock.Now())).Count(t.Context())
	if err != nil || expiredLeft != 0 {
		t.Errorf("%d expired lots still hold points (%v)", expiredLeft, err)
	}
	for _, m := range members {
		// 4 recent lots of 20..23 = 86; each burn of 17 fits 5 times.
		if got := e.account(t, m).PointsBalance; got != 86-5*17 {
			t.Errorf("member %d balance = %d, want %d", m, got, 86-5*17)
		}
	}
	e.verifyClean(t)
}
