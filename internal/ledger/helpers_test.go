package ledger_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/ent/businessunit"
	"github.com/onemember/onemember/ent/schema/enum"
	"github.com/onemember/onemember/internal/account"
	"github.com/onemember/onemember/internal/auth/password"
	"github.com/onemember/onemember/internal/ledger"
	"github.com/onemember/onemember/internal/platform/database"
	"github.com/onemember/onemember/internal/platform/pgtest"
	"github.com/onemember/onemember/migrations"
)

// clock is a settable time source that goroutines may read.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *clock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

type env struct {
	db    *ent.Client
	svc   *ledger.Service
	clock *clock
	zone  *time.Location
	seq   atomic.Int64
}

func shanghai(t testing.TB) *time.Location {
	t.Helper()
	zone, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatalf("loading zone: %v", err)
	}
	return zone
}

// cheapHash keeps argon2 fast in tests; production uses DefaultParams.
var cheapHash = password.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func newEnv(t *testing.T) *env {
	t.Helper()
	sqlDB, err := database.Open(t.Context(), pgtest.New(t, migrations.FS), database.Options{MaxOpenConns: 60})
	if err != nil {
		t.Fatalf("opening database: %v", err)
	}
	client := ent.NewClient(ent.Driver(entsql.OpenDB(dialect.Postgres, sqlDB)))
	t.Cleanup(func() { client.Close() })
	zone := shanghai(t)
	c := &clock{t: time.Date(2025, 3, 10, 12, 0, 0, 0, zone)}
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

func ptr[T any](v T) *T { return &v }
