// Package dcbench is the data centre benchmark (docs/BENCHMARKS.md, "Data
// centre"), run by cmd/dcbench and scripts/bench-datacenter.sh. It drives
// internal/audience, internal/analytics, internal/dashboard and
// internal/prediction in-process against a dedicated database of the local
// cluster and measures:
//
//   - previewAudience of a five-operand rule (two tags ANY, a tier, an RFM
//     segment, NOT a saved audience): the server-side evaluation time
//     (audience.Service.Evaluate) next to the same rule written as one SQL
//     statement on the same PostgreSQL, run as a count and as the list of
//     member ids. The run fails unless the SQL returns exactly the engine's
//     members: a benchmark must also prove it computes the same thing.
//   - a full rebuild of the bitmap indexes (audience.Index.Build);
//   - an RFM model's computation and recomputation over the orders
//     (analytics.Service.ComputeRfm);
//   - the dashboards: the sales aggregates rebuilt over every order
//     (dashboard.Service.Rebuild); SalesOverview of 90-day windows (some
//     of one business unit) next to the same overview as one SQL
//     statement over the raw orders; StoreMonthlyReport with
//     TopProducts(5); MemberStats and ChannelStats; and the prediction fit
//     and scoring of every member (prediction.Service.FitAndScore). The run
//     fails unless SQL over the raw orders gives the aggregates' figures.
//
// # Data
//
// Prepare keeps one database per member count, onemember_dcbench_<members>,
// migrated with the project's migrations and filled by set-based SQL
// (INSERT … SELECT over generate_series, in one transaction): members with
// genders, birth years, regions, three tiers and untiered members, three
// business units with ten stores each, registrations over three years;
// five tags held by 10 to 30 % of the members; orders over the last two
// years, skewed per member (about 30 % of the members have none, a few
// have hundreds; a log-normal share of the total each), some refunded in
// full or in part, stored in payment order, each with one to three lines
// over a catalogue of 1,000 products; paid memberships (one to three
// yearly purchases) for 8 % of the ACTIVE members. The load runs with
// session_replication_role = replica, so that neither the member_changes
// triggers nor the foreign-key checks fire row by row (the generator keeps
// every reference valid itself); that setting needs a superuser, which the
// local development cluster's user is. The secondary indexes of the loaded
// tables are dropped and rebuilt inside the same transaction, which is
// several times faster than maintaining them row by row. A marker table,
// dcbench_dataset, records the scale and the generator's version: a later
// run with the same scale reuses the data (ten million orders take
// minutes to write), a different scale, a newer generator, or Fresh
// regenerates it from an empty database.
//
// Each run then starts from the same state: the audiences, RFM models and
// their results, the sales aggregates and the predictions of earlier runs
// are truncated.
//
// Nothing here is used by the server.
package dcbench
