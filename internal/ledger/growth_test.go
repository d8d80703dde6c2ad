package ledger_test

import (
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/growthentry"
	"github.com/onemember/onemember/internal/ledger"
)

func TestGrowth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := e.member(t)
	earn := func(n int64, at time.Time) {
		mustTx(t, e, m, func(tx *ent.Tx, acct *ent.Account) (*ent.GrowthEntry, error) {
			return e.svc.EarnGrowth(t.Context(), tx, acct, ledger.Entry{Amount: n, Source: ledger.SourceOrder, At: at})
		})
	}
	reverse := func(n int64) *ent.GrowthEntry {
		return mustTx(t, e, m, func(tx *ent.Tx, acct *ent.Account) (*ent.GrowthEntry, error) {
			return e.svc.ReverseGrowth(t.Context(), tx, acct, ledger.Entry{Amount: n})
		})
	}
	jan := time.Date(2025, 1, 15, 0, 0, 0, 0, e.zone)
	feb := time.Date(2025, 2, 1, 0, 0, 0, 0, e.zone) // the window's end: excluded
	earn(100, jan)
	earn(50, feb)
	if ge := reverse(30); ge.Amount != -30 || ge.BalanceAfter != 120 || ge.Kind != growthentry.KindREVERSAL || ge.Source != growthentry.SourceREFUND {
		t.Errorf("reverse 30 = %s %s %d after %d", ge.Kind, ge.Source, ge.Amount, ge.BalanceAfter)
	}
	// Only 120 is left to take back: growth never goes below 0.
	if ge := reverse(500); ge.Amount != -120 || ge.BalanceAfter != 0 {
		t.Errorf("reverse 500 of 120 = %d after %d, want -120 after 0", ge.Amount, ge.BalanceAfter)
	}
	if ge := reverse(1); ge != nil {
		t.Errorf("reverse at 0 = %+v, want no entry", ge)
	}
	for _, tt := range []struct {
		from, to time.Time
		want     int64
	}{
		{jan, feb, 100},
		{jan, feb.Add(time.Microsecond), 150},     // timestamptz keeps microseconds
		{feb, e.clock.Now().Add(time.Hour), -100}, // 50 earned, 150 reversed "now"
		{jan.AddDate(-1, 0, 0), jan, 0},           // no entries: 0, not NULL
	} {
		got, err := e.svc.GrowthBetween(t.Context(), e.db, m, tt.from, tt.to)
		if err != nil || got != tt.want {
			t.Errorf("GrowthBetween(%s, %s) = %d, %v; want %d", tt.from, tt.to, got, err, tt.want)
		}
	}
	if got := e.account(t, m).GrowthValue; got != 0 {
		t.Errorf("growth = %d, want 0", got)
	}
	e.verifyClean(t)
}
