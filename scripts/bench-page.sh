#!/usr/bin/env bash
# The configuration page's budgets (issue 3), measured in one run on loopback:
#   - hydrate bundle size, raw and gzip -9 (budget: wasm <= 250 KB gzip);
#   - server render of /settings for a signed-in session, p50 over sequential requests (budget: <= 2 ms), next to
#     /healthz on the same server as the baseline of what any axum answer costs here;
#   - time from the portal's iframe starting to load to the hydrated form answering clicks, in Debian's Chromium
#     (budget: <= 300 ms), OAuth round trip through the simulated portal included.
# Prints a markdown block for docs/benchmarks.md.
set -euo pipefail
source "$(dirname "$0")/env.sh"
requests="${REQUESTS:-2000}"
command -v oha >/dev/null || cargo install oha --version 1.16.0 --locked
"$root/scripts/install-tools.sh"
cargo leptos build --release --split 2>&1 | tail -n 1
cargo build --release -p ibex-sim 2>&1 | tail -n 1

work="$(mktemp -d)"
shop=127.0.0.1:4311 portal=127.0.0.1:4312 ibex_port=4313
ibex_site="http://localhost:$ibex_port"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

target/release/ibex-sim shop --addr "$shop" --api-key bench-key >"$work/shop.log" 2>&1 &
pids+=($!)
target/release/ibex-sim portal --addr "$portal" --client-id ibex-bench \
  --redirect-uri "$ibex_site/oauth/callback" --settings-url "$ibex_site/settings" >"$work/portal.log" 2>&1 &
pids+=($!)
export DATABASE_URL="sqlite://$work/ibex.db?mode=rwc" IBEX_SIGNING_SECRETS=bench-secret \
  IBEX_ENCRYPTION_KEY="k1:$(head -c 32 /dev/urandom | base64)" IBEX_LOG_FORMAT=json IBEX_LOG=warn \
  IBEX_ALLOW_LOOPBACK_PARTNERS=true
target/release/ibex serve --addr "127.0.0.1:$ibex_port" --public-url "$ibex_site" \
  --oauth-authorize-url "http://$portal/exchange/1/oauth/authorize" \
  --oauth-token-url "http://$portal/exchange/1/oauth/token" --oauth-client-id ibex-bench \
  --frame-ancestors "http://$portal" >"$work/ibex.log" 2>&1 &
pids+=($!)
for url in "http://$shop/_sim/faults" "http://$portal/login" "http://127.0.0.1:$ibex_port/healthz"; do
  for _ in $(seq 1 100); do curl -fs -o /dev/null "$url" && break; sleep 0.1; done
done

# Bundle size: what a browser downloads to hydrate.
# The main wasm module and the configuration page's lazy island chunks: what the page fetches.
read -r wasm_raw wasm_gz < <(python3 scripts/wasm-size.py target/site/pkg settings_island)
js=target/site/pkg/ibex.js css=target/site/pkg/ibex.css
kb() { echo $(( ($1 + 512) / 1024 )); }
gz() { gzip -9c "$1" | wc -c; }

# A signed-in session, the way the iframe gets one: /settings → OAuth through the portal → /settings?session=…
# (the portal's sign-in cookie is the seeded user's key).
settings_url=$(curl -fsS -o /dev/null -L -b "sim_portal_user=U-ANA-7F21" -w '%{url_effective}' "$ibex_site/settings")
[[ $settings_url == *"session="* ]] || { echo "bench: sign-in did not end on the page: $settings_url" >&2; exit 1; }
settings_url="http://127.0.0.1:$ibex_port/settings?${settings_url#*\?}"
curl -fsS "$settings_url" | grep -q 'settings-form' || { echo "bench: /settings did not render the form" >&2; exit 1; }

p50_ms() { # url: sequential requests, one connection, the median in ms
  oha --no-tui -n "$requests" -c 1 --output-format json "$1" \
    | python3 -c 'import json,sys
d = json.load(sys.stdin)
codes = d["statusCodeDistribution"]
if set(codes) != {"200"}: sys.exit("bench: not every answer was 200: %s" % codes)
print("%.3f" % (d["latencyPercentiles"]["p50"]*1000))'
}
oha --no-tui -n 200 -c 1 "$settings_url" >/dev/null  # warm-up
render=() base=()
for _ in 1 2 3; do
  render+=("$(p50_ms "$settings_url")")
  base+=("$(p50_ms "http://127.0.0.1:$ibex_port/healthz")")
done
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
render_p50=$(median "${render[@]}") base_p50=$(median "${base[@]}")

interactive=$(cd end2end && node bench/interactive.mjs "http://$portal" ana.admin "${RUNS:-15}")

cat <<TXT

| what | measured | budget |
|---|---|---|
| hydrate wasm (main module + the page's island chunks) | $(kb "$wasm_raw") KB raw, **$(kb "$wasm_gz") KB gzip** | ≤ 250 KB gzip |
| JS glue / CSS | $(kb "$(gz $js)") KB / $(kb "$(gz $css)") KB gzip | |
| /settings server render, p50 (3 runs of $requests sequential requests, median) | **$render_p50 ms** | ≤ 2 ms |
| /healthz on the same server, same way (baseline) | $base_p50 ms | |
| iframe starts loading → form interactive, in Chromium ($interactive) | **p50 $(python3 -c "import json,sys; print(json.loads(sys.argv[1])['p50'])" "$interactive") ms** | ≤ 300 ms |
TXT
