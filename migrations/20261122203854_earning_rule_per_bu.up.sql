-- create index "earningrule_business_unit_id" to table: "earning_rules"
CREATE UNIQUE INDEX "earningrule_business_unit_id" ON "earning_rules" ("business_unit_id");
