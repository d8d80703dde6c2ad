-- reverse: create index "earningrule_business_unit_id" to table: "earning_rules"
DROP INDEX "earningrule_business_unit_id";
