#!/usr/bin/env bash
# People sync benchmark (issue 11), not a test: release binaries, the simulator's shop and People API on
# loopback, one account, partner → People. Prints one line per case and appends nothing anywhere; the figures
# go into docs/benchmarks.md by hand.
#
#   rate      N customers with People (and ibex) limited to W writes/s: records/s as a share of W
#   ceiling   N customers with every limit lifted: ibex's own records/s, and its peak RSS
#
# Usage: scripts/bench-sync.sh [rate_customers] [rate_writes_per_sec]   (defaults 10000 100)
set -euo pipefail
source "$(dirname "$0")/env.sh"

RATE_N="${1:-10000}"
RATE_W="${2:-100}"
[[ -x target/release/ibex && -x target/release/ibex-sim ]] || {
  cargo leptos build --release --split
  cargo build --release -p ibex-sim
}

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

SHOP=127.0.0.1:4591
PORTAL=127.0.0.1:4592
IBEX=127.0.0.1:4593
ACCOUNT=bench-account

wait_up() { for _ in $(seq 100); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

# One case: customers, People's writes/s (0: unlimited), ibex's writes/s. Sets RESULT to "read created ms rss_kib".
# Runs in this shell (not a subshell), so the cleanup trap knows every process it started.
run_case() {
  local n=$1 people_writes=$2 ibex_writes=$3 name="case-$RANDOM"
  for port in "${SHOP##*:}" "${PORTAL##*:}" "${IBEX##*:}"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "port $port is taken: stop what uses it" >&2; exit 1; fi
  done
  target/release/ibex-sim shop --addr "$SHOP" --api-key bench-key --customers "$((n - 3))" >/dev/null 2>&1 &
  local shop=$!
  target/release/ibex-sim portal --addr "$PORTAL" --redirect-uri http://x/cb --settings-url http://x/s \
    --card-url http://x/c >/dev/null 2>&1 &
  local portal=$!
  pids+=("$shop" "$portal")
  wait_up "http://$PORTAL/_sim/people"
  wait_up "http://$SHOP/_sim/faults"
  curl -fsS -X POST "http://$PORTAL/_sim/people" -H 'content-type: application/json' \
    -d "{\"reads_per_sec\": 0, \"writes_per_sec\": $people_writes}" >/dev/null

  export IBEX_DATA_DIR="$work/$name" DATABASE_URL="sqlite://$work/$name.db?mode=rwc"
  mkdir -p "$IBEX_DATA_DIR"
  # Sync on, due at once: the worker's first schedule queues the run as ibex starts.
  target/release/ibex --dev settings set "$ACCOUNT" api_key=bench-key "api_base_url=http://$SHOP" \
    "people_base_url=http://$PORTAL" people_api_key=sim-people-key people_sync_on=true \
    people_sync_every_minutes=10080 >/dev/null
  IBEX_ADDR="$IBEX" IBEX_LOG_FORMAT=json IBEX_SYNC_POLL_MS=20 IBEX_PEOPLE_WRITES_PER_SEC="$ibex_writes" \
    IBEX_PEOPLE_READS_PER_SEC=100000 target/release/ibex serve --dev >"$work/$name.log" 2>&1 &
  local ibex=$!
  pids+=("$ibex")
  # The run's own log line says when it ended and how long it took.
  for _ in $(seq 36000); do
    grep -q '"message":"sync run"' "$work/$name.log" 2>/dev/null && break
    kill -0 "$ibex" 2>/dev/null || { cat "$work/$name.log" >&2; exit 1; }
    sleep 0.1
  done
  local line rss
  line="$(grep '"message":"sync run"' "$work/$name.log" | head -n 1)"
  rss="$(awk '/^VmHWM/ {print $2}' "/proc/$ibex/status")"
  kill "$ibex" "$shop" "$portal" 2>/dev/null || true
  wait "$ibex" "$shop" "$portal" 2>/dev/null || true
  local read created elapsed
  read="$(sed -E 's/.*"read":([0-9]+).*/\1/' <<<"$line")"
  created="$(sed -E 's/.*"created":([0-9]+).*/\1/' <<<"$line")"
  elapsed="$(sed -E 's/.*"elapsed_ms":([0-9]+).*/\1/' <<<"$line")"
  [[ "$line" == *'"outcome":"Done"'* ]] || { echo "the run did not end Done: $line" >&2; exit 1; }
  RESULT="$read $created $elapsed $rss"
}

report() { # label read created elapsed_ms rss_kib [allowed]
  awk -v label="$1" -v read="$2" -v created="$3" -v ms="$4" -v rss="$5" -v allowed="${6:-0}" 'BEGIN {
    rate = read / (ms / 1000)
    printf "%-34s %7d read %7d created %8.1f s %9.1f records/s", label, read, created, ms / 1000, rate
    if (allowed > 0) printf " (%.1f %% of %d/s)", 100 * created / (ms / 1000) / allowed, allowed
    printf "   peak RSS %.1f MiB\n", rss / 1024
  }'
}

echo "== People sync benchmark ($(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ))"
run_case "$RATE_N" "$RATE_W" "$RATE_W"
read -r r c ms rss <<<"$RESULT"
report "rate: $RATE_N at $RATE_W writes/s" "$r" "$c" "$ms" "$rss" "$RATE_W"
for n in 10000 100000; do
  run_case "$n" 0 1000000
  read -r r c ms rss <<<"$RESULT"
  report "ceiling: $n, limits lifted" "$r" "$c" "$ms" "$rss"
done
