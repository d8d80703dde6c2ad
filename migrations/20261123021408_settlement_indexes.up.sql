-- create index "paidmembershippurchase_membership_id_period_start" to table: "paid_membership_purchases"
CREATE INDEX "paidmembershippurchase_membership_id_period_start" ON "paid_membership_purchases" ("membership_id", "period_start");
-- create index "pointsentry_kind_occurred_at" to table: "points_entries"
CREATE INDEX "pointsentry_kind_occurred_at" ON "points_entries" ("kind", "occurred_at");
