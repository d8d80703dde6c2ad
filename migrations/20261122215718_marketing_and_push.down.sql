-- reverse: create index "mallredemption_member_id_idempotency_key" to table: "mall_redemptions"
DROP INDEX "mallredemption_member_id_idempotency_key";
-- reverse: create index "mallredemption_item_id_member_id" to table: "mall_redemptions"
DROP INDEX "mallredemption_item_id_member_id";
-- reverse: create "mall_redemptions" table
DROP TABLE "mall_redemptions";
-- reverse: create "mall_items" table
DROP TABLE "mall_items";
-- reverse: create "lottery_prizes" table
DROP TABLE "lottery_prizes";
-- reverse: create "lotteries" table
DROP TABLE "lotteries";
-- reverse: create index "activityregistration_member_id" to table: "activity_registrations"
DROP INDEX "activityregistration_member_id";
-- reverse: create index "activityregistration_activity_id_status" to table: "activity_registrations"
DROP INDEX "activityregistration_activity_id_status";
-- reverse: create index "activityregistration_activity_id_member_id" to table: "activity_registrations"
DROP INDEX "activityregistration_activity_id_member_id";
-- reverse: create "activity_registrations" table
DROP TABLE "activity_registrations";
-- reverse: create index "members_referral_code_key" to table: "members"
DROP INDEX "members_referral_code_key";
-- reverse: modify "members" table
ALTER TABLE "members" DROP COLUMN "referral_code";
-- reverse: create index "promoredemption_promo_code_id_member_id" to table: "promo_redemptions"
DROP INDEX "promoredemption_promo_code_id_member_id";
-- reverse: create "promo_redemptions" table
DROP TABLE "promo_redemptions";
-- reverse: create index "pushdelivery_status_next_attempt_at" to table: "push_deliveries"
DROP INDEX "pushdelivery_status_next_attempt_at";
-- reverse: create index "pushdelivery_event_id_channel" to table: "push_deliveries"
DROP INDEX "pushdelivery_event_id_channel";
-- reverse: create "push_deliveries" table
DROP TABLE "push_deliveries";
-- reverse: create index "pushdevice_member_id" to table: "push_devices"
DROP INDEX "pushdevice_member_id";
-- reverse: create index "push_devices_token_key" to table: "push_devices"
DROP INDEX "push_devices_token_key";
-- reverse: create "push_devices" table
DROP TABLE "push_devices";
-- reverse: create index "lotterydraw_member_id_idempotency_key" to table: "lottery_draws"
DROP INDEX "lotterydraw_member_id_idempotency_key";
-- reverse: create index "lotterydraw_lottery_id_member_id_drawn_at" to table: "lottery_draws"
DROP INDEX "lotterydraw_lottery_id_member_id_drawn_at";
-- reverse: create "lottery_draws" table
DROP TABLE "lottery_draws";
-- reverse: create index "referral_referrer_id" to table: "referrals"
DROP INDEX "referral_referrer_id";
-- reverse: create index "referral_referee_id" to table: "referrals"
DROP INDEX "referral_referee_id";
-- reverse: create "referrals" table
DROP TABLE "referrals";
-- reverse: create index "log_cursors_name_key" to table: "log_cursors"
DROP INDEX "log_cursors_name_key";
-- reverse: create "log_cursors" table
DROP TABLE "log_cursors";
-- reverse: create index "coupon_status_expires_at" to table: "coupons"
DROP INDEX "coupon_status_expires_at";
-- reverse: create index "coupon_order_id" to table: "coupons"
DROP INDEX "coupon_order_id";
-- reverse: modify "coupons" table
ALTER TABLE "coupons" DROP COLUMN "expiring_notified_at", DROP COLUMN "discount";
-- reverse: create index "activity_starts_at" to table: "activities"
DROP INDEX "activity_starts_at";
-- reverse: create "activities" table
DROP TABLE "activities";
-- reverse: create index "memberevent_tx_id" to table: "member_events"
DROP INDEX "memberevent_tx_id";
-- reverse: modify "member_events" table
ALTER TABLE "member_events" DROP COLUMN "tx_id";
-- reverse: create index "promo_codes_code_key" to table: "promo_codes"
DROP INDEX "promo_codes_code_key";
-- reverse: create "promo_codes" table
DROP TABLE "promo_codes";
