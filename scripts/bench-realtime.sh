#!/usr/bin/env bash
# bench-realtime.sh runs the real-time (memberEvents websocket) benchmarks of
# docs/BENCHMARKS.md ("Real-time events") and puts each result next to a
# reference measured in the same run:
#
#   idle      server RSS per idle subscribed graphql-transport-ws connection
#             at each of BENCH_RT_LEVELS, against a bare gorilla/websocket
#             server (1 KiB buffers, one reader goroutine per connection)
#             holding as many connections, measured the same way
#   ingest    ingestOrder throughput (32 clients) with BENCH_RT_SUBSCRIBERS
#             idle subscribers connected (the orders' members), against the
#             same load with none, before and after, and against a server
#             with its bus stopped (EVENT_BUS=false), first and last
#   delivery  commit-to-receive latency of events written at the rates of
#             BENCH_RT_STEPS for BENCH_RT_SUBSCRIBERS subscribed members,
#             straight into PostgreSQL by a process that wakes its own event
#             bus after each commit (so the server under test learns of them
#             by NOTIFY, as from another replica), then with no NOTIFY at all
#             (the safety tailer only)
#
#   make bench                      (runs scripts/bench.sh, then this)
#   DATABASE_URL=postgres://... scripts/bench-realtime.sh
#
# Environment (defaults in brackets):
#   DATABASE_URL                 PostgreSQL server on 127.0.0.1/localhost (required)
#   BENCH_RT_SCENARIOS           any of idle, ingest, delivery [idle ingest delivery]
#   BENCH_RT_LEVELS              idle connection counts; "max" is the open-file
#                                hard limit minus BENCH_RT_FD_MARGIN [1000 5000 max]
#   BENCH_RT_FD_MARGIN           descriptors kept for everything else [200]
#   BENCH_RT_SUBSCRIBERS         subscribers of ingest and delivery [5000]
#   BENCH_RT_STEPS               delivery steps, each RATE (events per second, one
#                                event per transaction, as the services write them) or
#                                RATExBATCH (BATCH members' events per transaction), in
#                                one process with the same subscribers [1000 2500 5000 5000x10]
#   BENCH_RT_DELIVERY_DURATION   seconds of each delivery step [20]
#   BENCH_RT_TAILER_STEPS        steps of the run without NOTIFY ("": skip) [1000]
#   BENCH_RT_TAILER_DURATION     seconds of each of its steps [10]
#   BENCH_RT_WORKERS             event writers of delivery [8]
#   BENCH_RT_INGEST_CONNECTIONS  ingestOrder clients [32]
#   BENCH_RT_INGEST_DURATION     seconds of each ingest run [20]
#   BENCH_RT_INGEST_WARMUP       seconds of unmeasured ingest warm-up [5]
#   BENCH_RT_SETTLE_MIN          seconds to wait before looking for a settled process [5]
#   BENCH_RT_SETTLE_MAX          most seconds to wait for it [30]
#   BENCH_RT_MINT_SEED           server mint-tokens --seed [1]
#   BENCH_RT_DB                  benchmark database, recreated, dropped at exit [onemember_rtbench]
#   BENCH_RT_SERVER              server binary [bin/server under make, else built from the tree]
#   BENCH_RESULTS_DIR            where the Markdown report goes [bench-results]
#   BENCH_LOCK_WAIT              seconds to wait for another benchmark run [1200]
#   ONEMEMBER_CLIENTS_DIR        the client operations [../shared/clients]
#
# The soft open-file limit is raised to the hard limit for this script and
# everything it starts. The server under test inherits the environment except
# DATABASE_URL, LISTEN_ADDR, LOG_LEVEL and ACCESS_TOKEN_TTL (2h, so that no
# connection is closed with 4401 during the run).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"
export GOFLAGS="${GOFLAGS:--mod=mod}"

BENCH_NAME=bench-realtime
# shellcheck source=scripts/bench/common.sh
source "$ROOT/scripts/bench/common.sh"

