package database

import (
	"context"
	"database/sql"
	"sync"
	"time"

	"entgo.io/ent/dialect"
	entsql "entgo.io/ent/dialect/sql"
	lru "github.com/hashicorp/golang-lru/v2"
)

// DefaultPreparedStatements is how many distinct statements Prepared keeps
// prepared.
const DefaultPreparedStatements = 1000

// closeGrace is how long an evicted statement stays open, so that a
// caller that took it from the cache just before the eviction can still
// run it (database/sql finalizes it only once its open rows are closed).
const closeGrace = time.Minute

// prepareTimeout bounds a background preparation.
const prepareTimeout = 5 * time.Second

// Prepared wraps the ent driver over db so that every statement ent sends
// runs as a prepared statement, cached by its text: PostgreSQL parses it
// once per connection and plans it from its plan cache, and lib/pq sends
// it in one round trip (Bind, Execute) instead of two (Parse and Describe,
// then Bind and Execute). Inside a transaction the cached statement is
// bound to the transaction's connection (sql.Tx.StmtContext), prepared on
// that connection the first time only; a text new to the cache runs as is
// inside a transaction and is prepared in the background for next time.
//
// The cache keeps the size most recently used statement texts; an evicted
// statement is closed on every connection after closeGrace. Statements
// that ent builds with a varying number of placeholders (IN lists) take
// several entries, which is what the bound is for.
//
// Not for a pooler in transaction mode (PgBouncer pool_mode=transaction
// before 1.21): prepared statements belong to a server connection
// (DATABASE_PREPARE=false then).
func Prepared(drv *entsql.Driver, db *sql.DB, size int) (dialect.Driver, error) {
	if size <= 0 {
		size = DefaultPreparedStatements
	}
	c, err := lru.NewWithEvict(size, func(_ string, st *sql.Stmt) {
		time.AfterFunc(closeGrace, func() { _ = st.Close() })
	})
	if err != nil {
		return nil, err
	}
	cache := &stmtCache{db: db, stmts: c}
	return &preparedDriver{Driver: drv, conn: entsql.Conn{ExecQuerier: cache}, cache: cache}, nil
}

// stmtCache runs statements through prepared statements of db.
type stmtCache struct {
	db      *sql.DB
	stmts   *lru.Cache[string, *sql.Stmt]
	pending sync.Map // query → struct{}: being prepared in the background
}

// prepared returns the cached statement of query, or prepares it on a
// pool connection (nil when that fails: the caller runs the text as is,
// and so reports a faulty statement's own error). Two callers may prepare
// the same new text at once; the loser's copy is closed.
func (c *stmtCache) prepared(ctx context.Context, query string) *sql.Stmt {
	if st, ok := c.stmts.Get(query); ok {
		return st
	}
	st, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	if prev, ok, _ := c.stmts.PeekOrAdd(query, st); ok {
		_ = st.Close()
		return prev
	}
	return st
}

// prepareLater prepares query in the background for the next use. A
// transaction never waits for it: it holds a connection already, and
// preparing on another could wait for a pool that transactions like it
// have exhausted. A text that cannot be prepared outside its transaction
// (a temporary table of it) simply stays unprepared.
func (c *stmtCache) prepareLater(query string) {
	if _, busy := c.pending.LoadOrStore(query, struct{}{}); busy {
		return
	}
	go func() {
		defer c.pending.Delete(query)
		ctx, cancel := context.WithTimeout(context.Background(), prepareTimeout)
		defer cancel()
		c.prepared(ctx, query)
	}()
}

func (c *stmtCache) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := c.prepared(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return c.db.ExecContext(ctx, query, args...)
}

func (c *stmtCache) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := c.prepared(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return c.db.QueryContext(ctx, query, args...)
}

// txStmts runs a transaction's statements through the cache: a cached
// statement is bound to the transaction's connection (prepared there the
// first time); a new text runs as is and is prepared for next time.
type txStmts struct {
	tx    *sql.Tx
	cache *stmtCache
}

func (t txStmts) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st, ok := t.cache.stmts.Get(query); ok {
		return t.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	t.cache.prepareLater(query)
	return t.tx.ExecContext(ctx, query, args...)
}

func (t txStmts) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st, ok := t.cache.stmts.Get(query); ok {
		return t.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	t.cache.prepareLater(query)
	return t.tx.QueryContext(ctx, query, args...)
}

// preparedDriver is the ent driver with statements outside transactions
// sent through conn, and transactions whose statements go through the
// cache too.
type preparedDriver struct {
	*entsql.Driver
	conn  entsql.Conn
	cache *stmtCache
}

func (d *preparedDriver) Exec(ctx context.Context, query string, args, v any) error {
	return d.conn.Exec(ctx, query, args, v)
}

func (d *preparedDriver) Query(ctx context.Context, query string, args, v any) error {
	return d.conn.Query(ctx, query, args, v)
}

func (d *preparedDriver) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return d.cache.ExecContext(ctx, query, args...)
}

func (d *preparedDriver) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return d.cache.QueryContext(ctx, query, args...)
}

func (d *preparedDriver) Tx(ctx context.Context) (dialect.Tx, error) { return d.BeginTx(ctx, nil) }

func (d *preparedDriver) BeginTx(ctx context.Context, opts *sql.TxOptions) (dialect.Tx, error) {
	tx, err := d.Driver.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	t := tx.(*entsql.Tx)
	t.Conn.ExecQuerier = txStmts{tx: t.Tx.(*sql.Tx), cache: d.cache}
	return t, nil
}
