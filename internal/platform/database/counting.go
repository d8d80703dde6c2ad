package database

import (
	"context"
	stdsql "database/sql"
	"sync/atomic"

	"entgo.io/ent/dialect"
	"entgo.io/ent/dialect/sql"
)

// StatementCounter counts the SQL statements the application sends through
// ent, in total and per context (a request or operation that opts in with
// CountStatements). Benchmarks report statements per request from it and
// tests assert that a page costs a bounded number of round trips.
type StatementCounter struct{ total atomic.Int64 }

// Total is the number of statements sent so far.
func (c *StatementCounter) Total() int64 { return c.total.Load() }

type countKey struct{}

// CountStatements returns a context whose statements are also added to n.
func CountStatements(ctx context.Context, n *atomic.Int64) context.Context {
	return context.WithValue(ctx, countKey{}, n)
}

func (c *StatementCounter) add(ctx context.Context) {
	c.total.Add(1)
	if n, ok := ctx.Value(countKey{}).(*atomic.Int64); ok {
		n.Add(1)
	}
}

// Counting wraps an ent driver so that c sees every statement, including
// those inside transactions.
func Counting(drv dialect.Driver, c *StatementCounter) dialect.Driver {
	return countingDriver{Driver: drv, c: c}
}

type countingDriver struct {
	dialect.Driver
	c *StatementCounter
}

func (d countingDriver) Exec(ctx context.Context, query string, args, v any) error {
	d.c.add(ctx)
	return d.Driver.Exec(ctx, query, args, v)
}

func (d countingDriver) Query(ctx context.Context, query string, args, v any) error {
	d.c.add(ctx)
	return d.Driver.Query(ctx, query, args, v)
}

func (d countingDriver) Tx(ctx context.Context) (dialect.Tx, error) {
	tx, err := d.Driver.Tx(ctx)
	if err != nil {
		return nil, err
	}
	d.c.add(ctx) // BEGIN
	return countingTx{Tx: tx, c: d.c, ctx: ctx}, nil
}

// BeginTx keeps isolation-level options working.
func (d countingDriver) BeginTx(ctx context.Context, opts *sql.TxOptions) (dialect.Tx, error) {
	type beginner interface {
		BeginTx(context.Context, *sql.TxOptions) (dialect.Tx, error)
	}
	b, ok := d.Driver.(beginner)
	if !ok {
		return d.Tx(ctx)
	}
	tx, err := b.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	d.c.add(ctx)
	return countingTx{Tx: tx, c: d.c, ctx: ctx}, nil
}

// ExecContext and QueryContext serve ent's sql/execquery feature (raw
// statements such as advisory locks).
func (d countingDriver) ExecContext(ctx context.Context, query string, args ...any) (stdsql.Result, error) {
	d.c.add(ctx)
	return d.Driver.(execQuerier).ExecContext(ctx, query, args...)
}

func (d countingDriver) QueryContext(ctx context.Context, query string, args ...any) (*stdsql.Rows, error) {
	d.c.add(ctx)
	return d.Driver.(execQuerier).QueryContext(ctx, query, args...)
}

type execQuerier interface {
	ExecContext(ctx context.Context, query string, args ...any) (stdsql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*stdsql.Rows, error)
}

type countingTx struct {
	dialect.Tx
	c   *StatementCounter
	ctx context.Context
}

func (t countingTx) Exec(ctx context.Context, query string, args, v any) error {
	t.c.add(ctx)
	return t.Tx.Exec(ctx, query, args, v)
}

func (t countingTx) Query(ctx context.Context, query string, args, v any) error {
	t.c.add(ctx)
	return t.Tx.Query(ctx, query, args, v)
}

func (t countingTx) Commit() error {
	t.c.add(t.ctx)
	return t.Tx.Commit()
}

func (t countingTx) ExecContext(ctx context.Context, query string, args ...any) (stdsql.Result, error) {
	t.c.add(ctx)
	return t.Tx.(execQuerier).ExecContext(ctx, query, args...)
}

func (t countingTx) QueryContext(ctx context.Context, query string, args ...any) (*stdsql.Rows, error) {
	t.c.add(ctx)
	return t.Tx.(execQuerier).QueryContext(ctx, query, args...)
}
