#!/usr/bin/env bash
# ensure-postgres.sh makes a PostgreSQL server available for development and
# tests, and prints exactly one line on stdout:
#
#   DATABASE_URL=postgres://...
#
# Everything else goes to stderr, so callers can do:
#
#   eval "export $(scripts/ensure-postgres.sh)"
#
# Usage: scripts/ensure-postgres.sh [start|stop|status]
#
#   start (default)  If DATABASE_URL is set, check that it is reachable and
#                    print it back unchanged. Otherwise initialise (once) and
#                    start a project-local cluster, create the database and
#                    print its URL. Idempotent and safe to run concurrently.
#   stop             Stop the project-local cluster (fast shutdown).
#   status           Report on stderr whether the project-local cluster runs;
#                    exit 0 when it does, 3 when it does not.
#
# Environment:
#   DATABASE_URL       use this server instead of the project-local cluster
#   ONEMEMBER_PGBASE   directory for the cluster's files (default <repo>/.pg)
#   ONEMEMBER_PGDATA   data directory (default $ONEMEMBER_PGBASE/data)
#   ONEMEMBER_PGPORT   TCP port on 127.0.0.1 (default 55432)
#   ONEMEMBER_DB       database to create (default onemember)
#
# The cluster trusts every local connection (auth=trust) and listens on
# 127.0.0.1 only: it is for development and tests, never for real data.
set -euo pipefail

