-- reverse: create "tier_benefits" table
DROP TABLE "tier_benefits";
-- reverse: create "staff_business_units" table
DROP TABLE "staff_business_units";
-- reverse: create index "staffs_email_key" to table: "staffs"
DROP INDEX "staffs_email_key";
-- reverse: create "staffs" table
DROP TABLE "staffs";
-- reverse: create index "identity_member_id" to table: "identities"
DROP INDEX "identity_member_id";
-- reverse: create index "identity_kind_app_id_lookup" to table: "identities"
DROP INDEX "identity_kind_app_id_lookup";
-- reverse: create "identities" table
DROP TABLE "identities";
-- reverse: create index "members_merged_into_id_key" to table: "members"
DROP INDEX "members_merged_into_id_key";
-- reverse: create index "members_member_no_key" to table: "members"
DROP INDEX "members_member_no_key";
-- reverse: create index "member_registered_at" to table: "members"
DROP INDEX "member_registered_at";
-- reverse: create index "member_phone_index" to table: "members"
DROP INDEX "member_phone_index";
-- reverse: create "members" table
DROP TABLE "members";
-- reverse: create index "tiers_rank_key" to table: "tiers"
DROP INDEX "tiers_rank_key";
-- reverse: create index "tiers_code_key" to table: "tiers"
DROP INDEX "tiers_code_key";
-- reverse: create "tiers" table
DROP TABLE "tiers";
-- reverse: create "benefit_business_units" table
DROP TABLE "benefit_business_units";
-- reverse: create index "benefits_code_key" to table: "benefits"
DROP INDEX "benefits_code_key";
-- reverse: create "benefits" table
DROP TABLE "benefits";
-- reverse: create "api_client_stores" table
DROP TABLE "api_client_stores";
-- reverse: create index "stores_code_key" to table: "stores"
DROP INDEX "stores_code_key";
-- reverse: create "stores" table
DROP TABLE "stores";
-- reverse: create index "business_units_code_key" to table: "business_units"
DROP INDEX "business_units_code_key";
-- reverse: create "business_units" table
DROP TABLE "business_units";
-- reverse: create index "api_clients_secret_hash_key" to table: "api_clients"
DROP INDEX "api_clients_secret_hash_key";
-- reverse: create "api_clients" table
DROP TABLE "api_clients";
-- reverse: create index "refreshtoken_subject_kind_subject_id" to table: "refresh_tokens"
DROP INDEX "refreshtoken_subject_kind_subject_id";
-- reverse: create index "refreshtoken_family" to table: "refresh_tokens"
DROP INDEX "refreshtoken_family";
-- reverse: create index "refresh_tokens_token_hash_key" to table: "refresh_tokens"
DROP INDEX "refresh_tokens_token_hash_key";
-- reverse: create "refresh_tokens" table
DROP TABLE "refresh_tokens";
-- reverse: create index "auditlog_subject_type_subject_id" to table: "audit_logs"
DROP INDEX "auditlog_subject_type_subject_id";
-- reverse: create index "auditlog_created_at" to table: "audit_logs"
DROP INDEX "auditlog_created_at";
-- reverse: create "audit_logs" table
DROP TABLE "audit_logs";
-- reverse: create index "otpchallenge_phone_index_purpose_created_at" to table: "otp_challenges"
DROP INDEX "otpchallenge_phone_index_purpose_created_at";
-- reverse: create index "otpchallenge_client_ip_created_at" to table: "otp_challenges"
DROP INDEX "otpchallenge_client_ip_created_at";
-- reverse: create "otp_challenges" table
DROP TABLE "otp_challenges";
