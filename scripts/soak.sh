#!/usr/bin/env bash
# Soak (issue 12), not a test: release ibex in front of the demo shop, signed calls at half of the capacity
# measured first, with one call in ten forged (a wrong signature). Samples ibex's resident memory every 10 s and
# prints the status codes of both streams; figures go into docs/benchmarks.md by hand.
#
# Usage: scripts/soak.sh [seconds]   (default 600)
set -euo pipefail
source "$(dirname "$0")/env.sh"

SECONDS_TOTAL="${1:-600}"
command -v oha >/dev/null || cargo install oha --version 1.16.0 --locked
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

SHOP=127.0.0.1:4691
IBEX=127.0.0.1:4693
ACCOUNT=soak-account
export IBEX_DATA_DIR="$work" DATABASE_URL="sqlite://$work/ibex.db?mode=rwc"

target/release/ibex-sim shop --addr "$SHOP" --api-key soak-key --customers 0 >/dev/null 2>&1 &
pids+=("$!")
target/release/ibex --dev settings set "$ACCOUNT" api_key=soak-key "api_base_url=http://$SHOP" >/dev/null 2>&1
# The requests are signed once, so the signature window must outlast the soak.
IBEX_ADDR="$IBEX" IBEX_SIGNATURE_TOLERANCE_SECS=$((SECONDS_TOTAL * 2)) IBEX_LOG=warn \
  target/release/ibex serve --dev >"$work/ibex.log" 2>&1 &
ibex=$!
pids+=("$ibex")
for _ in $(seq 100); do curl -fs "http://$IBEX/healthz" >/dev/null && break; sleep 0.1; done

# Signed headers for GET /fn/order-status/1001 (empty body), and a forged variant.
secret="$(sed -n 's/^IBEX_SIGNING_SECRETS=//p' "$work/dev-secrets.env" | cut -d, -f1)"
ts="$(date +%s%3N)"
sig="$(printf '%s' "$ts" | openssl dgst -sha256 -hmac "$secret" -hex | awk '{print $NF}')"
url="http://$IBEX/fn/order-status/1001"
good=(-H "X-Ib-Exchange-Req-AccountKey: $ACCOUNT" -H "X-Ib-Exchange-Req-Timestamp: $ts" -H "X-Ib-Exchange-Req-Signature: $sig")
# The first hex digit changed: a well-formed signature that does not match.
if [[ ${sig:0:1} == a ]]; then wrong="b${sig:1}"; else wrong="a${sig:1}"; fi
forged=(-H "X-Ib-Exchange-Req-AccountKey: $ACCOUNT" -H "X-Ib-Exchange-Req-Timestamp: $ts" -H "X-Ib-Exchange-Req-Signature: $wrong")
status=$(curl -s -o /dev/null -w '%{http_code}' "${good[@]}" "$url")
[[ "$status" == 200 ]] || { echo "a signed call answered $status; see $work/ibex.log" >&2; cat "$work/ibex.log" >&2; exit 1; }

# Capacity, then half of it for the soak.
capacity=$(oha --no-tui -z 10s -c 32 --output-format json "${good[@]}" "$url" \
  | python3 -c 'import json,sys; print(int(json.load(sys.stdin)["summary"]["requestsPerSec"]))')
rate=$((capacity / 2))
echo "== soak: capacity $capacity calls/s; $SECONDS_TOTAL s at $((rate * 9 / 10)) signed + $((rate / 10)) forged calls/s"

rss() { awk '/^VmRSS/ {print $2}' "/proc/$ibex/status"; }
echo "rss_kib at start: $(rss)"
oha --no-tui -z "${SECONDS_TOTAL}s" -c 16 -q $((rate * 9 / 10)) --output-format json "${good[@]}" "$url" >"$work/good.json" &
load1=$!
oha --no-tui -z "${SECONDS_TOTAL}s" -c 4 -q $((rate / 10)) --output-format json "${forged[@]}" "$url" >"$work/forged.json" &
load2=$!
samples=()
for _ in $(seq $((SECONDS_TOTAL / 10))); do
  sleep 10
  samples+=("$(rss)")
done
wait "$load1" "$load2"
echo "rss_kib every 10 s: ${samples[*]}"
for stream in good forged; do
  python3 - "$work/$stream.json" "$stream" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
summary = report["summary"]
codes = report.get("statusCodeDistribution", {})
errors = report.get("errorDistribution", {})
print(f"{sys.argv[2]}: {summary['requestsPerSec']:.0f} calls/s, status {codes}, transport errors {errors}, "
      f"p99 {report['latencyPercentiles']['p99'] * 1000:.2f} ms")
PY
done
