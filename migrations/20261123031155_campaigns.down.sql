-- reverse: create index "campaignexecution_member_id_executed_at" to table: "campaign_executions"
DROP INDEX "campaignexecution_member_id_executed_at";
-- reverse: create index "campaignexecution_coupon_id" to table: "campaign_executions"
DROP INDEX "campaignexecution_coupon_id";
-- reverse: create index "campaignexecution_campaign_id_status" to table: "campaign_executions"
DROP INDEX "campaignexecution_campaign_id_status";
-- reverse: create index "campaignexecution_campaign_id_member_id_occurrence" to table: "campaign_executions"
DROP INDEX "campaignexecution_campaign_id_member_id_occurrence";
-- reverse: create "campaign_executions" table
DROP TABLE "campaign_executions";
-- reverse: create index "campaign_status_trigger_kind" to table: "campaigns"
DROP INDEX "campaign_status_trigger_kind";
-- reverse: create "campaigns" table
DROP TABLE "campaigns";
