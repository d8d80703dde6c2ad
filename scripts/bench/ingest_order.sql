-- ingest_order.sql: the SQL statements one ingestOrder request sends, as a
-- pgbench custom script: the reference of the `ingest` scenario of
-- scripts/bench.sh, which runs it with
--
--   pgbench -n -M extended -c 32 -j 2 -T 30 -f scripts/bench/ingest_order.sql \
--     -D member_first=0 -D member_last=99999 -D api_hash='\x...' -D api_client_id=1 \
--     -D store_code=BOOKS-BJ-01 -D paid_at=... -D expires_at=... -D now_ts=... -D year_ago=...
--
-- on a copy of the seeded benchmark database (bench.sh sets every -D).
--
-- How it was derived (2026-11-22, bin/server built from commit ea1fb60 plus
-- that day's uncommitted changes): scripts/bench/capture-ingest-sql.sh
-- seeds a scratch database (`server seed --members 1000 --no-history`),
-- sets `log_statement = 'all'` on it, starts the server, sends IngestOrder
-- (shared/clients/pos/checkout.graphql; CASH; an API client with
-- ORDERS_WRITE authenticating with its secret) once to warm up, once for
-- the same member again and once for a member's first order, and prints the
-- statements of the last two from the cluster's log (.pg/postgres.log) with
-- their parameters. Below, each is numbered as the server sent it (7a and
-- 7b only on a first order); the texts are copied verbatim, each parameter
-- ($n) replaced by a pgbench variable, or by a literal where the server
-- sends a constant ('POS', 'PAID', 'CASH', 0, '').
--
-- In order: authentication (the API client by secret hash, its stores); the
-- order is not there yet (channel, externalId); the store; the member by
-- memberNo; BEGIN; the member's account FOR UPDATE (on a first order also
-- INSERT ... ON CONFLICT DO NOTHING and FOR UPDATE again: the \if block);
-- the member again (merge check) and the order again under the lock;
-- INSERT the order, its items (one multi-row INSERT) and payment; earning
-- rule and tier; points entry (idempotency check, INSERT); points balance
-- and event sequence (each UPDATE re-read by ent); member event; points
-- lot; growth entry (check, INSERT), growth value and its re-read; the
-- order's totals; tier evaluation (the order, account and member re-read,
-- the tier ladder); the referral reward; COMMIT; then the response: member,
-- coupons redeemed, account, growth in both review windows (its tier comes
-- from the server's display-ladder cache, no statement).
--
-- STATEMENTS: 37 per transaction, 39 on a member's first order. bench.sh
-- counts the SQL commands of this file (outside and inside the \if block)
-- and stops if they disagree with this line; after the run it checks the
-- server's measured onemember_sql_statements_total per request against
-- them (the display-ladder cache adds about one statement per 2 s). When
-- the check fails the server's queries changed: capture them again and edit
-- this file to match.
--
-- Differences from the server, none of which changes the number of
-- statements:
-- - pgbench -M extended sends Parse/Bind/Describe/Execute/Sync in one round
--   trip; lib/pq sends a parameterised query in two (Parse/Describe/Sync,
--   then Bind/Execute/Sync), and BEGIN, COMMIT and the parameterless tier
--   ladder as simple queries.
-- - Every order has 2 items (the HTTP scenario sends 1-3, mean 2) and one
--   store (store_code); the members are random among the seeded ones.
-- - The externalId is a random number under :client_id (unique with
--   overwhelming probability); strings the server formats in Go (idempotency
--   keys, reason, the event's JSON payload) are concatenated in SQL.
-- - The second review window starts at the member's registration time.
-- - pgbench numbers every use of a variable as a parameter of its own, so
--   the two inside LEAST() carry a ::timestamptz cast that the server's
--   (one parameter used twice) does not need.

-- A random seeded member: member ids are ent global ids, so the member's
-- ordinal is id & 0xFFFFFFFF, and its memberNo the eight digits
-- 10000000 + ordinal followed by their Luhn check digit
-- (internal/identity.MemberNumber), computed here.
\set n random(:member_first, :member_last)
\set b 10000000 + :n
\set luhn 2 * (:b % 10) - 9 * ((:b % 10) / 5) + (:b / 10) % 10 + 2 * ((:b / 100) % 10) - 9 * (((:b / 100) % 10) / 5) + (:b / 1000) % 10 + 2 * ((:b / 10000) % 10) - 9 * (((:b / 10000) % 10) / 5) + (:b / 100000) % 10 + 2 * ((:b / 1000000) % 10) - 9 * (((:b / 1000000) % 10) / 5) + (:b / 10000000) % 10
\set member_no 10 * :b + (10 - :luhn % 10) % 10
\set ext :client_id * 1000000000000000 + random(0, 999999999999999)
\set q1 random(1, 3)
\set u1 random(100, 5000)
\set i1 :q1 * :u1
\set q2 random(1, 3)
\set u2 random(100, 5000)
\set i2 :q2 * :u2
\set amount :i1 + :i2
\set earn :amount / 100
\set a_id 0
-- 1
SELECT "api_clients"."id", "api_clients"."created_at", "api_clients"."updated_at", "api_clients"."name", "api_clients"."secret_hash", "api_clients"."scopes", "api_clients"."created_by_id", "api_clients"."revoked_at", "api_clients"."last_used_at" FROM "api_clients" WHERE "api_clients"."secret_hash" = :api_hash LIMIT 2;
-- 2
SELECT "t1"."api_client_id", "stores"."id" FROM "stores" JOIN "api_client_stores" AS "t1" ON "stores"."id" = "t1"."store_id" WHERE "t1"."api_client_id" IN (:api_client_id);
-- 3
SELECT "orders"."id", "orders"."external_id", "orders"."channel", "orders"."member_id", "orders"."store_id", "orders"."business_unit_id", "orders"."status", "orders"."amount", "orders"."paid_at", "orders"."points_earned", "orders"."points_burned", "orders"."growth_earned", "orders"."refunded_amount", "orders"."coupon_order_ref", "orders"."campaign_id", "orders"."created_at" FROM "orders" WHERE "orders"."channel" = 'POS' AND "orders"."external_id" = :ext LIMIT 2;
-- 4
SELECT "stores"."id", "stores"."created_at", "stores"."updated_at", "stores"."code", "stores"."name", "stores"."city", "stores"."region_code", "stores"."business_unit_id" FROM "stores" WHERE "stores"."code" = :store_code LIMIT 2 \gset s_
-- 5
SELECT "members"."id", "members"."created_at", "members"."updated_at", "members"."member_no", "members"."status", "members"."display_name", "members"."avatar_url", "members"."gender", "members"."name_enc", "members"."phone_enc", "members"."phone_index", "members"."birthday_enc", "members"."birth_year", "members"."birth_month", "members"."region_code", "members"."source_channel", "members"."source_business_unit_id", "members"."registered_at", "members"."tier_id", "members"."merged_into_id", "members"."status_changed_at", "members"."status_reason", "members"."referral_code" FROM "members" WHERE "members"."member_no" = :member_no LIMIT 2 \gset m_
-- 6
BEGIN READ WRITE;
-- 7
SELECT "accounts"."id", "accounts"."created_at", "accounts"."updated_at", "accounts"."member_id", "accounts"."points_balance", "accounts"."growth_value", "accounts"."stored_principal", "accounts"."stored_bonus", "accounts"."event_seq", "accounts"."pay_password_hash", "accounts"."pay_failed_attempts", "accounts"."pay_locked_until", "accounts"."successful_referrals", "accounts"."checkin_streak", "accounts"."last_checkin_date", "accounts"."profile_growth_awarded", "accounts"."tier_since" FROM "accounts" WHERE "accounts"."member_id" = :m_id LIMIT 2 FOR UPDATE \aset a_
\if :a_id = 0
-- 7a
INSERT INTO "accounts" ("created_at", "updated_at", "points_balance", "growth_value", "stored_principal", "stored_bonus", "event_seq", "pay_password_hash", "pay_failed_attempts", "successful_referrals", "checkin_streak", "last_checkin_date", "profile_growth_awarded", "member_id") VALUES (:now_ts, :now_ts, 0, 0, 0, 0, 0, '', 0, 0, 0, '', false, :m_id) ON CONFLICT ("member_id") DO NOTHING RETURNING "id";
-- 7b
SELECT "accounts"."id", "accounts"."created_at", "accounts"."updated_at", "accounts"."member_id", "accounts"."points_balance", "accounts"."growth_value", "accounts"."stored_principal", "accounts"."stored_bonus", "accounts"."event_seq", "accounts"."pay_password_hash", "accounts"."pay_failed_attempts", "accounts"."pay_locked_until", "accounts"."successful_referrals", "accounts"."checkin_streak", "accounts"."last_checkin_date", "accounts"."profile_growth_awarded", "accounts"."tier_since" FROM "accounts" WHERE "accounts"."member_id" = :m_id LIMIT 2 FOR UPDATE \aset a_
\endif
\set points_after :a_points_balance + :earn
\set growth_after :a_growth_value + :earn
\set seq :a_event_seq + 1
-- 8
SELECT "members"."id", "members"."created_at", "members"."updated_at", "members"."member_no", "members"."status", "members"."display_name", "members"."avatar_url", "members"."gender", "members"."name_enc", "members"."phone_enc", "members"."phone_index", "members"."birthday_enc", "members"."birth_year", "members"."birth_month", "members"."region_code", "members"."source_channel", "members"."source_business_unit_id", "members"."registered_at", "members"."tier_id", "members"."merged_into_id", "members"."status_changed_at", "members"."status_reason", "members"."referral_code" FROM "members" WHERE "members"."id" = :m_id LIMIT 2;
-- 9
SELECT "orders"."id", "orders"."external_id", "orders"."channel", "orders"."member_id", "orders"."store_id", "orders"."business_unit_id", "orders"."status", "orders"."amount", "orders"."paid_at", "orders"."points_earned", "orders"."points_burned", "orders"."growth_earned", "orders"."refunded_amount", "orders"."coupon_order_ref", "orders"."campaign_id", "orders"."created_at" FROM "orders" WHERE "orders"."channel" = 'POS' AND "orders"."external_id" = :ext LIMIT 2;
-- 10
INSERT INTO "orders" ("external_id", "channel", "member_id", "status", "amount", "paid_at", "points_earned", "points_burned", "growth_earned", "refunded_amount", "coupon_order_ref", "created_at", "store_id", "business_unit_id") VALUES (:ext, 'POS', :m_id, 'PAID', :amount, :paid_at, 0, 0, 0, 0, '', :now_ts, :s_id, :s_business_unit_id) RETURNING "id" \gset o_
-- 11
INSERT INTO "order_items" ("amount", "brand", "category", "name", "order_id", "quantity", "sku", "unit_price") VALUES (:i1, '', '', 'bench item 1', :o_id, :q1, 'SKU-1', :u1), (:i2, '', '', 'bench item 2', :o_id, :q2, 'SKU-2', :u2) RETURNING "id";
-- 12
INSERT INTO "order_payments" ("method", "amount", "points", "order_id") VALUES ('CASH', :amount, 0, :o_id) RETURNING "id";
-- 13
SELECT "earning_rules"."id", "earning_rules"."created_at", "earning_rules"."updated_at", "earning_rules"."business_unit_id", "earning_rules"."points_per_yuan_permille", "earning_rules"."growth_per_yuan_permille" FROM "earning_rules" WHERE "earning_rules"."business_unit_id" = :s_business_unit_id LIMIT 2;
-- 14
SELECT "tiers"."id", "tiers"."created_at", "tiers"."updated_at", "tiers"."code", "tiers"."name", "tiers"."rank", "tiers"."threshold", "tiers"."monthly_spend_required", "tiers"."referrals_required", "tiers"."retention_months", "tiers"."points_multiplier_permille" FROM "tiers" WHERE "tiers"."id" = :m_tier_id LIMIT 2;
-- 15
SELECT "points_entries"."id", "points_entries"."member_id", "points_entries"."source", "points_entries"."amount", "points_entries"."balance_after", "points_entries"."reason", "points_entries"."business_unit_id", "points_entries"."store_id", "points_entries"."order_id", "points_entries"."idempotency_key", "points_entries"."occurred_at", "points_entries"."kind", "points_entries"."expires_at" FROM "points_entries" WHERE "points_entries"."idempotency_key" = 'order:' || :o_id || ':' || 'ORDER' LIMIT 2;
-- 16
INSERT INTO "points_entries" ("member_id", "source", "amount", "balance_after", "reason", "order_id", "idempotency_key", "occurred_at", "kind", "expires_at", "business_unit_id", "store_id") VALUES (:m_id, 'ORDER', :earn, :points_after, 'order ' || :ext, :o_id, 'order:' || :o_id || ':' || 'ORDER', :paid_at, 'EARN', :expires_at, :s_business_unit_id, :s_id) RETURNING "id" \gset pe_
-- 17
UPDATE "accounts" SET "updated_at" = :now_ts, "points_balance" = :points_after WHERE "id" = :a_id;
-- 18
SELECT "id", "created_at", "updated_at", "member_id", "points_balance", "growth_value", "stored_principal", "stored_bonus", "event_seq", "pay_password_hash", "pay_failed_attempts", "pay_locked_until", "successful_referrals", "checkin_streak", "last_checkin_date", "profile_growth_awarded", "tier_since" FROM "accounts" WHERE "id" = :a_id;
-- 19
UPDATE "accounts" SET "updated_at" = :now_ts, "event_seq" = :seq WHERE "id" = :a_id;
-- 20
SELECT "id", "created_at", "updated_at", "member_id", "points_balance", "growth_value", "stored_principal", "stored_bonus", "event_seq", "pay_password_hash", "pay_failed_attempts", "pay_locked_until", "successful_referrals", "checkin_streak", "last_checkin_date", "profile_growth_awarded", "tier_since" FROM "accounts" WHERE "id" = :a_id;
-- 21
INSERT INTO "member_events" ("member_id", "seq", "type", "payload", "occurred_at") VALUES (:m_id, :seq, 'POINTS_CHANGED', ('{"reason": "order ' || :ext || '", "pointsDelta": ' || :earn || ', "pointsBalance": ' || :points_after || '}')::jsonb, :paid_at) RETURNING "id";
-- 22
INSERT INTO "points_lots" ("member_id", "entry_id", "business_unit_id", "amount", "remaining", "earned_at", "expires_at") VALUES (:m_id, :pe_id, :s_business_unit_id, :earn, :earn, :paid_at, :expires_at) RETURNING "id";
-- 23
SELECT "growth_entries"."id", "growth_entries"."member_id", "growth_entries"."source", "growth_entries"."amount", "growth_entries"."balance_after", "growth_entries"."reason", "growth_entries"."business_unit_id", "growth_entries"."store_id", "growth_entries"."order_id", "growth_entries"."idempotency_key", "growth_entries"."occurred_at", "growth_entries"."kind" FROM "growth_entries" WHERE "growth_entries"."idempotency_key" = 'order:' || :o_id || ':' || 'ORDER' LIMIT 2;
-- 24
INSERT INTO "growth_entries" ("member_id", "source", "amount", "balance_after", "reason", "order_id", "idempotency_key", "occurred_at", "kind", "business_unit_id", "store_id") VALUES (:m_id, 'ORDER', :earn, :growth_after, 'order ' || :ext, :o_id, 'order:' || :o_id || ':' || 'ORDER', :paid_at, 'EARN', :s_business_unit_id, :s_id) RETURNING "id";
-- 25
UPDATE "accounts" SET "updated_at" = :now_ts, "growth_value" = :growth_after WHERE "id" = :a_id;
-- 26
SELECT "id", "created_at", "updated_at", "member_id", "points_balance", "growth_value", "stored_principal", "stored_bonus", "event_seq", "pay_password_hash", "pay_failed_attempts", "pay_locked_until", "successful_referrals", "checkin_streak", "last_checkin_date", "profile_growth_awarded", "tier_since" FROM "accounts" WHERE "id" = :a_id;
-- 27
UPDATE "orders" SET "points_earned" = :earn, "points_burned" = 0, "growth_earned" = :earn WHERE "id" = :o_id;
-- 28
SELECT "id", "external_id", "channel", "member_id", "store_id", "business_unit_id", "status", "amount", "paid_at", "points_earned", "points_burned", "growth_earned", "refunded_amount", "coupon_order_ref", "campaign_id", "created_at" FROM "orders" WHERE "id" = :o_id;
-- 29
SELECT "accounts"."id", "accounts"."created_at", "accounts"."updated_at", "accounts"."member_id", "accounts"."points_balance", "accounts"."growth_value", "accounts"."stored_principal", "accounts"."stored_bonus", "accounts"."event_seq", "accounts"."pay_password_hash", "accounts"."pay_failed_attempts", "accounts"."pay_locked_until", "accounts"."successful_referrals", "accounts"."checkin_streak", "accounts"."last_checkin_date", "accounts"."profile_growth_awarded", "accounts"."tier_since" FROM "accounts" WHERE "accounts"."id" = :a_id LIMIT 2;
-- 30
SELECT "members"."id", "members"."created_at", "members"."updated_at", "members"."member_no", "members"."status", "members"."display_name", "members"."avatar_url", "members"."gender", "members"."name_enc", "members"."phone_enc", "members"."phone_index", "members"."birthday_enc", "members"."birth_year", "members"."birth_month", "members"."region_code", "members"."source_channel", "members"."source_business_unit_id", "members"."registered_at", "members"."tier_id", "members"."merged_into_id", "members"."status_changed_at", "members"."status_reason", "members"."referral_code" FROM "members" WHERE "members"."id" = :m_id LIMIT 2;
-- 31
SELECT "tiers"."id", "tiers"."created_at", "tiers"."updated_at", "tiers"."code", "tiers"."name", "tiers"."rank", "tiers"."threshold", "tiers"."monthly_spend_required", "tiers"."referrals_required", "tiers"."retention_months", "tiers"."points_multiplier_permille" FROM "tiers" ORDER BY "tiers"."rank";
-- 32
UPDATE "referrals" SET "rewarded_at" = :now_ts, "order_id" = :o_id WHERE "referrals"."referee_id" = :m_id AND "referrals"."rewarded_at" IS NULL;
-- 33
COMMIT;
-- 34
SELECT "members"."id", "members"."created_at", "members"."updated_at", "members"."member_no", "members"."status", "members"."display_name", "members"."avatar_url", "members"."gender", "members"."name_enc", "members"."phone_enc", "members"."phone_index", "members"."birthday_enc", "members"."birth_year", "members"."birth_month", "members"."region_code", "members"."source_channel", "members"."source_business_unit_id", "members"."registered_at", "members"."tier_id", "members"."merged_into_id", "members"."status_changed_at", "members"."status_reason", "members"."referral_code" FROM "members" WHERE "members"."id" = :m_id LIMIT 2;
-- 35
SELECT "coupons"."id", "coupons"."code", "coupons"."template_id", "coupons"."member_id", "coupons"."status", "coupons"."issued_at", "coupons"."expires_at", "coupons"."locked_order_ref", "coupons"."locked_at", "coupons"."redeemed_at", "coupons"."order_id", "coupons"."source", "coupons"."discount", "coupons"."expiring_notified_at" FROM "coupons" WHERE "coupons"."order_id" = :o_id;
-- 36
SELECT "accounts"."id", "accounts"."created_at", "accounts"."updated_at", "accounts"."member_id", "accounts"."points_balance", "accounts"."growth_value", "accounts"."stored_principal", "accounts"."stored_bonus", "accounts"."event_seq", "accounts"."pay_password_hash", "accounts"."pay_failed_attempts", "accounts"."pay_locked_until", "accounts"."successful_referrals", "accounts"."checkin_streak", "accounts"."last_checkin_date", "accounts"."profile_growth_awarded", "accounts"."tier_since" FROM "accounts" WHERE "accounts"."member_id" IN (:m_id);
-- 37
SELECT COALESCE(SUM(amount) FILTER (WHERE occurred_at > :year_ago), 0), COALESCE(SUM(amount) FILTER (WHERE occurred_at > :m_registered_at), 0) FROM growth_entries WHERE member_id = :m_id AND occurred_at > LEAST(:year_ago::timestamptz, :m_registered_at::timestamptz) AND occurred_at <= :now_ts;