# ---------------------------------------------------------------------------
# Configuration.
# ---------------------------------------------------------------------------
: "${DATABASE_URL:?DATABASE_URL must be set (make bench sets it)}"
SCENARIOS="${BENCH_RT_SCENARIOS:-idle ingest delivery}"
LEVELS="${BENCH_RT_LEVELS:-1000 5000 max}"
FD_MARGIN="${BENCH_RT_FD_MARGIN:-200}"
SUBSCRIBERS="${BENCH_RT_SUBSCRIBERS:-5000}"
STEPS="${BENCH_RT_STEPS-1000 2500 5000 5000x10}"
DELIVERY_DURATION="${BENCH_RT_DELIVERY_DURATION:-20}"
TAILER_STEPS="${BENCH_RT_TAILER_STEPS-1000}"
TAILER_DURATION="${BENCH_RT_TAILER_DURATION:-10}"
WORKERS="${BENCH_RT_WORKERS:-8}"
INGEST_CONNS="${BENCH_RT_INGEST_CONNECTIONS:-32}"
INGEST_DURATION="${BENCH_RT_INGEST_DURATION:-20}"
INGEST_WARMUP="${BENCH_RT_INGEST_WARMUP:-5}"
SETTLE_MIN="${BENCH_RT_SETTLE_MIN:-5}"
SETTLE_MAX="${BENCH_RT_SETTLE_MAX:-30}"
MINT_SEED="${BENCH_RT_MINT_SEED:-1}"
RT_DB="${BENCH_RT_DB:-onemember_rtbench}"
RESULTS_DIR="${BENCH_RESULTS_DIR:-$ROOT/bench-results}"
LOCK_WAIT="${BENCH_LOCK_WAIT:-1200}"
CLIENTS_DIR="${ONEMEMBER_CLIENTS_DIR:-$ROOT/../shared/clients}"
export ONEMEMBER_CLIENTS_DIR="$CLIENTS_DIR"

int_in BENCH_RT_FD_MARGIN "$FD_MARGIN" 50 10000
int_in BENCH_RT_SUBSCRIBERS "$SUBSCRIBERS" 1 100000
for st in $STEPS $TAILER_STEPS; do
	[[ "$st" =~ ^[1-9][0-9]{0,5}(x[1-9][0-9]{0,3})?$ ]] || die "delivery step '$st' is not RATE or RATExBATCH"
done
[[ -n "${STEPS// /}" ]] || die "BENCH_RT_STEPS is empty"
int_in BENCH_RT_DELIVERY_DURATION "$DELIVERY_DURATION" 1 600
int_in BENCH_RT_TAILER_DURATION "$TAILER_DURATION" 1 600
int_in BENCH_RT_WORKERS "$WORKERS" 1 256
int_in BENCH_RT_INGEST_CONNECTIONS "$INGEST_CONNS" 1 1000
int_in BENCH_RT_INGEST_DURATION "$INGEST_DURATION" 1 600
int_in BENCH_RT_INGEST_WARMUP "$INGEST_WARMUP" 0 120
int_in BENCH_RT_SETTLE_MIN "$SETTLE_MIN" 0 120
int_in BENCH_RT_SETTLE_MAX "$SETTLE_MAX" 1 600
int_in BENCH_RT_MINT_SEED "$MINT_SEED" 0 1000000000
int_in BENCH_LOCK_WAIT "$LOCK_WAIT" 0 7200
[[ "$RT_DB" =~ ^[a-z_][a-z0-9_]*$ ]] || die "BENCH_RT_DB must be a plain lower-case identifier"
for s in $SCENARIOS; do
	case "$s" in idle | ingest | delivery) ;; *) die "unknown scenario '$s' (idle, ingest, delivery)" ;; esac
done
wants() { [[ " $SCENARIOS " == *" $1 "* ]]; }

parse_local_database_url
ADMIN_URL="$(db_url postgres)"
RT_URL="$(db_url "$RT_DB")"

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
psql_admin() { "$PSQL" -X -q -w -v ON_ERROR_STOP=1 -d "$ADMIN_URL" "$@"; }
rt_psql() { "$PSQL" -X -q -w -v ON_ERROR_STOP=1 -d "$RT_URL" "$@"; }
command -v curl >/dev/null 2>&1 || die "curl not found"

# Open files: the soft limit up to the hard limit, for this shell and every
# process it starts (the server, the reference server and the clients).
HARD_NOFILE="$(ulimit -Hn)"
[[ "$HARD_NOFILE" == unlimited ]] && HARD_NOFILE=1048576
ulimit -Sn "$HARD_NOFILE" || die "cannot raise the open-file soft limit to $HARD_NOFILE"
MAX_CONNS=$((HARD_NOFILE - FD_MARGIN))
((MAX_CONNS >= 100)) || die "open-file hard limit $HARD_NOFILE leaves room for fewer than 100 connections"
IDLE_LEVELS=()
for l in $LEVELS; do
	[[ "$l" == max ]] && l="$MAX_CONNS"
	int_in "a BENCH_RT_LEVELS entry" "$l" 1 "$MAX_CONNS"
	IDLE_LEVELS+=("$l")
