package ledger_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/businessunit"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/auth/password"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/testkit"
)

type env struct {
	db    *ent.Client
	svc   *ledger.Service
	clock *testkit.Clock
	zone  *time.Location
	seq   atomic.Int64
}

// cheapHash keeps argon2 fast in tests; production uses DefaultParams.
var cheapHash = password.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func newEnv(t *testing.T) *env {
	t.Helper()
	client, _ := testkit.EntClient(t, 60)
	zone := testkit.Shanghai(t)
	c := testkit.NewClock(time.Date(2025, 3, 10, 12, 0, 0, 0, zone))
	return &env{
		db:    client,
		svc:   ledger.New(client, ledger.DefaultPolicy(zone), cheapHash, c.Now),
		clock: c,
		zone:  zone,
	}
}

func (e *env) member(t *testing.T) int {
	t.Helper()
	m, err := e.db.Member.Create().
		SetMemberNo(fmt.Sprintf("T%06d", e.seq.Add(1))).
		SetSourceChannel(enum.ChannelPOS).
		Save(t.Context())
	if err != nil {
		t.Fatalf("creating member: %v", err)
	}
	return m.ID
}

// store creates a business unit with one store and returns both ids.
func (e *env) store(t *testing.T) (bu, store int) {
	t.Helper()
	n := e.seq.Add(1)
	u, err := e.db.BusinessUnit.Create().SetCode(fmt.Sprintf("BU%d", n)).SetName("超市").
		SetKind(businessunit.KindSUPERMARKET).Save(t.Context())
	if err != nil {
		t.Fatalf("creating business unit: %v", err)
	}
	s, err := e.db.Store.Create().SetCode(fmt.Sprintf("S%d", n)).SetName("门店").
		SetBusinessUnitID(u.ID).Save(t.Context())
	if err != nil {
		t.Fatalf("creating store: %v", err)
	}
	return u.ID, s.ID
}

// inTx runs fn with the member's account locked in one transaction.
func inTx[T any](ctx context.Context, e *env, memberID int, fn func(tx *ent.Tx, acct *ent.Account) (T, error)) (T, error) {
	return database.WithTx(ctx, e.db, func(tx *ent.Tx) (T, error) {
		acct, err := ledger.LockAccount(ctx, tx, memberID)
		if err != nil {
			var zero T
			return zero, err
		}
		return fn(tx, acct)
	})
}

// mustTx is inTx failing the test on error.
func mustTx[T any](t *testing.T, e *env, memberID int, fn func(tx *ent.Tx, acct *ent.Account) (T, error)) T {
	t.Helper()
	v, err := inTx(t.Context(), e, memberID, fn)
	if err != nil {
		t.Fatalf("transaction: %v", err)
	}
	return v
}

func (e *env) earn(t *testing.T, memberID int, amount int64, at time.Time, bu *int) *ent.PointsEntry {
	t.Helper()
	return mustTx(t, e, memberID, func(tx *ent.Tx, acct *ent.Account) (*ent.PointsEntry, error) {
		return e.svc.EarnPoints(t.Context(), tx, acct, ledger.Entry{Amount: amount, Source: ledger.SourceOrder, BusinessUnitID: bu, At: at})
	})
}

func (e *env) account(t *testing.T, memberID int) *ent.Account {
	t.Helper()
	a, err := account.Get(t.Context(), e.db, memberID)
	if err != nil {
		t.Fatalf("reading account: %v", err)
	}
	return a
}

func (e *env) verifyClean(t *testing.T) ledger.Report {
	t.Helper()
	rep, err := ledger.Verify(t.Context(), e.db)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	for _, p := range rep.Problems {
		t.Errorf("Verify: %s", p)
	}
	return rep
}
