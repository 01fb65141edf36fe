#!/usr/bin/env bash
# The generator's ceiling and its CPU per request, measured as the README's table is: the
# generator pinned to core 0, the trivial target (loadgen's `trivial_target` example) pinned to
# core 1, CPU seconds (user + system) from /usr/bin/time, everything on loopback.
#
#   loadgen/benches/ceiling.sh rest RATE [SECONDS]     loadgen, REST GET at RATE/s (open model)
#   loadgen/benches/ceiling.sh grpc RATE [SECONDS]     loadgen, OnMessage stat at RATE/s
#   loadgen/benches/ceiling.sh memory VUS [SECONDS]    loadgen's peak RSS with a pool of VUS users (1,000 GET/s)
#   loadgen/benches/ceiling.sh wrk [SECONDS]           wrk -t1 -c50 on the same GET (closed loop)
#   loadgen/benches/ceiling.sh oha RATE [SECONDS]      oha at RATE/s, latency-corrected (cargo install oha)
#
# Each prints one line: tool, offered rate, requests, dropped, CPU seconds, requests per
# CPU-second, peak RSS, p50/p95/p99 in ms. Builds loadgen in release first (LOADGEN=path runs
# another build, e.g. an older one for a before/after; LOADGEN_ARGS adds options to its runs,
# e.g. LOADGEN_ARGS="--dashboard" to measure what serving the dashboard costs). Compare only lines from one sitting: the
# machine is shared.
set -euo pipefail
cd "$(dirname "$0")/../.."

mode=${1:?usage: ceiling.sh rest|grpc|memory|wrk|oha ...}
REST=127.0.0.1:18080
GRPC=127.0.0.1:16565
URL="http://$REST/challenge/v1/challenges"
scratch=$(mktemp -d /tmp/gauntlet-ceiling.XXXXXX)

cargo build --release -q -p loadgen --bin loadgen --example trivial_target
LOADGEN=${LOADGEN:-target/release/loadgen}
taskset -c 1 target/release/examples/trivial_target "$REST" "$GRPC" >/dev/null &
target_pid=$!
trap 'kill $target_pid 2>/dev/null || true; rm -rf "$scratch"' EXIT
for _ in $(seq 100); do curl -fs "$URL" >/dev/null 2>&1 && break; sleep 0.1; done

# Runs a command pinned to core 0; sets cpu (user + system seconds) and rss (peak, KiB).
measure() {
  taskset -c 0 /usr/bin/time -f '%U %S %M' -o "$scratch/time" "$@" >"$scratch/out" 2>"$scratch/err" || true
  read -r user system rss <"$scratch/time"
  cpu=$(python3 -c "print(round($user + $system, 2))")
}

# A one-stream scenario: `operation` at `rate`/s for `seconds`, `vus` users (auto: sized by the run).
scenario() {
  local operation=$1 rate=$2 seconds=$3 vus=$4
  cat >"$scratch/scenario.yaml" <<EOF
name: ceiling
duration: ${seconds}s
streams:
  load:
    executor: constant-arrival-rate
    rate: $rate
    max_vus: $vus
    operations:
      $operation: 1
EOF
}

# One line from a loadgen run's summary.json.
loadgen_line() {
  python3 - "$scratch/run/summary.json" "$1" "$2" "$cpu" "$rss" <<'EOF'
import json, sys
summary, tool, rate, cpu, rss = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5]
(name, op), = [(k, v) for k, v in summary["operations"].items() if v["scheduled"] > 0]
lat = op["latency_ms"]
print(f"{tool:8} {name:20} offered {rate:>6}/s  requests {op['requests']:>8}  dropped {op['dropped']:>6} "
      f"({op['dropped_ratio']:.2%})  cpu {cpu:6.2f} s  {op['requests'] / cpu:>8.0f} req/cpu-s  rss {int(rss) // 1024} MiB  "
      f"p50 {lat['p50']:.3f}  p95 {lat['p95']:.3f}  p99 {lat['p99']:.3f} ms")
EOF
}

seconds=${3:-20}
case "$mode" in
  rest | grpc | memory)
    rate=${2:?rate or users}
    case "$mode" in
      rest) scenario get_challenges "$rate" "$seconds" auto; target=(--api-url "http://$REST" --mock-auth) ;;
      grpc) scenario stat "$rate" "$seconds" auto; target=(--grpc-url "http://$GRPC") ;;
      memory) scenario get_challenges 1000 "$seconds" "$rate"; target=(--api-url "http://$REST" --mock-auth) ;;
    esac
    # shellcheck disable=SC2086 # LOADGEN_ARGS is split into options on purpose
    measure "$LOADGEN" run "$scratch/scenario.yaml" "${target[@]}" --out "$scratch/run" ${LOADGEN_ARGS:-}
    [ -f "$scratch/run/summary.json" ] || { cat "$scratch/err" >&2; exit 1; }
    loadgen_line "loadgen" "$( [ "$mode" = memory ] && echo "${rate}vus" || echo "$rate")"
    ;;
  wrk)
    seconds=${2:-20}
    measure wrk -t1 -c50 -d"${seconds}s" --latency "$URL"
    requests=$(awk '/requests in/ {print $1}' "$scratch/out")
    latency=$(awk '/^ +(50|90|99)%/ {printf "%s %s  ", $1, $2}' "$scratch/out")
    python3 -c "print(f'wrk      closed loop, 50 connections  requests {$requests:>8}  cpu {$cpu:6.2f} s  {$requests / $cpu:>8.0f} req/cpu-s  rss $((rss / 1024)) MiB  $latency')"
    ;;
  oha)
    rate=${2:?rate}
    command -v oha >/dev/null || { echo "oha is not installed: cargo install oha" >&2; exit 1; }
    measure oha --no-tui --output-format json -z "${seconds}s" -q "$rate" --latency-correction -c 50 "$URL"
    python3 - "$scratch/out" "$rate" "$cpu" "$rss" <<'EOF'
import json, sys
out, rate, cpu, rss = json.load(open(sys.argv[1])), sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
requests = sum(out["statusCodeDistribution"].values())
p = out["latencyPercentiles"]
print(f"oha      offered {rate:>6}/s  requests {requests:>8}  cpu {cpu:6.2f} s  {requests / cpu:>8.0f} req/cpu-s  "
      f"rss {rss // 1024} MiB  p50 {p['p50'] * 1000:.3f}  p95 {p['p95'] * 1000:.3f}  p99 {p['p99'] * 1000:.3f} ms")
EOF
    ;;
  *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
