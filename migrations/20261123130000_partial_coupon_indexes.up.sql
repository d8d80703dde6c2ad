-- drop index "coupon_issue_job_id_member_id" from table: "coupons"
DROP INDEX "coupon_issue_job_id_member_id";
-- drop index "coupon_locked_order_ref" from table: "coupons"
DROP INDEX "coupon_locked_order_ref";
-- drop index "coupon_order_id" from table: "coupons"
DROP INDEX "coupon_order_id";
-- create index "coupon_issue_job_id_member_id" to table: "coupons"
CREATE UNIQUE INDEX "coupon_issue_job_id_member_id" ON "coupons" ("issue_job_id", "member_id") WHERE (issue_job_id IS NOT NULL);
-- create index "coupon_locked_order_ref" to table: "coupons"
CREATE INDEX "coupon_locked_order_ref" ON "coupons" ("locked_order_ref") WHERE (locked_order_ref IS NOT NULL);
-- create index "coupon_order_id" to table: "coupons"
CREATE INDEX "coupon_order_id" ON "coupons" ("order_id") WHERE (order_id IS NOT NULL);
