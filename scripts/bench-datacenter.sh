#!/usr/bin/env bash
# bench-datacenter.sh runs the data centre benchmark of docs/BENCHMARKS.md
# ("Data centre") with cmd/dcbench (internal/dcbench), which drives the
# audience engine and the analytics service in-process against a dedicated
# database of the same PostgreSQL cluster:
#
#   preview   a five-operand audience rule (two tags ANY, a tier, an RFM
#             segment, NOT a saved audience) evaluated by the engine, p50/p99,
#             next to the same rule as one SQL statement on the same
#             PostgreSQL (a count, and the member ids), p50/p99 and the ratio;
#             the run fails unless SQL and engine select the same members
#   index     full rebuilds of the bitmap indexes
#   rfm       an RFM model computed, then recomputed, over every order
#   dashboards the sales aggregates rebuilt over every order
#             (dashboard.Rebuild); SalesOverview of 90-day windows, p50/p99
#             (target p99 <= 50 ms), next to the same overview as one SQL
#             statement over the raw orders, p50/p99 and the ratio;
#             StoreMonthlyReport with TopProducts(5), p50/p99 (target p99
#             <= 50 ms); MemberStats and ChannelStats, p50/p99; the
#             prediction fit and scoring of every member (target <= 10 min).
#             The run fails unless SQL over the raw orders gives the same
#             figures as the aggregates (every SQL overview, three store
#             reports, member and channel stats)
#
#   make bench                          (exports DATABASE_URL, then runs this)
#   DATABASE_URL=postgres://... scripts/bench-datacenter.sh
#   BENCH_DC_MEMBERS=10000000 scripts/bench-datacenter.sh    (the large run)
#
# Environment (defaults in brackets):
#   DATABASE_URL          PostgreSQL server on 127.0.0.1/localhost, as a
#                         superuser: the data is loaded with
#                         session_replication_role = replica (required)
#   BENCH_DC_MEMBERS      members [1000000]
#   BENCH_DC_ORDERS       orders, over the last two years [10000000]
#   BENCH_DC_FRESH        1: regenerate the data even when it could be reused [0]
#   BENCH_DC_EVALS        measured engine evaluations [500]
#   BENCH_DC_WARMUPS      unmeasured engine evaluations first [10]
#   BENCH_DC_SQL_RUNS     measured runs of each SQL statement [20]
#   BENCH_DC_SQL_WARMUPS  unmeasured runs of each SQL statement first [2]
#   BENCH_DC_BUILDS       timed full rebuilds of the bitmap indexes [3]
#   BENCH_DC_DASH_RUNS    measured SalesOverview and store report runs; a
#                         quarter as many MemberStats and ChannelStats [200]
#   BENCH_DC_DASH_SQL_RUNS runs of the overview as SQL over the raw orders,
#                         each compared with the aggregates [10]
#   BENCH_DC_DB           benchmark database [onemember_dcbench_<members>]
#   BENCH_RESULTS_DIR     where the Markdown report goes [bench-results]
#   BENCH_LOCK_WAIT       seconds to wait for another benchmark run [1200]
#
# The benchmark database is kept after the run: a later run of the same
# scale and generator version reuses it (generating 10,000,000 orders with
# their lines takes many minutes). It takes about 12 GB at the default
# scale (the dashboards' aggregates included); drop it with
#   psql "$DATABASE_URL" -c 'DROP DATABASE onemember_dcbench_1000000'
# The cluster's settings are left as they are; the report records those that
# shape the SQL side.
#
# Output: a summary table on stdout; the report, with the machine, the
# command, the SQL and its plan, goes to $BENCH_RESULTS_DIR/datacenter-<UTC
# timestamp>.md. Progress goes to stderr. The exit status is non-zero when
# the run fails (including SQL and engine disagreeing); missed targets are
# reported, not failures.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
export GOFLAGS="${GOFLAGS:--mod=mod}"

