-- reverse: create index "pointsentry_kind_occurred_at" to table: "points_entries"
DROP INDEX "pointsentry_kind_occurred_at";
-- reverse: create index "paidmembershippurchase_membership_id_period_start" to table: "paid_membership_purchases"
DROP INDEX "paidmembershippurchase_membership_id_period_start";
