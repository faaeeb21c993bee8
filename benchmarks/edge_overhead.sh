#!/usr/bin/env bash
# Requests per second and p95 latency of the trivial test upstream reached directly
# versus through the nginx role's front door (HTTPS, HTTP/1.1 keepalive), same run, same
# load tool (wrk --latency, inside the `nginx` Molecule instance, so both paths share the
# machine and only the front door differs).
#
#   benchmarks/edge_overhead.sh            # converge the nginx scenario, then measure
#   SKIP_CONVERGE=1 benchmarks/edge_overhead.sh
#   DURATION=20s CONNECTIONS=64 THREADS=2 benchmarks/edge_overhead.sh
#
# Leaves the instance running; `molecule destroy -s nginx` removes it.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
instance=morpheus-nginx
name=app.morpheus.test          # the storefront: no per-client API rate limit
# (URLs name their port: the minimal image has no /etc/services for wrk to look "https" up)
duration=${DURATION:-10s}
connections=${CONNECTIONS:-32}
threads=${THREADS:-2}

if [[ -z "${SKIP_CONVERGE:-}" ]]; then
    molecule converge -s nginx > /tmp/edge_overhead_converge.log 2>&1 \
        || { tail -40 /tmp/edge_overhead_converge.log; exit 1; }
fi

docker exec "$instance" sh -c 'command -v wrk > /dev/null || apt-get install -y -qq wrk > /dev/null 2>&1'
docker exec "$instance" sh -c "grep -q ' $name\$' /etc/hosts || echo '127.0.0.1 $name' >> /etc/hosts"
docker exec -i "$instance" sh -c "cat > /root/edge_overhead.lua" < benchmarks/edge_overhead.lua

run() {
    docker exec "$instance" wrk --latency -t "$threads" -c "$connections" -d "$duration" \
        -s /root/edge_overhead.lua "$1" | tee -a /tmp/edge_overhead_wrk.log | grep '^RESULT'
}

: > /tmp/edge_overhead_wrk.log
# Warm both paths (TLS session cache, upstream keepalive), then measure.
docker exec "$instance" wrk -t 1 -c 4 -d 2s "http://127.0.0.1:8000/health" > /dev/null
docker exec "$instance" wrk -t 1 -c 4 -d 2s "https://$name:443/health" > /dev/null
direct=$(run "http://127.0.0.1:8000/health")
edge=$(run "https://$name:443/health")

field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<< "$1"; }
printf '\nwrk -t%s -c%s -d%s, %s cores, %s\n' "$threads" "$connections" "$duration" \
    "$(nproc)" "$(date -u +%FT%TZ)"
printf '%-34s %10s %10s %10s %10s %8s\n' path "req/s" "p50 ms" "p95 ms" "p99 ms" errors
for row in "direct http://127.0.0.1:8000|$direct" "nginx https://$name|$edge"; do
    label=${row%%|*}; line=${row#*|}
    printf '%-34s %10s %10s %10s %10s %8s\n' "$label" "$(field "$line" rps)" \
        "$(field "$line" p50_ms)" "$(field "$line" p95_ms)" "$(field "$line" p99_ms)" \
        "$(field "$line" errors)"
done
echo "(full wrk output: /tmp/edge_overhead_wrk.log)"