BENCH_NAME=bench-datacenter
# shellcheck source=scripts/bench/common.sh
source "$ROOT/scripts/bench/common.sh"

: "${DATABASE_URL:?DATABASE_URL must be set (make bench sets it)}"
MEMBERS="${BENCH_DC_MEMBERS:-1000000}"
ORDERS="${BENCH_DC_ORDERS:-10000000}"
FRESH="${BENCH_DC_FRESH:-0}"
EVALS="${BENCH_DC_EVALS:-500}"
WARMUPS="${BENCH_DC_WARMUPS:-10}"
SQL_RUNS="${BENCH_DC_SQL_RUNS:-20}"
SQL_WARMUPS="${BENCH_DC_SQL_WARMUPS:-2}"
BUILDS="${BENCH_DC_BUILDS:-3}"
DASH_RUNS="${BENCH_DC_DASH_RUNS:-200}"
DASH_SQL_RUNS="${BENCH_DC_DASH_SQL_RUNS:-10}"
DC_DB="${BENCH_DC_DB:-onemember_dcbench_$MEMBERS}"
RESULTS_DIR="${BENCH_RESULTS_DIR:-$ROOT/bench-results}"
LOCK_WAIT="${BENCH_LOCK_WAIT:-1200}"

int_in BENCH_DC_MEMBERS "$MEMBERS" 1000 50000000
int_in BENCH_DC_ORDERS "$ORDERS" 0 500000000
int_in BENCH_DC_FRESH "$FRESH" 0 1
int_in BENCH_DC_EVALS "$EVALS" 1 1000000
int_in BENCH_DC_WARMUPS "$WARMUPS" 0 1000000
int_in BENCH_DC_SQL_RUNS "$SQL_RUNS" 1 100000
int_in BENCH_DC_SQL_WARMUPS "$SQL_WARMUPS" 0 100000
int_in BENCH_DC_BUILDS "$BUILDS" 1 1000
int_in BENCH_DC_DASH_RUNS "$DASH_RUNS" 1 1000000
int_in BENCH_DC_DASH_SQL_RUNS "$DASH_SQL_RUNS" 1 1000000
int_in BENCH_LOCK_WAIT "$LOCK_WAIT" 0 7200
[[ "$DC_DB" =~ ^[a-z_][a-z0-9_]*$ ]] || die "BENCH_DC_DB must be a plain lower-case identifier"

parse_local_database_url

WORK="$(mktemp -d "${TMPDIR:-/tmp}/onemember-dcbench.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

DCBENCH="$WORK/dcbench"
log "building dcbench"
go build -o "$DCBENCH" ./cmd/dcbench || die "go build ./cmd/dcbench failed"

take_bench_lock "$LOCK_WAIT"

COMMAND="scripts/bench-datacenter.sh"
[[ -n "${MAKELEVEL:-}" ]] && COMMAND="make bench"
for v in $(compgen -v BENCH_DC_) GOGC GOMAXPROCS GOMEMLIMIT; do
	if [[ -n "${!v:-}" ]]; then COMMAND="$v=${!v} $COMMAND"; fi
done

TS="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RESULTS_DIR"
REPORT="$RESULTS_DIR/datacenter-$TS.md"
REPORT="${REPORT#"$ROOT"/}"
args=(-members "$MEMBERS" -orders "$ORDERS" -database "$DC_DB" -evals "$EVALS" -warmups "$WARMUPS"
	-sql-runs "$SQL_RUNS" -sql-warmups "$SQL_WARMUPS" -builds "$BUILDS" -dash-runs "$DASH_RUNS" -dash-sql-runs "$DASH_SQL_RUNS"
	-out "$REPORT" -command "$COMMAND")
if [[ "$FRESH" == 1 ]]; then args+=(-fresh); fi
log "running dcbench ${args[*]}"
"$DCBENCH" "${args[@]}" 8>&- || die "dcbench failed"
