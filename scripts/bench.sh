#!/usr/bin/env bash
# bench.sh runs the HTTP load benchmarks of docs/BENCHMARKS.md against a
# freshly seeded benchmark database and puts each result next to a pgbench
# reference measured in the same run on the same PostgreSQL (select-only,
# or for ingest the SQL one ingestOrder sends: scripts/bench/ingest_order.sql,
# or for claims a single-row conditional UPDATE: scripts/bench/hot_row.sql),
# so that numbers from shared, noisy machines can be compared as ratios.
#
#   make bench                          (exports DATABASE_URL, builds bin/server)
#   DATABASE_URL=postgres://... scripts/bench.sh
#
# Environment (defaults in brackets):
#   DATABASE_URL          server to use; must be on 127.0.0.1/localhost (required)
#   BENCH_MEMBERS         members seeded into the benchmark database [100000]
#   BENCH_CONNECTIONS     concurrent connections, wrk and pgbench alike [32]
#   BENCH_DURATION        seconds per measured run [30]
#   BENCH_WARMUP          seconds of unmeasured warm-up before each run [5]
#   BENCH_THREADS         wrk threads [2]
#   BENCH_PGBENCH_JOBS    pgbench -j [2]
#   BENCH_TOKENS          members signed in whose tokens viewer rotates [200]
#   BENCH_MEMBERHOME_CONNECTIONS  connections of memberhome [16]: its target
#                         is a throughput at a latency bound, and a closed
#                         loop keeping more requests in flight than two
#                         cores serve only queues them (32 connections at
#                         3,600 req/s wait 9 ms on average for nothing)
#   BENCH_MEMBERHOME_TOKENS  seeded members whose tokens memberhome rotates
#                         (their history seeded and their tokens minted by
#                         "server mint-tokens --with-history") [2000]
#   BENCH_MINT_SEED       --seed of "server mint-tokens": which members [1]
#   BENCH_SCENARIOS       space-separated scenarios to run, of viewer,
#                         memberhome, ingest and claims [viewer]
#   BENCH_CLAIMS_CONNECTIONS  connections of claims and of its pgbench
#                         hot_row.sql reference [64]
#   BENCH_CLAIMS_TOKENS   seeded members whose tokens claims rotates
#                         (minted by "server mint-tokens") [2000]
#   BENCH_CLAIMS_STOCK    stock of the claims template: more than a run can
#                         claim, so that every claim succeeds [10000000]
#   BENCH_CLAIMS_SOLDOUT_STOCK  stock of the template of the sold-out phase
#                         that follows claims [1000]
#   BENCH_CLAIMS_SOLDOUT_DURATION  seconds of the sold-out phase [10]
#   BENCH_DB              benchmark database, dropped and recreated [onemember_bench]
#   BENCH_PGBENCH_DB      pgbench scratch database, dropped at exit [onemember_pgbench]
#   BENCH_PGBENCH_SCALE   pgbench -i -s [10]
#   BENCH_INGEST_DB       prefix of the two copies of BENCH_DB the ingest
#                         reference runs on, dropped at exit [onemember_pgbench_ingest]
#   ONEMEMBER_CLIENTS_DIR the client operations [../shared/clients]
#   BENCH_FRESH_DB        1: drop, recreate and seed BENCH_DB; 0: reuse it [1]
#   BENCH_PORT            loopback port for the server [a free one]
#   BENCH_SERVER          server binary to measure [bin/server]
#   BENCH_SEED_FLAGS      extra flags of "server seed" [--no-history when the
#                         binary has it: the viewer scenario needs members only,
#                         and two years of order history take minutes to seed;
#                         set it empty to seed the history too]
#   BENCH_RESULTS_DIR     where the Markdown report goes [bench-results]
#   BENCH_LOCK_WAIT       seconds to wait for another run on the same server [1200]
#   BENCH_SETTLE_MAX      seconds a scenario waits, before its warm-up, for
#                         the server and its database to go idle (the
#                         background work of the scenario before) [120]
#   BENCH_SEED_TIMEOUT    seconds seeding may take [1800]
#   BENCH_PROFILE         1: save the server's CPU profile of each measured
#                         run next to the report (profile-<scenario>-<time>.pprof;
#                         read it with "go tool pprof bin/server FILE") [0]
#
# The server under test inherits the environment (GOGC, GOMAXPROCS,
# DB_MAX_OPEN_CONNS, AUTH_CACHE_TTL, ...) except DATABASE_URL, LISTEN_ADDR and
# LOG_LEVEL; the report records the ones that tune it.
#
# Output: a Markdown table on stdout; the same table, the machine and the
# command are appended to $BENCH_RESULTS_DIR/<UTC timestamp>.md. Progress
# and raw tool output go to stderr.
#
# Adding a scenario: write a function scenario_<name> that calls
# run_http_scenario with a name, a GraphQL document, a token file and a
# string every good response contains; add <name> to BENCH_SCENARIOS.
# Optional functions before_<name> and after_<name> run next to the metric
# scrapes of the measured run, check_<name> after its row is computed;
# SCENARIO_VARS[<name>] is the JSON of the request's variables,
# SCENARIO_CONNS[<name>] its connections (default BENCH_CONNECTIONS) and
# SCENARIO_REF[<name>] its pgbench reference (default select).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"

BENCH_NAME=bench
# shellcheck source=scripts/bench/common.sh
source "$ROOT/scripts/bench/common.sh"

# ---------------------------------------------------------------------------
# Configuration and its bounds.
# ---------------------------------------------------------------------------
: "${DATABASE_URL:?DATABASE_URL must be set (make bench sets it)}"
MEMBERS="${BENCH_MEMBERS:-100000}"
CONNS="${BENCH_CONNECTIONS:-32}"
DURATION="${BENCH_DURATION:-30}"
DURATION="${DURATION%s}" # accept "30s"
WARMUP="${BENCH_WARMUP:-5}"
WARMUP="${WARMUP%s}"
THREADS="${BENCH_THREADS:-2}"
PGJOBS="${BENCH_PGBENCH_JOBS:-2}"
NTOKENS="${BENCH_TOKENS:-200}"
HOME_TOKENS="${BENCH_MEMBERHOME_TOKENS:-2000}"
MINT_SEED="${BENCH_MINT_SEED:-1}"
SCENARIOS="${BENCH_SCENARIOS:-viewer}"
BENCH_DB="${BENCH_DB:-onemember_bench}"
PGBENCH_DB="${BENCH_PGBENCH_DB:-onemember_pgbench}"
PGBENCH_SCALE="${BENCH_PGBENCH_SCALE:-10}"
INGEST_DB="${BENCH_INGEST_DB:-onemember_pgbench_ingest}"
CLIENTS_DIR="${ONEMEMBER_CLIENTS_DIR:-$ROOT/../shared/clients}"
INGEST_SQL="$ROOT/scripts/bench/ingest_order.sql"
HOTROW_SQL="$ROOT/scripts/bench/hot_row.sql"
CLAIMS_CONNS="${BENCH_CLAIMS_CONNECTIONS:-64}"
HOME_CONNS="${BENCH_MEMBERHOME_CONNECTIONS:-16}"
CLAIMS_TOKENS="${BENCH_CLAIMS_TOKENS:-2000}"
CLAIMS_STOCK="${BENCH_CLAIMS_STOCK:-10000000}"
SOLDOUT_STOCK="${BENCH_CLAIMS_SOLDOUT_STOCK:-1000}"
SOLDOUT_DURATION="${BENCH_CLAIMS_SOLDOUT_DURATION:-10}"
SOLDOUT_DURATION="${SOLDOUT_DURATION%s}"
# The seeded administrator's password ("server seed" reads it from
# SEED_ADMIN_PASSWORD); claims signs in with it to create its templates.
ADMIN_EMAIL="admin@onemember.local"
ADMIN_PASSWORD="bench-admin-password"
FRESH_DB="${BENCH_FRESH_DB:-1}"
RESULTS_DIR="${BENCH_RESULTS_DIR:-$ROOT/bench-results}"
SERVER="${BENCH_SERVER:-$ROOT/bin/server}"

int_in BENCH_MEMBERS "$MEMBERS" 0 10000000
int_in BENCH_CONNECTIONS "$CONNS" 1 1000
int_in BENCH_DURATION "$DURATION" 1 600
int_in BENCH_WARMUP "$WARMUP" 0 120
int_in BENCH_THREADS "$THREADS" 1 64
int_in BENCH_PGBENCH_JOBS "$PGJOBS" 1 64
int_in BENCH_TOKENS "$NTOKENS" 1 10000
int_in BENCH_MEMBERHOME_TOKENS "$HOME_TOKENS" 1 100000
int_in BENCH_MINT_SEED "$MINT_SEED" 0 1000000000
int_in BENCH_PGBENCH_SCALE "$PGBENCH_SCALE" 1 1000
int_in BENCH_CLAIMS_CONNECTIONS "$CLAIMS_CONNS" 1 1000
int_in BENCH_MEMBERHOME_CONNECTIONS "$HOME_CONNS" 1 1000
int_in BENCH_CLAIMS_TOKENS "$CLAIMS_TOKENS" 1 100000
int_in BENCH_CLAIMS_STOCK "$CLAIMS_STOCK" 1 2000000000
int_in BENCH_CLAIMS_SOLDOUT_STOCK "$SOLDOUT_STOCK" 1 10000000
int_in BENCH_CLAIMS_SOLDOUT_DURATION "$SOLDOUT_DURATION" 1 600
LOCK_WAIT="${BENCH_LOCK_WAIT:-1200}"
SETTLE_MAX="${BENCH_SETTLE_MAX:-120}"
int_in BENCH_SETTLE_MAX "$SETTLE_MAX" 0 3600
int_in BENCH_LOCK_WAIT "$LOCK_WAIT" 0 7200
SEED_TIMEOUT="${BENCH_SEED_TIMEOUT:-1800}"
int_in BENCH_SEED_TIMEOUT "$SEED_TIMEOUT" 1 7200
((DURATION >= 20)) || log "warning: BENCH_DURATION=$DURATION: below 20 s, pgbench's connection start-up distorts the reference"
((THREADS <= CONNS && PGJOBS <= CONNS)) || die "BENCH_THREADS and BENCH_PGBENCH_JOBS must not exceed BENCH_CONNECTIONS ($CONNS)"
if [[ " $SCENARIOS " == *" claims "* ]]; then
	((THREADS <= CLAIMS_CONNS && PGJOBS <= CLAIMS_CONNS)) ||
		die "BENCH_THREADS and BENCH_PGBENCH_JOBS must not exceed BENCH_CLAIMS_CONNECTIONS ($CLAIMS_CONNS)"
