package dcbench

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"time"

	"github.com/lib/pq"

	"github.com/onemember/onemember/ent"
	"github.com/onemember/onemember/internal/platform/database"
)

// First ids of members and orders: ent's global ids give each table a
// 2^32 range (ent/internal/globalid.go), and the audience bitmaps count
// members from memberBase.
const (
	memberBase int64 = 5 << 32
	orderBase  int64 = 19 << 32
)

// Shapes of the generated data (see the package comment).
const (
	// buyerShare of the members have orders.
	buyerShare = 0.70
	// registrationDays is how far back members registered.
	registrationDays = 3 * 365
	// orderDays is how far back orders go.
	orderDays     = 2 * 365
	storesPerUnit = 10
	// rngSeed makes a generation repeatable (setseed, one backend).
	rngSeed = 0.4242
	// products is the size of the catalogue order lines draw from.
	products = 1000
	// paidShare of the ACTIVE members hold a paid membership.
	paidShare = 0.08
	// paidPrice is a year of the generated paid-membership plan, in fen.
	paidPrice = 19900
)

// categories are the catalogue's product categories (a product's is
// its number modulo their count).
var categories = []string{"乳品", "烘焙", "生鲜", "粮油", "日用", "饮料", "零食", "服饰"}

// regions are GB/T 2260 codes members come from, repeated to weight
// them ("" is unknown).
var regions = []string{"310101", "310104", "310115", "310115", "310112", "110105", "110108", "110105",
	"440305", "440106", "330106", "320106", "510107", "420106", "", ""}

// querier is a pool or a transaction.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryInt runs a query of one integer.
func queryInt(ctx context.Context, q querier, query string, args ...any) (int64, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	var n sql.NullInt64
	if rows.Next() {
		if err := rows.Scan(&n); err != nil {
			return 0, err
		}
	}
	return n.Int64, rows.Err()
}

// generate writes the whole data set in one transaction, then vacuums and
// analyzes the database.
func generate(ctx context.Context, client *ent.Client, db *sql.DB, sc Scale, log *slog.Logger) error {
	now := time.Now().UTC().Truncate(time.Second)
	_, err := database.WithTx(ctx, client, func(tx *ent.Tx) (struct{}, error) {
		g := &generator{tx: tx, now: now, sc: sc, log: log}
		return struct{}{}, g.run(ctx)
	})
	if err != nil {
		return err
	}
	started := time.Now()
	if _, err := db.ExecContext(ctx, `VACUUM ANALYZE`); err != nil {
		return fmt.Errorf("vacuuming: %w", err)
	}
	log.Info("generated: vacuum analyze", "took", time.Since(started).Round(time.Millisecond))
	return nil
}

type generator struct {
	tx  *ent.Tx
	now time.Time
	sc  Scale
	log *slog.Logger
}

// step runs one statement and logs how long it took.
func (g *generator) step(ctx context.Context, name, query string, args ...any) error {
	started := time.Now()
	res, err := g.tx.ExecContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	n, _ := res.RowsAffected()
	g.log.Info("generating: "+name, "rows", n, "took", time.Since(started).Round(time.Millisecond))
	return nil
}

func (g *generator) run(ctx context.Context) error {
	// Superuser only: neither member_changes triggers nor foreign-key
	// checks fire for the rows below (they are valid by construction).
	// The rest sizes this transaction only; JIT compilation would cost
	// seconds per statement and save nothing on these.
	for _, set := range []string{
		`SET LOCAL session_replication_role = replica`,
		`SET LOCAL jit = off`,
		`SET LOCAL work_mem = '1GB'`,
		`SET LOCAL maintenance_work_mem = '1GB'`,
	} {
		if _, err := g.tx.ExecContext(ctx, set); err != nil {
			return fmt.Errorf("%s: %w", set, err)
		}
	}
	if _, err := g.tx.ExecContext(ctx, `SELECT setseed($1)`, rngSeed); err != nil {
		return fmt.Errorf("seeding random(): %w", err)
	}
	var rebuild []string
	for _, table := range []string{"members", "orders", "member_tags", "order_items", "paid_memberships", "paid_membership_purchases"} {
		defs, err := g.dropIndexes(ctx, table)
		if err != nil {
			return err
		}
		rebuild = append(rebuild, defs...)
	}
	if err := g.reference(ctx); err != nil {
		return err
	}
	if err := g.members(ctx); err != nil {
		return err
	}
	if err := g.tags(ctx); err != nil {
		return err
	}
	buyers, err := g.orders(ctx)
	if err != nil {
		return err
	}
	if err := g.orderItems(ctx); err != nil {
		return err
	}
	if err := g.paidMemberships(ctx); err != nil {
		return err
	}
	for _, def := range rebuild {
		if err := g.step(ctx, "index "+def, def); err != nil {
			return err
		}
	}
	for _, table := range []string{"members", "orders"} {
		if _, err := g.tx.ExecContext(ctx, `SELECT setval(pg_get_serial_sequence($1, 'id'), (SELECT max(id) FROM `+
			pq.QuoteIdentifier(table)+`)) WHERE EXISTS (SELECT 1 FROM `+pq.QuoteIdentifier(table)+`)`, table); err != nil {
			return fmt.Errorf("moving the %s id sequence: %w", table, err)
		}
	}
	return g.marker(ctx, buyers)
}

