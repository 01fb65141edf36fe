#!/usr/bin/env bash
# REST GET of the real challenge service, generator against wrk, as the README's table measures
# it: a throwaway PostgreSQL and the challenge service (mock auth, fresh users: a 156 KB body each)
# pinned to core 1, the generator pinned to core 0, CPU seconds (user + system) from
# /usr/bin/time. Needs the PostgreSQL 15 server binaries (GAUNTLET_PG_BIN or /usr/lib/postgresql/15/bin).
#
#   loadgen/benches/real-get.sh loadgen RATE [SECONDS]   loadgen at RATE/s, open model
#   loadgen/benches/real-get.sh wrk [SECONDS]            wrk -t1 -c8, closed loop
#
# Prints one line as ceiling.sh does. LOADGEN=path runs another loadgen build.
set -euo pipefail
cd "$(dirname "$0")/../.."

mode=${1:?usage: real-get.sh loadgen RATE [SECONDS] | wrk [SECONDS]}
PG_BIN=${GAUNTLET_PG_BIN:-/usr/lib/postgresql/15/bin}
scratch=$(mktemp -d /tmp/gauntlet-real-get.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres: "$scratch"
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

cargo build --release -q -p loadgen --bin loadgen -p sut --bin challenge-service
LOADGEN=${LOADGEN:-target/release/loadgen}
PG_PORT=$(port)
API_PORT=$(port)
ADMIN_PORT=$(port)
as_pg "$PG_BIN/initdb" -D "$scratch/data" -U postgres -A trust -E UTF8 --locale=C >/dev/null
as_pg taskset -c 1 "$PG_BIN/pg_ctl" -D "$scratch/data" -l "$scratch/pg.log" -w \
  -o "-p $PG_PORT -k $scratch -c listen_addresses=127.0.0.1" start >/dev/null
taskset -c 1 target/release/challenge-service --database-url "postgres://postgres@127.0.0.1:$PG_PORT/postgres" \
  --auth-mode mock --port "$API_PORT" --admin-port "$ADMIN_PORT" >"$scratch/api.log" 2>&1 &
api_pid=$!
trap 'kill $api_pid 2>/dev/null || true; as_pg "$PG_BIN/pg_ctl" -D "$scratch/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$scratch"' EXIT
URL="http://127.0.0.1:$API_PORT/challenge/v1/challenges"
for _ in $(seq 200); do curl -fs -H 'x-mock-user-id: user-000001' "$URL" >/dev/null 2>&1 && break; sleep 0.1; done
echo "body: $(curl -fs -H 'x-mock-user-id: user-000001' "$URL" | wc -c) bytes" >&2

measure() {
  taskset -c 0 /usr/bin/time -f '%U %S %M' -o "$scratch/time" "$@" >"$scratch/out" 2>"$scratch/err" || true
  read -r user system rss <"$scratch/time"
  cpu=$(python3 -c "print(round($user + $system, 2))")
}

case "$mode" in
  loadgen)
    rate=${2:?rate}
    seconds=${3:-20}
    cat >"$scratch/scenario.yaml" <<EOF
name: real-get
duration: ${seconds}s
streams:
  api:
    executor: constant-arrival-rate
    rate: $rate
    max_vus: auto
    operations:
      get_challenges: 1
EOF
    measure "$LOADGEN" run "$scratch/scenario.yaml" --api-url "http://127.0.0.1:$API_PORT" --mock-auth --out "$scratch/run"
    [ -f "$scratch/run/summary.json" ] || { cat "$scratch/err" >&2; exit 1; }
    python3 - "$scratch/run/summary.json" "$rate" "$cpu" "$rss" <<'EOF'
import json, sys
summary, rate, cpu, rss = json.load(open(sys.argv[1])), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
op = summary["operations"]["GET /v1/challenges"]
lat = op["latency_ms"]
print(f"loadgen  offered {rate:>6}/s  requests {op['requests']:>7}  errors {op['errors']}  checks failed {op['checks_failed']}  "
      f"dropped {op['dropped']} ({op['dropped_ratio']:.2%})  cpu {cpu:6.2f} s  {op['requests'] / cpu:>7.0f} req/cpu-s  "
      f"rss {rss // 1024} MiB  p50 {lat['p50']:.2f}  p95 {lat['p95']:.2f}  p99 {lat['p99']:.2f} ms")
EOF
    ;;
  wrk)
    seconds=${2:-20}
    measure wrk -t1 -c8 -d"${seconds}s" --latency -H 'x-mock-user-id: user-000001' "$URL"
    requests=$(awk '/requests in/ {print $1}' "$scratch/out")
    latency=$(awk '/^ +(50|90|99)%/ {printf "%s %s  ", $1, $2}' "$scratch/out")
    python3 -c "print(f'wrk      closed loop, 8 connections  requests {$requests:>7}  cpu {$cpu:6.2f} s  {$requests / $cpu:>7.0f} req/cpu-s  rss $((rss / 1024)) MiB  $latency')"
    ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
