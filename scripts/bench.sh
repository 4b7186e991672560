#!/usr/bin/env bash
# Load benchmark on loopback, one load generator, all in one run so only ratios matter:
#   (a) a signed function call through ibex to the partner API,
#   (b) the partner API called directly,
#   (c) nginx proxying to the same partner API while adding the API-key header,
#   (d) the floor of ibex's own stack: a bare axum + hyper-util proxy doing what nginx does (`ibex-sim proxy`,
#       served like ibex: a single-threaded runtime per core), so
#       that what ibex adds over its stack (a/d) and what the stack costs over nginx (d/c) are told apart.
# Each against two upstreams: the main comparison's is nginx serving the order JSON as a static file (cheap: it
# hides nothing of what ibex and nginx each cost); the second is the demo shop (axum), a realistic partner.
# Then, unless ACCOUNTS=0, scripts/bench-accounts.sh: 100 000 accounts, random account per call.
# Saturation: wrk -t1 -c32 for BENCH_SECS (default 10) s, ROUNDS (default 5: the rounds of one build can be 10 %
# or more apart, docs/benchmarks.md) interleaved rounds, medians.
# Half load: oha at half of (a)'s saturating rate, on (a) and (b): the p99 ibex adds.
# Also ibex's RSS idle and after load. Prints a markdown table for docs/benchmarks.md.
set -euo pipefail
source "$(dirname "$0")/env.sh"
source "$(dirname "$0")/bench-lib.sh"
secs="${BENCH_SECS:-10}"
rounds="${ROUNDS:-5}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null; }
command -v oha >/dev/null || cargo install oha --version 1.16.0 --locked

cargo build --release -p server -p ibex-sim 2>&1 | tail -n 1

work="$(mktemp -d)"
up=127.0.0.1:4301 ibex_addr=127.0.0.1:4302 proxy=127.0.0.1:4303 floor=127.0.0.1:4304
static=127.0.0.1:4305 proxy_static=127.0.0.1:4306 floor_static=127.0.0.1:4307
key=bench-shop-key secret=bench-signing-secret account=BENCH account_static=BENCH-STATIC
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -f $work/nginx.pid ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

target/release/ibex-sim shop --addr "$up" --api-key "$key" >"$work/shop.log" 2>&1 &
pids+=($!)
target/release/ibex-sim proxy --addr "$floor" --upstream "http://$up" --api-key "$key" --threads "$(nproc)" >"$work/floor.log" 2>&1 &
pids+=($!)
target/release/ibex-sim proxy --addr "$floor_static" --upstream "http://$static" --api-key "$key" --threads "$(nproc)" \
  >"$work/floor-static.log" 2>&1 &
pids+=($!)

export DATABASE_URL="sqlite://$work/ibex.db?mode=rwc" IBEX_SIGNING_SECRETS="$secret" \
  IBEX_ENCRYPTION_KEY="k1:$(head -c 32 /dev/urandom | base64)" IBEX_ADDR="$ibex_addr" IBEX_LOG_FORMAT=json \
  IBEX_ALLOW_LOOPBACK_PARTNERS=true
target/release/ibex settings set "$account" "api_key=$key" "api_base_url=http://$up" >/dev/null
target/release/ibex settings set "$account_static" "api_key=$key" "api_base_url=http://$static" >/dev/null
target/release/ibex serve >"$work/ibex.log" 2>&1 &
ibex_pid=$!
pids+=($ibex_pid)

# The cheap upstream is the shop's own answer for order 1001, saved once and served as a file.
nginx_conf "$work" "$(proxy_server "$proxy" partner "$up" "$key")
$(proxy_server "$proxy_static" partner_static "$static" "$key")
$(static_server "$static" "$work")"
for _ in $(seq 1 100); do curl -fs -o /dev/null -H "X-Api-Key: $key" "http://$up/health" && break; sleep 0.1; done
save_order "$up" "$key" "$work"
nginx -c "$work/nginx.conf" -p "$work"

for url in "http://$up/health" "http://$ibex_addr/healthz" "http://$proxy/health" "http://$floor/health" \
  "http://$static/health" "http://$floor_static/health"; do
  for _ in $(seq 1 100); do curl -fs -o /dev/null -H "X-Api-Key: $key" "$url" && break; sleep 0.1; done
done

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
idle_rss=$(rss_kb "$ibex_pid")

# Signed again before each round and phase: the whole run outlasts the 300 s replay window.
resign() {
  sign "$secret"
  signed=(-H "X-Ib-Exchange-Req-Timestamp: $BENCH_TS" -H "X-Ib-Exchange-Req-Signature: $BENCH_SIG")
  a_args=(-H "X-Ib-Exchange-Req-AccountKey: $account" "${signed[@]}")
  as_args=(-H "X-Ib-Exchange-Req-AccountKey: $account_static" "${signed[@]}")
}
resign
a_url="http://$ibex_addr/fn/order-status/1001"
b_url="http://$up/orders/1001?currency=EUR"
c_url="http://$proxy/orders/1001?currency=EUR"
d_url="http://$floor/orders/1001?currency=EUR"
bs_url="http://$static/orders/1001?currency=EUR"
cs_url="http://$proxy_static/orders/1001?currency=EUR"
ds_url="http://$floor_static/orders/1001?currency=EUR"

