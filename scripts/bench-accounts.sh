#!/usr/bin/env bash
# Many accounts: ACCOUNTS (default 100 000) configured accounts, on SQLite and then on PostgreSQL, each signed call
# for a random one, against the same call always for one account, in the same run (wrk -t1 -c32, ROUNDS
# interleaved rounds, medians; both through the same Lua script, so wrk's own cost is the same). The partner is
# nginx serving the order JSON as a static file.
#   - throughput random / one account, with the settings cache capped at CACHE_MB (default 64) MiB, where all
#     accounts fit; at SMALL_CACHE_MB (default 16), where about half do; and with the cache off;
#   - ibex's RSS and the cache's own figures (/metrics) after the random load (the small cache is then at its cap);
#   - p99 of a cache miss: an instance with the cache off (IBEX_SETTINGS_CACHE_MB=0, every call reads the
#     database), random accounts, 4 connections (not saturated), beside a cache hit measured the same way.
# Prints markdown for docs/benchmarks.md.
set -euo pipefail
source "$(dirname "$0")/env.sh"
source "$(dirname "$0")/bench-lib.sh"
secs="${BENCH_SECS:-10}"
rounds="${ROUNDS:-3}"
accounts="${ACCOUNTS:-100000}"
cache_mb="${CACHE_MB:-64}"
small_mb="${SMALL_CACHE_MB:-16}"
pg_admin="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/test}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null; }
cargo build --release -p server -p ibex-sim 2>&1 | tail -n 1

