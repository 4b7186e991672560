#!/usr/bin/env bash
# Instructions per call, counted by valgrind's callgrind: (a) a signed call through ibex and (d) the bare
# axum + hyper-util proxy (`ibex-sim proxy`, the floor of ibex's own stack), both against the demo shop API.
# Unlike req/s on a shared 2-core machine, an instruction count repeats from run to run whatever else the
# machine does, so it shows what a change to the request path is worth. It does not count time in the kernel.
# Prints each target's instructions per call, their ratio, and the inclusive cost of each stage of ibex's path.
set -euo pipefail
source "$(dirname "$0")/env.sh"
secs="${BENCH_SECS:-10}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }

cargo build --release -p server -p ibex-sim 2>&1 | tail -n 1
# The stages are counted on a build without LTO (profile `profiling`), where they are separate functions.
cargo build --profile profiling -p server 2>&1 | tail -n 1

work="$(mktemp -d)"
up=127.0.0.1:4311 ibex_addr=127.0.0.1:4312 floor=127.0.0.1:4314 stages_addr=127.0.0.1:4315
key=bench-shop-key secret=bench-signing-secret account=BENCH
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

target/release/ibex-sim shop --addr "$up" --api-key "$key" >"$work/shop.log" 2>&1 &
pids+=($!)
export DATABASE_URL="sqlite://$work/ibex.db?mode=rwc" IBEX_SIGNING_SECRETS="$secret" \
  IBEX_ENCRYPTION_KEY="k1:$(head -c 32 /dev/urandom | base64)" IBEX_ADDR="$ibex_addr" IBEX_LOG_FORMAT=json \
  IBEX_ALLOW_LOOPBACK_PARTNERS=true
target/release/ibex settings set "$account" "api_key=$key" "api_base_url=http://$up" >/dev/null
valgrind --tool=callgrind --callgrind-out-file="$work/a.cg" target/release/ibex serve >"$work/ibex.log" 2>&1 &
a_pid=$!
pids+=($a_pid)
IBEX_ADDR="$stages_addr" valgrind --tool=callgrind --callgrind-out-file="$work/s.cg" \
  target/profiling/ibex serve >"$work/ibex-stages.log" 2>&1 &
s_pid=$!
pids+=($s_pid)
valgrind --tool=callgrind --callgrind-out-file="$work/d.cg" \
  target/release/ibex-sim proxy --addr "$floor" --upstream "http://$up" --api-key "$key" >"$work/floor.log" 2>&1 &
d_pid=$!
pids+=($d_pid)
for url in "http://$ibex_addr/healthz" "http://$floor/health" "http://$stages_addr/healthz"; do
  for _ in $(seq 1 300); do curl -fs -o /dev/null "$url" && break; sleep 0.2; done
done

ts=$(($(date +%s%N) / 1000000))
sig=$(python3 -c 'import hmac,hashlib,sys; print(hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha256).hexdigest())' "$secret" "$ts")
a_args=(-H "X-Ib-Exchange-Req-AccountKey: $account" -H "X-Ib-Exchange-Req-Timestamp: $ts" -H "X-Ib-Exchange-Req-Signature: $sig")
a_url="http://$ibex_addr/fn/order-status/1001"
s_url="http://$stages_addr/fn/order-status/1001"
d_url="http://$floor/orders/1001?currency=EUR"

load() { # seconds, url, args...: prints the number of requests, failing on any non-2xx answer
  local out; out=$(wrk -t1 -c4 -d"$1s" "${@:3}" "$2")
  ! grep -q "Non-2xx" <<<"$out" || { echo "bench: non-2xx answers from $2" >&2; exit 1; }
  awk '/requests in/ {print $1}' <<<"$out"
}
# Warm-up (connection pools, settings cache, lazy statics), then a dump that zeroes the counters.
load 3 "$a_url" "${a_args[@]}" >/dev/null
load 3 "$d_url" >/dev/null
load 3 "$s_url" "${a_args[@]}" >/dev/null
for p in "$a_pid" "$d_pid" "$s_pid"; do callgrind_control -d "$p" >/dev/null 2>&1; done
a_calls=$(load "$secs" "$a_url" "${a_args[@]}")
d_calls=$(load "$secs" "$d_url")
s_calls=$(load "$secs" "$s_url" "${a_args[@]}")
for p in "$a_pid" "$d_pid" "$s_pid"; do callgrind_control -d "$p" >/dev/null 2>&1; done
sleep 1

total() { callgrind_annotate "$1" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'; }
a_total=$(total "$work/a.cg.2")
d_total=$(total "$work/d.cg.2")
a_per=$((a_total / a_calls))
d_per=$((d_total / d_calls))

s_per=$(($(total "$work/s.cg.2") / s_calls))

stage() { # label, symbol: the symbol's inclusive instructions per call, in the build without LTO
  local n
  n=$(callgrind_annotate --inclusive=yes --threshold=100 "$work/s.cg.2" 2>/dev/null |
    awk -v s="$2" 'index($0, s) {gsub(",", "", $1); print $1; exit}')
  printf '| %s | %s |\n' "$1" "$(( ${n:-0} / s_calls ))"
}

cat <<TXT

| target | calls | instructions per call |
|---|---|---|
| (a) signed call through ibex | $a_calls | $a_per |
| (d) bare axum + hyper-util proxy | $d_calls | $d_per |

- a/d instructions per call: $(python3 -c "print('%.2f' % ($a_per/$d_per))")

Stages, counted on the same code built without LTO (profile \`profiling\`, $s_per instructions per call in all):

| stage of (a), inclusive | instructions per call |
|---|---|
$(stage "signature check" "ibex::signed::signature::Verifier::verify ")
$(stage "account settings (cache)" "SettingsService::resolved::{{closure}} ")
$(stage "inputs" "ibex::signed::inputs::Inputs::collect ")
$(stage "partner request built" "ibex::partner::request::RequestPlan::build ")
$(stage "partner exchange (hyper-util client)" "ibex::partner::PartnerClient::exchange::{{closure}} ")
$(stage "outputs mapped" "ibex::signed::mapping::map_outputs ")
$(stage "partner answer parsed (only what the outputs read)" "ibex::signed::answer::AnswerShape::parse ")
$(stage "answer serialised (axum Json)" "axum::json::Json<T> as axum_core::response::into_response::IntoResponse>::into_response ")
$(stage "request id (uuid, extensions, header)" "tower_http::request_id::SetRequestId<S,M> as tower_service::Service")
- wrk -t1 -c4 -d${secs}s per target under callgrind, after a 3 s warm-up
TXT