// dropIndexes drops the indexes of table that back no constraint and
// returns their definitions, to be created again once the rows are in
// (all in the load's transaction).
func (g *generator) dropIndexes(ctx context.Context, table string) ([]string, error) {
	rows, err := g.tx.QueryContext(ctx, `SELECT c.relname, pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = $1::regclass AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)
ORDER BY c.relname`, table)
	if err != nil {
		return nil, fmt.Errorf("listing the indexes of %s: %w", table, err)
	}
	var names, defs []string
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			rows.Close()
			return nil, err
		}
		names = append(names, name)
		defs = append(defs, def)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, name := range names {
		if _, err := g.tx.ExecContext(ctx, `DROP INDEX `+pq.QuoteIdentifier(name)); err != nil {
			return nil, fmt.Errorf("dropping index %s: %w", name, err)
		}
	}
	return defs, nil
}

// reference writes the business units, stores, tiers and tags.
func (g *generator) reference(ctx context.Context) error {
	if err := g.step(ctx, "business units", `INSERT INTO business_units (created_at, updated_at, code, name, kind)
VALUES ($1, $1, 'DCB-MALL', 'Bench Mall', 'MALL'), ($1, $1, 'DCB-SUPER', 'Bench Supermarket', 'SUPERMARKET'),
  ($1, $1, 'DCB-REST', 'Bench Restaurants', 'RESTAURANT')`, g.now); err != nil {
		return err
	}
	if err := g.step(ctx, "stores", `INSERT INTO stores (created_at, updated_at, code, name, city, region_code, business_unit_id)
SELECT $1, $1, b.code || '-' || lpad(s::text, 2, '0'), b.name || ' ' || s,
  (ARRAY['上海', '北京', '深圳', '杭州', '南京'])[1 + s % 5], (ARRAY['310101', '110105', '440305', '330106', '320106'])[1 + s % 5], b.id
FROM business_units b CROSS JOIN generate_series(1, $2::int) AS s
WHERE b.code LIKE 'DCB-%'
ORDER BY b.id, s`, g.now, storesPerUnit); err != nil {
		return err
	}
	if err := g.step(ctx, "tiers", `INSERT INTO tiers (created_at, updated_at, code, name, rank, threshold)
VALUES ($1, $1, $2, 'Silver', 1, 0), ($1, $1, $3, 'Gold', 2, 5000), ($1, $1, $4, 'Platinum', 3, 20000)`,
		g.now, TierCodes[0], TierCodes[1], TierCodes[2]); err != nil {
		return err
	}
	names := make([]string, len(TagShares))
	for i := range names {
		names[i] = tagName(i)
	}
	return g.step(ctx, "tags", `INSERT INTO tags (created_at, updated_at, name, category, kind)
SELECT $1, $1, n, 'dcbench', 'MANUAL' FROM unnest($2::text[]) WITH ORDINALITY AS t(n, i) ORDER BY i`, g.now, pq.Array(names))
}