work="$(mktemp -d)"
shop=127.0.0.1:4311 static=127.0.0.1:4312 cached_addr=127.0.0.1:4313 uncached_addr=127.0.0.1:4314
small_addr=127.0.0.1:4315
key=bench-shop-key secret=bench-signing-secret metrics_token=bench-metrics-token
pg_db="ibex_bench_$$"
pids=()
stop_ibex() {
  for p in "${ibex_pids[@]:-}"; do [[ -n $p ]] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  ibex_pids=()
}
cleanup() {
  stop_ibex
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -f $work/nginx.pid ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  psql -q "$pg_admin" -c "DROP DATABASE IF EXISTS $pg_db" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The partner: the shop's answer for order 1001, served by nginx as a file.
target/release/ibex-sim shop --addr "$shop" --api-key "$key" >"$work/shop.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -fs -o /dev/null -H "X-Api-Key: $key" "http://$shop/health" && break; sleep 0.1; done
save_order "$shop" "$key" "$work"
kill "${pids[0]}"
nginx_conf "$work" "$(static_server "$static" "$work")"
nginx -c "$work/nginx.conf" -p "$work"

echo "writing $accounts accounts" >&2
python3 - "$accounts" "$key" "http://$static" >"$work/accounts.jsonl" <<'PY'
import json, sys
n, key, base = int(sys.argv[1]), sys.argv[2], sys.argv[3]
for i in range(n):
    print(json.dumps({"account_key": f"ACC{i:06d}", "settings": {"api_key": key, "api_base_url": base}}))
PY

cat >"$work/accounts.lua" <<'LUA'
-- BENCH_ACCOUNTS=1 names one account on every call; more, a random one of ACC000000..; BENCH_SEQUENTIAL=1
-- goes through them in order instead (the warm-up: every account called once, then again).
local n = tonumber(os.getenv("BENCH_ACCOUNTS"))
local sequential = os.getenv("BENCH_SEQUENTIAL") == "1"
local i = -1
local headers = {
  ["X-Ib-Exchange-Req-Timestamp"] = os.getenv("BENCH_TS"),
  ["X-Ib-Exchange-Req-Signature"] = os.getenv("BENCH_SIG"),
}
math.randomseed(os.time())
request = function()
  if sequential then i = (i + 1) % n else i = math.random(0, n - 1) end
  headers["X-Ib-Exchange-Req-AccountKey"] = string.format("ACC%06d", i)
  return wrk.format("GET", nil, headers)
end
LUA

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; printf "%.3f", v}'; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { awk -v c="$2" '{print $c}' "$work/$1" | median; }
ratio() { python3 -c "print('%.2f' % ($1/$2))"; }
url_of() { echo "http://$1/fn/order-status/1001"; }
run_wrk() { # name, addr, accounts, connections
  local out
  out=$(BENCH_ACCOUNTS=$3 wrk -t1 -c"$4" -d"${secs}s" --latency -s "$work/accounts.lua" "$(url_of "$2")")
  local non2xx; non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  if [[ -n $non2xx ]]; then
    echo "bench: $1 got non-2xx answers: $non2xx; ibex logs kept in /tmp/bench-accounts-logs" >&2
    mkdir -p /tmp/bench-accounts-logs && cp "$work"/*.log /tmp/bench-accounts-logs/
    exit 1
  fi
  echo "$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out") $(awk '$1=="50%" {print $2}' <<<"$out" | to_ms) $(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)" >>"$work/$1"
}
metric() { curl -fsS -H "Authorization: Bearer $metrics_token" "http://$1/metrics" | awk -v m="$2" '$1 == m {print $2}'; }

export IBEX_SIGNING_SECRETS="$secret" IBEX_ENCRYPTION_KEY="k1:$(head -c 32 /dev/urandom | base64)" \
  IBEX_LOG_FORMAT=json IBEX_ALLOW_LOOPBACK_PARTNERS=true IBEX_METRICS_TOKEN="$metrics_token"

ibex_pids=()
for backend in ${BACKENDS:-sqlite postgres}; do
  if [[ $backend == sqlite ]]; then
    export DATABASE_URL="sqlite://$work/ibex.db?mode=rwc"
  else
    psql -q "$pg_admin" -c "CREATE DATABASE $pg_db"
    export DATABASE_URL="${pg_admin%/*}/$pg_db"
  fi
  start=$(date +%s)
  target/release/ibex settings import "$work/accounts.jsonl" >"$work/import-$backend.log"
  import_secs=$(($(date +%s) - start))
  IBEX_SETTINGS_CACHE_MB=$cache_mb IBEX_ADDR=$cached_addr target/release/ibex serve >"$work/cached-$backend.log" 2>&1 &
  cached_pid=$!
  IBEX_SETTINGS_CACHE_MB=$small_mb IBEX_ADDR=$small_addr target/release/ibex serve >"$work/small-$backend.log" 2>&1 &
  small_pid=$!
  IBEX_SETTINGS_CACHE_MB=0 IBEX_ADDR=$uncached_addr target/release/ibex serve >"$work/uncached-$backend.log" 2>&1 &
  ibex_pids=("$cached_pid" "$small_pid" "$!")
  for addr in "$cached_addr" "$small_addr" "$uncached_addr"; do
    for _ in $(seq 1 100); do curl -fs -o /dev/null "http://$addr/healthz" && break; sleep 0.1; done
  done
  idle_rss=$(rss_kb "$cached_pid")
  # Signed per backend: a run of both outlasts the 300 s replay window.
  sign "$secret"
  BENCH_ACCOUNTS=1 wrk -t1 -c32 -d2s -s "$work/accounts.lua" "$(url_of "$cached_addr")" >/dev/null
  # Steady state, as a deployment is after its first minutes: every account called (twice or so) before the
  # rounds, so the figures are not of a cold cache filling up.
  for addr in "$cached_addr" "$small_addr"; do
    BENCH_SEQUENTIAL=1 BENCH_ACCOUNTS=$accounts wrk -t1 -c32 -d"${WARM_SECS:-15}s" -s "$work/accounts.lua" "$(url_of "$addr")" \
      | awk -v a="$addr" '/Requests\/sec/ {printf "warm-up %s: %.0f calls/s\n", a, $2}' >&2
  done
  for r in $(seq 1 "$rounds"); do
    run_wrk "one-$backend" "$cached_addr" 1 32
    run_wrk "random-$backend" "$cached_addr" "$accounts" 32
    run_wrk "small-$backend" "$small_addr" "$accounts" 32
    run_wrk "off-$backend" "$uncached_addr" "$accounts" 32
  done
  loaded_rss=$(rss_kb "$cached_pid") small_rss=$(rss_kb "$small_pid") off_rss=$(rss_kb "${ibex_pids[2]}")
  cache_accounts=$(metric "$cached_addr" ibex_settings_cache_accounts)
  cache_bytes=$(metric "$cached_addr" ibex_settings_cache_bytes)
  small_accounts=$(metric "$small_addr" ibex_settings_cache_accounts)
  small_bytes=$(metric "$small_addr" ibex_settings_cache_bytes)
  for r in $(seq 1 "$rounds"); do
    run_wrk "hit-$backend" "$cached_addr" 1 4
    run_wrk "miss-$backend" "$uncached_addr" "$accounts" 4
  done
  stop_ibex
  cat <<TXT

$backend, $accounts accounts (imported in ${import_secs} s), settings cache capped at $cache_mb MiB:

| load (wrk -t1) | req/s | p50 ms | p99 ms |
|---|---|---|---|
| one account, 32 connections | $(col "one-$backend" 1) | $(col "one-$backend" 2) | $(col "one-$backend" 3) |
| random account, 32 connections | $(col "random-$backend" 1) | $(col "random-$backend" 2) | $(col "random-$backend" 3) |
| random account, cache capped at $small_mb MiB, 32 connections | $(col "small-$backend" 1) | $(col "small-$backend" 2) | $(col "small-$backend" 3) |
| random account, cache off, 32 connections | $(col "off-$backend" 1) | $(col "off-$backend" 2) | $(col "off-$backend" 3) |
| cache hit (one account), 4 connections | $(col "hit-$backend" 1) | $(col "hit-$backend" 2) | $(col "hit-$backend" 3) |
| cache miss (cache off, random account), 4 connections | $(col "miss-$backend" 1) | $(col "miss-$backend" 2) | $(col "miss-$backend" 3) |

- random / one account = $(ratio "$(col "random-$backend" 1)" "$(col "one-$backend" 1)") (cache $cache_mb MiB), $(ratio "$(col "small-$backend" 1)" "$(col "one-$backend" 1)") ($small_mb MiB), $(ratio "$(col "off-$backend" 1)" "$(col "one-$backend" 1)") (off)
- after the random load, cache $cache_mb MiB: $cache_accounts accounts cached, reckoned at $((cache_bytes / 1024 / 1024)) MiB; ibex RSS idle $((idle_rss / 1024)) MiB, after load $((loaded_rss / 1024)) MiB
- cache $small_mb MiB: $small_accounts accounts cached, reckoned at $((small_bytes / 1024 / 1024)) MiB; ibex RSS after load $((small_rss / 1024)) MiB
- cache off: ibex RSS after load $((off_rss / 1024)) MiB (what the rest of ibex holds under this load)
TXT
done
echo "- wrk -t1 -d${secs}s, $rounds interleaved rounds, medians; $(nproc) cores shared by load generator and servers"