check() { curl -fsS "$@" >/dev/null || { echo "bench: a target does not answer 200: $*" >&2; curl -sS "$@" >&2; tail -n 5 "$work/ibex.log" >&2; exit 1; }; }
check "${a_args[@]}" "$a_url"; check -H "X-Api-Key: $key" "$b_url"; check "$c_url"; check "$d_url"
check "${as_args[@]}" "$a_url"; check "$bs_url"; check "$cs_url"; check "$ds_url"
# Both upstreams give ibex the same answer.
[[ "$(curl -fsS "${a_args[@]}" "$a_url")" == "$(curl -fsS "${as_args[@]}" "$a_url")" ]] \
  || { echo "bench: the static upstream's answer differs from the shop's" >&2; exit 1; }

to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; printf "%.3f", v}'; }
run_wrk() { # name, args...
  local name=$1; shift
  local out; out=$(wrk -t1 -c32 -d"${secs}s" --latency "$@")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out" | to_ms)
  p99=$(awk '$1=="99%" {print $2}' <<<"$out" | to_ms)
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  [[ -z $non2xx ]] || { echo "bench: $name got non-2xx answers: $non2xx" >&2; exit 1; }
  echo "$rps $p50 $p99" >>"$work/$name"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { awk -v c="$2" '{print $c}' "$work/$1" | median; }

wrk -t1 -c32 -d2s "${a_args[@]/#/}" "$a_url" >/dev/null  # warm-up
for r in $(seq 1 "$rounds"); do
  resign
  run_wrk as "${as_args[@]}" "$a_url"
  run_wrk bs "$bs_url"
  run_wrk cs "$cs_url"
  run_wrk ds "$ds_url"
  run_wrk a "${a_args[@]}" "$a_url"
  run_wrk b -H "X-Api-Key: $key" "$b_url"
  run_wrk c "$c_url"
  run_wrk d "$d_url"
done
loaded_rss=$(rss_kb "$ibex_pid")

half=$(( $(col a 1) / 2 ))
oha_p99() { # url, args...
  local url=$1; shift
  oha --no-tui -z "${secs}s" -q "$half" -c 16 --output-format json "$@" "$url" \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.3f" % (d["latencyPercentiles"]["p99"]*1000))'
}
resign
half_a=$(oha_p99 "$a_url" "${a_args[@]}")
half_b=$(oha_p99 "$b_url" -H "X-Api-Key: $key")
half_d=$(oha_p99 "$d_url")

ratio() { python3 -c "print('%.2f' % ($1/$2))"; }
# The ratio of each round on its own (a and c of one round run back to back): how far one round can be from the
# median (docs/benchmarks.md: rounds of one build can be 10 % or more apart).
spread() { paste -d' ' <(awk '{print $1}' "$work/$1") <(awk '{print $1}' "$work/$2") \
  | awk '{r=$1/$2; if (NR==1||r<lo) lo=r; if (NR==1||r>hi) hi=r} END {printf "%.2f-%.2f", lo, hi}'; }
cat <<TXT

Main comparison, upstream nginx serving the order as a static file:

| target | req/s | p50 ms | p99 ms |
|---|---|---|---|
| (a) signed call through ibex | $(col as 1) | $(col as 2) | $(col as 3) |
| (b) static upstream directly | $(col bs 1) | $(col bs 2) | $(col bs 3) |
| (c) nginx adding the API key | $(col cs 1) | $(col cs 2) | $(col cs 3) |
| (d) bare axum + hyper-util proxy adding the API key | $(col ds 1) | $(col ds 2) | $(col ds 3) |

- throughput a/c = $(ratio "$(col as 1)" "$(col cs 1)") (rounds: $(spread as cs)), a/b = $(ratio "$(col as 1)" "$(col bs 1)"), a/d = $(ratio "$(col as 1)" "$(col ds 1)"), d/c = $(ratio "$(col ds 1)" "$(col cs 1)")

Second figure, upstream the demo shop (axum):

| target | req/s | p50 ms | p99 ms |
|---|---|---|---|
| (a) signed call through ibex | $(col a 1) | $(col a 2) | $(col a 3) |
| (b) partner API directly | $(col b 1) | $(col b 2) | $(col b 3) |
| (c) nginx adding the API key | $(col c 1) | $(col c 2) | $(col c 3) |
| (d) bare axum + hyper-util proxy adding the API key | $(col d 1) | $(col d 2) | $(col d 3) |

- throughput a/c = $(ratio "$(col a 1)" "$(col c 1)") (rounds: $(spread a c)), a/b = $(ratio "$(col a 1)" "$(col b 1)"), a/d = $(ratio "$(col a 1)" "$(col d 1)"), d/c = $(ratio "$(col d 1)" "$(col c 1)")
- at half of (a)'s saturating load ($half req/s, oha -c16): p99 (a) $half_a ms, (b) $half_b ms, (d) $half_d ms; added by ibex over the partner $(python3 -c "print('%.3f' % ($half_a-$half_b))") ms, by the bare proxy $(python3 -c "print('%.3f' % ($half_d-$half_b))") ms
- ibex RSS: idle $((idle_rss / 1024)) MB, after load $((loaded_rss / 1024)) MB
- wrk -t1 -c32 -d${secs}s, $rounds interleaved rounds of all eight targets, medians; $(nproc) cores shared by load generator and servers
TXT

cleanup
trap - EXIT
if [[ ${ACCOUNTS:-100000} != 0 ]]; then
  "$root/scripts/bench-accounts.sh"
fi
