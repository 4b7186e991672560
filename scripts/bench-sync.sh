#!/usr/bin/env bash
# People sync benchmark (issues 11 and 26), not a test: release binaries, the simulator's shop and People API on
# loopback, one account, partner → People. Prints one line per case and appends nothing anywhere; the figures
# go into docs/benchmarks.md by hand.
#
#   documented   N customers, People's documented limits on in the simulator and in ibex (the v3 batch upsert
#                at 5 requests/s of up to 1000 persons: a ceiling of 5 000 persons/s), partner pages of 1000
#                records: time, persons/s as a share of that ceiling, the upsert requests People got, peak RSS;
#                at 100 000 (target ≤ 30 s, ≥ 65 %) and at 10 000 (peak RSS within 10 % of each other)
#   ceiling      N customers with every limit lifted: ibex's own records/s, and its peak RSS
#
# Usage: scripts/bench-sync.sh [customers] [small_customers]   (defaults 100000 10000)
set -euo pipefail
source "$(dirname "$0")/env.sh"

BIG="${1:-100000}"
SMALL="${2:-10000}"
PAGE=1000
# Only the two binaries (the sync worker serves no page), built every time so that a stale one is never measured.
# BENCH_PROFILE=dev measures the debug build instead (figures then say nothing of release speed).
PROFILE="${BENCH_PROFILE:-release}"
cargo build --profile "$PROFILE" -p server -p ibex-sim --bin ibex --bin ibex-sim
bin="target/$([[ "$PROFILE" == dev ]] && echo debug || echo "$PROFILE")"

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

# The bundled example with partner pages of $PAGE records: one page fills one People batch.
sed "s/size = \"100\"/size = \"$PAGE\"/" examples/order-desk.toml >"$work/app.toml"
grep -q "size = \"$PAGE\"" "$work/app.toml" || { echo "the example's page size was not found" >&2; exit 1; }

