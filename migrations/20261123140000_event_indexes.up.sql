-- drop index "memberevent_occurred_at" from table: "member_events"
DROP INDEX "memberevent_occurred_at";
-- create index "memberevent_occurred_at" to table: "member_events"
CREATE INDEX "memberevent_occurred_at" ON "member_events" USING brin ("occurred_at");
-- drop index "pushdelivery_status_next_attempt_at" from table: "push_deliveries"
DROP INDEX "pushdelivery_status_next_attempt_at";
-- create index "pushdelivery_next_attempt_at" to table: "push_deliveries"
CREATE INDEX "pushdelivery_next_attempt_at" ON "push_deliveries" ("next_attempt_at") WHERE ((status)::text = 'PENDING'::text);
