-- reverse: create index "pushdelivery_next_attempt_at" to table: "push_deliveries"
DROP INDEX "pushdelivery_next_attempt_at";
-- reverse: drop index "pushdelivery_status_next_attempt_at" from table: "push_deliveries"
CREATE INDEX "pushdelivery_status_next_attempt_at" ON "push_deliveries" ("status", "next_attempt_at");
-- reverse: create index "memberevent_occurred_at" to table: "member_events"
DROP INDEX "memberevent_occurred_at";
-- reverse: drop index "memberevent_occurred_at" from table: "member_events"
CREATE INDEX "memberevent_occurred_at" ON "member_events" ("occurred_at");