wait_up() { for _ in $(seq 100); do curl -fsS "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

# One case: customers, People's limits ("documented" or "lifted"). Sets RESULT to
# "read written elapsed_ms rss_kib upsert_requests throttled". Runs in this shell (not a subshell), so the
# cleanup trap knows every process it started.
run_case() {
  local n=$1 limits=$2 name="case-$RANDOM"
  for port in "${SHOP##*:}" "${PORTAL##*:}" "${IBEX##*:}"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "port $port is taken: stop what uses it" >&2; exit 1; fi
  done
  "$bin/ibex-sim" shop --addr "$SHOP" --api-key bench-key --customers "$((n - 3))" >/dev/null 2>&1 &
  local shop=$!
  "$bin/ibex-sim" portal --addr "$PORTAL" --redirect-uri http://x/cb --settings-url http://x/s \
    --card-url http://x/c >/dev/null 2>&1 &
  local portal=$!
  pids+=("$shop" "$portal")
  wait_up "http://$PORTAL/_sim/people/stats"
  wait_up "http://$SHOP/_sim/faults"
  local ibex_env=()
  if [[ "$limits" == lifted ]]; then
    curl -fsS -X POST "http://$PORTAL/_sim/people" -H 'content-type: application/json' \
      -d '{"reads_per_sec": 0, "writes_per_sec": 0, "creates_per_sec": 0}' >/dev/null
    ibex_env=(IBEX_PEOPLE_WRITES_PER_SEC=1000000 IBEX_PEOPLE_READS_PER_SEC=1000000)
  fi
  # (documented: the simulator's defaults and ibex's, 5 upserts/s each, batches of 1000.)

  export IBEX_DATA_DIR="$work/$name" DATABASE_URL="sqlite://$work/$name.db?mode=rwc" IBEX_APP="$work/app.toml"
  mkdir -p "$IBEX_DATA_DIR"
  # Sync on, due at once: the worker's first schedule queues the run as ibex starts.
  "$bin/ibex" --dev settings set "$ACCOUNT" api_key=bench-key "api_base_url=http://$SHOP" \
    "people_base_url=http://$PORTAL" people_api_key=sim-people-key people_sync_on=true \
    people_sync_every_minutes=10080 >/dev/null
  env "${ibex_env[@]}" IBEX_ADDR="$IBEX" IBEX_LOG_FORMAT=json IBEX_SYNC_POLL_MS=20 \
    "$bin/ibex" serve --dev >"$work/$name.log" 2>&1 &
  local ibex=$!
  pids+=("$ibex")
  # The run's own log line says when it ended and how long it took.
  for _ in $(seq 36000); do
    grep -q '"message":"sync run"' "$work/$name.log" 2>/dev/null && break
    kill -0 "$ibex" 2>/dev/null || { cat "$work/$name.log" >&2; exit 1; }
    sleep 0.1
  done
  local line rss stats
  line="$(grep '"message":"sync run"' "$work/$name.log" | head -n 1)"
  rss="$(awk '/^VmHWM/ {print $2}' "/proc/$ibex/status")"
  stats="$(curl -fsS "http://$PORTAL/_sim/people/stats")"
  kill "$ibex" "$shop" "$portal" 2>/dev/null || true
  wait "$ibex" "$shop" "$portal" 2>/dev/null || true
  local read created updated unchanged elapsed requests throttled
  read="$(sed -E 's/.*"read":([0-9]+).*/\1/' <<<"$line")"
  created="$(sed -E 's/.*"created":([0-9]+).*/\1/' <<<"$line")"
  updated="$(sed -E 's/.*"updated":([0-9]+).*/\1/' <<<"$line")"
  unchanged="$(sed -E 's/.*"unchanged":([0-9]+).*/\1/' <<<"$line")"
  elapsed="$(sed -E 's/.*"elapsed_ms":([0-9]+).*/\1/' <<<"$line")"
  requests="$(sed -E 's/.*"PATCH \/people\/3\/persons\/upsert":([0-9]+).*/\1/' <<<"$stats")"
  throttled="$(sed -E 's/.*"throttled":([0-9]+).*/\1/' <<<"$stats")"
  [[ "$line" == *'"outcome":"Done"'* ]] || { echo "the run did not end Done: $line" >&2; exit 1; }
  RESULT="$read $((created + updated + unchanged)) $elapsed $rss $requests $throttled"
}

report() { # label read written elapsed_ms rss_kib requests throttled [ceiling persons/s]
  awk -v label="$1" -v read="$2" -v written="$3" -v ms="$4" -v rss="$5" -v req="$6" -v thr="$7" -v ceiling="${8:-0}" 'BEGIN {
    printf "%-28s %7d read %7d written %7.1f s %8.1f persons/s", label, read, written, ms / 1000, written / (ms / 1000)
    if (ceiling > 0) printf " (%.1f %% of %d/s)", 100 * written / (ms / 1000) / ceiling, ceiling
    printf "  %4d upserts  %3d 429s  peak RSS %.1f MiB\n", req, thr, rss / 1024
  }'
}

echo "== People sync benchmark ($PROFILE build, $(nproc) cores, $(date -u +%Y-%m-%dT%H:%MZ)), partner pages of $PAGE"
run_case "$BIG" documented
read -r r w ms big_rss req thr <<<"$RESULT"
report "documented: $BIG" "$r" "$w" "$ms" "$big_rss" "$req" "$thr" 5000
run_case "$SMALL" documented
read -r r w ms small_rss req thr <<<"$RESULT"
report "documented: $SMALL" "$r" "$w" "$ms" "$small_rss" "$req" "$thr" 5000
awk -v big="$big_rss" -v small="$small_rss" -v b="$BIG" -v s="$SMALL" 'BEGIN {
  printf "peak RSS at %d vs %d: %+.1f %% (budget: within 10 %%)\n", b, s, 100 * (big - small) / small }'
run_case "$BIG" lifted
read -r r w ms rss req thr <<<"$RESULT"
report "ceiling: $BIG, limits lifted" "$r" "$w" "$ms" "$rss" "$req" "$thr"
