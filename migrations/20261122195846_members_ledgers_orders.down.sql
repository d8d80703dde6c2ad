-- reverse: create index "tierchange_member_id_changed_at" to table: "tier_changes"
DROP INDEX "tierchange_member_id_changed_at";
-- reverse: create "tier_changes" table
DROP TABLE "tier_changes";
-- reverse: create index "storedvalueentry_order_id" to table: "stored_value_entries"
DROP INDEX "storedvalueentry_order_id";
-- reverse: create index "storedvalueentry_member_id_occurred_at" to table: "stored_value_entries"
DROP INDEX "storedvalueentry_member_id_occurred_at";
-- reverse: create index "storedvalueentry_idempotency_key" to table: "stored_value_entries"
DROP INDEX "storedvalueentry_idempotency_key";
-- reverse: create "stored_value_entries" table
DROP TABLE "stored_value_entries";
-- reverse: create index "refund_order_id_refund_id" to table: "refunds"
DROP INDEX "refund_order_id_refund_id";
-- reverse: create "refunds" table
DROP TABLE "refunds";
-- reverse: create index "pointsentry_order_id" to table: "points_entries"
DROP INDEX "pointsentry_order_id";
-- reverse: create index "pointsentry_member_id_occurred_at" to table: "points_entries"
DROP INDEX "pointsentry_member_id_occurred_at";
-- reverse: create index "pointsentry_idempotency_key" to table: "points_entries"
DROP INDEX "pointsentry_idempotency_key";
-- reverse: create "points_entries" table
DROP TABLE "points_entries";
-- reverse: create index "paidmembership_status_expires_at" to table: "paid_memberships"
DROP INDEX "paidmembership_status_expires_at";
-- reverse: create index "paidmembership_member_id_plan_id" to table: "paid_memberships"
DROP INDEX "paidmembership_member_id_plan_id";
-- reverse: create "paid_memberships" table
DROP TABLE "paid_memberships";
-- reverse: create "paid_membership_plan_benefits" table
DROP TABLE "paid_membership_plan_benefits";
-- reverse: create index "paid_membership_plans_code_key" to table: "paid_membership_plans"
DROP INDEX "paid_membership_plans_code_key";
-- reverse: create "paid_membership_plans" table
DROP TABLE "paid_membership_plans";
-- reverse: create index "orderpayment_stored_value_entry_id" to table: "order_payments"
DROP INDEX "orderpayment_stored_value_entry_id";
-- reverse: create index "orderpayment_order_id" to table: "order_payments"
DROP INDEX "orderpayment_order_id";
-- reverse: create "order_payments" table
DROP TABLE "order_payments";
-- reverse: create index "orderitem_sku" to table: "order_items"
DROP INDEX "orderitem_sku";
-- reverse: create index "orderitem_order_id" to table: "order_items"
DROP INDEX "orderitem_order_id";
-- reverse: create "order_items" table
DROP TABLE "order_items";
-- reverse: create index "order_paid_at" to table: "orders"
DROP INDEX "order_paid_at";
-- reverse: create index "order_member_id_paid_at" to table: "orders"
DROP INDEX "order_member_id_paid_at";
-- reverse: create index "order_channel_external_id" to table: "orders"
DROP INDEX "order_channel_external_id";
-- reverse: create "orders" table
DROP TABLE "orders";
-- reverse: create index "growthentry_order_id" to table: "growth_entries"
DROP INDEX "growthentry_order_id";
-- reverse: create index "growthentry_member_id_occurred_at" to table: "growth_entries"
DROP INDEX "growthentry_member_id_occurred_at";
-- reverse: create index "growthentry_idempotency_key" to table: "growth_entries"
DROP INDEX "growthentry_idempotency_key";
-- reverse: create "growth_entries" table
DROP TABLE "growth_entries";
-- reverse: create "earning_rules" table
DROP TABLE "earning_rules";
-- reverse: create index "coupons_code_key" to table: "coupons"
DROP INDEX "coupons_code_key";
-- reverse: create index "coupon_template_id_member_id" to table: "coupons"
DROP INDEX "coupon_template_id_member_id";
-- reverse: create index "coupon_member_id_status_expires_at" to table: "coupons"
DROP INDEX "coupon_member_id_status_expires_at";
-- reverse: create index "coupon_locked_order_ref" to table: "coupons"
DROP INDEX "coupon_locked_order_ref";
-- reverse: create "coupons" table
DROP TABLE "coupons";
-- reverse: create "coupon_template_stores" table
DROP TABLE "coupon_template_stores";
-- reverse: create "coupon_template_business_units" table
DROP TABLE "coupon_template_business_units";
-- reverse: create "coupon_templates" table
DROP TABLE "coupon_templates";
-- reverse: create index "accounts_member_id_key" to table: "accounts"
DROP INDEX "accounts_member_id_key";
-- reverse: create "accounts" table
DROP TABLE "accounts";
-- reverse: create index "memberevent_occurred_at" to table: "member_events"
DROP INDEX "memberevent_occurred_at";
-- reverse: create index "memberevent_member_id_seq" to table: "member_events"
DROP INDEX "memberevent_member_id_seq";
-- reverse: create "member_events" table
DROP TABLE "member_events";
-- reverse: create index "paid_membership_purchases_payment_ref_key" to table: "paid_membership_purchases"
DROP INDEX "paid_membership_purchases_payment_ref_key";
-- reverse: create "paid_membership_purchases" table
DROP TABLE "paid_membership_purchases";
-- reverse: create index "pointslot_member_id_expires_at" to table: "points_lots"
DROP INDEX "pointslot_member_id_expires_at";
-- reverse: create index "pointslot_expires_at" to table: "points_lots"
DROP INDEX "pointslot_expires_at";
-- reverse: create "points_lots" table
DROP TABLE "points_lots";
-- reverse: create index "pointsallocation_lot_id" to table: "points_allocations"
DROP INDEX "pointsallocation_lot_id";
-- reverse: create index "pointsallocation_entry_id" to table: "points_allocations"
DROP INDEX "pointsallocation_entry_id";
-- reverse: create "points_allocations" table
DROP TABLE "points_allocations";
-- reverse: create index "consent_member_id_kind" to table: "consents"
DROP INDEX "consent_member_id_kind";
-- reverse: create "consents" table
DROP TABLE "consents";
-- reverse: create index "notification_member_id_created_at" to table: "notifications"
DROP INDEX "notification_member_id_created_at";
-- reverse: create "notifications" table
DROP TABLE "notifications";
