#!/usr/bin/env bash
# bench.sh runs the HTTP load benchmarks of docs/BENCHMARKS.md against a
# freshly seeded benchmark database and puts each result next to a pgbench
# select-only reference measured in the same run on the same PostgreSQL, so
# that numbers from shared, noisy machines can be compared as ratios.
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
#   BENCH_TOKENS          members signed in whose tokens the requests rotate [200]
#   BENCH_SCENARIOS       space-separated scenarios to run [viewer]
#   BENCH_DB              benchmark database, dropped and recreated [onemember_bench]
#   BENCH_PGBENCH_DB      pgbench scratch database, dropped at exit [onemember_pgbench]
#   BENCH_PGBENCH_SCALE   pgbench -i -s [10]
#   BENCH_FRESH_DB        1: drop, recreate and seed BENCH_DB; 0: reuse it [1]
#   BENCH_PORT            loopback port for the server [a free one]
#   BENCH_SERVER          server binary to measure [bin/server]
#   BENCH_SEED_FLAGS      extra flags of "server seed" [--no-history when the
#                         binary has it: the viewer scenario needs members only,
#                         and two years of order history take minutes to seed;
#                         set it empty to seed the history too]
#   BENCH_RESULTS_DIR     where the Markdown report goes [bench-results]
#   BENCH_LOCK_WAIT       seconds to wait for another run on the same server [1200]
#   BENCH_SEED_TIMEOUT    seconds seeding may take [1800]
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
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"

