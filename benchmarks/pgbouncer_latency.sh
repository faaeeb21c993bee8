#!/usr/bin/env bash
# Connection latency through PgBouncer versus straight to PostgreSQL, side by side in
# one run: pgbench -C (a new connection for every transaction) -S (select-only) against
#   1. PostgreSQL directly,
#   2. a private PgBouncer (transaction pooling, trust: the pooling alone),
#   3. a private PgBouncer (transaction pooling, SCRAM-SHA-256 with an auth_file built by
#      filter_plugins/scram.py: what the platform runs).
# It prints tps and average latency (and pgbench's average connection time) for each.
#
# Needs a PostgreSQL that lets $PGUSER in without a password from this host (the
# development machines' 127.0.0.1:5432, user postgres), pgbench (postgresql-contrib)
# and pgbouncer. It creates a throwaway database and removes it, with the private
# pgbouncers, on exit.
#   benchmarks/pgbouncer_latency.sh            # 10 s per run, 4 clients
#   DURATION=30 CLIENTS=8 benchmarks/pgbouncer_latency.sh
set -euo pipefail

export PGHOST="${PGHOST:-127.0.0.1}" PGPORT="${PGPORT:-5432}" PGUSER="${PGUSER:-postgres}"
duration="${DURATION:-10}"
clients="${CLIENTS:-4}"
run_as="${PGBOUNCER_RUN_AS:-postgres}"   # pgbouncer will not run as root
root="$(cd "$(dirname "$0")/.." && pwd)"
python="${PYTHON:-$root/.venv/bin/python}"   # the filter imports ansible
db="morpheus_bench_$$"
work="$(mktemp -d)"
pids=()

cleanup() {
    # runuser's children: the pgbouncers themselves.
    for pid in "${pids[@]}"; do pkill -P "$pid" 2>/dev/null || true; kill "$pid" 2>/dev/null || true; done
    dropdb --if-exists "$db" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# A SCRAM secret for the auth_file, made by the platform's own filter.
password="bench-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
secret="$(PYTHONPATH="$root/filter_plugins" "$python" -c '
import base64, os, sys
from scram import scram_sha256_secret
print(scram_sha256_secret(sys.argv[1], base64.b64encode(os.urandom(16)).decode()))
' "$password")"
printf '"%s" "%s"\n' "$PGUSER" "$secret" > "$work/userlist.txt"

start_pgbouncer() {  # name auth_type; sets $port (not a $(...): pgbouncer stays behind)
    local name="$1" auth="$2"
    port="$(free_port)"
    cat > "$work/$name.ini" <<INI
[databases]
$db = host=$PGHOST port=$PGPORT dbname=$db
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir = $work
logfile = $work/$name.log
pidfile = $work/$name.pid
auth_type = $auth
auth_file = $work/userlist.txt
pool_mode = transaction
default_pool_size = $clients
max_client_conn = 200
ignore_startup_parameters = extra_float_digits
INI
    chown -R "$run_as" "$work"
    if [ "$(id -u)" = 0 ]; then
        runuser -u "$run_as" -- pgbouncer -q "$work/$name.ini" >"$work/$name.out" 2>&1 &
    else
        pgbouncer -q "$work/$name.ini" >"$work/$name.out" 2>&1 &
    fi
    pids+=("$!")
    for _ in $(seq 1 50); do
        if grep -q 'listening on' "$work/$name.log" 2>/dev/null; then
            return
        fi
        sleep 0.1
    done
    echo "pgbouncer ($name) did not start:" >&2
    cat "$work/$name.out" "$work/$name.log" >&2 2>/dev/null
    exit 1
}

createdb "$db"
pgbench -i -s 1 -q "$db" >/dev/null 2>&1

start_pgbouncer trust trust
trust_port="$port"
start_pgbouncer scram scram-sha-256
scram_port="$port"

run() {  # label host port [password]
    local label="$1" host="$2" port="$3" pass="${4:-}" out tps lat conn
    out="$(PGPASSWORD="$pass" pgbench -n -C -S -T "$duration" -c "$clients" -j 2 -h "$host" -p "$port" "$db" 2>&1)" || {
        echo "$out" >&2
        exit 1
    }
    tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -1)"
    lat="$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' <<<"$out")"
    conn="$(sed -n 's/^average connection time = \([0-9.]*\) ms.*/\1/p' <<<"$out")"
    printf '%-44s %10s %14s %18s\n' "$label" "$tps" "$lat" "${conn:-n/a}"
}

echo "pgbench -C -S -T $duration -c $clients -j 2 (new connection per transaction), $(pgbouncer --version | head -1), $(psql -X -At -c 'SHOW server_version' postgres | cut -d' ' -f1)"
printf '%-44s %10s %14s %18s\n' "target" "tps" "latency (ms)" "connect (ms)"
run "direct PostgreSQL $PGHOST:$PGPORT" "$PGHOST" "$PGPORT"
run "PgBouncer transaction pool, trust" 127.0.0.1 "$trust_port"
run "PgBouncer transaction pool, SCRAM-SHA-256" 127.0.0.1 "$scram_port" "$password"