// members writes the members: 96 % ACTIVE, 3 % FROZEN, 1 % ERASED;
// 45 % female, 40 % male; 85 % with a birth year (1955-2006) and month;
// registered uniformly over registrationDays; 40 % untiered, then
// SILVER 30 %, GOLD 20 %, PLATINUM 10 %.
func (g *generator) members(ctx context.Context) error {
	return g.step(ctx, "members", `INSERT INTO members (id, created_at, updated_at, member_no, status, gender,
  birth_year, birth_month, region_code, source_channel, registered_at, source_business_unit_id, tier_id)
SELECT $2::bigint + r.i - 1, r.reg, r.reg, 'DCB' || lpad(r.i::text, 9, '0'),
  CASE WHEN r.u1 < 0.96 THEN 'ACTIVE' WHEN r.u1 < 0.99 THEN 'FROZEN' ELSE 'ERASED' END,
  CASE WHEN r.u2 < 0.45 THEN 'FEMALE' WHEN r.u2 < 0.85 THEN 'MALE' ELSE 'UNKNOWN' END,
  CASE WHEN r.u3 < 0.85 THEN 1955 + floor(r.u4 * 52)::int END,
  CASE WHEN r.u3 < 0.85 THEN 1 + floor(r.u5 * 12)::int END,
  ($3::text[])[1 + floor(r.u6 * cardinality($3::text[]))::int],
  CASE WHEN r.u7 < 0.40 THEN 'POS' WHEN r.u7 < 0.75 THEN 'MINI_PROGRAM' WHEN r.u7 < 0.90 THEN 'APP' ELSE 'ECOMMERCE' END,
  r.reg,
  (SELECT array_agg(id ORDER BY id) FROM business_units WHERE code LIKE 'DCB-%')[1 + floor(r.u8 * 3)::int],
  CASE WHEN r.u9 < 0.40 THEN NULL
    WHEN r.u9 < 0.70 THEN (SELECT id FROM tiers WHERE rank = 1)
    WHEN r.u9 < 0.90 THEN (SELECT id FROM tiers WHERE rank = 2)
    ELSE (SELECT id FROM tiers WHERE rank = 3) END
FROM (
  SELECT i, random() AS u1, random() AS u2, random() AS u3, random() AS u4, random() AS u5, random() AS u6,
    random() AS u7, random() AS u8, random() AS u9,
    $1::timestamptz - random() * make_interval(days => $5::int) AS reg
  FROM generate_series(1, $4::int) AS i
  OFFSET 0
) r`, g.now, memberBase, pq.Array(regions), g.sc.Members, registrationDays)
}

// tags gives each member each tag with the tag's share as probability,
// assigned some time after registration. The draw is a hash of the
// member and the tag rather than random(): a volatile condition on the
// tags alone would be pushed below the join and drawn once per tag.
func (g *generator) tags(ctx context.Context) error {
	var shares []float64
	shares = append(shares, TagShares[:]...)
	names := make([]string, len(TagShares))
	for i := range names {
		names[i] = tagName(i)
	}
	return g.step(ctx, "member tags", `INSERT INTO member_tags (tag_id, member_id, assigned_at)
SELECT t.id, m.id, m.registered_at + random() * ($1::timestamptz - m.registered_at)
FROM (SELECT tags.id, s.share, s.i FROM unnest($2::text[], $3::float8[]) WITH ORDINALITY AS s(name, share, i)
  JOIN tags ON tags.name = s.name) t
CROSS JOIN members m
WHERE (hashint8extended(m.id, t.i) & 16777215)::float8 / 16777216 < t.share
ORDER BY 1, 2`, g.now, pq.Array(names), pq.Array(shares))
}

