-- reverse: create index "tag_name" to table: "tags"
DROP INDEX "tag_name";
-- reverse: create "tags" table
DROP TABLE "tags";
-- reverse: create "rfm_models" table
DROP TABLE "rfm_models";
-- reverse: create index "job_status_lease_until" to table: "jobs"
DROP INDEX "job_status_lease_until";
-- reverse: create index "job_idempotency_key" to table: "jobs"
DROP INDEX "job_idempotency_key";
-- reverse: create "jobs" table
DROP TABLE "jobs";
-- reverse: create index "audience_name" to table: "audiences"
DROP INDEX "audience_name";
-- reverse: create "audiences" table
DROP TABLE "audiences";
-- reverse: create "aipl_models" table
DROP TABLE "aipl_models";
-- reverse: create index "coupon_issue_job_id_member_id" to table: "coupons"
DROP INDEX "coupon_issue_job_id_member_id";
-- reverse: modify "coupons" table
ALTER TABLE "coupons" DROP COLUMN "issue_job_id";
