#!/usr/bin/env bash
# capture-ingest-sql.sh prints the SQL statements one ingestOrder sends, with
# their parameters, as PostgreSQL logged them: the material
# scripts/bench/ingest_order.sql is derived from (see its header).
#
#   make build && scripts/bench/capture-ingest-sql.sh
#
# It creates a scratch database (onemember_capture, dropped at exit) on the
# project-local cluster of scripts/ensure-postgres.sh, seeds 1,000 members
# without history, sets log_statement = 'all' on that database only, starts
# bin/server on it and sends IngestOrder (shared/clients/pos/checkout.graphql)
# three times as an API client with ORDERS_WRITE: a warm-up, an order of the
# same member again (printed as "steady"), and a member's first order
# ("first order", which also creates the account). The statements come from
# the cluster's log, $ONEMEMBER_PGBASE/postgres.log (default .pg/). Like
# bench.sh it compares their number with the server's own
# onemember_sql_statements_total.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
cd "$ROOT"
log() { printf 'capture: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

SERVER="${BENCH_SERVER:-$ROOT/bin/server}"
CLIENTS_DIR="${ONEMEMBER_CLIENTS_DIR:-$ROOT/../shared/clients}"
PGLOG="${ONEMEMBER_PGBASE:-$ROOT/.pg}/postgres.log"
DB=onemember_capture
[[ -x "$SERVER" ]] || die "$SERVER not found: run 'make build'"
[[ -r "$PGLOG" ]] || die "$PGLOG not readable: this needs the project-local cluster"

url="$(scripts/ensure-postgres.sh)"
url="${url#DATABASE_URL=}"
[[ "$url" =~ ^(postgres(ql)?://[^/?]*)(/[^?]*)?(\?.*)?$ ]] || die "unexpected DATABASE_URL $url"
ADMIN_URL="${BASH_REMATCH[1]}/postgres${BASH_REMATCH[4]}"
DB_URL="${BASH_REMATCH[1]}/$DB${BASH_REMATCH[4]:-?sslmode=disable}"
psql_admin() { psql -X -q -w -v ON_ERROR_STOP=1 -d "$ADMIN_URL" "$@"; }

WORK="$(mktemp -d)"
PID=""
cleanup() {
	if [[ -n "$PID" ]]; then
		kill "$PID" 2>/dev/null || true
		wait "$PID" 2>/dev/null || true
	fi
	psql_admin -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
	rm -rf "$WORK"
}
trap cleanup EXIT

psql_admin -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB" 2>/dev/null
export DATABASE_URL="$DB_URL" LOG_LEVEL=warn
SEED_ADMIN_PASSWORD=capture-admin-password "$SERVER" seed --members 1000 --no-history >/dev/null
secret="$("$SERVER" mint-tokens --api-client)"
mapfile -t members < <("$SERVER" mint-tokens --member-numbers --count 2)
psql_admin -c "ALTER DATABASE $DB SET log_statement = 'all'"

port=$((20000 + RANDOM % 40000))
LISTEN_ADDR="127.0.0.1:$port" "$SERVER" serve >"$WORK/server.log" 2>&1 &
PID=$!
for _ in $(seq 1 100); do
	curl -fs -o /dev/null "http://127.0.0.1:$port/readyz" && break
	sleep 0.1
done

query="$(awk '/^mutation IngestOrder[ ({]/ { on = 1 } on { print } on && /^}/ { exit }' "$CLIENTS_DIR/pos/checkout.graphql")"
[[ -n "$query" ]] || die "IngestOrder not found in $CLIENTS_DIR/pos/checkout.graphql"
query="$(printf '%s' "$query" | sed 's/\\/\\\\/g; s/"/\\"/g' | awk '{ printf "%s\\n", $0 }')"
paid="$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)"
order() { # order EXTERNAL_ID MEMBER_NO
	curl -fsS -H "Authorization: Bearer $secret" -H 'Content-Type: application/json' "http://127.0.0.1:$port/query" --data \
		"{\"query\":\"$query\",\"variables\":{\"input\":{\"externalId\":\"$1\",\"channel\":\"POS\",\"storeCode\":\"SUPER-SH-01\",\"member\":{\"memberNo\":\"$2\"},\"paidAt\":\"$paid\",\"amount\":3000,\"items\":[{\"sku\":\"SKU-1\",\"name\":\"item 1\",\"quantity\":1,\"unitPrice\":1000,\"amount\":1000},{\"sku\":\"SKU-2\",\"name\":\"item 2\",\"quantity\":2,\"unitPrice\":1000,\"amount\":2000}],\"payments\":[{\"method\":\"CASH\",\"amount\":3000}]}}}"
}
statements() { curl -fsS "http://127.0.0.1:$port/metrics" | awk '$1 == "onemember_sql_statements_total" { print $2 }'; }

# capture LABEL EXTERNAL_ID MEMBER_NO: one order, its logged statements.
capture() {
	local before lines response
	before="$(statements)"
	lines="$(wc -l <"$PGLOG")"
	response="$(order "$2" "$3")"
	[[ "$response" == *'"duplicate":false'* ]] || die "ingestOrder failed: $response"
	sleep 0.5
	printf '\n==== %s: the server counted %s statements\n' "$1" "$(($(statements) - before))"
	# Log entries start with a timestamp; continuation lines (multi-line
	# SQL) are joined to their entry. Only the scratch database logs
	# statements.
	tail -n +"$((lines + 1))" "$PGLOG" | awk -v db="$DB" '
		function flush() {
			if (text == "") return
			if (text ~ /^LOG:  (execute [^:]*|statement): /) {
				sub(/^LOG:  (execute [^:]*|statement): /, "", text)
				n++
				printf "-- %d\n%s\n", n, text
			} else if (text ~ /^DETAIL:  parameters: / && n > 0) {
				sub(/^DETAIL:  /, "", text)
				printf "--   %s\n", text
			}
			text = ""
		}
		/^[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9] / {
			flush()
			line = $0
			sub(/^[^[]*\[[0-9]+\] /, "", line)
			text = line
			next
		}
		{ gsub(/^[ \t]+/, " "); text = text $0 }
		END { flush(); printf "-- %d statements logged\n", n }'
}

order capture-0 "${members[0]}" >/dev/null
capture steady capture-1 "${members[0]}"
capture "first order" capture-2 "${members[1]}"
