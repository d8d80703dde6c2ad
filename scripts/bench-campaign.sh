#!/usr/bin/env bash
# bench-campaign.sh runs the campaign benchmark of docs/BENCHMARKS.md
# ("Campaigns") with cmd/campaignbench (internal/campaignbench): a ONE_OFF
# campaign issuing one coupon to each member of a saved audience of every
# member of the data centre benchmark's database, planned by the campaign
# runner and run by the job workers the server starts, in-process against
# the same PostgreSQL cluster:
#
#   time to finish   activation → the RUN_CAMPAIGN job SUCCEEDED (target ≤ 5 min)
#   members/s        executions recorded per second over that time
#   verification     SQL: exactly one coupon per treated member, one
#                    execution per ACTIVE member, the template's stock and
#                    the COUPON_ISSUED events in step (the run fails otherwise)
#   reference        the same coupon rows written by one INSERT … SELECT
#                    (rolled back), and the ratio
#
#   make bench                          (exports DATABASE_URL, then runs this)
#   DATABASE_URL=postgres://... scripts/bench-campaign.sh
#
# Environment (defaults in brackets):
#   DATABASE_URL          PostgreSQL server on 127.0.0.1/localhost
#   BENCH_CAMPAIGN_DB     benchmark database [onemember_dcbench_1000000], made
#                         by scripts/bench-datacenter.sh (run it first); this
#                         benchmark neither generates nor drops it
#   BENCH_CAMPAIGN_WORKERS job workers [what the server runs: 2]
#   BENCH_CAMPAIGN_BATCH  members per transaction [the engine's default: 1000]
#   BENCH_RESULTS_DIR     where the Markdown report goes [bench-results]
#   BENCH_LOCK_WAIT       seconds to wait for another benchmark run [1200]
#
# The database is changed only by what this benchmark adds, and each run
# first deletes what earlier runs added (its audience, template, campaign,
# executions, job, coupons, events, notifications and the member accounts
# it created); migrations newer than the data are applied, as
# bench-datacenter.sh does.
#
# Output: a summary table on stdout; the report, with the machine and the
# command, goes to $BENCH_RESULTS_DIR/campaign-<UTC timestamp>.md. Progress
# goes to stderr. The exit status is non-zero when the run fails (including
# a failed verification); a missed target is reported, not a failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
export GOFLAGS="${GOFLAGS:--mod=mod}"

BENCH_NAME=bench-campaign
# shellcheck source=scripts/bench/common.sh
source "$ROOT/scripts/bench/common.sh"

: "${DATABASE_URL:?DATABASE_URL must be set (make bench sets it)}"
CAMPAIGN_DB="${BENCH_CAMPAIGN_DB:-onemember_dcbench_1000000}"
WORKERS="${BENCH_CAMPAIGN_WORKERS:-0}"
BATCH="${BENCH_CAMPAIGN_BATCH:-0}"
RESULTS_DIR="${BENCH_RESULTS_DIR:-$ROOT/bench-results}"
LOCK_WAIT="${BENCH_LOCK_WAIT:-1200}"

int_in BENCH_CAMPAIGN_WORKERS "$WORKERS" 0 64
int_in BENCH_CAMPAIGN_BATCH "$BATCH" 0 20000
int_in BENCH_LOCK_WAIT "$LOCK_WAIT" 0 7200
[[ "$CAMPAIGN_DB" =~ ^[a-z_][a-z0-9_]*$ ]] || die "BENCH_CAMPAIGN_DB must be a plain lower-case identifier"

parse_local_database_url

WORK="$(mktemp -d "${TMPDIR:-/tmp}/onemember-campaignbench.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

BENCH="$WORK/campaignbench"
log "building campaignbench"
go build -o "$BENCH" ./cmd/campaignbench || die "go build ./cmd/campaignbench failed"

take_bench_lock "$LOCK_WAIT"

COMMAND="scripts/bench-campaign.sh"
[[ -n "${MAKELEVEL:-}" ]] && COMMAND="make bench"
for v in $(compgen -v BENCH_CAMPAIGN_) GOGC GOMAXPROCS GOMEMLIMIT; do
	if [[ -n "${!v:-}" ]]; then COMMAND="$v=${!v} $COMMAND"; fi
done

TS="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RESULTS_DIR"
REPORT="$RESULTS_DIR/campaign-$TS.md"
REPORT="${REPORT#"$ROOT"/}"
args=(-database "$CAMPAIGN_DB" -workers "$WORKERS" -batch "$BATCH" -out "$REPORT" -command "$COMMAND")
log "running campaignbench ${args[*]}"
"$BENCH" "${args[@]}" 8>&- || die "campaignbench failed"