log() { printf 'bench: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

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
SCENARIOS="${BENCH_SCENARIOS:-viewer}"
BENCH_DB="${BENCH_DB:-onemember_bench}"
PGBENCH_DB="${BENCH_PGBENCH_DB:-onemember_pgbench}"
PGBENCH_SCALE="${BENCH_PGBENCH_SCALE:-10}"
FRESH_DB="${BENCH_FRESH_DB:-1}"
RESULTS_DIR="${BENCH_RESULTS_DIR:-$ROOT/bench-results}"
SERVER="${BENCH_SERVER:-$ROOT/bin/server}"

int_in() { # int_in NAME VALUE MIN MAX
	if ! [[ "$2" =~ ^[0-9]+$ ]] || (($2 < $3 || $2 > $4)); then
		die "$1 must be an integer in [$3, $4], got '$2'"
	fi
}
int_in BENCH_MEMBERS "$MEMBERS" 0 10000000
int_in BENCH_CONNECTIONS "$CONNS" 1 1000
int_in BENCH_DURATION "$DURATION" 1 600
int_in BENCH_WARMUP "$WARMUP" 0 120
int_in BENCH_THREADS "$THREADS" 1 64
int_in BENCH_PGBENCH_JOBS "$PGJOBS" 1 64
int_in BENCH_TOKENS "$NTOKENS" 1 10000
int_in BENCH_PGBENCH_SCALE "$PGBENCH_SCALE" 1 1000
LOCK_WAIT="${BENCH_LOCK_WAIT:-1200}"
int_in BENCH_LOCK_WAIT "$LOCK_WAIT" 0 7200
SEED_TIMEOUT="${BENCH_SEED_TIMEOUT:-1800}"
int_in BENCH_SEED_TIMEOUT "$SEED_TIMEOUT" 1 7200
((DURATION >= 20)) || log "warning: BENCH_DURATION=$DURATION: below 20 s, pgbench's connection start-up distorts the reference"
((THREADS <= CONNS && PGJOBS <= CONNS)) || die "BENCH_THREADS and BENCH_PGBENCH_JOBS must not exceed BENCH_CONNECTIONS ($CONNS)"
for db in "$BENCH_DB" "$PGBENCH_DB"; do
	[[ "$db" =~ ^[a-z_][a-z0-9_]*$ ]] || die "database name '$db' must be a plain lower-case identifier"
done
[[ -x "$SERVER" ]] || die "$SERVER not found: run 'make build' (or 'make bench')"

# DATABASE_URL must be a postgres:// URL on this machine: the script drops
# and recreates databases on that server.
[[ "$DATABASE_URL" =~ ^(postgres(ql)?://)([^/?]*)(/[^?]*)?(\?.*)?$ ]] ||
	die "DATABASE_URL must be a postgres:// URL"
URL_SCHEME="${BASH_REMATCH[1]}"
URL_AUTHORITY="${BASH_REMATCH[3]}"
URL_QUERY="${BASH_REMATCH[5]}"
host="${URL_AUTHORITY##*@}"
host="${host%:*}"
case "$host" in
127.0.0.1 | localhost | "[::1]") ;;
*) die "DATABASE_URL host '$host' is not local; the benchmark only targets 127.0.0.1" ;;
esac
db_url() { printf '%s%s/%s%s' "$URL_SCHEME" "$URL_AUTHORITY" "$1" "$URL_QUERY"; }
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
	stop_server
	psql_admin -c "DROP DATABASE IF EXISTS \"$PGBENCH_DB\" WITH (FORCE)" >/dev/null 2>&1 || true
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

# The wrk script: every request carries the next token of the thread's
# rotation (requests are built once per token), every response body is
# checked for "errors" and for the scenario's expected marker, and done()
# prints one machine-readable line.
cat >"$WORK/rotate.lua" <<'LUA'
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("id", counter)
  table.insert(threads, thread)
end

local reqs = {}
local idx = 0

function init(args)
  local tokens_file, body_file = args[1], args[2]
  expect = args[3] or ""
  local f = assert(io.open(body_file, "rb"))
  local body = f:read("*a")
  f:close()
  for line in io.lines(tokens_file) do
    if #line > 0 then
      reqs[#reqs + 1] = wrk.format("POST", wrk.path, {
        ["Content-Type"] = "application/json",
        ["Authorization"] = "Bearer " .. line,
      }, body)
    end
  end
  assert(#reqs > 0, "no tokens in " .. tokens_file)
  -- Threads start at different points of the rotation.
  idx = ((id - 1) * 7919) % #reqs
  gql_errors, unexpected, checked = 0, 0, 0
end

function request()
  idx = idx % #reqs + 1
  return reqs[idx]
end

function response(status, headers, body)
  checked = checked + 1
  if body:find('"errors"', 1, true) then
    gql_errors = gql_errors + 1
  elseif expect ~= "" and not body:find(expect, 1, true) then
    unexpected = unexpected + 1
  end
end

function done(summary, latency, requests)
  local e, u, c = 0, 0, 0
  for _, t in ipairs(threads) do
    e = e + t:get("gql_errors")
    u = u + t:get("unexpected")
    c = c + t:get("checked")
  end
  local s = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d " ..
    "non2xx=%d connect=%d read=%d write=%d timeout=%d gql_errors=%d unexpected=%d checked=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, s.status, s.connect, s.read, s.write, s.timeout, e, u, c))
end
LUA

# wrk_run SECONDS TOKENS BODY EXPECT OUT: one wrk run, raw output in OUT.
wrk_run() {
	timeout --kill-after=10 $(($1 + 60)) \
		wrk --latency --timeout 5s -t "$THREADS" -c "$CONNS" -d "${1}s" \
		-s "$WORK/rotate.lua" "$BASE/query" -- "$2" "$3" "$4" >"$5" 2>&1 ||
		{
			cat "$5" >&2
			die "wrk failed"
		}
}

ROWS=()    # Markdown table rows
DETAILS=() # one line per scenario, below the table
RAW=()     # files with raw tool output for the report

# run_http_scenario NAME QUERY TOKEN_FILE EXPECT: warm-up, then a measured
# wrk run; SQL statements and request counts come from /metrics deltas, CPU
# from /proc (server, the benchmark database's backends, wrk, the machine).
run_http_scenario() {
	local name="$1" query="$2" tokens="$3" expect="$4"
	local body="$WORK/$name.json" out="$WORK/$name.wrk"
	printf '{"query":%s}' "$(json_string "$query")" >"$body"
	if ((WARMUP > 0)); then
		log "$name: warm-up ${WARMUP}s"
		wrk_run "$WARMUP" "$tokens" "$body" "$expect" "$WORK/$name.warmup"
	fi
	local sql0 req0 err0 srv0 pg0 wrk0 busy0 all0
	sql0="$(metric onemember_sql_statements_total)"
	req0="$(metric onemember_graphql_requests_total)"
	err0="$(metric_series onemember_graphql_requests_total 'outcome="error"')"
	srv0="$(pid_cpu "$SERVER_PID")"
	pg0="$(db_backends_cpu "$BENCH_DB")"
	children_cpu "$WORK/children0"
	wrk0="$(cat "$WORK/children0")"
	read -r busy0 all0 < <(machine_cpu)
	log "$name: ${CONNS} connections, ${THREADS} threads, ${DURATION}s"
	wrk_run "$DURATION" "$tokens" "$body" "$expect" "$out"
	local sql1 req1 err1 srv1 pg1 wrk1 busy1 all1
	read -r busy1 all1 < <(machine_cpu)
	children_cpu "$WORK/children1"
	wrk1="$(cat "$WORK/children1")"
	srv1="$(pid_cpu "$SERVER_PID")"
	pg1="$(db_backends_cpu "$BENCH_DB")"
	sql1="$(metric onemember_sql_statements_total)"
	req1="$(metric onemember_graphql_requests_total)"
	err1="$(metric_series onemember_graphql_requests_total 'outcome="error"')"
	cat "$out" >&2
	RAW+=("$out")

	local line
	line="$(grep '^BENCH ' "$out")" || die "$name: no result line from wrk"
	local requests duration_us p50_us p99_us non2xx connect read write timeout gql_errors unexpected
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
	ROWS+=("| $name | $CONNS | ${DURATION}s | $rps | $p50 | $p99 | $sql_per_req | @REF@ | @RATIO:$rps@ | $non2xx | $gql_errors |")
	DETAILS+=("- \`$name\`: $requests requests in ${DURATION}s (server counted $srv_req, $srv_err with GraphQL errors); socket errors connect/read/write/timeout $connect/$read/$write/$timeout; $unexpected responses without \`$expect\`; CPU per request: server ${us_srv} µs + PostgreSQL ${us_pg} µs + wrk ${us_wrk} µs = ${us_all} µs, i.e. at most ~${ceiling} req/s on $(nproc) cores if nothing else ran; pgbench spends @REFUS@ µs per transaction, so the CPU ratio is @CPURATIO:$us_all@; cores used: server $cores_srv, PostgreSQL $cores_pg, wrk $cores_wrk, other processes $cores_other (machine busy $cores_busy of $(nproc)).")
	if [[ "$(calc '%d' "$cores_other > 0.25")" == 1 ]]; then
		DETAILS+=("  - warning: other processes used $cores_other cores during \`$name\`: its req/s and latencies are disturbed; the CPU per request is the steadier figure.")
	fi
	if ((non2xx + gql_errors + unexpected + connect + read + write + timeout > 0)); then
		FAILED+=("$name: non-2xx=$non2xx errors=$gql_errors unexpected=$unexpected socket=$connect/$read/$write/$timeout")
	fi
}
FAILED=()

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

# ---------------------------------------------------------------------------
# pgbench reference.
# ---------------------------------------------------------------------------
PGBENCH_TPS=()
pgbench_init() {
	log "pgbench: initialising scale $PGBENCH_SCALE in $PGBENCH_DB"
	psql_admin -c "DROP DATABASE IF EXISTS \"$PGBENCH_DB\" WITH (FORCE)" -c "CREATE DATABASE \"$PGBENCH_DB\"" >&2
	timeout 900 "$PGBENCH" -i -q -s "$PGBENCH_SCALE" "$PGBENCH_URL" >"$WORK/pgbench-init.log" 2>&1 ||
		{
			cat "$WORK/pgbench-init.log" >&2
			die "pgbench -i failed"
		}
}
# pgbench_run LABEL: a select-only run with the scenarios' connections and
# duration (after its own warm-up); appends its TPS to PGBENCH_TPS and its
# CPU cost per transaction to PGBENCH_US.
pgbench_run() {
	local out="$WORK/pgbench-$1.log" samples="$WORK/pgbench-$1.cpu"
	if ((WARMUP > 0)); then
		timeout $((WARMUP + 60)) "$PGBENCH" -n -S -c "$CONNS" -j "$PGJOBS" -T "$WARMUP" "$PGBENCH_URL" >/dev/null 2>&1 ||
			die "pgbench warm-up failed"
	fi
	log "pgbench ($1): -S -c $CONNS -j $PGJOBS -T $DURATION"
	# pgbench's backends live only as long as the run: a sampler reads their
	# CPU time during its last seconds and keeps the largest sum.
	: >"$samples"
	(
		sleep "$((DURATION > 1 ? DURATION - 1 : 0))"
		for _ in $(seq 1 150); do
			db_backends_cpu "$PGBENCH_DB" >>"$samples" || break
			sleep 0.2
		done
	) &
	local sampler=$! busy0 all0 busy1 all1
	children_cpu "$WORK/children0"
	read -r busy0 all0 < <(machine_cpu)
	timeout $((DURATION + 60)) "$PGBENCH" -n -S -c "$CONNS" -j "$PGJOBS" -T "$DURATION" "$PGBENCH_URL" >"$out" 2>&1 ||
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
	tx="$(awk '/^number of transactions actually processed:/ { print $NF }' "$out")"
	[[ -n "$tps" && -n "$tx" && "$tx" -gt 0 ]] || die "no tps in pgbench output"
	client="$(calc '%.2f' "$(cat "$WORK/children1") - $(cat "$WORK/children0")")"
	pg="$(sort -g "$samples" | tail -n1)"
	wall="$(calc '%.3f' "($all1 - $all0) / $(nproc)")"
	PGBENCH_TPS+=("$tps")
	PGBENCH_LAT+=("$(awk '/^latency average/ { print $4 " " $5 }' "$out")")
	PGBENCH_US+=("PostgreSQL $(calc '%.0f' "${pg:-0} * 1000000 / $tx") µs + pgbench $(calc '%.0f' "$client * 1000000 / $tx") µs")
	PGBENCH_US_TOTAL+=("$(calc '%.0f' "(${pg:-0} + $client) * 1000000 / $tx")")
	PGBENCH_OTHER+=("$(calc '%.2f' "($busy1 - $busy0 - ${pg:-0} - $client) / $wall")")
}
PGBENCH_LAT=()
PGBENCH_US=()
PGBENCH_US_TOTAL=()
PGBENCH_OTHER=()

# ---------------------------------------------------------------------------
# Main.
# ---------------------------------------------------------------------------
for s in $SCENARIOS; do
	declare -F "scenario_$s" >/dev/null || die "unknown scenario '$s' (have: $(declare -F | awk '/scenario_/ { sub("scenario_", "", $3); printf "%s ", $3 }'))"
done
ensure_wrk
command -v curl >/dev/null 2>&1 || die "curl not found"

# One benchmark at a time per PostgreSQL server: concurrent runs would drop
# each other's databases and share the CPU they measure.
LOCK="${TMPDIR:-/tmp}/onemember-bench.$(printf '%s' "$URL_AUTHORITY" | cksum | cut -d' ' -f1).lock"
exec 8>>"$LOCK"
if ! flock -n 8; then
	log "another benchmark runs against this PostgreSQL server; waiting for it (at most ${LOCK_WAIT}s)"
	flock -w "$LOCK_WAIT" 8 || die "timed out waiting for $LOCK"
fi
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
DATABASE_URL="$BENCH_URL" LOG_LEVEL=warn SEED_ADMIN_PASSWORD="bench-admin-password" \
	timeout "$SEED_TIMEOUT" "$SERVER" seed --members "$MEMBERS" "${seed_flags[@]}" >&2 ||
	die "seeding failed"
SEED_SECONDS=$((SECONDS - seed_started))
log "seeded in ${SEED_SECONDS}s; vacuum analyze"
"$PSQL" -X -q -w -d "$BENCH_URL" -c 'VACUUM ANALYZE' >&2

pgbench_init
# Reference before the server starts: nothing else runs.
pgbench_run before

start_server
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

# Reference again after the scenarios: the pair shows the machine's drift.
pgbench_run after
REF_TPS="$(calc '%.0f' "(${PGBENCH_TPS[0]} + ${PGBENCH_TPS[1]}) / 2")"
REF_US="$(calc '%.0f' "(${PGBENCH_US_TOTAL[0]} + ${PGBENCH_US_TOTAL[1]}) / 2")"

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
COMMAND="${BENCH_SERVER:+BENCH_SERVER=$BENCH_SERVER }BENCH_MEMBERS=$MEMBERS BENCH_CONNECTIONS=$CONNS BENCH_DURATION=$DURATION BENCH_WARMUP=$WARMUP BENCH_THREADS=$THREADS BENCH_PGBENCH_JOBS=$PGJOBS BENCH_TOKENS=$NTOKENS BENCH_SCENARIOS=\"$SCENARIOS\""
# The server inherits the environment: record the settings that change it.
for v in GOGC GOMEMLIMIT GOMAXPROCS GODEBUG DB_MAX_OPEN_CONNS DB_MAX_IDLE_CONNS AUTH_CACHE_TTL; do
	if [[ -n "${!v:-}" ]]; then COMMAND="$v=${!v} $COMMAND"; fi
done
if [[ -n "${MAKELEVEL:-}" ]]; then COMMAND="$COMMAND make bench"; else COMMAND="$COMMAND scripts/bench.sh"; fi

# finish_details fills in the pgbench CPU figures known only at the end.
finish_details() {
	local d us
	for d in "${DETAILS[@]}"; do
		d="${d//@REFUS@/$REF_US}"
		if [[ "$d" =~ @CPURATIO:([0-9]+)@ ]]; then
			us="${BASH_REMATCH[1]}"
			d="${d/@CPURATIO:$us@/$(calc '%.3f' "($us > 0) ? $REF_US / $us : 0")}"
		fi
		printf '%s\n' "$d"
	done
}

reference_line() {
	printf 'reference: pgbench -S -c %s -j %s -T %s at scale %s: %s TPS before and %s TPS after the scenarios (mean %s); latency average %s / %s; CPU per transaction %s / %s; other processes used %s / %s cores' \
		"$CONNS" "$PGJOBS" "$DURATION" "$PGBENCH_SCALE" "${PGBENCH_TPS[0]}" "${PGBENCH_TPS[1]}" "$REF_TPS" \
		"${PGBENCH_LAT[0]}" "${PGBENCH_LAT[1]}" "${PGBENCH_US[0]}" "${PGBENCH_US[1]}" "${PGBENCH_OTHER[0]}" "${PGBENCH_OTHER[1]}"
}

table() {
	printf '| scenario | connections | duration | req/s | p50 | p99 | SQL/req | reference TPS | ratio | non-2xx | GraphQL errors |\n'
	printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
	local row rps
	for row in "${ROWS[@]}"; do
		rps="${row##*@RATIO:}"
		rps="${rps%%@*}"
		row="${row/@REF@/$REF_TPS}"
		row="${row/@RATIO:$rps@/$(calc '%.3f' "$rps / $REF_TPS")}"
		printf '%s\n' "$row"
	done
	printf '| pgbench -S (reference) | %s | %ss | %s | — | — | 1.00 | %s | 1.000 | — | — |\n' \
		"$CONNS" "$DURATION" "$REF_TPS" "$REF_TPS"
}

TS="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RESULTS_DIR"
REPORT="$RESULTS_DIR/$TS.md"
{
	printf '## OneMember benchmark, %s\n\n' "$(date -u)"
	printf -- '- machine: %s CPUs (nproc), %s, %s RAM; PostgreSQL %s\n' "$(nproc)" "$CPU_MODEL" "$RAM" "$PG_VERSION"
	printf -- '- server: %s, built from %s\n' "${SERVER#"$ROOT"/}" "$BUILD"
	# shellcheck disable=SC2016 # backquotes are Markdown
	printf -- '- command: `%s`\n' "$COMMAND"
	# shellcheck disable=SC2016 # backquotes are Markdown
	printf -- '- data: `server seed --members %s%s` took %ss; %s signed-in members rotated per request; wrk %s threads\n' \
		"$MEMBERS" "${BENCH_SEED_FLAGS:+ $BENCH_SEED_FLAGS}" "$SEED_SECONDS" "$NTOKENS" "$THREADS"
	printf -- '- %s\n\n' "$(reference_line)"
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
printf '\n%s\n\nreport: %s (total %ss)\n' "$(reference_line)" "${REPORT#"$ROOT"/}" "$((SECONDS - STARTED))"
if ((${#FAILED[@]} > 0)); then
	log "FAILED: responses were not all good:"
	printf '  %s\n' "${FAILED[@]}" >&2
	exit 1
fi