log() { printf 'ensure-postgres: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)"
PORT="${ONEMEMBER_PGPORT:-55432}"
DB="${ONEMEMBER_DB:-onemember}"
CMD="${1:-start}"

[[ "$PORT" =~ ^[0-9]+$ ]] || die "ONEMEMBER_PGPORT must be a number, got '$PORT'"
[[ "$DB" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "ONEMEMBER_DB must be a plain identifier, got '$DB'"

IS_ROOT=0
[[ "$(id -u)" -eq 0 ]] && IS_ROOT=1

# find_bindir prints the directory holding initdb, pg_ctl and postgres
# (highest installed major version first), or fails.
find_bindir() {
	local d
	while IFS= read -r d; do
		if [[ -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]]; then
			printf '%s\n' "$d"
			return 0
		fi
	done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k5,5 -rn)
	if command -v pg_config >/dev/null 2>&1; then
		d="$(pg_config --bindir 2>/dev/null || true)"
		if [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" && -x "$d/postgres" ]]; then
			printf '%s\n' "$d"
			return 0
		fi
	fi
	return 1
}

install_postgres() {
	local sudo=()
	if [[ "$IS_ROOT" -eq 0 ]]; then
		command -v sudo >/dev/null 2>&1 || die "PostgreSQL is not installed and sudo is unavailable; install the 'postgresql' package"
		sudo=(sudo)
	fi
	log "installing PostgreSQL server packages with apt-get (Debian's own 'main' cluster it starts is left alone)"
	{
		"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update &&
			"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql
	} >&2 || die "apt-get install postgresql failed"
}

# client_tool prints the path of a client program (psql, pg_isready),
# preferring the server's bindir, or fails.
client_tool() {
	local name="$1" d
	if d="$(find_bindir)" && [[ -x "$d/$name" ]]; then
		printf '%s\n' "$d/$name"
		return 0
	fi
	command -v "$name" 2>/dev/null
}

# ---------------------------------------------------------------------------
# DATABASE_URL given: only check it.
# ---------------------------------------------------------------------------
if [[ "$CMD" == "start" && -n "${DATABASE_URL:-}" ]]; then
	if tool="$(client_tool pg_isready)"; then
		"$tool" -q -t 10 -d "$DATABASE_URL" ||
			die "DATABASE_URL is set but the server is not accepting connections (pg_isready exit $?)"
	elif tool="$(client_tool psql)"; then
		"$tool" -X -q -w -c 'SELECT 1' "$DATABASE_URL" >/dev/null ||
			die "DATABASE_URL is set but psql cannot connect"
	else
		log "DATABASE_URL is set; neither pg_isready nor psql found, not checking it"
	fi
	printf 'DATABASE_URL=%s\n' "$DATABASE_URL"
	exit 0
fi

# ---------------------------------------------------------------------------
# Project-local cluster.
# ---------------------------------------------------------------------------
PGBASE="${ONEMEMBER_PGBASE:-$ROOT/.pg}"

# as_pg runs a command as the cluster's owner: the postgres OS user when we
# are root (initdb and postgres refuse to run as root), else ourselves. It
# runs from PGBASE so that the postgres user is not left in an unreadable
# working directory.
#
# The lock descriptor (9) is closed for the child: a postmaster inheriting it
# would hold the lock for as long as it runs.
as_pg() {
	if [[ "$IS_ROOT" -eq 1 ]]; then
		(cd "$PGBASE" && as_postgres_user "$@") 9>&-
	else
		(cd "$PGBASE" && "$@") 9>&-
	fi
}

as_postgres_user() {
	if command -v runuser >/dev/null 2>&1; then
		runuser -u postgres -- "$@"
	else
		su -s /bin/sh postgres -c "$(printf '%q ' "$@")"
	fi
}

if [[ "$IS_ROOT" -eq 1 ]]; then
	if ! id -u postgres >/dev/null 2>&1; then
		log "creating the 'postgres' system user"
		useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres >&2 ||
			die "useradd postgres failed"
	fi
	# The postgres user must reach PGBASE through every parent directory.
	# Rather than loosening permissions of directories we do not own (such as
	# /root), fall back to a per-checkout directory under /var/tmp.
	parent="$(dirname "$PGBASE")"
	mkdir -p "$parent"
	if ! (cd / && as_postgres_user test -x "$parent") 2>/dev/null; then
		hash="$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
		fallback="/var/tmp/onemember-pg-$hash"
		log "note: $parent is not traversable by the postgres user; using $fallback instead of $PGBASE"
		PGBASE="$fallback"
	fi
fi

PGDATA_DIR="${ONEMEMBER_PGDATA:-$PGBASE/data}"
LOGFILE="$PGBASE/postgres.log"
SOCKDIR="$PGBASE/run"
# Unix socket paths are limited to ~107 bytes; keep the socket short.
if ((${#SOCKDIR} + 20 > 100)); then
	SOCKDIR="/tmp/onemember-pg-$(printf '%s' "$PGBASE" | sha256sum | cut -c1-12)"
	log "note: socket path under $PGBASE would be too long; using $SOCKDIR"
fi

mkdir -p "$PGBASE" "$SOCKDIR"
# Keep the whole directory out of git (a nested .gitignore ignoring itself).
[[ -f "$PGBASE/.gitignore" ]] || printf '*\n' >"$PGBASE/.gitignore"
if [[ "$IS_ROOT" -eq 1 ]]; then
	chown postgres: "$PGBASE" "$SOCKDIR" "$PGBASE/.gitignore"
	chmod 0755 "$PGBASE"
	[[ -e "$LOGFILE" ]] && chown postgres: "$LOGFILE"
fi

BINDIR="$(find_bindir || true)"
if [[ "$CMD" == "start" && -z "$BINDIR" ]]; then
	install_postgres
	BINDIR="$(find_bindir)" || die "PostgreSQL server binaries not found after installing"
fi
[[ -n "$BINDIR" ]] || die "PostgreSQL server binaries not found (looked in /usr/lib/postgresql/*/bin and pg_config --bindir)"

# Serialise concurrent invocations (go test runs packages in parallel).
exec 9>>"$PGBASE/.lock"
flock -w 300 9 || die "timed out waiting for the lock on $PGBASE/.lock"

# is_running reports whether the cluster in PGDATA_DIR runs. A postmaster.pid
# whose process is gone, or whose PID now belongs to an unrelated process
# (common after a container restart), is stale and removed.
is_running() {
	local pidfile="$PGDATA_DIR/postmaster.pid" pid cwd
	[[ -f "$pidfile" ]] || return 1
	pid="$(head -n1 "$pidfile" 2>/dev/null || true)"
	if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
		# The postmaster chdir()s into its data directory.
		cwd="$(readlink "/proc/$pid/cwd" 2>/dev/null || true)"
		if [[ -z "$cwd" || "$cwd" == "$(cd "$PGDATA_DIR" && pwd -P)" ]]; then
			return 0
		fi
	fi
	log "removing stale $pidfile (pid ${pid:-?} is not this cluster's postmaster)"
	rm -f "$pidfile" "$SOCKDIR/.s.PGSQL.$PORT.lock"
	return 1
}

case "$CMD" in
status)
	if is_running; then
		log "running: data $PGDATA_DIR, port $PORT, log $LOGFILE"
		exit 0
	fi
	log "not running (data $PGDATA_DIR)"
	exit 3
	;;
stop)
	if is_running; then
		as_pg "$BINDIR/pg_ctl" -D "$PGDATA_DIR" -m fast -w stop >&2
	else
		log "not running"
	fi
	exit 0
	;;
start) ;;
*) die "unknown command '$CMD' (want start, stop or status)" ;;
esac

if [[ ! -f "$PGDATA_DIR/PG_VERSION" ]]; then
	locale="C"
	if locale -a 2>/dev/null | grep -qix 'c\.utf-\?8'; then
		locale="C.UTF-8"
	fi
	log "initialising a new cluster in $PGDATA_DIR (locale $locale)"
	mkdir -p "$PGDATA_DIR"
	[[ "$IS_ROOT" -eq 1 ]] && chown postgres: "$PGDATA_DIR"
	chmod 0700 "$PGDATA_DIR"
	as_pg "$BINDIR/initdb" -D "$PGDATA_DIR" --auth=trust --username=postgres \
		--encoding=UTF8 --locale="$locale" >&2 || {
		find "$PGDATA_DIR" -mindepth 1 -delete 2>/dev/null || true
		die "initdb failed"
	}
	as_pg tee -a "$PGDATA_DIR/postgresql.conf" >/dev/null <<EOF

# --- added by scripts/ensure-postgres.sh ---
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCKDIR'
max_connections = 300
shared_buffers = 512MB
synchronous_commit = off
fsync = on
# Checkpoints by time (every 5 minutes) rather than every half gigabyte of
# WAL: order ingestion and coupon claims write a lot of it.
max_wal_size = 4GB
log_min_messages = warning
max_locks_per_transaction = 256
timezone = 'UTC'
EOF
fi

if ! is_running; then
	log "starting PostgreSQL (data $PGDATA_DIR, port $PORT, log $LOGFILE)"
	# -o overrides the port and socket dir in case the environment changed
	# since initdb.
	if ! as_pg "$BINDIR/pg_ctl" -D "$PGDATA_DIR" -l "$LOGFILE" -w -t 60 \
		-o "-p $PORT -k '$SOCKDIR'" start >&2; then
		tail -n 30 "$LOGFILE" >&2 2>/dev/null || true
		die "pg_ctl start failed (log: $LOGFILE)"
	fi
fi

PSQL="$(client_tool psql)" || die "psql not found"
psql_admin() {
	"$PSQL" -X -q -w -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres "$@"
}

for _ in $(seq 1 50); do
	psql_admin -tAc 'SELECT 1' >/dev/null 2>&1 && break
	sleep 0.2
done
exists="$(psql_admin -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ||
	die "cannot connect to 127.0.0.1:$PORT as postgres"
if [[ "$exists" != "1" ]]; then
	log "creating database $DB"
	psql_admin -c "CREATE DATABASE \"$DB\"" >&2 || die "CREATE DATABASE $DB failed"
fi

printf 'DATABASE_URL=postgres://postgres@127.0.0.1:%s/%s?sslmode=disable\n' "$PORT" "$DB"