// orders writes exactly sc.Orders orders, in payment order, and returns
// how many members have some. buyerShare of the members buy; each buys
// at least once and the rest is shared out in proportion to a log-normal
// weight (σ = 1), so a few members buy hundreds of times. A member buys
// between registration (or orderDays ago) and a last active day drawn
// u³ × orderDays back, so about half the buyers bought in the last
// quarter and a fifth not in the last year. Tickets are exponential
// (mean ¥188) times a per-member log-normal factor (σ = 0.5); 3 % of
// the orders are REFUNDED and 2 % PARTIALLY_REFUNDED (30 %); channels
// POS 55 %, MINI_PROGRAM 25 %, ECOMMERCE 15 %, APP 5 %; stores uniform.
func (g *generator) orders(ctx context.Context) (int64, error) {
	if g.sc.Orders == 0 {
		return 0, nil
	}
	if err := g.step(ctx, "buyers", `CREATE TEMP TABLE dcb_buyers ON COMMIT DROP AS
SELECT row_number() OVER (ORDER BY x.id) AS k, x.id AS member_id, x.w, x.ticket, x.span_start,
  greatest(x.span_start, $1::timestamptz - x.u_last ^ 3 * make_interval(days => $4::int)) AS span_end,
  0::bigint AS cnt
FROM (
  SELECT m.id, greatest(m.registered_at, $1::timestamptz - make_interval(days => $4::int)) AS span_start,
    exp(sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())) AS w,
    exp(0.5 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())) AS ticket,
    random() AS u_last
  FROM members m
  WHERE random() < $2
  OFFSET 0
) x
ORDER BY x.id
LIMIT $3`, g.now, buyerShare, g.sc.Orders, orderDays); err != nil {
		return 0, err
	}
	buyers, err := queryInt(ctx, g.tx, `SELECT count(*) FROM dcb_buyers`)
	if err != nil {
		return 0, fmt.Errorf("counting buyers: %w", err)
	}
	if buyers == 0 {
		return 0, fmt.Errorf("no member was drawn as a buyer out of %d", g.sc.Members)
	}
	if err := g.step(ctx, "order counts", `UPDATE dcb_buyers
SET cnt = 1 + floor(w * ($1::bigint - $2::bigint)::float8 / (SELECT sum(w) FROM dcb_buyers))::bigint`, g.sc.Orders, buyers); err != nil {
		return 0, err
	}
	// Each floor loses less than one order: hand the rest out one each.
	total, err := queryInt(ctx, g.tx, `SELECT sum(cnt) FROM dcb_buyers`)
	if err != nil {
		return 0, fmt.Errorf("summing order counts: %w", err)
	}
	switch rest := int64(g.sc.Orders) - total; {
	case rest > 0:
		err = g.step(ctx, "order counts (rest)", `UPDATE dcb_buyers SET cnt = cnt + 1 WHERE k <= $1`, rest)
	case rest < 0:
		err = g.step(ctx, "order counts (excess)", `UPDATE dcb_buyers SET cnt = cnt - 1
WHERE k IN (SELECT k FROM dcb_buyers WHERE cnt > 1 ORDER BY k LIMIT $1)`, -rest)
	}
	if err != nil {
		return 0, err
	}
	err = g.step(ctx, "orders", `INSERT INTO orders (id, external_id, channel, member_id, status, amount, paid_at,
  points_earned, growth_earned, refunded_amount, created_at, store_id, business_unit_id)
SELECT $1::bigint + o.n - 1, 'DCB' || lpad(o.n::text, 10, '0'),
  CASE WHEN o.u_ch < 0.55 THEN 'POS' WHEN o.u_ch < 0.80 THEN 'MINI_PROGRAM' WHEN o.u_ch < 0.95 THEN 'ECOMMERCE' ELSE 'APP' END,
  o.member_id,
  CASE WHEN o.u_st < 0.03 THEN 'REFUNDED' WHEN o.u_st < 0.05 THEN 'PARTIALLY_REFUNDED' ELSE 'PAID' END,
  o.amount, o.paid_at, o.amount / 100, o.amount / 100,
  CASE WHEN o.u_st < 0.03 THEN o.amount WHEN o.u_st < 0.05 THEN o.amount * 3 / 10 ELSE 0 END,
  o.paid_at, st.ids[o.s], st.bus[o.s]
FROM (
  SELECT row_number() OVER (ORDER BY r.paid_at) AS n, r.*
  FROM (
    SELECT b.member_id, b.span_start + random() * (b.span_end - b.span_start) AS paid_at,
      random() AS u_st, random() AS u_ch, 1 + floor(random() * $2)::int AS s,
      greatest(100, round(b.ticket * (800 - ln(1 - random()) * 18000)))::bigint AS amount
    FROM dcb_buyers b CROSS JOIN LATERAL generate_series(1, b.cnt) AS j
    OFFSET 0
  ) r
) o
CROSS JOIN (SELECT array_agg(s.id ORDER BY s.id) AS ids, array_agg(s.business_unit_id ORDER BY s.id) AS bus
  FROM stores s WHERE s.code LIKE 'DCB-%') st`, orderBase, 3*storesPerUnit)
	return buyers, err
}

