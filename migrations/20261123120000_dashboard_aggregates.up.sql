-- More aggregates of the dashboards (internal/dashboard), written by hand
-- like the sales aggregates and kept current by the same refresher (from
-- sales_changes).

-- Each member's first order that counts (not refunded in full), for the
-- channel dashboard's converted members (ChannelStats). day is the
-- business day of the member's earliest such paid_at, over every store and
-- channel.
CREATE TABLE member_first_orders (
  member_id bigint PRIMARY KEY,
  day date NOT NULL
);
CREATE INDEX member_first_orders_day ON member_first_orders (day);

-- The same by day: a roaring bitmap (portable format) of the ordinals
-- (member id - 21474836480) of the members whose first order that counts
-- was paid that day. A day without any has no row.
CREATE TABLE first_order_days (
  day date PRIMARY KEY,
  members bytea NOT NULL
);

-- The version of each business day's sales_daily rows: the refresher sets
-- it (to its transaction id) in the transaction that rewrites any row of
-- the day, so that every replica can keep the days it has read in memory
-- and read again only the days whose version changed.
CREATE TABLE sales_days (
  day date PRIMARY KEY,
  version bigint NOT NULL
);
-- The days already aggregated, so that the dashboards keep answering
-- until the rebuild below commits.
INSERT INTO sales_days (day, version) SELECT DISTINCT day, 0 FROM sales_daily;

-- Per store and business month, the counts StoreMonthlyReport shows from
-- store_member_months (its buyers, those whose first month at the store it
-- is, those with two or more orders that count), kept by the refresher
-- with the changes it makes to store_member_months.
CREATE TABLE store_months (
  store_id bigint NOT NULL,
  month date NOT NULL,
  buyers integer NOT NULL,
  new_members integer NOT NULL,
  repeat integer NOT NULL,
  PRIMARY KEY (store_id, month)
);
INSERT INTO store_months (store_id, month, buyers, new_members, repeat)
SELECT store_id, month, count(*), count(*) FILTER (WHERE first), count(*) FILTER (WHERE orders >= 2)
FROM store_member_months GROUP BY store_id, month;

-- product_daily summed per store and business month, for the top products
-- of ranges that hold whole months (a store's monthly report): a month's
-- ranking reads a thousand rows instead of some twenty thousand. Kept by
-- the refresher with the changes it makes to product_daily; name and
-- category are the greatest seen, as in product_daily.
CREATE TABLE product_months (
  store_id bigint NOT NULL,
  month date NOT NULL,
  sku text NOT NULL,
  name text NOT NULL,
  category text NOT NULL,
  revenue bigint NOT NULL,
  quantity bigint NOT NULL,
  member_revenue bigint NOT NULL,
  PRIMARY KEY (store_id, month, sku)
);
CREATE INDEX product_months_month ON product_months (month);
INSERT INTO product_months (store_id, month, sku, name, category, revenue, quantity, member_revenue)
SELECT store_id, date_trunc('month', day)::date, sku, max(name), max(category), sum(revenue), sum(quantity), sum(member_revenue)
FROM product_daily GROUP BY 1, 2, 3;

-- Forget the refresher's cursor: its next pass finds none and rebuilds
-- every aggregate, these included, in the business zone it is configured
-- with (which this file does not know).
DELETE FROM sales_aggregate_cursor;