fi
for db in "$BENCH_DB" "$PGBENCH_DB" "$INGEST_DB"; do
	[[ "$db" =~ ^[a-z_][a-z0-9_]*$ ]] || die "database name '$db' must be a plain lower-case identifier"
done
[[ -x "$SERVER" ]] || die "$SERVER not found: run 'make build' (or 'make bench')"

# DATABASE_URL must be a postgres:// URL on this machine: the script drops
# and recreates databases on that server.
parse_local_database_url
ADMIN_URL="$(db_url postgres)"
BENCH_URL="$(db_url "$BENCH_DB")"
PGBENCH_URL="$(db_url "$PGBENCH_DB")"

# pg_tool NAME prints the path of a PostgreSQL client program, preferring
# the newest /usr/lib/postgresql/*/bin.
pg_tool() {
	local d
	while IFS= read -r d; do
		[[ -x "$d/$1" ]] && {
			printf '%s\n' "$d/$1"
			return 0
		}
	done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5,5 -rn)
	command -v "$1"
}
PSQL="$(pg_tool psql)" || die "psql not found"
PGBENCH="$(pg_tool pgbench)" || die "pgbench not found (Debian: postgresql-contrib / postgresql-client)"
psql_admin() { "$PSQL" -X -q -w -v ON_ERROR_STOP=1 -d "$ADMIN_URL" "$@"; }

# Every measured run, reference or scenario, starts right after a
# CHECKPOINT, so that none inherits the WAL (and the full-page writes of the
# next checkpoint) of the run before it; checkpoints prints how many
# checkpoints the server has begun, and the report says how many fell
# inside each scenario's run (each one makes the next write to every page
# log the whole page).
checkpoint_before_run() { psql_admin -c 'CHECKPOINT' >&2 || log "warning: CHECKPOINT failed (needs superuser or pg_checkpoint)"; }
checkpoints() {
	psql_admin -tAc 'SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter' 2>/dev/null ||
		psql_admin -tAc 'SELECT num_timed + num_requested FROM pg_stat_checkpointer'
}

ensure_wrk() {
	command -v wrk >/dev/null 2>&1 && return 0
	local sudo=()
	if [[ "$(id -u)" -ne 0 ]]; then
		command -v sudo >/dev/null 2>&1 || die "wrk is missing and sudo is unavailable: install the 'wrk' package"
		sudo=(sudo)
	fi
	log "installing wrk with apt-get"
	if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wrk >&2; then
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update >&2
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wrk >&2 ||
			die "apt-get install wrk failed"
	fi
	command -v wrk >/dev/null 2>&1 || die "wrk still not found after installing"
}