// orderItems gives every order one to three lines (uniform) that add up
// to its amount exactly, as ingestion requires without a coupon: line k of
// n is ⌊amount·k/n⌋ − ⌊amount·(k−1)/n⌋. A line's product is drawn from the
// catalogue of products SKUs with a popularity skew (⌊products·u²⌋: the
// first tenth of the catalogue sells about a third of the lines), its
// quantity is 1 to 3 and its unit price the line amount over it, rounded
// down.
func (g *generator) orderItems(ctx context.Context) error {
	if g.sc.Orders == 0 {
		return nil
	}
	return g.step(ctx, "order items", `INSERT INTO order_items (sku, name, category, brand, quantity, unit_price, amount, order_id)
SELECT 'DCB-SKU-' || lpad(l.p::text, 4, '0'), 'Product ' || l.p, ($2::text[])[1 + l.p % cardinality($2::text[])], '',
  l.q, l.a / l.q, l.a, l.order_id
FROM (
  SELECT o.id AS order_id, (o.amount * k / o.n) - (o.amount * (k - 1) / o.n) AS a,
    floor($1::int * random() ^ 2)::int AS p, 1 + floor(random() * 3)::int AS q
  FROM (SELECT id, amount, 1 + floor(random() * 3)::bigint AS n FROM orders OFFSET 0) o
  CROSS JOIN LATERAL generate_series(1::bigint, o.n) AS k
  OFFSET 0
) l
ORDER BY l.order_id`, products, pq.Array(categories))
}

// paidMemberships gives paidShare of the ACTIVE members a paid membership
// of one yearly plan, started uniformly over the last orderDays and
// renewed for one to three consecutive years (one purchase a year): the
// members' share of the sales follows from the purchased periods.
func (g *generator) paidMemberships(ctx context.Context) error {
	if err := g.step(ctx, "paid membership plan", `INSERT INTO paid_membership_plans (created_at, updated_at, code, name, period, price)
VALUES ($1, $1, 'DCB-PLUS', 'Bench PLUS', 'YEAR', $2)`, g.now, paidPrice); err != nil {
		return err
	}
	if err := g.step(ctx, "paid memberships", `INSERT INTO paid_memberships (created_at, updated_at, member_id, status, started_at, expires_at, auto_renew, plan_id)
SELECT x.started, x.started, x.id, CASE WHEN x.expires > $1 THEN 'ACTIVE' ELSE 'EXPIRED' END, x.started, x.expires, false,
  (SELECT id FROM paid_membership_plans WHERE code = 'DCB-PLUS')
FROM (
  SELECT r.id, r.started, r.started + make_interval(years => r.years) AS expires
  FROM (SELECT m.id, $1::timestamptz - random() * make_interval(days => $2::int) AS started, 1 + floor(random() * 3)::int AS years, random() AS u
        FROM members m WHERE m.status = 'ACTIVE' OFFSET 0) r
  WHERE r.u < $3
) x
ORDER BY x.id`, g.now, orderDays, paidShare); err != nil {
		return err
	}
	return g.step(ctx, "paid membership purchases", `INSERT INTO paid_membership_purchases (payment_ref, membership_id, amount, period_start, period_end, created_at)
SELECT 'DCB-PAY-' || pm.id || '-' || k, pm.id, $1, pm.started_at + make_interval(years => k - 1), pm.started_at + make_interval(years => k),
  pm.started_at + make_interval(years => k - 1)
FROM paid_memberships pm
CROSS JOIN LATERAL generate_series(1, round(extract(epoch FROM pm.expires_at - pm.started_at) / (365.25 * 86400))::int) AS k
ORDER BY pm.id, k`, paidPrice)
}

// marker records what was generated; Prepare reuses the data only when
// it matches.
func (g *generator) marker(ctx context.Context, buyers int64) error {
	if _, err := g.tx.ExecContext(ctx, `CREATE TABLE dcbench_dataset (
  members bigint NOT NULL,
  orders bigint NOT NULL,
  data_version integer NOT NULL,
  generated_at timestamptz NOT NULL,
  generate_seconds float8 NOT NULL DEFAULT 0,
  active_members bigint NOT NULL,
  buyers bigint NOT NULL,
  refunded_orders bigint NOT NULL,
  tag_assignments bigint NOT NULL,
  order_items bigint NOT NULL,
  paid_members bigint NOT NULL
)`); err != nil {
		return fmt.Errorf("creating the marker: %w", err)
	}
	return g.step(ctx, "marker", `INSERT INTO dcbench_dataset (members, orders, data_version, generated_at,
  active_members, buyers, refunded_orders, tag_assignments, order_items, paid_members)
SELECT (SELECT count(*) FROM members), (SELECT count(*) FROM orders), $1, $2,
  (SELECT count(*) FROM members WHERE status = 'ACTIVE'), $3,
  (SELECT count(*) FROM orders WHERE status = 'REFUNDED'), (SELECT count(*) FROM member_tags),
  (SELECT count(*) FROM order_items), (SELECT count(*) FROM paid_memberships)`,
		DataVersion, g.now, buyers)
}