done
NEED=$SUBSCRIBERS
for l in "${IDLE_LEVELS[@]}"; do ((l > NEED)) && NEED=$l; done
MEMBERS=$((NEED + 1000))

# ---------------------------------------------------------------------------
# Scratch space, processes, cleanup.
# ---------------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/onemember-rtbench.XXXXXX")"
PIDS=() # processes to stop at exit
stop_pid() { # stop_pid PID: TERM, then KILL after 10 s
	local pid="$1"
	[[ -n "$pid" ]] || return 0
	if kill -0 "$pid" 2>/dev/null; then
		kill -TERM "$pid" 2>/dev/null || true
		for _ in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}
cleanup() {
	local rc=$? p
	for p in "${PIDS[@]}"; do stop_pid "$p"; done
	psql_admin -c "DROP DATABASE IF EXISTS \"$RT_DB\" WITH (FORCE)" >/dev/null 2>&1 || true
	if ((rc != 0)); then
		for p in "$WORK"/*.log; do
			[[ -s "$p" ]] || continue
			log "$(basename "$p") (last 15 lines):"
			tail -n 15 "$p" >&2 || true
		done
	fi
	rm -rf "$WORK"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	local p
	for _ in $(seq 1 200); do
		p=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			printf '%s\n' "$p"
			return 0
		fi
	done
	return 1
}

CLK_TCK="$(getconf CLK_TCK)"
NPROC="$(nproc)"
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"; }
machine_cpu() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t }' /proc/stat; }
calc() { awk "BEGIN { printf \"$1\n\", ($2) }"; }
meets() { if [[ "$(calc '%d' "$1 $2 $3")" == 1 ]]; then echo met; else echo missed; fi; }
# jget FILE KEY prints a top-level value of a flat JSON object.
jget() { sed -n "s/.*\"$2\":\(\"[^\"]*\"\|[^,}]*\).*/\1/p" "$1" | tail -n1 | sed 's/^"//; s/"$//'; }
# metric BASE NAME prints the sum of a Prometheus metric's series.
metric() {
	curl -fsS --max-time 10 "$1/metrics" |
		awk -v n="$2" '$1 == n || index($1, n "{") == 1 { s += $NF } END { printf "%.0f\n", s }'
}

# settle PID: wait BENCH_RT_SETTLE_MIN seconds, then until the process used at
# most 0.1 core and its RSS moved by less than 0.5% over two consecutive
# seconds (at most BENCH_RT_SETTLE_MAX seconds in all).
settle() {
	local pid="$1" start=$SECONDS r0 r1 c0 c1 calm=0
	sleep "$SETTLE_MIN"
	r0="$(rss_kb "$pid")" c0="$(cpu_ticks "$pid")"
	while ((SECONDS - start < SETTLE_MAX)); do
		sleep 1
		r1="$(rss_kb "$pid")" c1="$(cpu_ticks "$pid")"
		if (((c1 - c0) * 10 <= CLK_TCK && (r1 - r0) * 200 <= r0 && (r0 - r1) * 200 <= r0)); then
			calm=$((calm + 1))
			((calm >= 2)) && return 0
		else
			calm=0
		fi
		r0=$r1 c0=$c1
	done
	log "warning: pid $pid still busy or growing after ${SETTLE_MAX}s; measuring anyway"
	SETTLE_WARNINGS=$((${SETTLE_WARNINGS:-0} + 1))
}

wait_ready() { # wait_ready PID BASE
	for _ in $(seq 1 600); do
		kill -0 "$1" 2>/dev/null || die "process $1 exited during start-up"
		curl -fsS --max-time 2 -o /dev/null "$2/readyz" 2>/dev/null && return 0
		sleep 0.1
	done
	die "$2/readyz not ready after 60 s"
}

# start_target KIND: starts the server (KIND=server) or the reference
# (KIND=ref) on a free port; sets TARGET_PID, BASE and WS.
start_target() {
	local port
	port="$(free_port)" || die "no free loopback port"
	BASE="http://127.0.0.1:$port"
	WS="ws://127.0.0.1:$port/query"
	if [[ "$1" == server ]]; then
		DATABASE_URL="$RT_URL" LISTEN_ADDR="127.0.0.1:$port" LOG_LEVEL=warn ACCESS_TOKEN_TTL=2h EVENT_BUS="${2:-true}" \
			"$SERVER" serve >>"$WORK/server.log" 2>&1 8>&- &
	else
		"$RTBENCH" refserver -addr "127.0.0.1:$port" >>"$WORK/refserver.log" 2>&1 8>&- &
	fi
	TARGET_PID=$!
	PIDS+=("$TARGET_PID")
	wait_ready "$TARGET_PID" "$BASE"
}

# start_clients N OUT: holds N subscribed connections (the first N tokens)
# to $WS; returns once every handshake is done. Sets CLIENTS_PID.
start_clients() {
	local n="$1" out="$2"
	"$RTBENCH" clients -url "$WS" -tokens "$WORK/tokens.txt" -n "$n" >"$out" 2>>"$WORK/clients.log" 8>&- &
	CLIENTS_PID=$!
	PIDS+=("$CLIENTS_PID")
	for _ in $(seq 1 3000); do
		grep -q '^connected' "$out" 2>/dev/null && return 0
		kill -0 "$CLIENTS_PID" 2>/dev/null || die "rtbench clients exited early"
		sleep 0.1
	done
	die "$n connections not established within 300 s"
}

FAILED=()
ROWS=()
DETAILS=()

# ---------------------------------------------------------------------------
# Build, lock, database, credentials.
# ---------------------------------------------------------------------------
RTBENCH="$WORK/rtbench"
log "building rtbench"
go build -o "$RTBENCH" ./internal/realtimebench/cmd/rtbench || die "go build rtbench failed"
if [[ -n "${BENCH_RT_SERVER:-}" ]]; then
	SERVER="$BENCH_RT_SERVER"
elif [[ -n "${MAKELEVEL:-}" && -x "$ROOT/bin/server" ]]; then
	SERVER="$ROOT/bin/server" # make bench has just built it
else
	log "building the server from the working tree"
	go build -o "$WORK/server" . || die "go build failed"
	SERVER="$WORK/server"
fi
[[ -x "$SERVER" ]] || die "$SERVER is not executable"
[[ -f "$CLIENTS_DIR/app/events.graphql" && -f "$CLIENTS_DIR/pos/checkout.graphql" ]] ||
	die "client operations not found under $CLIENTS_DIR (set ONEMEMBER_CLIENTS_DIR)"

take_bench_lock "$LOCK_WAIT"
STARTED=$SECONDS
LOAD_START="$(cut -d' ' -f1-3 /proc/loadavg)"

log "recreating $RT_DB and seeding $MEMBERS members (--no-history)"
psql_admin -c "DROP DATABASE IF EXISTS \"$RT_DB\" WITH (FORCE)" -c "CREATE DATABASE \"$RT_DB\"" >&2
t0=$SECONDS
DATABASE_URL="$RT_URL" LOG_LEVEL=warn SEED_ADMIN_PASSWORD="bench-admin-password" \
	timeout 1200 "$SERVER" seed --members "$MEMBERS" --no-history >&2 8>&- || die "seeding failed"
SEED_SECONDS=$((SECONDS - t0))

mint() {
	DATABASE_URL="$RT_URL" LOG_LEVEL=warn ACCESS_TOKEN_TTL=2h timeout 900 "$SERVER" mint-tokens "$@" 8>&-
}
log "minting $NEED member tokens and their member numbers (server mint-tokens --seed $MINT_SEED)"
t0=$SECONDS
mint --count "$NEED" --seed "$MINT_SEED" >"$WORK/tokens.txt" || die "mint-tokens failed"
mint --member-numbers --count "$NEED" --seed "$MINT_SEED" >"$WORK/numbers.txt" || die "mint-tokens --member-numbers failed"
mint --api-client >"$WORK/secret.txt" || die "mint-tokens --api-client failed"
MINT_SECONDS=$((SECONDS - t0))
[[ "$(wc -l <"$WORK/tokens.txt")" -eq "$NEED" && "$(sort -u "$WORK/tokens.txt" | wc -l)" -eq "$NEED" ]] ||
	die "mint-tokens did not print $NEED distinct tokens"
rt_psql -tAc 'SELECT code FROM stores ORDER BY code' >"$WORK/stores.txt"
[[ -s "$WORK/stores.txt" ]] || die "no stores in $RT_DB"
# Every member gets an account now (as on a member's first change), so that
# no ingest run pays for more first orders than another.
rt_psql -c 'INSERT INTO accounts (created_at, updated_at, member_id) SELECT now(), now(), id FROM members ON CONFLICT (member_id) DO NOTHING' -c 'VACUUM ANALYZE' >&2

# ---------------------------------------------------------------------------
# idle: RSS per idle subscribed connection, server and reference.
# ---------------------------------------------------------------------------
# idle_measure KIND N: one target process, N connections; sets M_CONN
# (connected), M_RSS (RSS delta, kB), M_HEAP (Go heap+stack in use delta,
# bytes), M_GOR (goroutines delta) and M_SECS (seconds to connect).
# free_memory: the target collects its garbage and returns free pages to
# the OS (POST /debug/free-memory, development builds and the reference),
# so that RSS and heap readings count what it holds, not what startup or
# the last handshakes left behind for a collection that an idle process
# may not run for minutes.
free_memory() {
	curl -fsS -X POST "$BASE/debug/free-memory" >/dev/null || die "POST $BASE/debug/free-memory failed"
	sleep 1
}
idle_measure() {
	local kind="$1" n="$2" out="$WORK/idle-$1-$2.out" r0 r1 h0 h1 g0 g1 open connected ended secs
	start_target "$kind"
	settle "$TARGET_PID"
	free_memory
	r0="$(rss_kb "$TARGET_PID")"
	h0=$(($(metric "$BASE" go_memstats_heap_inuse_bytes) + $(metric "$BASE" go_memstats_stack_inuse_bytes)))
	g0="$(metric "$BASE" go_goroutines)"
	start_clients "$n" "$out"
	settle "$TARGET_PID"
	free_memory
	r1="$(rss_kb "$TARGET_PID")"
	h1=$(($(metric "$BASE" go_memstats_heap_inuse_bytes) + $(metric "$BASE" go_memstats_stack_inuse_bytes)))
	g1="$(metric "$BASE" go_goroutines)"
	if [[ "$kind" == server ]]; then open="$(metric "$BASE" onemember_websockets_open)"; else open="$(metric "$BASE" refserver_websockets_open)"; fi
	stop_pid "$CLIENTS_PID"
	stop_pid "$TARGET_PID"
	connected="$(awk 'NR == 1 { print $2 }' "$out")"
	secs="$(awk 'NR == 1 { sub(/s$/, "", $6); print $6 }' "$out")"
	ended="$(jget "$out" ended)"
	log "idle $kind $n: $connected connected in ${secs}s, RSS ${r0} -> ${r1} kB, heap+stack $h0 -> $h1 B, goroutines $g0 -> $g1, open $open, ended ${ended:-?}"
	if ((connected != n)); then FAILED+=("idle $kind $n: only $connected of $n connections ($(jget "$out" reasons))"); fi
	if [[ "${ended:-0}" != 0 ]]; then FAILED+=("idle $kind $n: $ended connections ended during the measurement ($(jget "$out" reasons))"); fi
	if [[ "$open" != "$connected" ]]; then FAILED+=("idle $kind $n: the $kind reports $open open connections, the clients $connected"); fi
	M_CONN="$connected" M_RSS=$((r1 - r0)) M_HEAP=$((h1 - h0)) M_GOR=$((g1 - g0)) M_SECS="$secs"
}

IDLE_ROWS=()
if wants idle; then
	for n in "${IDLE_LEVELS[@]}"; do
		log "idle: $n connections to the server"
		idle_measure server "$n"
		sc="$M_CONN" srss="$M_RSS" sheap="$M_HEAP" sgor="$M_GOR" ssecs="$M_SECS"
		log "idle: $n connections to the reference"
		idle_measure ref "$n"
		rc="$M_CONN" rrss="$M_RSS" rheap="$M_HEAP" rgor="$M_GOR" rsecs="$M_SECS"
		s_per="$(calc '%.1f' "$srss * 1024 / $sc / 1000")"
		r_per="$(calc '%.1f' "$rrss * 1024 / $rc / 1000")"
		ratio="$(calc '%.2f' "($rrss > 0) ? $srss / $rrss : 0")"
		IDLE_ROWS+=("| $n | $s_per KB | $r_per KB | $ratio | $(calc '%.1f' "$sheap / $sc / 1000") KB | $(calc '%.1f' "$rheap / $rc / 1000") KB | $(calc '%.1f' "$sgor / $sc") | $(calc '%.1f' "$rgor / $rc") | ${ssecs} s / ${rsecs} s |")
		DETAILS+=("- idle $n: server $s_per KB/connection ($(meets "$s_per" '<=' 20) ≤ 20 KB), $ratio × the reference ($(meets "$ratio" '<=' 2) ≤ 2×)")
	done
fi

# ---------------------------------------------------------------------------
# ingest: ingestOrder throughput without, with, and again without subscribers.
# ---------------------------------------------------------------------------
# ingest_run LABEL WARMUP: one measured ingest run against $BASE, orders for
# the first $SUBSCRIBERS members; appends a row; sets RPS.
ingest_load() { # ingest_load SECONDS OUT
	timeout $(($1 + 120)) "$RTBENCH" ingest -url "$BASE/query" -secret-file "$WORK/secret.txt" \
		-members-file "$WORK/numbers.txt" -members "$SUBSCRIBERS" -stores-file "$WORK/stores.txt" \
		-c "$INGEST_CONNS" -d "${1}s" >"$2" 2>>"$WORK/ingest.log" 8>&- || die "rtbench ingest failed"
}
ingest_run() {
	local label="$1" warm="$2" out="$WORK/ingest-$3.out" c0 c1 b0 t0 b1 t1 ok
	if ((warm > 0)); then ingest_load "$warm" "$WORK/ingest-warmup.json"; fi
	c0="$(cpu_ticks "$TARGET_PID")"
	read -r b0 t0 < <(machine_cpu)
	ingest_load "$INGEST_DURATION" "$out"
	c1="$(cpu_ticks "$TARGET_PID")"
	read -r b1 t1 < <(machine_cpu)
	RPS="$(jget "$out" rps)"
	ok="$(jget "$out" ok)"
	local failed
	failed="$(jget "$out" failed)"
	if ((failed > 0)); then FAILED+=("ingest $label: $failed requests failed: $(jget "$out" first_error)"); fi
	US="$(calc '%.0f' "($ok > 0) ? ($c1 - $c0) * 1000000 / $CLK_TCK / $ok : 0")"
	ROWS+=("| $label | $(calc '%.1f' "$RPS") | $(jget "$out" p50_ms) ms | $(jget "$out" p99_ms) ms | $ok | $failed | $US µs | $(calc '%.2f' "($t1 > $t0) ? $NPROC * ($b1 - $b0) / ($t1 - $t0) : 0") |")
	log "ingest $label: $(cat "$out")"
}
# ingest_stopped SUFFIX: one run on a server whose bus is off (EVENT_BUS=
# false: no delivery, no wake-ups, no NOTIFY); sets RPS.
ingest_stopped() {
	log "ingest: server with the bus stopped ($1)"
	start_target server false
	settle "$TARGET_PID"
	ingest_run "bus stopped ($1)" "$INGEST_WARMUP" "stopped-$1"
	stop_pid "$TARGET_PID"
}
if wants ingest; then
	# The bus-stopped runs come before and after the others, so that the
	# drift of a shared machine falls on both sides of the comparison.
	ingest_stopped before
	RPS_STOPPED_BEFORE="$RPS"
	log "ingest: server with the bus running, orders for the first $SUBSCRIBERS minted members"
	start_target server
	settle "$TARGET_PID"
	ingest_run "no subscribers (before)" "$INGEST_WARMUP" before
	RPS_BEFORE="$RPS" US_BEFORE="$US"
	start_clients "$SUBSCRIBERS" "$WORK/ingest-clients.out"
	settle "$TARGET_PID"
	ingest_run "$SUBSCRIBERS idle subscribers" 0 with
	RPS_WITH="$RPS" US_WITH="$US"
	stop_pid "$CLIENTS_PID"
	SUB_EVENTS="$(jget "$WORK/ingest-clients.out" events)"
	SUB_ENDED="$(jget "$WORK/ingest-clients.out" ended)"
	if [[ "${SUB_ENDED:-0}" != 0 ]]; then FAILED+=("ingest: $SUB_ENDED subscribers were disconnected ($(jget "$WORK/ingest-clients.out" reasons))"); fi
	settle "$TARGET_PID"
	ingest_run "no subscribers (after)" 0 after
	RPS_AFTER="$RPS" US_AFTER="$US"
	stop_pid "$TARGET_PID"
	ingest_stopped after
	RPS_STOPPED="$(calc '%.3f' "($RPS_STOPPED_BEFORE + $RPS) / 2")"
	INGEST_RATIO="$(calc '%.3f' "$RPS_WITH * 2 / ($RPS_BEFORE + $RPS_AFTER)")"
	INGEST_CPU_RATIO="$(calc '%.3f' "($US_WITH > 0) ? ($US_BEFORE + $US_AFTER) / 2 / $US_WITH : 0")"
	BUS_RATIO="$(calc '%.3f' "$RPS_WITH / $RPS_STOPPED")"
	BUS_IDLE_RATIO="$(calc '%.3f' "($RPS_BEFORE + $RPS_AFTER) / 2 / $RPS_STOPPED")"
	DETAILS+=("- ingest: with $SUBSCRIBERS subscribers $(calc '%.1f' "$RPS_WITH") req/s = $INGEST_RATIO × the mean without ($(meets "$INGEST_RATIO" '>=' 0.9) ≥ 0.90); server CPU per order without ÷ with = $INGEST_CPU_RATIO; the subscribers received $SUB_EVENTS events during their run")
	DETAILS+=("- ingest, bus running vs stopped: with $SUBSCRIBERS subscribers $BUS_RATIO × the mean of the bus-stopped runs ($(meets "$BUS_RATIO" '>=' 0.9) ≥ 0.90); bus running without subscribers $BUS_IDLE_RATIO ×")
fi

# ---------------------------------------------------------------------------
# delivery: commit-to-receive latency at each step of BENCH_RT_STEPS.
# ---------------------------------------------------------------------------
DELIVERY_ROWS=()
# delivery_run LABEL NOTIFY DURATION STEPS: one rtbench deliver process (the
# first $SUBSCRIBERS tokens subscribed, then each step); a row per step.
delivery_run() {
	local label="$1" out="$WORK/delivery-$2.out" n=0 line f
	timeout $((($3 + 15) * $(wc -w <<<"$4") + 300)) "$RTBENCH" deliver -url "$WS" -db "$RT_URL" -tokens "$WORK/tokens.txt" \
		-n "$SUBSCRIBERS" -steps "$4" -d "${3}s" -workers "$WORKERS" -notify="$2" -server-pid "$TARGET_PID" \
		>"$out" 2>>"$WORK/deliver.log" 8>&- || die "rtbench deliver failed"
	while IFS= read -r line; do
		n=$((n + 1))
		f="$WORK/delivery-$2-$n.json"
		printf '%s\n' "$line" >"$f"
		log "delivery $label, step $n: $line"
		for k in lost duplicates out_of_order foreign gen_errors failed ended; do
			if [[ "$(jget "$f" "$k")" != 0 ]]; then FAILED+=("delivery $label: $k = $(jget "$f" "$k") ($(jget "$f" first_error) $(jget "$f" reasons))"); fi
		done
		[[ "$(jget "$f" warmup_ok)" == true ]] || FAILED+=("delivery $label: not every warm-up event arrived within 30 s")
		DELIVERY_ROWS+=("| $label | $(jget "$f" subscribers) | $(jget "$f" batch) | $(calc '%.0f' "$(jget "$f" rate)") / $(calc '%.0f' "$(jget "$f" target_rate)") | $(jget "$f" received) of $(jget "$f" events) | $(jget "$f" p50_ms) ms | $(jget "$f" p90_ms) ms | $(jget "$f" p99_ms) ms | $(jget "$f" max_ms) ms | $(jget "$f" tx_p50_ms) / $(jget "$f" tx_p99_ms) ms | $(jget "$f" server_cores) | $(jget "$f" postgres_cores) | $(jget "$f" client_cores) | $(jget "$f" machine_cores) |")
		if [[ "$2" == true ]]; then
			local p99 rate target
			p99="$(jget "$f" p99_ms)" rate="$(jget "$f" rate)" target="$(jget "$f" target_rate)"
			DETAILS+=("- delivery at $target events/s, $(jget "$f" batch) per transaction: p99 $p99 ms ($(meets "$p99" '<=' 200) ≤ 200 ms), $(calc '%.0f' "$rate") events/s achieved ($(meets "$rate" '>=' "$target * 0.95") ≥ 95% of the target)")
		fi
		if [[ -n "$(jget "$f" slow)" ]]; then DETAILS+=("  - $label, step $n: slow 100 ms windows (s since the step began: slowest ms): $(jget "$f" slow)"); fi
	done <"$out"
}
if wants delivery; then
	log "delivery: $SUBSCRIBERS subscribers, steps $STEPS, ${DELIVERY_DURATION}s each"
	start_target server
	settle "$TARGET_PID"
	delivery_run "NOTIFY" true "$DELIVERY_DURATION" "$STEPS"
	if [[ -n "${TAILER_STEPS// /}" ]]; then
		delivery_run "tailer only" false "$TAILER_DURATION" "$TAILER_STEPS"
	fi
	stop_pid "$TARGET_PID"
fi

# ---------------------------------------------------------------------------
# Report.
# ---------------------------------------------------------------------------
LOAD_END="$(cut -d' ' -f1-3 /proc/loadavg)"
CPU_MODEL="$(lscpu 2>/dev/null | sed -n 's/^Model name:[[:space:]]*//p' | head -n1)"
RAM="$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
PG_VERSION="$(psql_admin -tAc 'SHOW server_version')"
BUILD="$(go version -m "$SERVER" 2>/dev/null | awk '$1 == "build" && $2 ~ /^vcs\.revision=/ { r = substr($2, 14, 12) } $1 == "build" && $2 == "vcs.modified=true" { m = " plus uncommitted changes" } END { if (r != "") printf "commit %s%s", r, m }')" || true
COMMAND="scripts/bench-realtime.sh"
[[ -n "${MAKELEVEL:-}" ]] && COMMAND="make bench"
for v in $(compgen -v BENCH_RT_) GOGC GOMAXPROCS GOMEMLIMIT DB_MAX_OPEN_CONNS; do
	if [[ -n "${!v:-}" ]]; then COMMAND="$v=${!v} $COMMAND"; fi
done

report() {
	printf -- '- machine: %s CPUs (nproc), %s, %s RAM; PostgreSQL %s; open files %s per process\n' "$(nproc)" "$CPU_MODEL" "$RAM" "$PG_VERSION" "$HARD_NOFILE"
	printf -- '- server: %s, built from %s\n' "${SERVER#"$ROOT"/}" "${BUILD:-an unknown commit}"
	# shellcheck disable=SC2016 # backquotes are Markdown
	printf -- '- command: `%s`; seeded %s members in %ss, minted %s tokens in %ss; load average %s at the start, %s at the end; total %ss\n' \
		"$COMMAND" "$MEMBERS" "$SEED_SECONDS" "$NEED" "$MINT_SECONDS" "$LOAD_START" "$LOAD_END" "$((SECONDS - STARTED))"
	if ((${SETTLE_WARNINGS:-0} > 0)); then printf -- '- %s measurements were taken before their process settled\n' "$SETTLE_WARNINGS"; fi
	if ((${#IDLE_ROWS[@]} > 0)); then
		printf '\nIdle subscribed connections (RSS and Go heap+stack in use, after minus before, per connection; KB = 1000 bytes):\n\n'
		printf '| connections | server RSS | reference RSS | ratio | server heap+stack | reference heap+stack | server goroutines | reference goroutines | connect time server / ref |\n'
		printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
		printf '%s\n' "${IDLE_ROWS[@]}"
	fi
	if ((${#ROWS[@]} > 0)); then
		printf '\ningestOrder, %s clients, %ss each, orders for the %s subscribers'"'"' members:\n\n' "$INGEST_CONNS" "$INGEST_DURATION" "$SUBSCRIBERS"
		printf '| run | req/s | p50 | p99 | orders | failed | server CPU per order | machine busy (cores) |\n'
		printf '|---|---:|---:|---:|---:|---:|---:|---:|\n'
		printf '%s\n' "${ROWS[@]}"
	fi
	if ((${#DELIVERY_ROWS[@]} > 0)); then
		printf '\nDelivery (events written by SQL; latency from the writer'"'"'s commit acknowledgement to the subscriber'"'"'s read; CPU in cores while generating):\n\n'
		printf '| path | subscribers | events per tx | events/s achieved / target | received | p50 | p90 | p99 | max | writer tx p50 / p99 | server | PostgreSQL | writer+clients | machine |\n'
		printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
		printf '%s\n' "${DELIVERY_ROWS[@]}"
	fi
	printf '\n'
	if ((${#DETAILS[@]} > 0)); then printf '%s\n' "${DETAILS[@]}"; fi
}
TS="$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RESULTS_DIR"
REPORT="$RESULTS_DIR/realtime-$TS.md"
{
	printf '## OneMember real-time benchmark, %s\n\n' "$(date -u)"
	report
	printf '\n<details><summary>raw output</summary>\n\n```\n'
	for f in "$WORK"/*.out; do
		[[ -e "$f" ]] || continue
		printf '== %s\n' "$(basename "$f")"
		cat "$f"
	done
	printf '```\n</details>\n\n'
} >>"$REPORT"
printf '\n'
report
printf '\nreport: %s\n' "${REPORT#"$ROOT"/}"
if ((${#FAILED[@]} > 0)); then
	log "FAILED:"
	printf '  %s\n' "${FAILED[@]}" >&2
	exit 1
fi
