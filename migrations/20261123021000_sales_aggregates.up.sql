-- Pre-aggregated sales for the operating dashboards (internal/dashboard),
-- written by hand: set-based tables and triggers that ent does not model.
-- Days are business days (the business zone's calendar, applied by the
-- refresher); money is fen, net of refunds, attributed to the day the order
-- was paid. An order "counts" (orders, buyers, quantity) unless it has been
-- refunded in full.

-- Per business day, store and channel. business_unit_id follows from the
-- store. member_revenue is the part from members holding a paid
-- membership (付费会员) whose purchased period covers the order's paid_at.
-- buyers is a roaring bitmap (portable format) of the buyers' member
-- ordinals (member id - 21474836480).
CREATE TABLE sales_daily (
  day date NOT NULL,
  store_id bigint NOT NULL,
  channel text NOT NULL,
  business_unit_id bigint NOT NULL,
  revenue bigint NOT NULL,
  member_revenue bigint NOT NULL,
  orders integer NOT NULL,
  buyers bytea NOT NULL,
  PRIMARY KEY (day, store_id, channel)
);
CREATE INDEX sales_daily_bu_day ON sales_daily (business_unit_id, day);
CREATE INDEX sales_daily_store_day ON sales_daily (store_id, day);

-- Per business day, store and SKU over all channels. revenue is the line's
-- share of what was paid and not refunded of its order.
CREATE TABLE product_daily (
  day date NOT NULL,
  store_id bigint NOT NULL,
  sku text NOT NULL,
  name text NOT NULL,
  category text NOT NULL,
  revenue bigint NOT NULL,
  quantity integer NOT NULL,
  member_revenue bigint NOT NULL,
  buyers bytea NOT NULL,
  PRIMARY KEY (day, store_id, sku)
);
CREATE INDEX product_daily_store_day ON product_daily (store_id, day);

-- Per store, business month (first day) and member: the member's orders
-- that count; first marks the member's first such month at the store.
CREATE TABLE store_member_months (
  store_id bigint NOT NULL,
  month date NOT NULL,
  member_id bigint NOT NULL,
  orders integer NOT NULL,
  first boolean NOT NULL,
  PRIMARY KEY (store_id, month, member_id)
);
CREATE INDEX store_member_months_member ON store_member_months (member_id, store_id);

-- Monthly revenue targets (setStoreTarget); month is 'YYYY-MM'.
CREATE TABLE store_targets (
  store_id bigint NOT NULL REFERENCES stores (id) ON DELETE CASCADE,
  month text NOT NULL,
  revenue bigint NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (store_id, month)
);

-- The refresher's state: one row, the xid8 horizon below which
-- sales_changes have been applied, and the zone the days were cut in.
CREATE TABLE sales_aggregate_cursor (
  id integer PRIMARY KEY,
  horizon text NOT NULL,
  zone text NOT NULL,
  refreshed_at timestamptz NOT NULL
);

-- sales_changes tells the refresher which keys to recompute: one row per
-- changed order and statement. paid_at rather than the day, because the
-- business zone is configuration the database does not know. Readers take
-- the rows of transactions below the oldest running one
-- (pg_snapshot_xmin), so a late commit is never skipped.
CREATE TABLE sales_changes (
  tx_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
  store_id bigint NOT NULL,
  channel text NOT NULL,
  paid_at timestamptz NOT NULL,
  member_id bigint NOT NULL
);
CREATE INDEX sales_changes_tx ON sales_changes (tx_id);

CREATE FUNCTION note_sales_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO sales_changes (store_id, channel, paid_at, member_id)
  SELECT DISTINCT store_id, channel, paid_at, member_id FROM new_rows;
  RETURN NULL;
END $$;

-- Updates note the order before and after (a merge moves an order to
-- another member), and only when a figure the aggregates use changed:
-- ingestion updates points_earned in the same transaction as the insert.
CREATE FUNCTION note_sales_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO sales_changes (store_id, channel, paid_at, member_id)
  SELECT DISTINCT x.store_id, x.channel, x.paid_at, x.member_id
  FROM old_rows o JOIN new_rows n ON n.id = o.id
  CROSS JOIN LATERAL (VALUES (o.store_id, o.channel, o.paid_at, o.member_id),
                             (n.store_id, n.channel, n.paid_at, n.member_id)) AS x (store_id, channel, paid_at, member_id)
  WHERE (o.member_id, o.refunded_amount, o.status, o.amount, o.store_id, o.channel, o.paid_at)
    IS DISTINCT FROM (n.member_id, n.refunded_amount, n.status, n.amount, n.store_id, n.channel, n.paid_at);
  RETURN NULL;
END $$;

CREATE TRIGGER orders_note_sales_insert AFTER INSERT ON orders
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION note_sales_insert();
CREATE TRIGGER orders_note_sales_update AFTER UPDATE ON orders
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION note_sales_update();

-- The refresher asks, per changed order, whether its member held a paid
-- membership then.

-- Cross-BU settlement reads a month of burns and restores.
