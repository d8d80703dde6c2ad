-- reverse: create index "coupon_order_id" to table: "coupons"
DROP INDEX "coupon_order_id";
-- reverse: create index "coupon_locked_order_ref" to table: "coupons"
DROP INDEX "coupon_locked_order_ref";
-- reverse: create index "coupon_issue_job_id_member_id" to table: "coupons"
DROP INDEX "coupon_issue_job_id_member_id";
-- reverse: drop index "coupon_order_id" from table: "coupons"
CREATE INDEX "coupon_order_id" ON "coupons" ("order_id");
-- reverse: drop index "coupon_locked_order_ref" from table: "coupons"
CREATE INDEX "coupon_locked_order_ref" ON "coupons" ("locked_order_ref");
-- reverse: drop index "coupon_issue_job_id_member_id" from table: "coupons"
CREATE UNIQUE INDEX "coupon_issue_job_id_member_id" ON "coupons" ("issue_job_id", "member_id");
