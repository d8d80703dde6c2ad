// Package loader owns the per-operation dataloaders: batched, cached reads
// of rows many fields of one operation ask for (a member's account, coupon
// templates). A fresh set is attached to every operation, not to the HTTP
// request, because a websocket keeps one request context for its life.
package loader

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/99designs/gqlgen/graphql"
	"github.com/graph-gophers/dataloader/v7"

	"github.com/onemember/onemember/ent"
	entaccount "github.com/onemember/onemember/ent/account"
	"github.com/onemember/onemember/ent/coupontemplate"
)

// Loaders of one operation.
type Loaders struct {
	Account        *dataloader.Loader[int, *ent.Account]
	CouponTemplate *dataloader.Loader[int, *ent.CouponTemplate]
	memo           sync.Map // key → *memoEntry
}

type memoEntry struct {
	once sync.Once
	done atomic.Bool // v and err are set
	v    any
	err  error
}

// Once returns what f computes for key, computing it at most once per
// operation (e.g. a member's tier status, which several fields of one
// page need). Outside an operation it simply calls f.
func Once[T any](ctx context.Context, key string, f func() (T, error)) (T, error) {
	l := From(ctx)
	if l == nil {
		return f()
	}
	e, _ := l.memo.LoadOrStore(key, &memoEntry{})
	m := e.(*memoEntry)
	m.once.Do(func() {
		m.v, m.err = f()
		m.done.Store(true)
	})
	v, _ := m.v.(T)
	return v, m.err
}

// Started reports whether Once was called for key in this operation
// (the value may still be being computed).
func Started(ctx context.Context, key string) bool {
	l := From(ctx)
	if l == nil {
		return false
	}
	_, ok := l.memo.Load(key)
	return ok
}

// Peek returns what Once computed for key in this operation, if it has
// finished without error: a field that can use a value its parent field
// loaded (a member's card) but would not load it itself.
func Peek[T any](ctx context.Context, key string) (T, bool) {
	var zero T
	l := From(ctx)
	if l == nil {
		return zero, false
	}
	e, ok := l.memo.Load(key)
	if !ok {
		return zero, false
	}
	m := e.(*memoEntry)
	if !m.done.Load() || m.err != nil {
		return zero, false
	}
	v, ok := m.v.(T)
	return v, ok
}

type key struct{}

// From returns the operation's loaders (nil outside an operation).
func From(ctx context.Context) *Loaders {
	l, _ := ctx.Value(key{}).(*Loaders)
	return l
}

// Middleware attaches fresh loaders to every operation.
func Middleware(db *ent.Client) graphql.OperationMiddleware {
	return func(ctx context.Context, next graphql.OperationHandler) graphql.ResponseHandler {
		return next(context.WithValue(ctx, key{}, New(db)))
	}
}

// wait is how long a loader collects keys before querying: long enough for
// the sibling fields of a list that gqlgen resolves concurrently, short
// against a 10 ms latency budget. Loads of a key already asked for share
// its pending result, whatever the wait.
const wait = 500 * time.Microsecond

// New builds loaders over db.
func New(db *ent.Client) *Loaders {
	return &Loaders{
		Account: dataloader.NewBatchedLoader(func(ctx context.Context, memberIDs []int) []*dataloader.Result[*ent.Account] {
			rows, err := db.Account.Query().Where(entaccount.MemberIDIn(memberIDs...)).All(ctx)
			byMember := map[int]*ent.Account{}
			for _, a := range rows {
				byMember[a.MemberID] = a
			}
			return results(memberIDs, err, func(id int) (*ent.Account, error) {
				if a, ok := byMember[id]; ok {
					return a, nil
				}
				return &ent.Account{MemberID: id}, nil // no account yet: zero balances
			})
		}, dataloader.WithWait[int, *ent.Account](wait)),
		CouponTemplate: dataloader.NewBatchedLoader(func(ctx context.Context, ids []int) []*dataloader.Result[*ent.CouponTemplate] {
			rows, err := db.CouponTemplate.Query().Where(coupontemplate.IDIn(ids...)).All(ctx)
			byID := map[int]*ent.CouponTemplate{}
			for _, t := range rows {
				byID[t.ID] = t
			}
			return results(ids, err, func(id int) (*ent.CouponTemplate, error) {
				if t, ok := byID[id]; ok {
					return t, nil
				}
				return nil, fmt.Errorf("coupon template %d not found", id)
			})
		}, dataloader.WithWait[int, *ent.CouponTemplate](wait)),
	}
}

// results answers one result per key, in key order.
func results[K comparable, V any](keys []K, err error, get func(K) (V, error)) []*dataloader.Result[V] {
	out := make([]*dataloader.Result[V], len(keys))
	for i, k := range keys {
		if err != nil {
			out[i] = &dataloader.Result[V]{Error: err}
			continue
		}
		v, e := get(k)
		out[i] = &dataloader.Result[V]{Data: v, Error: e}
	}
	return out
}
