package database

import (
	"context"
	"errors"
	"fmt"

	"github.com/onemember/onemember/ent"
)

// WithTx runs fn in one transaction: committed when fn returns nil,
// rolled back otherwise (and on panic). Every multi-row change goes
// through it so that nothing is ever half-written.
func WithTx[T any](ctx context.Context, db *ent.Client, fn func(tx *ent.Tx) (T, error)) (out T, err error) {
	tx, err := db.Tx(ctx)
	if err != nil {
		return out, fmt.Errorf("beginning transaction: %w", err)
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
	}()
	out, err = fn(tx)
	if err != nil {
		if rerr := tx.Rollback(); rerr != nil {
			err = errors.Join(err, fmt.Errorf("rolling back: %w", rerr))
		}
		var zero T
		return zero, err
	}
	if err := tx.Commit(); err != nil {
		var zero T
		return zero, fmt.Errorf("committing: %w", err)
	}
	return out, nil
}

// Detach makes an entity returned from a committed transaction usable for
// further reads (its edges, in the GraphQL resolvers) through the client
// that started the transaction. ent's Unwrap panics for an entity that was
// not loaded in a transaction (a duplicate answered from the root client);
// such an entity is returned as it is.
func Detach[T interface{ Unwrap() T }](v T) (out T) {
	out = v
	defer func() { _ = recover() }()
	return v.Unwrap()
}