# ---------------------------------------------------------------------------
# Scratch space, server process and cleanup.
# ---------------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/onemember-bench.XXXXXX")"
SERVER_PID=""
stop_server() {
	if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
		kill -TERM "$SERVER_PID" 2>/dev/null || true
		for _ in $(seq 1 100); do
			kill -0 "$SERVER_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$SERVER_PID" 2>/dev/null || true
		wait "$SERVER_PID" 2>/dev/null || true
	fi
	SERVER_PID=""
}
cleanup() {
	local rc=$?
	if declare -F pg_sampler_stop >/dev/null; then pg_sampler_stop; fi
	if [[ -n "${CLAIMS_WAITS_PID:-}" ]]; then kill "$CLAIMS_WAITS_PID" 2>/dev/null || true; fi
	stop_server
	local db
	for db in "$PGBENCH_DB" "${INGEST_DB}_before" "${INGEST_DB}_after"; do
		psql_admin -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
	done
	if ((rc != 0)) && [[ -s "$WORK/server.log" ]]; then
		log "server log (last 30 lines):"
		tail -n 30 "$WORK/server.log" >&2 || true
	fi
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port prints a loopback TCP port nobody listens on.
free_port() {
	local p
	for _ in $(seq 1 200); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			printf '%s\n' "$p"
			return 0
		fi
	done
	return 1
}

start_server() {
	local port="${BENCH_PORT:-}"
	[[ -n "$port" ]] || port="$(free_port)" || die "no free loopback port found"
	int_in BENCH_PORT "$port" 1 65535
	BASE="http://127.0.0.1:$port"
	log "starting bin/server serve on $BASE (LOG_LEVEL=warn)"
	DATABASE_URL="$BENCH_URL" LISTEN_ADDR="127.0.0.1:$port" LOG_LEVEL=warn \
		ACCESS_TOKEN_TTL="${ACCESS_TOKEN_TTL:-2h}" \
		"$SERVER" serve >"$WORK/server.log" 2>&1 8>&- &
	SERVER_PID=$!
	for _ in $(seq 1 600); do
		kill -0 "$SERVER_PID" 2>/dev/null || die "server exited during start-up"
		if curl -fsS --max-time 2 -o /dev/null "$BASE/readyz" 2>/dev/null; then
			log "server ready (pid $SERVER_PID)"
			return 0
		fi
		sleep 0.1
	done
	die "server not ready on $BASE/readyz after 60 s"
}

# ---------------------------------------------------------------------------
# Measurements.
# ---------------------------------------------------------------------------

# metric NAME prints the sum of all series of a Prometheus metric.
metric() {
	curl -fsS --max-time 5 "$BASE/metrics" |
		awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%.6f\n", s }'
}
metric_series() { # metric_series NAME LABEL_SUBSTRING
	curl -fsS --max-time 5 "$BASE/metrics" |
		awk -v n="$1" -v l="$2" 'index($1, n "{") == 1 && index($1, l) { s += $NF } END { printf "%.6f\n", s }'
}
# calc FORMAT EXPR prints an awk expression (parenthesised, so that ">"
# compares rather than redirects).
calc() { awk "BEGIN { printf \"$1\n\", ($2) }"; }

# CPU accounting, in seconds, so that each run also says what a request
# costs in CPU and how much of the machine other processes took (shared
# machines are noisy; the ratio to pgbench absorbs part of that, the CPU
# cost per request most of the rest).
CLK_TCK="$(getconf CLK_TCK)"
# machine_cpu prints busy and total CPU seconds of the whole machine.
machine_cpu() { awk -v hz="$CLK_TCK" '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; printf "%.2f %.2f\n", (t - $5 - $6) / hz, t / hz }' /proc/stat; }
# pid_cpu PID prints the user+system CPU seconds of a live process.
pid_cpu() { awk -v hz="$CLK_TCK" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz }' "/proc/$1/stat"; }
# db_backends_cpu DB prints the CPU seconds of the live PostgreSQL backends
# connected to database DB (their process title is "postgres: USER DB ...").
db_backends_cpu() {
	local f t stats=()
	for f in /proc/[0-9]*/cmdline; do
		t=""
		IFS= read -r -d '' t 2>/dev/null <"$f" || [[ -n "$t" ]] || continue
		if [[ "$t" == "postgres: "*" $1 "* ]]; then stats+=("${f%/cmdline}/stat"); fi
	done
	if ((${#stats[@]} == 0)); then
		echo 0
		return 0
	fi
	cat "${stats[@]}" 2>/dev/null |
		awk -v hz="$CLK_TCK" '{ sub(/^.*\) /, ""); s += $12 + $13 } END { printf "%.2f\n", s / hz }'
}
# db_backends_pid_cpu DB prints "PID CPU-seconds" for each live backend of
# database DB.
db_backends_pid_cpu() {
	local pids p files=()
	pids="$(pgrep -f "^postgres: [^ ]+ $1 ")" || return 0
	for p in $pids; do files+=("/proc/$p/stat"); done
	cat "${files[@]}" 2>/dev/null |
		awk -v hz="$CLK_TCK" '{ pid = $1; sub(/^.*\) /, ""); printf "%s %.2f\n", pid, ($12 + $13) / hz }' || true
}
# settle waits, at most BENCH_SETTLE_MAX seconds, until the server and the
# benchmark database's backends together use less than 0.1 core over 2 s,
# and sets SETTLED to the seconds it waited: the work a scenario leaves to
# background jobs (the push dispatcher planning its events' deliveries,
# campaign triggers, the data centre) is then not charged to the next one.
settle() {
	local start=$SECONDS s0 p0 s1 p1
	while :; do
		s0="$(pid_cpu "$SERVER_PID")" p0="$(db_backends_cpu "$BENCH_DB")"
		sleep 2
		s1="$(pid_cpu "$SERVER_PID")" p1="$(db_backends_cpu "$BENCH_DB")"
		if [[ "$(calc '%d' "($s1 - $s0 + $p1 - $p0) / 2 < 0.1")" == 1 ]] || ((SECONDS - start >= SETTLE_MAX)); then
			break
		fi
	done
	SETTLED=$((SECONDS - start))
}

# pg_sampler_start DB FILE appends db_backends_pid_cpu to FILE every half
# second until pg_sampler_stop; pg_cpu_since START FILE then prints the CPU
# seconds the backends used since the snapshot START, each backend counted
# up to its last sample. Backends that exit during the run (a connection
# dropped when wrk closes its own at the end and requests are cancelled)
# keep what they used instead of vanishing from a before/after sum.
PG_SAMPLER=""
pg_sampler_start() {
	(
		while :; do
			db_backends_pid_cpu "$1" >>"$2"
			sleep 0.5
		done
	) &
	PG_SAMPLER=$!
}
pg_sampler_stop() {
	if [[ -n "${PG_SAMPLER:-}" ]]; then
		kill "$PG_SAMPLER" 2>/dev/null || true
		wait "$PG_SAMPLER" 2>/dev/null || true
	fi
	PG_SAMPLER=""
}
pg_cpu_since() {
	awk 'FNR == NR { s[$1] = $2; next } { if (!($1 in m) || $2 > m[$1]) m[$1] = $2 }
		END { for (p in m) t += m[p] - ((p in s) ? s[p] : 0); printf "%.2f\n", t }' "$1" "$2"
}
# children_cpu FILE writes the CPU seconds of this shell's waited-for
# children (wrk, via timeout) to FILE. It must not run in a subshell: the
# caller reads FILE afterwards.
children_cpu() {
	times >"$1.times"
	tail -n1 "$1.times" | awk '{ s = 0; for (i = 1; i <= NF; i++) { split($i, a, "m"); sub(/s$/, "", a[2]); s += a[1] * 60 + a[2] } printf "%.2f\n", s }' >"$1"
}

json_string() { # JSON-encodes $1 (quotes, backslashes, control whitespace)
	local s="$1"
	s="${s//\\/\\\\}"
	s="${s//\"/\\\"}"
	s="${s//$'\n'/\\n}"
	s="${s//$'\t'/\\t}"
	s="${s//$'\r'/\\r}"
	printf '"%s"' "$s"
}

# The wrk script. Mode "rotate" (viewer, memberhome): every request is the
# scenario's one body with the next token of the thread's rotation (requests
# are built once per token). Mode "ingest": every request is a new order
# (unique externalId: run, phase, thread and counter; a random member of a
# file of member numbers; a random store of a file of codes; 1-3 items;
# CASH), sent with the API client secret of the token file. Every response
# body is checked for "errors" and for the scenario's expected marker (bodies
# with errors whose code is OUT_OF_STOCK are counted apart too: the sold-out
# phase of claims), and done() prints one machine-readable line.
#
# Arguments: TOKENS BODY EXPECT NONCE [rotate | ingest MEMBERS STORES PAID_AT]
cat >"$WORK/bench.lua" <<'LUA'
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

local reqs = {}
local idx = 0
local mode, nonce, prefix, headers, members, stores, paid_at
local seq = 0

local function lines(path)
  local t = {}
  for line in io.lines(path) do
    if #line > 0 then t[#t + 1] = line end
  end
  assert(#t > 0, "no lines in " .. path)
  return t
end

function init(args)
  local tokens = lines(args[1])
  local f = assert(io.open(args[2], "rb"))
  local body = f:read("*a")
  f:close()
  expect = args[3] or ""
  nonce = args[4] or ""
  mode = args[5] or "rotate"
  if mode == "ingest" then
    members, stores, paid_at = lines(args[6]), lines(args[7]), args[8]
    headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. tokens[1] }
    -- BODY is {"query":"..."}: the variables go before its closing brace.
    prefix = (body:gsub("}%s*$", "")) .. ',"variables":{"input":'
    math.randomseed(os.time() + id * 7919)
  else
    for _, t in ipairs(tokens) do
      reqs[#reqs + 1] = wrk.format("POST", wrk.path, {
        ["Content-Type"] = "application/json",
        ["Authorization"] = "Bearer " .. t,
      }, body)
    end
    -- Threads start at different points of the rotation.
    idx = ((id - 1) * 7919) % #reqs
  end
  gql_errors, unexpected, checked, out_of_stock = 0, 0, 0, 0
end

local function order()
  seq = seq + 1
  local n, total, items = math.random(1, 3), 0, {}
  for i = 1, n do
    local q, u = math.random(1, 3), math.random(100, 5000)
    total = total + q * u
    items[i] = string.format(
      '{"sku":"SKU-%d","name":"bench item %d","category":"bench","quantity":%d,"unitPrice":%d,"amount":%d}',
      math.random(1, 5000), i, q, u, q * u)
  end
  local input = string.format(
    '{"externalId":"%s-%d-%d","channel":"POS","storeCode":"%s","member":{"memberNo":"%s"},' ..
    '"paidAt":"%s","amount":%d,"items":[%s],"payments":[{"method":"CASH","amount":%d}]}',
    nonce, id, seq, stores[math.random(#stores)], members[math.random(#members)],
    paid_at, total, table.concat(items, ","), total)
  return wrk.format("POST", wrk.path, headers, prefix .. input .. "}}")
end

function request()
  if mode == "ingest" then
    return order()
  end
  idx = idx % #reqs + 1
  return reqs[idx]
end

function response(status, headers, body)
  checked = checked + 1
  if body:find('"errors"', 1, true) then
    gql_errors = gql_errors + 1
    if body:find('"OUT_OF_STOCK"', 1, true) then out_of_stock = out_of_stock + 1 end
  elseif expect ~= "" and not body:find(expect, 1, true) then
    unexpected = unexpected + 1
  end
end

function done(summary, latency, requests)
  local e, u, c, o = 0, 0, 0, 0
  for _, t in ipairs(threads) do
    e = e + t:get("gql_errors")
    u = u + t:get("unexpected")
    c = c + t:get("checked")
    o = o + t:get("out_of_stock")
  end
  local s = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "non2xx=%d connect=%d read=%d write=%d timeout=%d gql_errors=%d unexpected=%d checked=%d out_of_stock=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, s.status, s.connect, s.read, s.write, s.timeout, e, u, c, o))
end
LUA
# RUN_ID makes the ingest scenario's externalIds unique across runs on a
# reused database (BENCH_FRESH_DB=0).
RUN_ID="$(date -u +%s)-$$"

# wrk_run SECONDS TOKENS BODY EXPECT OUT [MODE ARGS...]: one wrk run, raw
# output in OUT, with WRK_CONNS connections (default BENCH_CONNECTIONS;
# run_http_scenario sets it for its scenario).
wrk_run() {
	local nonce
	nonce="b$RUN_ID-$(basename "$5" | tr -c 'a-z0-9\n' '-')"
	timeout --kill-after=10 $(($1 + 60)) \
		wrk --latency --timeout 5s -t "$THREADS" -c "${WRK_CONNS:-$CONNS}" -d "${1}s" \
		-s "$WORK/bench.lua" "$BASE/query" -- "$2" "$3" "$4" "$nonce" "${@:6}" >"$5" 2>&1 ||
		{
			cat "$5" >&2
			die "wrk failed"
		}
}

ROWS=()    # Markdown table rows
DETAILS=() # one line per scenario, below the table
RAW=()     # files with raw tool output for the report

# run_http_scenario NAME QUERY TOKEN_FILE EXPECT [MODE ARGS...]: warm-up,
# then a measured wrk run; SQL statements and request counts come from
# /metrics deltas, CPU from /proc (server, the benchmark database's backends,
# wrk, the machine). MODE and its ARGS go to the wrk script (default rotate).
# The table row compares with the pgbench reference SCENARIO_REF[NAME]
# (default: select, pgbench -S). SCENARIO_VARS[NAME] is the JSON object of
# the request's variables (default none), SCENARIO_CONNS[NAME] the
# connections (default BENCH_CONNECTIONS).
run_http_scenario() {
	local name="$1" query="$2" tokens="$3" expect="$4"
	local wrk_args=("${@:5}")
	local ref="${SCENARIO_REF[$name]:-select}"
	local WRK_CONNS="${SCENARIO_CONNS[$name]:-$CONNS}"
	local body="$WORK/$name.json" out="$WORK/$name.wrk"
	printf '{"query":%s%s}' "$(json_string "$query")" "${SCENARIO_VARS[$name]:+,\"variables\":${SCENARIO_VARS[$name]}}" >"$body"
	settle
	log "$name: settled after ${SETTLED}s"
	local settled="$SETTLED"
	if ((WARMUP > 0)); then
		log "$name: warm-up ${WARMUP}s"
		wrk_run "$WARMUP" "$tokens" "$body" "$expect" "$WORK/$name.warmup" "${wrk_args[@]}"
	fi
	if declare -F "before_$name" >/dev/null; then "before_$name"; fi
	checkpoint_before_run
	local log0 ckpt0
	ckpt0="$(checkpoints)"
	log0="$(wc -l <"$WORK/server.log")"
	local sql0 req0 err0 srv0 pg0 wrk0 busy0 all0
	sql0="$(metric onemember_sql_statements_total)"
	req0="$(metric onemember_graphql_requests_total)"
	err0="$(metric_series onemember_graphql_requests_total 'outcome="error"')"
	srv0="$(pid_cpu "$SERVER_PID")"
	db_backends_pid_cpu "$BENCH_DB" >"$WORK/$name.pg0"
	: >"$WORK/$name.pgcpu"
	pg_sampler_start "$BENCH_DB" "$WORK/$name.pgcpu"
	children_cpu "$WORK/children0"
	wrk0="$(cat "$WORK/children0")"
	read -r busy0 all0 < <(machine_cpu)
	log "$name: ${WRK_CONNS} connections, ${THREADS} threads, ${DURATION}s"
	local profiler=""
	if [[ "${BENCH_PROFILE:-0}" == 1 ]]; then
		curl -fsS --max-time "$((DURATION + 10))" -o "$WORK/$name.pprof" \
			"$BASE/debug/pprof/profile?seconds=$((DURATION > 2 ? DURATION - 1 : 1))" &
		profiler=$!
	fi
	wrk_run "$DURATION" "$tokens" "$body" "$expect" "$out" "${wrk_args[@]}"
	if [[ -n "$profiler" ]]; then
		wait "$profiler" && mkdir -p "$RESULTS_DIR" && cp "$WORK/$name.pprof" "$RESULTS_DIR/profile-$name-$(date -u +%Y%m%dT%H%M%SZ).pprof" ||
			log "$name: no CPU profile"
	fi
	local sql1 req1 err1 srv1 pg1 wrk1 busy1 all1
	read -r busy1 all1 < <(machine_cpu)
	children_cpu "$WORK/children1"
	wrk1="$(cat "$WORK/children1")"
	srv1="$(pid_cpu "$SERVER_PID")"
	db_backends_pid_cpu "$BENCH_DB" >>"$WORK/$name.pgcpu"
	pg_sampler_stop
	pg0=0
	pg1="$(pg_cpu_since "$WORK/$name.pg0" "$WORK/$name.pgcpu")"
	sql1="$(metric onemember_sql_statements_total)"
	local ckpts=$(($(checkpoints) - ckpt0))
	req1="$(metric onemember_graphql_requests_total)"
	err1="$(metric_series onemember_graphql_requests_total 'outcome="error"')"
	if declare -F "after_$name" >/dev/null; then "after_$name"; fi
	# What the server logged about its errors (internal errors only; domain
	# errors are not logged), most frequent first.
	local logged
	logged="$(tail -n +"$((log0 + 1))" "$WORK/server.log" | grep -o 'err="[^"]*"' | sort | uniq -c | sort -rn | head -n 3 |
		awk '{ c = $1; $1 = ""; printf "%s%s× %s", (NR > 1 ? "; " : ""), c, substr($0, 2) }')" || true
	cat "$out" >&2
	RAW+=("$out")

	local line
	line="$(grep '^BENCH ' "$out")" || die "$name: no result line from wrk"
	local requests duration_us p50_us p90_us p99_us max_us non2xx connect read write timeout gql_errors unexpected
	eval "$(printf '%s\n' "${line#BENCH }" | tr ' ' '\n' | grep -E '^[a-z0-9_]+=[0-9]+$' | sed 's/^/local /')"
	local rps sql_per_req srv_req srv_err secs n
	secs="$(calc '%.3f' "$duration_us / 1000000")"
	n="$((requests > 0 ? requests : 1))"
	rps="$(calc '%.0f' "$requests / $secs")"
	srv_req="$(calc '%.0f' "$req1 - $req0")"
	srv_err="$(calc '%.0f' "$err1 - $err0")"
	sql_per_req="$(calc '%.2f' "($srv_req > 0) ? ($sql1 - $sql0) / $srv_req : 0")"
	# CPU: µs per request of each party, cores each used, and what the rest
	# of the machine (other users, kernel threads) took meanwhile.
	local us_srv us_pg us_wrk us_all ceiling cores_srv cores_pg cores_wrk cores_busy cores_other wall
	us_srv="$(calc '%.0f' "($srv1 - $srv0) * 1000000 / $n")"
	us_pg="$(calc '%.0f' "($pg1 - $pg0) * 1000000 / $n")"
	us_wrk="$(calc '%.0f' "($wrk1 - $wrk0) * 1000000 / $n")"
	us_all="$(calc '%.0f' "$us_srv + $us_pg + $us_wrk")"
	ceiling="$(calc '%.0f' "($us_all > 0) ? $(nproc) * 1000000 / $us_all : 0")"
	wall="$(calc '%.3f' "($all1 - $all0) / $(nproc)")"
	cores_srv="$(calc '%.2f' "($srv1 - $srv0) / $wall")"
	cores_pg="$(calc '%.2f' "($pg1 - $pg0) / $wall")"
	cores_wrk="$(calc '%.2f' "($wrk1 - $wrk0) / $wall")"
	cores_busy="$(calc '%.2f' "($busy1 - $busy0) / $wall")"
	cores_other="$(calc '%.2f' "$cores_busy - $cores_srv - $cores_pg - $cores_wrk")"
	local p50 p99
	p50="$(calc '%.2f ms' "$p50_us / 1000")"
	p99="$(calc '%.2f ms' "$p99_us / 1000")"
	ROWS+=("| $name | $WRK_CONNS | ${DURATION}s | $rps | $p50 | $p99 | $sql_per_req | @REF:$ref@ | @RATIO:$ref:$rps@ | $non2xx | $gql_errors |")
	DETAILS+=("- \`$name\`: $requests requests in ${DURATION}s (server counted $srv_req, $srv_err with GraphQL errors); p90 $(calc '%.2f ms' "$p90_us / 1000"), max $(calc '%.2f ms' "$max_us / 1000"); socket errors connect/read/write/timeout $connect/$read/$write/$timeout; $unexpected responses without \`$expect\`; CPU per request: server ${us_srv} µs + PostgreSQL ${us_pg} µs + wrk ${us_wrk} µs = ${us_all} µs, i.e. at most ~${ceiling} req/s on $(nproc) cores if nothing else ran; ${REF_NAME[$ref]} spends @REFUS:$ref@ µs per transaction, so the CPU ratio is @CPURATIO:$ref:$us_all@; cores used: server $cores_srv, PostgreSQL $cores_pg, wrk $cores_wrk, other processes $cores_other (machine busy $cores_busy of $(nproc)); checkpoints begun during the run: $ckpts; before its warm-up the server and its database went idle after ${settled} s.")
	if [[ -n "$logged" ]]; then
		DETAILS+=("  - the server logged: $logged")
	fi
	if [[ "$(calc '%d' "$cores_other > 0.25")" == 1 ]]; then
		DETAILS+=("  - warning: other processes used $cores_other cores during \`$name\`: its req/s and latencies are disturbed; the CPU per request is the steadier figure.")
	fi
	if ((non2xx + gql_errors + unexpected + connect + read + write + timeout > 0)); then
		FAILED+=("$name: non-2xx=$non2xx errors=$gql_errors unexpected=$unexpected socket=$connect/$read/$write/$timeout")
	fi
	if declare -F "check_$name" >/dev/null; then "check_$name"; fi
}
FAILED=()
declare -A SCENARIO_REF=() SCENARIO_VARS=() SCENARIO_CONNS=()

# ---------------------------------------------------------------------------
# Scenarios. Each takes the token file; add new ones here.
# ---------------------------------------------------------------------------

# viewer: the cheapest authenticated operation, the floor of every app
# screen: HTTP, JWT verification, the member lookup of authentication,
# gqlgen parsing (cached), execution and JSON encoding.
scenario_viewer() {
	run_http_scenario viewer \
		'query WhoAmI { viewer { __typename ... on Member { id memberNo } } }' \
		"$1" '"memberNo":"'
}

# operation FILE NAME prints operation NAME of the client document FILE as
# the client sends it: from "query NAME" (or mutation, subscription) to the
# closing brace at the start of a line.
operation() {
	local text
	text="$(awk -v n="$2" '$0 ~ ("^(query|mutation|subscription) " n "[ ({]") { on = 1 } on { print } on && /^}/ { exit }' "$1")"
	[[ -n "$text" ]] || die "operation $2 not found in $1"
	printf '%s\n' "$text"
}

# meets VALUE OP LIMIT prints "met" or "missed".
meets() { if [[ "$(calc '%d' "$1 $2 $3")" == 1 ]]; then echo met; else echo missed; fi; }

# memberhome: the mini-program's home page, MemberHome of
# shared/clients/miniprogram/home.graphql (read at run time), for
# BENCH_MEMBERHOME_TOKENS random seeded members whose tokens
# "server mint-tokens --with-history" issued after seeding their two years
# of orders, top-ups and paid cards as "server seed" does for every member
# without --no-history, so that their cards hold what seeded members' do
# (tiers, points lots, growth, stored value, paid cards). HOME_CARDS says
# what they hold.
SCENARIO_CONNS[memberhome]="$HOME_CONNS"
scenario_memberhome() {
	run_http_scenario memberhome "$(operation "$CLIENTS_DIR/miniprogram/home.graphql" MemberHome)" \
		"$HOME_TOKENS_FILE" '"memberNo":"'
}
check_memberhome() {
	local accts ordered orders points stored cards tiered
	read -r accts ordered orders points stored cards tiered <<<"$HOME_CARDS"
	DETAILS+=("  - cards: with the $HOME_TOKENS members' history seeded, the database holds $accts accounts: $ordered with orders ($orders orders), $points with points, $stored with stored value; $cards paid cards; $tiered members above the lowest tier.")
	DETAILS+=("  - target ≥ 3,000 req/s at p99 ≤ 20 ms, ≤ 4 SQL statements per request: $rps req/s $(meets "$rps" '>=' 3000), p99 $p99 $(meets "$p99_us" '<=' 20000), SQL/req $sql_per_req $(meets "$sql_per_req" '<=' 4).")
}

# ingest: the till's ingestOrder (IngestOrder of
# shared/clients/pos/checkout.graphql), each request a new order of a random
# seeded member, as an API client with ORDERS_WRITE. Its reference is
# pgbench running the same SQL statements (scripts/bench/ingest_order.sql).
SCENARIO_REF[ingest]=ingest
scenario_ingest() {
	run_http_scenario ingest "$(operation "$CLIENTS_DIR/pos/checkout.graphql" IngestOrder)" \
		"$WORK/api-secret.txt" '"duplicate":false' \
		ingest "$WORK/member-numbers.txt" "$WORK/stores.txt" "$PAID_AT"
}
# A member's first order creates the account: 2 more statements. Counting
# the accounts created says how many statements the script predicts.
before_ingest() { ACCOUNTS0="$(bench_psql -tAc 'SELECT count(*) FROM accounts')"; }
after_ingest() { ACCOUNTS1="$(bench_psql -tAc 'SELECT count(*) FROM accounts')"; }
# Requests that ended in an error (those cancelled when wrk closes its
# connections at the end) sent only part of their statements: the check
# allows for that, and 0.1 statement per request besides.
check_ingest() {
	local created=$((ACCOUNTS1 - ACCOUNTS0)) expected low
	expected="$(calc '%.2f' "($srv_req > 0) ? ($INGEST_BASE * $srv_req + $INGEST_EXTRA * $created) / $srv_req : 0")"
	low="$(calc '%.2f' "($srv_req > 0) ? $expected - $INGEST_BASE * $srv_err / $srv_req - 0.1 : 0")"
	DETAILS+=("  - SQL check: $created of the $srv_req orders were the member's first, so \`scripts/bench/ingest_order.sql\` ($INGEST_BASE statements, $((INGEST_BASE + INGEST_EXTRA)) on a first order) predicts $expected statements per request ($low with the $srv_err failed requests sending none); the server sent $sql_per_req.")
	DETAILS+=("  - target: req/s ≥ 0.70 × the pgbench TPS of that script: ratio @RATIO:ingest:$rps@.")
	if [[ "$(calc '%d' "$sql_per_req > $expected + 0.1 || $sql_per_req < $low")" == 1 ]]; then
		FAILED+=("ingest: the server sent $sql_per_req SQL statements per ingestOrder where scripts/bench/ingest_order.sql predicts $low to $expected: its queries changed, derive the script again (see its header)")
	fi
}

# claims: members claiming coupons of one hot template (ClaimCoupon of
# shared/clients/miniprogram/marketing.graphql, read at run time) on
# BENCH_CLAIMS_CONNECTIONS connections, each request a claim by the next of
# BENCH_CLAIMS_TOKENS seeded members (tokens from "server mint-tokens",
# distinct members). The template is created through the API as the seeded
# administrator (CreateCouponTemplate of shared/clients/admin/marketing.graphql)
# with more stock than a run can claim and a per-member limit of 1,000,000,
# so that every claim succeeds. Every claim takes the stock with one
# conditional UPDATE of the template's row (internal/coupon, takeStock),
# whose lock it holds until COMMIT: claims serialise on that row. The
# reference is pgbench running only such an UPDATE on a one-row table
# (scripts/bench/hot_row.sql) with the same clients. After the measured run
# the stock must be exact (issued_count = coupons = claims the server
# answered without errors), and a sold-out phase with a second template of
# BENCH_CLAIMS_SOLDOUT_STOCK under the same load must issue exactly that
# many coupons and answer every other claim OUT_OF_STOCK.
SCENARIO_REF[claims]=hotrow
SCENARIO_CONNS[claims]="$CLAIMS_CONNS"
CLAIMS_PER_MEMBER=1000000
CLAIMS_EXPECT='"coupon":{"id":"'
scenario_claims() {
	local doc t gid
	doc="$(operation "$CLIENTS_DIR/miniprogram/marketing.graphql" ClaimCoupon)"
	t="$(claims_template "bench claims $RUN_ID" "$CLAIMS_STOCK")"
	read -r gid CLAIMS_TEMPLATE_ID <<<"$t"
	SCENARIO_VARS[claims]="{\"templateId\":$(json_string "$gid")}"
	server_quiet
	CLAIMS_OK0="$(claim_metric ok)"
	run_http_scenario claims "$doc" "$CLAIMS_TOKENS_FILE" "$CLAIMS_EXPECT"
	claims_soldout "$doc"
}
# Around the measured run of claims: how many of the server's database
# connections wait for a lock (the template's row) and how long requests
# wait for a connection of the server's pool. A psql session samples
# pg_stat_activity every half second; the pool's waits come from /metrics.
CLAIMS_WAITS_PID=""
before_claims() {
	timeout $((DURATION + 120)) "$PSQL" -X -q -w -tA -F ' ' -d "$BENCH_URL" >"$WORK/claims.waits" 2>/dev/null <<-'SQL' &
		SELECT count(*) FILTER (WHERE wait_event_type = 'Lock'), count(*) FILTER (WHERE state <> 'idle') FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend' \watch 0.5
	SQL
	CLAIMS_WAITS_PID=$!
	POOL_WAITS0="$(metric go_sql_wait_count_total)"
	POOL_WAIT_S0="$(metric go_sql_wait_duration_seconds_total)"
}
after_claims() {
	POOL_WAITS1="$(metric go_sql_wait_count_total)"
	POOL_WAIT_S1="$(metric go_sql_wait_duration_seconds_total)"
	POOL_MAX="$(metric go_sql_max_open_connections)"
	if [[ -n "$CLAIMS_WAITS_PID" ]]; then
		kill "$CLAIMS_WAITS_PID" 2>/dev/null || true
		wait "$CLAIMS_WAITS_PID" 2>/dev/null || true
	fi
	CLAIMS_WAITS_PID=""
}
# claim_metric OUTCOME: ClaimCoupon operations the server finished with
# OUTCOME (ok: without errors; error).
claim_metric() { metric_series onemember_graphql_requests_total "operation=\"ClaimCoupon\",outcome=\"$1\""; }
# check_claims, once the measured run's row is computed (it reads that
# run's figures): stock exactness of the template, and the target.
check_claims() {
	server_quiet
	local ok issued total coupons members
	ok="$(calc '%.0f' "$(claim_metric ok) - $CLAIMS_OK0")"
	IFS='|' read -r issued total coupons members < <(bench_psql -tAc "SELECT t.issued_count, t.total_stock,
		(SELECT count(*) FROM coupons c WHERE c.template_id = t.id),
		(SELECT count(DISTINCT c.member_id) FROM coupons c WHERE c.template_id = t.id)
		FROM coupon_templates t WHERE t.id = $CLAIMS_TEMPLATE_ID")
	local verdict=exact
	if ! ((issued == coupons && coupons == ok)); then
		verdict="NOT exact"
		FAILED+=("claims: stock not exact: issued_count $issued, $coupons coupons, $ok claims answered without errors")
	fi
	if ((issued >= total)); then
		FAILED+=("claims: the template's stock of $total ran out during the run: raise BENCH_CLAIMS_STOCK")
	fi
	DETAILS+=("  - stock $verdict: the template's issued_count $issued = $coupons coupons of it = $ok ClaimCoupon operations the server finished without errors (warm-up and measured run; wrk saw $((requests - gql_errors - unexpected)) succeed in the measured run), claimed by $members distinct members; stock $total, per-member limit $CLAIMS_PER_MEMBER.")
	local samples lockwait busy
	read -r samples lockwait busy < <(awk 'NF == 2 { n++; l += $1; b += $2 } END { printf "%d %.1f %.1f\n", n, (n ? l / n : 0), (n ? b / n : 0) }' "$WORK/claims.waits")
	DETAILS+=("  - waits: of the server's $(calc '%.0f' "$POOL_MAX") database connections, $busy were busy and $lockwait waited for a lock on average ($samples samples of pg_stat_activity); requests waited $(calc '%.2f' "($POOL_WAITS1 - $POOL_WAITS0) / ($srv_req > 0 ? $srv_req : 1)") times per claim for a pool connection, $(calc '%.1f' "($POOL_WAIT_S1 - $POOL_WAIT_S0) * 1000 / ($srv_req > 0 ? $srv_req : 1)") ms per claim in all.")
	DETAILS+=("  - serialised on the template's row: 1 ÷ claims/s = $(calc '%.0f' "1000000 / ($rps > 0 ? $rps : 1)") µs per claim, against 1 ÷ TPS = @PERTX:hotrow@ µs per update of pgbench hot_row.sql.")
	DETAILS+=("  - target: claims/s ≥ 0.60 × the TPS of pgbench hot_row.sql with $WRK_CONNS clients: ratio @RATIO:hotrow:$rps@, @MEETS:hotrow:$rps:0.60@.")
}

# claims_soldout DOC: the sold-out phase. A template with
# BENCH_CLAIMS_SOLDOUT_STOCK coupons, claimed under the load of claims for
# BENCH_CLAIMS_SOLDOUT_DURATION seconds without warm-up: exactly its stock
# is issued, wrk and the server see exactly that many successful claims,
# and every other response is an OUT_OF_STOCK error.
claims_soldout() {
	local doc="$1" t gid id body="$WORK/claims-soldout.json" out="$WORK/claims-soldout.wrk"
	local WRK_CONNS="$CLAIMS_CONNS"
	t="$(claims_template "bench claims sold out $RUN_ID" "$SOLDOUT_STOCK")"
	read -r gid id <<<"$t"
	printf '{"query":%s,"variables":{"templateId":%s}}' "$(json_string "$doc")" "$(json_string "$gid")" >"$body"
	server_quiet
	local ok0 err0 oos0
	ok0="$(claim_metric ok)"
	err0="$(claim_metric error)"
	oos0="$(metric_series onemember_graphql_errors_total 'code="OUT_OF_STOCK"')"
	log "claims: sold-out phase, stock $SOLDOUT_STOCK, $WRK_CONNS connections, ${SOLDOUT_DURATION}s"
	wrk_run "$SOLDOUT_DURATION" "$CLAIMS_TOKENS_FILE" "$body" "$CLAIMS_EXPECT" "$out"
	server_quiet
	cat "$out" >&2
	RAW+=("$out")
	local line
	line="$(grep '^BENCH ' "$out")" || die "claims sold out: no result line from wrk"
	local requests duration_us p50_us p90_us p99_us max_us non2xx connect read write timeout gql_errors unexpected out_of_stock
	eval "$(printf '%s\n' "${line#BENCH }" | tr ' ' '\n' | grep -E '^[a-z0-9_]+=[0-9]+$' | sed 's/^/local /')"
	local ok err oos issued coupons good=$((requests - gql_errors - unexpected))
	ok="$(calc '%.0f' "$(claim_metric ok) - $ok0")"
	err="$(calc '%.0f' "$(claim_metric error) - $err0")"
	oos="$(calc '%.0f' "$(metric_series onemember_graphql_errors_total 'code="OUT_OF_STOCK"') - $oos0")"
	IFS='|' read -r issued coupons < <(bench_psql -tAc "SELECT t.issued_count,
		(SELECT count(*) FROM coupons c WHERE c.template_id = t.id) FROM coupon_templates t WHERE t.id = $id")
	local problems=()
	((requests > SOLDOUT_STOCK)) || problems+=("demand ($requests claims) did not exceed the stock: raise BENCH_CLAIMS_SOLDOUT_DURATION")
	((issued == SOLDOUT_STOCK && coupons == SOLDOUT_STOCK)) || problems+=("issued_count $issued and $coupons coupons for a stock of $SOLDOUT_STOCK")
	((good == SOLDOUT_STOCK && ok == SOLDOUT_STOCK)) || problems+=("$good successful claims seen by wrk, $ok by the server, for a stock of $SOLDOUT_STOCK")
	((out_of_stock == gql_errors && unexpected == 0)) || problems+=("$gql_errors responses with errors of which $out_of_stock OUT_OF_STOCK, $unexpected without either")
	((non2xx + connect + read + write + timeout == 0)) || problems+=("non-2xx $non2xx, socket errors $connect/$read/$write/$timeout")
	local verdict="no oversold stock"
	if ((${#problems[@]} > 0)); then
		verdict="FAILED: $(printf '%s; ' "${problems[@]}")"
		verdict="${verdict%; }"
		FAILED+=("claims sold out: ${verdict#FAILED: }")
	fi
	DETAILS+=("- \`claims\` sold out: a template of $SOLDOUT_STOCK coupons under the same load, ${SOLDOUT_DURATION}s, no warm-up: $requests claims ($(calc '%.0f' "$requests * 1000000 / ($duration_us > 0 ? $duration_us : 1)")/s, p50 $(calc '%.2f ms' "$p50_us / 1000"), p99 $(calc '%.2f ms' "$p99_us / 1000")); $good succeeded and $out_of_stock were answered OUT_OF_STOCK (wrk); the server counted $ok without errors and $err with errors, $oos of them OUT_OF_STOCK; issued_count $issued, $coupons coupons: $verdict.")
}

# claims_prepare, before the server starts and before any sign-up: the
# claims scenario's tokens, for BENCH_CLAIMS_TOKENS random seeded members.
claims_prepare() {
	[[ -f "$HOTROW_SQL" ]] || die "$HOTROW_SQL not found"
	local f
	for f in miniprogram/marketing.graphql admin/marketing.graphql admin/auth.graphql; do
		[[ -f "$CLIENTS_DIR/$f" ]] || die "$CLIENTS_DIR/$f not found (set ONEMEMBER_CLIENTS_DIR)"
	done
	CLAIMS_TOKENS_FILE="$WORK/claims-tokens.txt"
	log "claims: minting tokens for $CLAIMS_TOKENS random seeded members"
	mint --count "$CLAIMS_TOKENS" --seed "$MINT_SEED" >"$CLAIMS_TOKENS_FILE" || die "mint-tokens failed"
	(($(wc -l <"$CLAIMS_TOKENS_FILE") == CLAIMS_TOKENS)) || die "mint-tokens printed $(wc -l <"$CLAIMS_TOKENS_FILE") tokens, not $CLAIMS_TOKENS"
}

# gql_post BODY [TOKEN]: POSTs a GraphQL request body to the server and
# prints the response.
gql_post() {
	local auth=()
	if [[ -n "${2:-}" ]]; then auth=(-H "Authorization: Bearer $2"); fi
	curl -fsS --max-time 30 -H 'Content-Type: application/json' "${auth[@]}" "$BASE/query" --data-binary "$1"
}

# claims_admin_login signs in as the seeded administrator (AdminLogin of
# shared/clients/admin/auth.graphql) and keeps the access token in ADMIN_TOKEN.
claims_admin_login() {
	local q resp
	q="$(operation "$CLIENTS_DIR/admin/auth.graphql" AdminLogin)"
	resp="$(gql_post "{\"query\":$(json_string "$q"),\"variables\":{\"email\":$(json_string "$ADMIN_EMAIL"),\"password\":$(json_string "$ADMIN_PASSWORD")}}")" ||
		die "adminLogin request failed"
	ADMIN_TOKEN="$(printf '%s' "$resp" | sed -n 's/.*"accessToken":"\([^"]*\)".*/\1/p')"
	[[ -n "$ADMIN_TOKEN" ]] || die "adminLogin as $ADMIN_EMAIL failed: $resp"
}

# claims_template TITLE STOCK creates a claimable FIXED_AMOUNT template of
# STOCK coupons (¥5, valid 30 days after issue, per-member limit
# CLAIMS_PER_MEMBER) through the API as the administrator and prints its
# global id and its database id. TITLE must be unique and plain (it finds
# the row).
claims_template() {
	local title="$1" stock="$2" q vars resp gid id
	q="$(operation "$CLIENTS_DIR/admin/marketing.graphql" CreateCouponTemplate)"
	vars="{\"input\":{\"title\":$(json_string "$title"),\"kind\":\"FIXED_AMOUNT\",\"faceValue\":500,\"validity\":{\"daysAfterIssue\":30},\"totalStock\":$stock,\"perMemberLimit\":$CLAIMS_PER_MEMBER,\"claimable\":true}}"
	resp="$(gql_post "{\"query\":$(json_string "$q"),\"variables\":$vars}" "$ADMIN_TOKEN")" ||
		die "createCouponTemplate request failed"
	[[ "$resp" != *'"errors"'* ]] || die "createCouponTemplate failed: $resp"
	gid="$(printf '%s' "$resp" | sed -n 's/.*"template":{"id":"\([^"]*\)".*/\1/p')"
	[[ -n "$gid" ]] || die "no template id in $resp"
	id="$(bench_psql -tAc "SELECT id FROM coupon_templates WHERE title = '$title' AND total_stock = $stock")"
	[[ "$id" =~ ^[0-9]+$ ]] || die "template '$title' not found in $BENCH_DB (got '$id')"
	printf '%s %s\n' "$gid" "$id"
}

# server_quiet waits (at most 30 s) until the server has finished what wrk
# left in flight: its count of GraphQL operations stays put for half a
# second and no backend of the benchmark database is inside a statement or
# a transaction.
server_quiet() {
	local a b busy
	for _ in $(seq 1 60); do
		a="$(metric onemember_graphql_requests_total)"
		sleep 0.5
		b="$(metric onemember_graphql_requests_total)"
		busy="$(bench_psql -tAc "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
			AND pid <> pg_backend_pid() AND state IS DISTINCT FROM 'idle'")"
		if [[ "$a" == "$b" && "$busy" == 0 ]]; then return 0; fi
	done
	log "warning: the server was still busy 30 s after wrk stopped"
}

# hotrow_reset (re)creates the one-row table of the claims reference
# (scripts/bench/hot_row.sql) in the pgbench database: a counter and its
# limit, like coupon_templates' issued_count and total_stock.
hotrow_reset() {
	"$PSQL" -X -q -w -v ON_ERROR_STOP=1 -d "$PGBENCH_URL" \
		-c 'DROP TABLE IF EXISTS hot' \
		-c 'CREATE TABLE hot (id int PRIMARY KEY, n bigint NOT NULL, total bigint NOT NULL)' \
		-c 'INSERT INTO hot VALUES (1, 0, 9000000000000000000)' \
		-c 'VACUUM ANALYZE hot' >&2
}

bench_psql() { "$PSQL" -X -q -w -v ON_ERROR_STOP=1 -d "$BENCH_URL" "$@"; }

# mint runs "server mint-tokens" on the benchmark database, with the
# server's keys and token lifetime. A BENCH_SERVER built before the command
# existed gets its credentials from bin/server (same development keys).
mint() {
	local bin="$SERVER"
	if ! DATABASE_URL="$BENCH_URL" "$bin" mint-tokens -h 2>&1 | grep -q -- '-api-client'; then
		bin="$ROOT/bin/server"
	fi
	DATABASE_URL="$BENCH_URL" LOG_LEVEL=warn ACCESS_TOKEN_TTL="${ACCESS_TOKEN_TTL:-2h}" \
		timeout 600 "$bin" mint-tokens "$@" 8>&-
}

# ingest_statements prints the SQL commands of the ingest script outside
# and inside its \if block (a command ends with ";" or \gset/\aset).
ingest_statements() {
	awk '/^\\if/ { inif = 1; next } /^\\endif/ { inif = 0; next } /^(--|\\)/ { next }
		/;[[:space:]]*$/ || /\\[ga]set( [a-z_]+)?[[:space:]]*$/ { if (inif) x++; else b++ }
		END { print b + 0, x + 0 }' "$INGEST_SQL"
}

# ingest_prepare, before the server starts: the member numbers, stores and
# API client of the ingest scenario, and two copies of the benchmark
# database for the reference runs before and after the scenarios (the same
# data for both).
ingest_prepare() {
	[[ -f "$INGEST_SQL" ]] || die "$INGEST_SQL not found"
	[[ -f "$CLIENTS_DIR/pos/checkout.graphql" ]] || die "$CLIENTS_DIR/pos/checkout.graphql not found (set ONEMEMBER_CLIENTS_DIR)"
	read -r INGEST_BASE INGEST_EXTRA < <(ingest_statements)
	local declared
	declared="$(sed -n 's/^-- STATEMENTS: \([0-9]*\) per transaction, \([0-9]*\) on a member.s first order.*/\1 \2/p' "$INGEST_SQL")"
	[[ "$declared" == "$INGEST_BASE $((INGEST_BASE + INGEST_EXTRA))" ]] ||
		die "$INGEST_SQL has $INGEST_BASE SQL commands (+$INGEST_EXTRA in its \\if block) but its header declares '${declared:-nothing}'"
	log "ingest: member numbers, stores and an API client from $BENCH_DB"
	mint --member-numbers --count 0 --seed "$MINT_SEED" >"$WORK/member-numbers.txt" || die "mint-tokens --member-numbers failed"
	mint --api-client >"$WORK/api-secret.txt" || die "mint-tokens --api-client failed"
	bench_psql -tAc 'SELECT code FROM stores ORDER BY code' >"$WORK/stores.txt"
	[[ -s "$WORK/stores.txt" ]] || die "no stores in $BENCH_DB"
	local first last n client hash
	IFS='|' read -r first last n < <(bench_psql -tAc "SELECT min(id) & 4294967295, max(id) & 4294967295, count(*) FROM members WHERE status = 'ACTIVE'")
	((n > 0 && n == last - first + 1)) ||
		die "the live members' ordinals $first..$last are not contiguous ($n members): the pgbench script draws them from that range"
	IFS='|' read -r client hash < <(bench_psql -tAc 'SELECT id, secret_hash FROM api_clients ORDER BY id DESC LIMIT 1')
	PAID_AT="$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)"
	INGEST_ARGS=(-M extended -f "$INGEST_SQL" -D "member_first=$first" -D "member_last=$last"
		-D "api_hash=$hash" -D "api_client_id=$client" -D "store_code=$(head -n1 "$WORK/stores.txt")"
		-D "paid_at=$PAID_AT" -D "now_ts=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
		-D "expires_at=$(date -u -d '+1 year' +%Y-%m-%dT00:00:00Z)" -D "year_ago=$(date -u -d '-1 year' +%Y-%m-%dT%H:%M:%SZ)")
	local copy
	for copy in before after; do
		log "ingest: copying $BENCH_DB to ${INGEST_DB}_$copy"
		psql_admin -c "DROP DATABASE IF EXISTS \"${INGEST_DB}_$copy\" WITH (FORCE)" \
			-c "CREATE DATABASE \"${INGEST_DB}_$copy\" TEMPLATE \"$BENCH_DB\"" >&2
	done
}

# ---------------------------------------------------------------------------
# pgbench references: "select" (pgbench -S on its own database, the
# reference of every scenario by default), "ingest" (ingest_order.sql on
# a copy of the benchmark database) and "hotrow" (hot_row.sql, a conditional
# single-row UPDATE, on a scratch table of the pgbench database, with the
# connections of claims).
# ---------------------------------------------------------------------------
declare -A REF_NAME=([select]="pgbench -S" [ingest]="pgbench ingest_order.sql" [hotrow]="pgbench hot_row.sql")
declare -A REF_CONNS=([hotrow]="$CLAIMS_CONNS")
declare -A REF_TPS_LIST=() REF_LAT_LIST=() REF_US_LIST=() REF_USTOT_LIST=() REF_OTHER_LIST=() REF_PCT_LIST=() REF_SQL_LIST=()
REFS=()
pgbench_init() {
	log "pgbench: initialising scale $PGBENCH_SCALE in $PGBENCH_DB"
	psql_admin -c "DROP DATABASE IF EXISTS \"$PGBENCH_DB\" WITH (FORCE)" -c "CREATE DATABASE \"$PGBENCH_DB\"" >&2
	timeout 900 "$PGBENCH" -i -q -s "$PGBENCH_SCALE" "$PGBENCH_URL" >"$WORK/pgbench-init.log" 2>&1 ||
		{
			cat "$WORK/pgbench-init.log" >&2
			die "pgbench -i failed"
		}
}
# pgbench_run REF LABEL DB ARGS...: a pgbench run with ARGS and the
# scenarios' connections (REF_CONNS[REF], default BENCH_CONNECTIONS) and
# duration (after its own warm-up) on database DB; appends its TPS, latency
# and CPU cost per transaction to REF's lists. The ingest and hotrow
# references also log every transaction for p50/p99; ingest counts the
# accounts it created (for its statements per transaction).
pgbench_run() {
	local ref="$1" label="$2" db="$3"
	shift 3
	local url out="$WORK/pgbench-$ref-$label.log" samples="$WORK/pgbench-$ref-$label.cpu" txlog=()
	local conns="${REF_CONNS[$ref]:-$CONNS}"
	url="$(db_url "$db")"
	[[ " ${REFS[*]} " == *" $ref "* ]] || REFS+=("$ref")
	if ((WARMUP > 0)); then
		timeout $((WARMUP + 60)) "$PGBENCH" -n "$@" -c "$conns" -j "$PGJOBS" -T "$WARMUP" "$url" >"$out.warmup" 2>&1 ||
			{
				cat "$out.warmup" >&2
				die "pgbench warm-up failed"
			}
	fi
	local acc0=0 acc1=0
	if [[ "$ref" == ingest || "$ref" == hotrow ]]; then
		txlog=(-l --log-prefix="$WORK/pgbench-$ref-$label.tx")
	fi
	if [[ "$ref" == ingest ]]; then
		acc0="$("$PSQL" -X -q -w -d "$url" -tAc 'SELECT count(*) FROM accounts')"
	fi
	checkpoint_before_run
	log "pgbench ($ref, $label): $* -c $conns -j $PGJOBS -T $DURATION on $db"
	# pgbench's backends live only as long as the run: a sampler reads their
	# CPU time during its last seconds and keeps the largest sum.
	: >"$samples"
	(
		sleep "$((DURATION > 1 ? DURATION - 1 : 0))"
		for _ in $(seq 1 150); do
			db_backends_cpu "$db" >>"$samples" || break
			sleep 0.2
		done
	) &
	local sampler=$! busy0 all0 busy1 all1
	children_cpu "$WORK/children0"
	read -r busy0 all0 < <(machine_cpu)
	timeout $((DURATION + 60)) "$PGBENCH" -n "$@" "${txlog[@]}" -c "$conns" -j "$PGJOBS" -T "$DURATION" "$url" >"$out" 2>&1 ||
		{
			kill "$sampler" 2>/dev/null || true
			cat "$out" >&2
			die "pgbench failed"
		}
	read -r busy1 all1 < <(machine_cpu)
	children_cpu "$WORK/children1"
	kill "$sampler" 2>/dev/null || true
	wait "$sampler" 2>/dev/null || true
	cat "$out" >&2
	RAW+=("$out")
	local tps tx client pg wall
	tps="$(awk '/^tps = / { printf "%.0f", $3 }' "$out")"
	tx="$(awk '/^number of transactions actually processed:/ { split($NF, a, "/"); print a[1] }' "$out")"
	[[ -n "$tps" && -n "$tx" && "$tx" -gt 0 ]] || die "no tps in pgbench output"
	client="$(calc '%.2f' "$(cat "$WORK/children1") - $(cat "$WORK/children0")")"
	pg="$(sort -g "$samples" | tail -n1)"
	wall="$(calc '%.3f' "($all1 - $all0) / $(nproc)")"
	REF_TPS_LIST[$ref]+=" $tps"
	REF_LAT_LIST[$ref]+="${REF_LAT_LIST[$ref]:+ / }$(awk '/^latency average/ { print $4 " " $5 }' "$out")"
	REF_US_LIST[$ref]+="${REF_US_LIST[$ref]:+ / }PostgreSQL $(calc '%.0f' "${pg:-0} * 1000000 / $tx") µs + pgbench $(calc '%.0f' "$client * 1000000 / $tx") µs"
	REF_USTOT_LIST[$ref]+=" $(calc '%.0f' "(${pg:-0} + $client) * 1000000 / $tx")"
	REF_OTHER_LIST[$ref]+="${REF_OTHER_LIST[$ref]:+ / }$(calc '%.2f' "($busy1 - $busy0 - ${pg:-0} - $client) / $wall")"
	if [[ "$ref" == ingest ]]; then
		acc1="$("$PSQL" -X -q -w -d "$url" -tAc 'SELECT count(*) FROM accounts')"
		REF_SQL_LIST[$ref]+=" $(calc '%.2f' "$INGEST_BASE + $INGEST_EXTRA * ($acc1 - $acc0) / $tx")"
	else
		REF_SQL_LIST[$ref]+=" 1"
	fi
	if ((${#txlog[@]} > 0)); then
		# Per-transaction log lines: client, transaction, latency in µs, ...
		REF_PCT_LIST[$ref]+=" $(cat "$WORK/pgbench-$ref-$label.tx".* | awk '{ print $3 }' | sort -n |
			awk '{ v[NR] = $1 } END { i50 = int(NR * 0.50); i99 = int(NR * 0.99); if (i50 < 1) i50 = 1; if (i99 < 1) i99 = 1; printf "%d:%d", v[i50], v[i99] }')"
		rm -f "$WORK/pgbench-$ref-$label.tx".*
	fi
}
# mean_of LIST prints the mean of space-separated numbers.
mean_of() { printf '%s\n' "$1" | awk '{ for (i = 1; i <= NF; i++) s += $i; printf "%.0f\n", (NF > 0) ? s / NF : 0 }'; }

# ---------------------------------------------------------------------------
# Main.
# ---------------------------------------------------------------------------
for s in $SCENARIOS; do
	declare -F "scenario_$s" >/dev/null || die "unknown scenario '$s' (have: $(declare -F | awk '/scenario_/ { sub("scenario_", "", $3); printf "%s ", $3 }'))"
done
ensure_wrk
command -v curl >/dev/null 2>&1 || die "curl not found"

take_bench_lock "$LOCK_WAIT"
STARTED=$SECONDS

if [[ "$FRESH_DB" == "1" ]]; then
	log "recreating database $BENCH_DB"
	psql_admin -c "DROP DATABASE IF EXISTS \"$BENCH_DB\" WITH (FORCE)" -c "CREATE DATABASE \"$BENCH_DB\"" >&2
else
	exists="$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$BENCH_DB'")"
	[[ "$exists" == "1" ]] || psql_admin -c "CREATE DATABASE \"$BENCH_DB\"" >&2
fi
if [[ -z "${BENCH_SEED_FLAGS+set}" ]]; then
	BENCH_SEED_FLAGS=""
	# "seed -h" prints the flags and exits non-zero without touching the database.
	seed_help="$(DATABASE_URL="$BENCH_URL" "$SERVER" seed -h 2>&1 || true)"
	if [[ "$seed_help" == *-no-history* ]]; then BENCH_SEED_FLAGS="--no-history"; fi
fi
read -r -a seed_flags <<<"$BENCH_SEED_FLAGS"
log "seeding $MEMBERS members into $BENCH_DB${BENCH_SEED_FLAGS:+ ($BENCH_SEED_FLAGS)}"
seed_started=$SECONDS
DATABASE_URL="$BENCH_URL" LOG_LEVEL=warn SEED_ADMIN_PASSWORD="$ADMIN_PASSWORD" \
	timeout "$SEED_TIMEOUT" "$SERVER" seed --members "$MEMBERS" "${seed_flags[@]}" >&2 ||
	die "seeding failed"
SEED_SECONDS=$((SECONDS - seed_started))
log "seeded in ${SEED_SECONDS}s; vacuum analyze"
"$PSQL" -X -q -w -d "$BENCH_URL" -c 'VACUUM ANALYZE' >&2

wants() { [[ " $SCENARIOS " == *" $1 "* ]]; }
if wants ingest; then ingest_prepare; fi
if wants memberhome; then
	[[ -f "$CLIENTS_DIR/miniprogram/home.graphql" ]] ||
		die "$CLIENTS_DIR/miniprogram/home.graphql not found (set ONEMEMBER_CLIENTS_DIR)"
	HOME_TOKENS_FILE="$WORK/memberhome-tokens.txt"
	log "memberhome: seeding the history of $HOME_TOKENS random seeded members and minting their tokens"
	mint --count "$HOME_TOKENS" --seed "$MINT_SEED" --with-history >"$HOME_TOKENS_FILE" || die "mint-tokens failed"
	# The planner's statistics as a database that grew to this would have.
	"$PSQL" -X -q -w -d "$BENCH_URL" -c 'ANALYZE' >&2
	HOME_CARDS="$("$PSQL" -X -q -w -tA -F ' ' -d "$BENCH_URL" -c "
		SELECT count(*), count(*) FILTER (WHERE EXISTS (SELECT FROM orders o WHERE o.member_id = a.member_id)),
			(SELECT count(*) FROM orders), count(*) FILTER (WHERE a.points_balance > 0),
			count(*) FILTER (WHERE a.stored_principal > 0), (SELECT count(*) FROM paid_memberships),
			(SELECT count(*) FROM members WHERE tier_id IS NOT NULL AND tier_id <> (SELECT id FROM tiers ORDER BY rank LIMIT 1))
		FROM accounts a")" || die "reading the memberhome members' cards failed"
fi
if wants claims; then claims_prepare; fi

pgbench_init
LOADAVG_START="$(cut -d' ' -f1-3 /proc/loadavg)"
# References before the server starts: nothing else runs.
pgbench_run select before "$PGBENCH_DB" -S
if wants ingest; then pgbench_run ingest before "${INGEST_DB}_before" "${INGEST_ARGS[@]}"; fi
if wants claims; then
	hotrow_reset
	pgbench_run hotrow before "$PGBENCH_DB" -M extended -f "$HOTROW_SQL"
fi

start_server
if wants memberhome; then
	# The server must accept the minted tokens as its own.
	resp="$(curl -fsS --max-time 10 -H 'Content-Type: application/json' -H "Authorization: Bearer $(head -n1 "$HOME_TOKENS_FILE")" \
		"$BASE/query" --data '{"query":"{ viewer { ... on Member { memberNo } } }"}')" || die "calling the server with a minted token failed"
	[[ "$resp" == *'"memberNo":"'* ]] || die "the server does not accept the minted tokens: $resp"
fi
if wants claims; then claims_admin_login; fi
TOKENS="$WORK/tokens.txt"
log "signing in $NTOKENS members"
: >"$TOKENS"
for i in $(seq 1 "$NTOKENS"); do
	openid="$(printf 'bench-%06d' "$i")"
	resp="$(curl -fsS --max-time 10 -H 'Content-Type: application/json' "$BASE/query" \
		--data "{\"query\":\"mutation { loginWithWeChat(input:{appId:\\\"wx-demo\\\", code:\\\"dev:$openid\\\"}) { accessToken member { id } } }\"}")" ||
		die "loginWithWeChat request failed for $openid"
	tok="$(printf '%s' "$resp" | sed -n 's/.*"accessToken":"\([^"]*\)".*/\1/p')"
	[[ -n "$tok" ]] || die "no accessToken for $openid: $resp"
	printf '%s\n' "$tok" >>"$TOKENS"
done

for s in $SCENARIOS; do
	"scenario_$s" "$TOKENS"
done
stop_server

# References again after the scenarios: each pair shows the machine's drift.
pgbench_run select after "$PGBENCH_DB" -S
if wants ingest; then pgbench_run ingest after "${INGEST_DB}_after" "${INGEST_ARGS[@]}"; fi
if wants claims; then
	hotrow_reset
	pgbench_run hotrow after "$PGBENCH_DB" -M extended -f "$HOTROW_SQL"
fi
LOADAVG_END="$(cut -d' ' -f1-3 /proc/loadavg)"
declare -A REF_TPS=() REF_US=()
for ref in "${REFS[@]}"; do
	REF_TPS[$ref]="$(mean_of "${REF_TPS_LIST[$ref]}")"
	REF_US[$ref]="$(mean_of "${REF_USTOT_LIST[$ref]}")"
done

# ---------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------
CPU_MODEL="$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)"
RAM="$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
PG_VERSION="$(psql_admin -tAc 'SHOW server_version')"
# The server's own build stamp says what was measured (go build records the
# commit and whether the tree had changes).
BUILD="$(go version -m "$SERVER" 2>/dev/null | awk '$1 == "build" && $2 ~ /^vcs\.revision=/ { r = substr($2, 14, 12) } $1 == "build" && $2 == "vcs.modified=true" { m = " plus uncommitted changes" } END { if (r != "") printf "commit %s%s", r, m }')" || true
[[ -n "$BUILD" ]] || BUILD="unknown commit"
COMMAND="${BENCH_SERVER:+BENCH_SERVER=$BENCH_SERVER }BENCH_MEMBERS=$MEMBERS BENCH_CONNECTIONS=$CONNS BENCH_DURATION=$DURATION BENCH_WARMUP=$WARMUP BENCH_THREADS=$THREADS BENCH_PGBENCH_JOBS=$PGJOBS BENCH_TOKENS=$NTOKENS"
if wants memberhome; then COMMAND="$COMMAND BENCH_MEMBERHOME_CONNECTIONS=$HOME_CONNS BENCH_MEMBERHOME_TOKENS=$HOME_TOKENS"; fi
if wants claims; then
	COMMAND="$COMMAND BENCH_CLAIMS_CONNECTIONS=$CLAIMS_CONNS BENCH_CLAIMS_TOKENS=$CLAIMS_TOKENS BENCH_CLAIMS_STOCK=$CLAIMS_STOCK"
	COMMAND="$COMMAND BENCH_CLAIMS_SOLDOUT_STOCK=$SOLDOUT_STOCK BENCH_CLAIMS_SOLDOUT_DURATION=$SOLDOUT_DURATION"
fi
if wants memberhome || wants ingest || wants claims; then COMMAND="$COMMAND BENCH_MINT_SEED=$MINT_SEED"; fi
COMMAND="$COMMAND BENCH_SCENARIOS=\"$SCENARIOS\""
# The server inherits the environment: record the settings that change it.
for v in GOGC GOMEMLIMIT GOMAXPROCS GODEBUG DB_MAX_OPEN_CONNS DB_MAX_IDLE_CONNS AUTH_CACHE_TTL; do
	if [[ -n "${!v:-}" ]]; then COMMAND="$v=${!v} $COMMAND"; fi
done
if [[ -n "${MAKELEVEL:-}" ]]; then COMMAND="$COMMAND make bench"; else COMMAND="$COMMAND scripts/bench.sh"; fi

# fill REF TEXT replaces the placeholders of the references' figures, known
# only at the end: @REF:ref@, @RATIO:ref:rps@, @REFUS:ref@,
# @CPURATIO:ref:µs@, @MEETS:ref:rps:ratio@ (met or missed) and @PERTX:ref@
# (µs per transaction, 1 ÷ TPS).
fill() {
	local d="$1" ref v lim
	while [[ "$d" =~ @REF:([a-z]+)@ ]]; do
		ref="${BASH_REMATCH[1]}"
		d="${d//@REF:$ref@/${REF_TPS[$ref]}}"
	done
	while [[ "$d" =~ @REFUS:([a-z]+)@ ]]; do
		ref="${BASH_REMATCH[1]}"
		d="${d//@REFUS:$ref@/${REF_US[$ref]}}"
	done
	while [[ "$d" =~ @RATIO:([a-z]+):([0-9]+)@ ]]; do
		ref="${BASH_REMATCH[1]}" v="${BASH_REMATCH[2]}"
		d="${d//@RATIO:$ref:$v@/$(calc '%.3f' "(${REF_TPS[$ref]} > 0) ? $v / ${REF_TPS[$ref]} : 0")}"
	done
	while [[ "$d" =~ @MEETS:([a-z]+):([0-9]+):([0-9.]+)@ ]]; do
		ref="${BASH_REMATCH[1]}" v="${BASH_REMATCH[2]}" lim="${BASH_REMATCH[3]}"
		d="${d//@MEETS:$ref:$v:$lim@/$(meets "$v" '>=' "$lim * ${REF_TPS[$ref]}")}"
	done
	while [[ "$d" =~ @PERTX:([a-z]+)@ ]]; do
		ref="${BASH_REMATCH[1]}"
		d="${d//@PERTX:$ref@/$(calc '%.0f' "(${REF_TPS[$ref]} > 0) ? 1000000 / ${REF_TPS[$ref]} : 0")}"
	done
	while [[ "$d" =~ @CPURATIO:([a-z]+):([0-9]+)@ ]]; do
		ref="${BASH_REMATCH[1]}" v="${BASH_REMATCH[2]}"
		d="${d//@CPURATIO:$ref:$v@/$(calc '%.3f' "($v > 0) ? ${REF_US[$ref]} / $v : 0")}"
	done
	printf '%s\n' "$d"
}
finish_details() {
	local d
	for d in "${DETAILS[@]}"; do fill "$d"; done
}

# pct_ms LIST N prints the N-th field (1: p50, 2: p99) of "p50:p99" µs pairs
# as milliseconds, " / "-separated.
pct_ms() { printf '%s\n' "$1" | awk -v f="$2" '{ for (i = 1; i <= NF; i++) { split($i, a, ":"); printf "%s%.2f ms", (i > 1 ? " / " : ""), a[f] / 1000 } }'; }

reference_line() { # reference_line REF
	local ref="$1" tps
	read -r -a tps <<<"${REF_TPS_LIST[$ref]}"
	case "$ref" in
	select) printf 'reference: pgbench -S -c %s -j %s -T %s at scale %s' "$CONNS" "$PGJOBS" "$DURATION" "$PGBENCH_SCALE" ;;
	ingest) printf 'ingest reference: pgbench -n %s -c %s -j %s -T %s on copies of %s' "$(printf '%s ' "${INGEST_ARGS[@]}" | sed "s|$ROOT/||; s| -D [^ ]*||g; s| $||")" "$CONNS" "$PGJOBS" "$DURATION" "$BENCH_DB" ;;
	hotrow) printf 'claims reference: pgbench -n -M extended -f %s -c %s -j %s -T %s on a one-row table of %s' "${HOTROW_SQL#"$ROOT"/}" "${REF_CONNS[hotrow]}" "$PGJOBS" "$DURATION" "$PGBENCH_DB" ;;
	esac
	printf ': %s TPS before and %s TPS after the scenarios (mean %s); latency average %s' "${tps[0]}" "${tps[1]:-?}" "${REF_TPS[$ref]}" "${REF_LAT_LIST[$ref]}"
	if [[ -n "${REF_PCT_LIST[$ref]:-}" ]]; then
		printf ', p50 %s, p99 %s; statements per transaction %s' "$(pct_ms "${REF_PCT_LIST[$ref]}" 1)" "$(pct_ms "${REF_PCT_LIST[$ref]}" 2)" "$(printf '%s' "${REF_SQL_LIST[$ref]}" | sed 's/^ //; s/ / \/ /g')"
	fi
	printf '; CPU per transaction %s; other processes used %s cores' "${REF_US_LIST[$ref]}" "${REF_OTHER_LIST[$ref]}"
}
reference_lines() {
	local ref
	for ref in "${REFS[@]}"; do printf -- '- %s\n' "$(reference_line "$ref")"; done
}

table() {
	printf '| scenario | connections | duration | req/s | p50 | p99 | SQL/req | reference TPS | ratio | non-2xx | GraphQL errors |\n'
	printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
	local row ref p50 p99 sql
	for row in "${ROWS[@]}"; do fill "$row"; done
	for ref in "${REFS[@]}"; do
		p50="—" p99="—"
		if [[ -n "${REF_PCT_LIST[$ref]:-}" ]]; then
			p50="$(pct_ms "${REF_PCT_LIST[$ref]}" 1)" p99="$(pct_ms "${REF_PCT_LIST[$ref]}" 2)"
		fi
		sql="$(printf '%s\n' "${REF_SQL_LIST[$ref]}" | awk '{ for (i = 1; i <= NF; i++) s += $i; printf "%.2f", s / NF }')"
		printf '| %s (reference) | %s | %ss | %s | %s | %s | %s | %s | 1.000 | — | — |\n' \
			"${REF_NAME[$ref]}" "${REF_CONNS[$ref]:-$CONNS}" "$DURATION" "${REF_TPS[$ref]}" "$p50" "$p99" "$sql" "${REF_TPS[$ref]}"
	done
}

TS="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RESULTS_DIR"
REPORT="$RESULTS_DIR/$TS.md"
{
	printf '## OneMember benchmark, %s\n\n' "$(date -u)"
	printf -- '- machine: %s CPUs (nproc), %s, %s RAM; PostgreSQL %s; load average %s before the first reference, %s after the last\n' \
		"$(nproc)" "$CPU_MODEL" "$RAM" "$PG_VERSION" "$LOADAVG_START" "$LOADAVG_END"
	printf -- '- server: %s, built from %s\n' "${SERVER#"$ROOT"/}" "$BUILD"
	# shellcheck disable=SC2016 # backquotes are Markdown
	printf -- '- command: `%s`\n' "$COMMAND"
	# shellcheck disable=SC2016 # backquotes are Markdown
	printf -- '- data: `server seed --members %s%s` took %ss; %s signed-in members rotated per request (viewer)%s; wrk %s threads\n' \
		"$MEMBERS" "${BENCH_SEED_FLAGS:+ $BENCH_SEED_FLAGS}" "$SEED_SECONDS" "$NTOKENS" \
		"$(if wants memberhome; then printf '; %s seeded members with minted tokens (memberhome)' "$HOME_TOKENS"; fi)$(if wants claims; then printf '; %s seeded members with minted tokens (claims)' "$CLAIMS_TOKENS"; fi)" "$THREADS"
	reference_lines
	printf '\n'
	table
	printf '\n'
	finish_details
	printf '\n<details><summary>raw output</summary>\n\n```\n'
	for f in "${RAW[@]}"; do
		printf '== %s\n' "$(basename "$f")"
		cat "$f"
	done
	printf '```\n</details>\n\n'
} >>"$REPORT"

printf '\n'
table
printf '\n'
finish_details
printf '\n%s\n- load average %s before the first reference, %s after the last\n\nreport: %s (total %ss)\n' "$(reference_lines)" "$LOADAVG_START" "$LOADAVG_END" "${REPORT#"$ROOT"/}" "$((SECONDS - STARTED))"
if ((${#FAILED[@]} > 0)); then
	log "FAILED:"
	printf '  %s\n' "${FAILED[@]}" >&2
	exit 1
fi
