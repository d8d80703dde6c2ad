package dashboard

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/RoaringBitmap/roaring/v2"
	"github.com/lib/pq"

	"github.com/onemember/onemember/internal/platform/calendar"
)

// refresherLock is the advisory lock that serializes Refresh and Rebuild
// across replicas: the aggregates are shared, so one pass at a time.
const refresherLock = 7_140_825_001

// DefaultRefreshEvery is how often Run refreshes by default.
const DefaultRefreshEvery = 2 * time.Second

// writeChunk bounds the rows of one bulk upsert.
const writeChunk = 5000

// Run refreshes the aggregates every `every` (DefaultRefreshEvery when not
// positive) until ctx ends; the first pass rebuilds them when they have
// never been built. A failed pass changes nothing and is retried at the
// next tick.
//
// Freshness: an order or refund committed at t is in the dashboards by t
// + every + the duration of one pass (a few tens of milliseconds for the
// orders of a few seconds), so about 2 s with the default.
func (s *Service) Run(ctx context.Context, every time.Duration, log *slog.Logger) error {
	if every <= 0 {
		every = DefaultRefreshEvery
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if _, err := s.Refresh(ctx); err != nil && ctx.Err() == nil {
			log.WarnContext(ctx, "sales aggregates refresh failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// key is a sales_daily key.
type key struct {
	day     string // YYYY-MM-DD
	store   int64
	channel string
}

// pair is a store_member_months key without its month.
type pair struct{ store, member int64 }

// Refresh recomputes the aggregates of the (day, store, channel) keys,
// (store, member) pairs and members that orders committed since the last
// pass touched,
// and returns how many keys it recomputed. Without a cursor (first start)
// or when the business zone changed, it rebuilds everything instead.
//
// The changes come from sales_changes, which statement-level triggers on
// orders fill (inserts, and updates that change the refunded amount,
// status or member). The pass reads the rows of transactions at or above
// the horizon together with the new horizon, pg_snapshot_xmin of the same
// snapshot, in one statement: everything below it has committed (and is
// applied now) or aborted; a transaction still running is at or above it,
// so its rows are read again by later passes until it ends and a late
// commit is never skipped. Recomputing a key is idempotent, so reading a
// change twice is harmless. Keys are recomputed from the raw orders as they
// are when the pass runs (each statement sees every commit before it).
//
// Paid-membership purchases do not note changes: a purchase starts now or
// later, so it never changes whether an order already recorded was a paid
// member's. Rebuild corrects anything else (an order ingested with a paid_at
// in the future, up to the five minutes ingestion allows).
func (s *Service) Refresh(ctx context.Context) (int64, error) {
	var n int64
	rebuild := false
	err := s.locked(ctx, func(conn *sql.Conn) error {
		tx, err := conn.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("beginning refresh: %w", err)
		}
		defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
		if err := noJIT(ctx, tx); err != nil {
			return err
		}
		var horizon, zone string
		err = tx.QueryRowContext(ctx, `SELECT horizon, zone FROM sales_aggregate_cursor WHERE id = 1`).Scan(&horizon, &zone)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && zone != s.zone.String()) {
			rebuild = true
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading the refresh cursor: %w", err)
		}
		keys, pairs, next, err := s.readChanges(ctx, tx, horizon)
		if err != nil {
			return err
		}
		if len(keys) > 0 {
			days := make([]string, 0, len(keys))
			for _, k := range keys {
				days = append(days, k.day)
			}
			if err := s.recompute(ctx, tx, days, keys); err != nil {
				return err
			}
		}
		if len(pairs) > 0 {
			if err := s.recomputeMembers(ctx, tx, pairs); err != nil {
				return err
			}
			members := make([]int64, 0, len(pairs))
			for _, p := range pairs {
				members = append(members, p.member)
			}
			if err := s.recomputeFirsts(ctx, tx, members); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `UPDATE sales_aggregate_cursor SET horizon = $1, refreshed_at = now() WHERE id = 1`, next); err != nil {
			return fmt.Errorf("advancing the refresh cursor: %w", err)
		}
		// Every row below the new horizon has been applied by this pass or
		// an earlier one.
		if _, err := tx.ExecContext(ctx, `DELETE FROM sales_changes WHERE tx_id < $1::xid8`, next); err != nil {
			return fmt.Errorf("pruning sales changes: %w", err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("committing refresh: %w", err)
		}
		n = int64(len(keys))
		return nil
	})
	if err != nil {
		return 0, err
	}
	if rebuild {
		return 0, s.Rebuild(ctx)
	}
	return n, nil
}

// Rebuild recomputes every aggregate from the raw orders of one snapshot
// and sets the refresh horizon to that snapshot's, in one transaction:
// readers see the old figures until it commits. It runs at first start
// (from Refresh) and in tests.
func (s *Service) Rebuild(ctx context.Context) error {
	return s.locked(ctx, func(conn *sql.Conn) error {
		tx, err := conn.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead})
		if err != nil {
			return fmt.Errorf("beginning rebuild: %w", err)
		}
		defer tx.Rollback() //nolint:errcheck // after Commit it is a no-op
		// The first statement takes the transaction's snapshot.
		var horizon string
		if err := tx.QueryRowContext(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text`).Scan(&horizon); err != nil {
			return fmt.Errorf("reading horizon: %w", err)
		}
		if err := noJIT(ctx, tx); err != nil {
			return err
		}
		// A month's sorts (buyers by day, store and channel or SKU) fit in
		// memory instead of spilling; caching the lines of orders that are
		// each read once (Memoize) would only fill that memory.
		for _, set := range []string{`SET LOCAL work_mem = '64MB'`, `SET LOCAL enable_memoize = off`} {
			if _, err := tx.ExecContext(ctx, set); err != nil {
				return fmt.Errorf("sizing the rebuild (%s): %w", set, err)
			}
		}
		var first, last sql.NullString
		if err := tx.QueryRowContext(ctx, `SELECT (min(paid_at) AT TIME ZONE $1)::date::text, (max(paid_at) AT TIME ZONE $1)::date::text FROM orders`,
			s.zone.String()).Scan(&first, &last); err != nil {
			return fmt.Errorf("reading the orders' span: %w", err)
		}
		for _, t := range []string{"sales_daily", "product_daily", "product_months", "store_member_months", "store_months", "sales_days"} {
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+t); err != nil {
				return fmt.Errorf("clearing %s: %w", t, err)
			}
		}
		if first.Valid {
			from, err := calendar.Parse(first.String)
			if err != nil {
				return err
			}
			to, err := calendar.Parse(last.String)
			if err != nil {
				return err
			}
			// A month at a time keeps what is held in memory bounded.
			for start := from; !to.Before(start); {
				end := calendar.Date{Year: start.Year, Month: start.Month + 1, Day: 1}.AddDays(-1)
				if to.Before(end) {
					end = to
				}
				var days []string
				for d := start; !end.Before(d); d = d.AddDays(1) {
					days = append(days, d.String())
				}
				if err := s.recompute(ctx, tx, days, nil); err != nil {
					return err
				}
				start = end.AddDays(1)
			}
			if err := s.recomputeMembers(ctx, tx, nil); err != nil {
				return err
			}
		}
		if err := s.recomputeFirsts(ctx, tx, nil); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO sales_aggregate_cursor (id, horizon, zone, refreshed_at) VALUES (1, $1, $2, now())
ON CONFLICT (id) DO UPDATE SET horizon = EXCLUDED.horizon, zone = EXCLUDED.zone, refreshed_at = EXCLUDED.refreshed_at`,
			horizon, s.zone.String()); err != nil {
			return fmt.Errorf("setting the refresh cursor: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM sales_changes WHERE tx_id < $1::xid8`, horizon); err != nil {
			return fmt.Errorf("pruning sales changes: %w", err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("committing rebuild: %w", err)
		}
		return nil
	})
}

// noJIT turns JIT compilation off for the rest of the transaction: the
// recomputations' estimates (a correlated paid-member test per order)
// put them over jit_above_cost, and compiling takes some 400 ms a
// statement, far more than the statements of a pass take to run.
func noJIT(ctx context.Context, tx *sql.Tx) error {
	if _, err := tx.ExecContext(ctx, `SET LOCAL jit = off`); err != nil {
		return fmt.Errorf("turning JIT off: %w", err)
	}
	return nil
}

// locked runs fn on one connection holding the refresher's advisory lock
// (a session lock, taken before any transaction so that a rebuild's
// snapshot is taken after the previous pass committed).
func (s *Service) locked(ctx context.Context, fn func(conn *sql.Conn) error) error {
	conn, err := s.sql.Conn(ctx)
	if err != nil {
		return fmt.Errorf("taking a connection: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, refresherLock); err != nil {
		return fmt.Errorf("waiting for the refresher lock: %w", err)
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, refresherLock) //nolint:errcheck // closing the session releases it too
	return fn(conn)
}

// readChanges reads the keys and pairs changed at or above horizon and
// the next horizon, in one statement (one snapshot).
func (s *Service) readChanges(ctx context.Context, q querier, horizon string) ([]key, []pair, string, error) {
	rows, err := q.QueryContext(ctx, `SELECT DISTINCT pg_snapshot_xmin(pg_current_snapshot())::text, c.day::text, c.store_id, c.channel, c.member_id
FROM (SELECT NULL::date AS day, NULL::bigint AS store_id, NULL::text AS channel, NULL::bigint AS member_id
      UNION ALL
      SELECT (paid_at AT TIME ZONE $2)::date, store_id, channel, member_id FROM sales_changes WHERE tx_id >= $1::xid8) c`,
		horizon, s.zone.String())
	if err != nil {
		return nil, nil, "", fmt.Errorf("reading sales changes: %w", err)
	}
	defer rows.Close()
	var next string
	seenKey, seenPair := map[key]bool{}, map[pair]bool{}
	var keys []key
	var pairs []pair
	for rows.Next() {
		var day, channel sql.NullString
		var store, member sql.NullInt64
		if err := rows.Scan(&next, &day, &store, &channel, &member); err != nil {
			return nil, nil, "", err
		}
		if !day.Valid {
			continue
		}
		if k := (key{day.String, store.Int64, channel.String}); !seenKey[k] {
			seenKey[k] = true
			keys = append(keys, k)
		}
		if p := (pair{store.Int64, member.Int64}); !seenPair[p] {
			seenPair[p] = true
			pairs = append(pairs, p)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, nil, "", err
	}
	return keys, pairs, next, nil
}

// source is the SQL of the orders a recomputation reads: those paid on the
// days $2 (dates in the zone $1), and with keys only those of the keys
// ($3 stores, $4 channels, $5 days); perStore widens the key filter to
// every channel of a (day, store), as product_daily has no channel ($3
// stores, $4 days).
//
// Each day's orders are one range of the orders.paid_at index, read in a
// LATERAL subquery that OFFSET 0 keeps from being flattened: the planner
// cannot estimate a range computed from an array element, and left free
// it joins the days against every order (a scan of all of them per pass).
func source(withKeys, perStore bool) string {
	filter := ""
	switch {
	case withKeys && perStore:
		filter = `WHERE (o.store_id, d.day) IN (SELECT s, k FROM unnest($3::bigint[], $4::date[]) AS x (s, k))`
	case withKeys:
		filter = `WHERE (o.store_id, o.channel, d.day) IN (SELECT s, c, k FROM unnest($3::bigint[], $4::text[], $5::date[]) AS x (s, c, k))`
	}
	return `src AS (
  SELECT d.day, o.id, o.store_id, o.channel, o.business_unit_id, o.member_id, o.amount, o.refunded_amount,
         o.amount - o.refunded_amount AS net, o.refunded_amount < o.amount AS counts,
         EXISTS (SELECT 1 FROM paid_memberships pm JOIN paid_membership_purchases pp ON pp.membership_id = pm.id
                 WHERE pm.member_id = o.member_id AND pp.period_start <= o.paid_at AND o.paid_at < pp.period_end) AS paid_member
  FROM (SELECT DISTINCT unnest($2::date[]) AS day) d
  CROSS JOIN LATERAL (SELECT * FROM orders o
                      WHERE o.paid_at >= (d.day::timestamp AT TIME ZONE $1) AND o.paid_at < ((d.day + 1)::timestamp AT TIME ZONE $1)
                      OFFSET 0) o
  ` + filter + `)`
}

// recompute rewrites sales_daily and product_daily for the given days
// (all their keys when keys is nil, else only those keys).
func (s *Service) recompute(ctx context.Context, q querier, days []string, keys []key) error {
	sales := []any{s.zone.String(), pq.Array(days)}
	products := sales
	if keys != nil {
		stores, channels, kdays := make([]int64, len(keys)), make([]string, len(keys)), make([]string, len(keys))
		for i, k := range keys {
			stores[i], channels[i], kdays[i] = k.store, k.channel, k.day
		}
		sales = append(sales[:2:2], pq.Array(stores), pq.Array(channels), pq.Array(kdays))
		products = append(products[:2:2], pq.Array(stores), pq.Array(kdays))
	}
	if err := s.recomputeSales(ctx, q, sales, keys != nil); err != nil {
		return err
	}
	if err := s.recomputeProducts(ctx, q, products, keys != nil); err != nil {
		return err
	}
	// New versions tell every replica's day cache to read the days again.
	if _, err := q.ExecContext(ctx, `INSERT INTO sales_days (day, version)
SELECT DISTINCT d, pg_current_xact_id()::text::bigint FROM unnest($1::date[]) AS d
ON CONFLICT (day) DO UPDATE SET version = EXCLUDED.version`, pq.Array(days)); err != nil {
		return fmt.Errorf("versioning days: %w", err)
	}
	return nil
}

// bitmapOf serializes the ordinals of members.
func bitmapOf(members []int64) ([]byte, error) {
	bm := roaring.New()
	for _, m := range members {
		o, err := ordinal(m)
		if err != nil {
			return nil, err
		}
		bm.Add(o)
	}
	bm.RunOptimize()
	return bm.ToBytes()
}

func (s *Service) recomputeSales(ctx context.Context, q querier, args []any, withKeys bool) error {
	query := `WITH ` + source(withKeys, false) + `
SELECT day::text, store_id, channel, max(business_unit_id), sum(net)::bigint,
       coalesce(sum(net) FILTER (WHERE paid_member), 0)::bigint, count(*) FILTER (WHERE counts),
       coalesce(array_agg(DISTINCT member_id) FILTER (WHERE counts), '{}')
FROM src GROUP BY day, store_id, channel`
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("recomputing daily sales: %w", err)
	}
	var (
		day, channel                []string
		store, bu, revenue, members []int64
		orders                      []int32
		buyers                      [][]byte
	)
	for rows.Next() {
		var d, c string
		var st, b, rev, mrev int64
		var n int32
		var ms pq.Int64Array
		if err := rows.Scan(&d, &st, &c, &b, &rev, &mrev, &n, &ms); err != nil {
			rows.Close()
			return err
		}
		bm, err := bitmapOf(ms)
		if err != nil {
			rows.Close()
			return err
		}
		day, store, channel, bu = append(day, d), append(store, st), append(channel, c), append(bu, b)
		revenue, members, orders, buyers = append(revenue, rev), append(members, mrev), append(orders, n), append(buyers, bm)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for i := 0; i < len(day); i += writeChunk {
		j := min(i+writeChunk, len(day))
		if _, err := q.ExecContext(ctx, `INSERT INTO sales_daily (day, store_id, channel, business_unit_id, revenue, member_revenue, orders, buyers)
SELECT * FROM unnest($1::date[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[], $7::integer[], $8::bytea[])
ON CONFLICT (day, store_id, channel) DO UPDATE SET business_unit_id = EXCLUDED.business_unit_id, revenue = EXCLUDED.revenue,
  member_revenue = EXCLUDED.member_revenue, orders = EXCLUDED.orders, buyers = EXCLUDED.buyers`,
			pq.Array(day[i:j]), pq.Array(store[i:j]), pq.Array(channel[i:j]), pq.Array(bu[i:j]),
			pq.Array(revenue[i:j]), pq.Array(members[i:j]), pq.Array(orders[i:j]), pq.ByteaArray(buyers[i:j])); err != nil {
			return fmt.Errorf("writing daily sales: %w", err)
		}
	}
	return nil
}

func (s *Service) recomputeProducts(ctx context.Context, q querier, args []any, withKeys bool) error {
	query := `WITH ` + source(withKeys, true) + `,
l AS (SELECT src.*, i.sku, i.name, i.category, i.quantity, i.line, i.lines
      FROM src CROSS JOIN LATERAL (
        SELECT sku, name, category, quantity, amount AS line, (sum(amount) OVER ())::bigint AS lines
        FROM order_items WHERE order_id = src.id) i),
v AS (SELECT l.*, CASE WHEN lines > 0 THEN line * net / lines ELSE 0 END AS rev FROM l)
SELECT day::text, store_id, sku, max(name), max(category), sum(rev)::bigint,
       coalesce(sum(quantity) FILTER (WHERE counts), 0)::bigint,
       coalesce(sum(rev) FILTER (WHERE paid_member), 0)::bigint,
       coalesce(array_agg(DISTINCT member_id) FILTER (WHERE counts), '{}')
FROM v GROUP BY day, store_id, sku`
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("recomputing daily products: %w", err)
	}
	var (
		day, sku, name, category            []string
		store, revenue, quantity, memberRev []int64
		buyers                              [][]byte
	)
	for rows.Next() {
		var d, k, n, c string
		var st, rev, qty, mrev int64
		var ms pq.Int64Array
		if err := rows.Scan(&d, &st, &k, &n, &c, &rev, &qty, &mrev, &ms); err != nil {
			rows.Close()
			return err
		}
		bm, err := bitmapOf(ms)
		if err != nil {
			rows.Close()
			return err
		}
		day, store, sku, name, category = append(day, d), append(store, st), append(sku, k), append(name, n), append(category, c)
		revenue, quantity, memberRev, buyers = append(revenue, rev), append(quantity, qty), append(memberRev, mrev), append(buyers, bm)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for i := 0; i < len(day); i += writeChunk {
		j := min(i+writeChunk, len(day))
		// product_months moves by the difference between the rows written
		// and the rows they replace (old reads the table as it was before
		// the statement). A (day, store, SKU) row never goes away: orders
		// and their lines are never deleted, refunds only change figures.
		if _, err := q.ExecContext(ctx, `WITH n AS (
  SELECT * FROM unnest($1::date[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::integer[], $8::bigint[], $9::bytea[])
    AS n (day, store_id, sku, name, category, revenue, quantity, member_revenue, buyers)),
old AS (SELECT p.day, p.store_id, p.sku, p.revenue, p.quantity, p.member_revenue
        FROM product_daily p JOIN n ON n.day = p.day AND n.store_id = p.store_id AND n.sku = p.sku),
up AS (INSERT INTO product_daily (day, store_id, sku, name, category, revenue, quantity, member_revenue, buyers)
       SELECT * FROM n
       ON CONFLICT (day, store_id, sku) DO UPDATE SET name = EXCLUDED.name, category = EXCLUDED.category, revenue = EXCLUDED.revenue,
         quantity = EXCLUDED.quantity, member_revenue = EXCLUDED.member_revenue, buyers = EXCLUDED.buyers)
INSERT INTO product_months (store_id, month, sku, name, category, revenue, quantity, member_revenue)
SELECT n.store_id, date_trunc('month', n.day)::date, n.sku, max(n.name), max(n.category), sum(n.revenue - coalesce(old.revenue, 0)),
  sum(n.quantity - coalesce(old.quantity, 0)), sum(n.member_revenue - coalesce(old.member_revenue, 0))
FROM n LEFT JOIN old ON old.day = n.day AND old.store_id = n.store_id AND old.sku = n.sku
GROUP BY 1, 2, 3
ON CONFLICT (store_id, month, sku) DO UPDATE SET name = greatest(product_months.name, EXCLUDED.name),
  category = greatest(product_months.category, EXCLUDED.category), revenue = product_months.revenue + EXCLUDED.revenue,
  quantity = product_months.quantity + EXCLUDED.quantity, member_revenue = product_months.member_revenue + EXCLUDED.member_revenue`,
			pq.Array(day[i:j]), pq.Array(store[i:j]), pq.Array(sku[i:j]), pq.Array(name[i:j]), pq.Array(category[i:j]),
			pq.Array(revenue[i:j]), pq.Array(quantity[i:j]), pq.Array(memberRev[i:j]), pq.ByteaArray(buyers[i:j])); err != nil {
			return fmt.Errorf("writing daily products: %w", err)
		}
	}
	return nil
}

// recomputeMembers rewrites store_member_months for the pairs (every pair
// when nil): all months of a (store, member), since a late order can move
// the member's first month. store_months follows: rebuilt from it, or,
// for pairs, moved by what the rows taken out and put back count.
func (s *Service) recomputeMembers(ctx context.Context, q querier, pairs []pair) error {
	const counts = `SELECT store_id, month, %[1]scount(*), %[1]scount(*) FILTER (WHERE first), %[1]scount(*) FILTER (WHERE orders >= 2)
FROM %[2]s GROUP BY store_id, month`
	const addCounts = `INSERT INTO store_months (store_id, month, buyers, new_members, repeat) ` + counts + `
ON CONFLICT (store_id, month) DO UPDATE SET buyers = store_months.buyers + EXCLUDED.buyers,
  new_members = store_months.new_members + EXCLUDED.new_members, repeat = store_months.repeat + EXCLUDED.repeat`
	from, args := `orders o`, []any{s.zone.String()}
	if pairs != nil {
		stores, members := make([]int64, len(pairs)), make([]int64, len(pairs))
		for i, p := range pairs {
			stores[i], members[i] = p.store, p.member
		}
		args = append(args, pq.Array(stores), pq.Array(members))
		if _, err := q.ExecContext(ctx, `WITH gone AS (
  DELETE FROM store_member_months m USING unnest($1::bigint[], $2::bigint[]) AS p (store_id, member_id)
  WHERE m.store_id = p.store_id AND m.member_id = p.member_id RETURNING m.store_id, m.month, m.orders, m.first)
`+fmt.Sprintf(addCounts, "-", "gone"), args[1], args[2]); err != nil {
			return fmt.Errorf("clearing store buyers: %w", err)
		}
		from = `(SELECT DISTINCT * FROM unnest($2::bigint[], $3::bigint[]) AS p (store_id, member_id)) p
  JOIN orders o ON o.member_id = p.member_id AND o.store_id = p.store_id`
	}
	insert := `INSERT INTO store_member_months (store_id, month, member_id, orders, first)
SELECT store_id, month, member_id, n, month = min(month) OVER (PARTITION BY store_id, member_id)
FROM (SELECT o.store_id, date_trunc('month', o.paid_at AT TIME ZONE $1)::date AS month, o.member_id, count(*) AS n
      FROM ` + from + `
      WHERE o.refunded_amount < o.amount
      GROUP BY 1, 2, 3) x`
	if pairs != nil {
		insert = `WITH added AS (` + insert + ` RETURNING store_id, month, orders, first)
` + fmt.Sprintf(addCounts, "", "added")
	}
	if _, err := q.ExecContext(ctx, insert, args...); err != nil {
		return fmt.Errorf("writing store buyers: %w", err)
	}
	if pairs == nil {
		if _, err := q.ExecContext(ctx, `DELETE FROM store_months`); err != nil {
			return fmt.Errorf("clearing store months: %w", err)
		}
		if _, err := q.ExecContext(ctx, `INSERT INTO store_months (store_id, month, buyers, new_members, repeat) `+
			fmt.Sprintf(counts, "", "store_member_months")); err != nil {
			return fmt.Errorf("writing store months: %w", err)
		}
	}
	return nil
}

// recomputeFirsts rewrites member_first_orders for the members (every
// member when nil) and the first_order_days bitmaps of the days that
// gained or lost one of them. A member's first day comes from the orders
// index (member_id, paid_at), so a pass costs a few index probes a member.
func (s *Service) recomputeFirsts(ctx context.Context, q querier, members []int64) error {
	var days []string
	if members == nil {
		for _, t := range []string{"member_first_orders", "first_order_days"} {
			if _, err := q.ExecContext(ctx, `DELETE FROM `+t); err != nil {
				return fmt.Errorf("clearing %s: %w", t, err)
			}
		}
		if _, err := q.ExecContext(ctx, `INSERT INTO member_first_orders (member_id, day)
SELECT member_id, (min(paid_at) AT TIME ZONE $1)::date FROM orders WHERE refunded_amount < amount GROUP BY member_id`,
			s.zone.String()); err != nil {
			return fmt.Errorf("writing first orders: %w", err)
		}
	} else {
		// Every statement of one WITH sees the table as it was before it:
		// old holds the days the changed members leave.
		rows, err := q.QueryContext(ctx, `WITH m AS (SELECT DISTINCT unnest($2::bigint[]) AS member_id),
f AS (SELECT m.member_id, (SELECT (min(o.paid_at) AT TIME ZONE $1)::date FROM orders o
                          WHERE o.member_id = m.member_id AND o.refunded_amount < o.amount) AS day FROM m),
old AS (SELECT x.member_id, x.day FROM member_first_orders x JOIN m ON m.member_id = x.member_id),
gone AS (DELETE FROM member_first_orders x USING f WHERE x.member_id = f.member_id AND f.day IS NULL RETURNING x.member_id),
up AS (INSERT INTO member_first_orders (member_id, day) SELECT member_id, day FROM f WHERE day IS NOT NULL
       ON CONFLICT (member_id) DO UPDATE SET day = EXCLUDED.day WHERE member_first_orders.day <> EXCLUDED.day
       RETURNING member_id, day)
SELECT DISTINCT day::text FROM (
  SELECT day FROM up
  UNION ALL SELECT old.day FROM old WHERE old.member_id IN (SELECT member_id FROM up UNION ALL SELECT member_id FROM gone)) d`,
			s.zone.String(), pq.Array(members))
		if err != nil {
			return fmt.Errorf("writing first orders: %w", err)
		}
		for rows.Next() {
			var d string
			if err := rows.Scan(&d); err != nil {
				rows.Close()
				return err
			}
			days = append(days, d)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(days) == 0 {
			return nil
		}
		if _, err := q.ExecContext(ctx, `DELETE FROM first_order_days WHERE day = ANY($1::date[])`, pq.Array(days)); err != nil {
			return fmt.Errorf("clearing first order days: %w", err)
		}
	}
	query, args := `SELECT day::text, array_agg(member_id) FROM member_first_orders GROUP BY day`, []any{}
	if members != nil {
		query, args = `SELECT day::text, array_agg(member_id) FROM member_first_orders WHERE day = ANY($1::date[]) GROUP BY day`,
			[]any{pq.Array(days)}
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("reading first orders: %w", err)
	}
	var (
		day    []string
		bitmap [][]byte
	)
	for rows.Next() {
		var d string
		var ms pq.Int64Array
		if err := rows.Scan(&d, &ms); err != nil {
			rows.Close()
			return err
		}
		bm, err := bitmapOf(ms)
		if err != nil {
			rows.Close()
			return err
		}
		day, bitmap = append(day, d), append(bitmap, bm)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for i := 0; i < len(day); i += writeChunk {
		j := min(i+writeChunk, len(day))
		if _, err := q.ExecContext(ctx, `INSERT INTO first_order_days (day, members)
SELECT * FROM unnest($1::date[], $2::bytea[])`, pq.Array(day[i:j]), pq.ByteaArray(bitmap[i:j])); err != nil {
			return fmt.Errorf("writing first order days: %w", err)
		}
	}
	return nil
}
