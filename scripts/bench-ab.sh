#!/usr/bin/env bash
# Compares ibex builds in one run: scripts/bench-ab.sh BIN... (copies of target/release/ibex from different
# commits). Each round runs nginx and the floor proxy (static upstream, as bench.sh's main comparison) and then
# every build, wrk -t1 -c32; prints req/s medians, the ratio to nginx, and each server's user and system CPU per
# call (from /proc, medians), which moves less between rounds than req/s does.
# With two serving threads, rounds of one build fall into two groups 10 % or more apart (docs/benchmarks.md):
# IBEX_SERVE_THREADS=1 compares code changes with less of that noise.
set -euo pipefail
declare -A pidof
bins=()
for b in "$@"; do bins+=("$(realpath "$b")"); done
set -- "${bins[@]}"
source "$(dirname "$0")/env.sh"
source "$(dirname "$0")/bench-lib.sh"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq nginx-light >/dev/null; }
(($#)) || { echo "usage: scripts/bench-ab.sh IBEX_BINARY..." >&2; exit 2; }
[[ -x target/release/ibex-sim ]] || cargo build --release -p ibex-sim 2>&1 | tail -n 1
secs="${BENCH_SECS:-6}"; rounds="${ROUNDS:-3}"
work="$(mktemp -d)"; chmod a+rx "$work"
up=127.0.0.1:4401 static=127.0.0.1:4405 proxy_static=127.0.0.1:4406 floor_static=127.0.0.1:4407
key=bench-shop-key secret=bench-signing-secret account=BENCH-STATIC
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; [[ -f $work/nginx.pid ]] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
target/release/ibex-sim shop --addr "$up" --api-key "$key" >"$work/shop.log" 2>&1 & pids+=($!)
target/release/ibex-sim proxy --addr "$floor_static" --upstream "http://$static" --api-key "$key" --threads "$(nproc)" >"$work/floor.log" 2>&1 & pids+=($!)
floor_pid=$!
nginx_conf "$work" "$(proxy_server "$proxy_static" partner_static "$static" "$key")
$(static_server "$static" "$work")"
for _ in $(seq 1 100); do curl -fs -o /dev/null -H "X-Api-Key: $key" "http://$up/health" && break; sleep 0.1; done
save_order "$up" "$key" "$work"
nginx -c "$work/nginx.conf" -p "$work"
sleep 0.5; pidof[nginx]="$(pgrep -P "$(cat "$work/nginx.pid")" | tr '\n' ' ')"; pidof[floor]=$floor_pid
export IBEX_SIGNING_SECRETS="$secret" IBEX_ENCRYPTION_KEY="k1:$(head -c 32 /dev/urandom | base64)" IBEX_LOG_FORMAT=json IBEX_ALLOW_LOOPBACK_PARTNERS=true
i=0; names=()
for bin in "$@"; do
  i=$((i+1)); port=$((4410+i))
  cp "$bin" "$work/ibex$i"
  DATABASE_URL="sqlite://$work/ibex$i.db?mode=rwc" "$work/ibex$i" settings set "$account" "api_key=$key" "api_base_url=http://$static" >/dev/null
  DATABASE_URL="sqlite://$work/ibex$i.db?mode=rwc" IBEX_ADDR="127.0.0.1:$port" "$work/ibex$i" serve >"$work/ibex$i.log" 2>&1 & pids+=($!)
  pidof[ibex$i]=$!
  names+=("$i:$port")
done
sleep 2
for n in "${names[@]}"; do for _ in $(seq 1 100); do curl -fs -o /dev/null "http://127.0.0.1:${n#*:}/healthz" && break; sleep 0.1; done; done
cpu() { local u=0 s=0 p; for p in $1; do read -r a b < <(awk '{print $14" "$15}' "/proc/$p/stat"); u=$((u+a)); s=$((s+b)); done; echo "$u $s"; }
run() { local name=$1; shift; local pid="${pidof[$name]}"; local c0 c1 out n; c0=$(cpu "$pid"); out=$(wrk -t1 -c32 -d"${secs}s" "$@"); c1=$(cpu "$pid"); grep -q Non-2xx <<<"$out" && { echo "non-2xx $name" >&2; exit 1; }; awk '/Requests\/sec/ {printf "%.0f\n", $2}' <<<"$out" >>"$work/r-$name"; n=$(awk '/requests in/ {print $1}' <<<"$out"); python3 -c "import sys; a=sys.argv[1].split(); b=sys.argv[2].split(); n=int(sys.argv[3]); t=100; print('%.2f %.2f' % ((int(b[0])-int(a[0]))/t/n*1e6, (int(b[1])-int(a[1]))/t/n*1e6))" "$c0" "$c1" "$n" >>"$work/u-$name"; }
for r in $(seq 1 "$rounds"); do
  sign "$secret"; args=(-H "X-Ib-Exchange-Req-AccountKey: $account" -H "X-Ib-Exchange-Req-Timestamp: $BENCH_TS" -H "X-Ib-Exchange-Req-Signature: $BENCH_SIG")
  run nginx "http://$proxy_static/orders/1001?currency=EUR"
  run floor "http://$floor_static/orders/1001?currency=EUR"
  for n in "${names[@]}"; do run "ibex${n%%:*}" "${args[@]}" "http://127.0.0.1:${n#*:}/fn/order-status/1001"; done
done
med() { sort -n "$work/r-$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
c=$(med nginx)
ucol() { awk -v c=$2 '{print $c}' "$work/u-$1" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
us() { echo "user $(ucol $1 1) sys $(ucol $1 2) us/call"; }
echo "nginx $c ($(paste -sd, "$work/r-nginx"))"
echo "floor $(us floor) $(med floor) d/c $(python3 -c "print('%.2f'%($(med floor)/$c))") ($(paste -sd, "$work/r-floor"))"
i=0; for bin in "$@"; do i=$((i+1)); echo "$bin $(us ibex$i) $(med ibex$i) a/c $(python3 -c "print('%.2f'%($(med ibex$i)/$c))") ($(paste -sd, "$work/r-ibex$i"))"; done
