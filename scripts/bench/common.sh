# Shared by the benchmark scripts (scripts/bench*.sh), sourced after they
# set BENCH_NAME (the log prefix): logging, argument checks, the local
# PostgreSQL URL and the one-benchmark-at-a-time lock.

log() { printf '%s: %s\n' "$BENCH_NAME" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

int_in() { # int_in NAME VALUE MIN MAX
	if ! [[ "$2" =~ ^[0-9]+$ ]] || (($2 < $3 || $2 > $4)); then
		die "$1 must be an integer in [$3, $4], got '$2'"
	fi
}

# parse_local_database_url checks that DATABASE_URL is a postgres:// URL on
# this machine (the benchmarks create and drop databases there) and sets
# URL_SCHEME, URL_AUTHORITY and URL_QUERY for db_url.
parse_local_database_url() {
	[[ "$DATABASE_URL" =~ ^(postgres(ql)?://)([^/?]*)(/[^?]*)?(\?.*)?$ ]] || die "DATABASE_URL must be a postgres:// URL"
	URL_SCHEME="${BASH_REMATCH[1]}"
	URL_AUTHORITY="${BASH_REMATCH[3]}"
	URL_QUERY="${BASH_REMATCH[5]}"
	local host="${URL_AUTHORITY##*@}"
	host="${host%:*}"
	case "$host" in
	127.0.0.1 | localhost | "[::1]") ;;
	*) die "DATABASE_URL host '$host' is not local; the benchmark only targets 127.0.0.1" ;;
	esac
}

# db_url NAME is DATABASE_URL pointing at database NAME.
db_url() { printf '%s%s/%s%s' "$URL_SCHEME" "$URL_AUTHORITY" "$1" "$URL_QUERY"; }

# take_bench_lock WAIT: one benchmark at a time per PostgreSQL server
# (concurrent runs would drop each other's databases and share the CPU
# they measure). The lock is held on file descriptor 8 until the script
# exits; children that outlive a step should be started with 8>&-.
take_bench_lock() {
	LOCK="${TMPDIR:-/tmp}/onemember-bench.$(printf '%s' "$URL_AUTHORITY" | cksum | cut -d' ' -f1).lock"
	exec 8>>"$LOCK"
	if ! flock -n 8; then
		log "another benchmark runs against this PostgreSQL server; waiting for it (at most ${1}s)"
		flock -w "$1" 8 || die "timed out waiting for $LOCK"
	fi
}
