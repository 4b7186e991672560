#!/usr/bin/env bash
# One command to run ibex locally: the bundled Order desk example, a SQLite file under ./data, the demo shop API,
# the simulated Exchange portal (another site than ibex, as Infobip's is), and development secrets generated
# once into ./data/dev-secrets.env. Ctrl-C stops everything.
set -euo pipefail
source "$(dirname "$0")/env.sh"
"$root/scripts/install-tools.sh"

cargo leptos build --release --split
cargo build --release -p ibex-sim

IBEX_ADDR="${IBEX_ADDR:-127.0.0.1:3000}"
SHOP_ADDR="${IBEX_SIM_SHOP_ADDR:-127.0.0.1:4001}"
SHOP_KEY="${IBEX_SIM_SHOP_API_KEY:-demo-key}"
PORTAL_ADDR="${IBEX_SIM_PORTAL_ADDR:-127.0.0.1:4100}"
# localhost, not 127.0.0.1: the portal frames ibex from another site, as portal.infobip.com frames a partner.
IBEX_PUBLIC_URL="${IBEX_PUBLIC_URL:-http://localhost:${IBEX_ADDR##*:}}"
export IBEX_ADDR IBEX_PUBLIC_URL IBEX_LOG_FORMAT="${IBEX_LOG_FORMAT:-text}"
# Lifecycle webhooks go to the demo shop's receiver, which verifies their signatures (docs/webhooks.md); a new
# secret each run, known to both.
IBEX_WEBHOOK_URL="${IBEX_WEBHOOK_URL:-http://$SHOP_ADDR/webhooks}"
IBEX_WEBHOOK_SECRET="${IBEX_WEBHOOK_SECRET:-whsec_$(head -c 32 /dev/urandom | base64)}"
export IBEX_WEBHOOK_URL IBEX_WEBHOOK_SECRET

# 500 customers: a People sync of the demo takes about a minute at People's 10 writes/s.
IBEX_SIM_WEBHOOK_SECRET="$IBEX_WEBHOOK_SECRET" target/release/ibex-sim shop --addr "$SHOP_ADDR" --api-key "$SHOP_KEY" \
  --customers "${IBEX_SIM_SHOP_CUSTOMERS:-500}" &
shop_pid=$!
target/release/ibex-sim portal --addr "$PORTAL_ADDR" \
  --redirect-uri "$IBEX_PUBLIC_URL/oauth/callback" --settings-url "$IBEX_PUBLIC_URL/settings" \
  --card-url "$IBEX_PUBLIC_URL/card" &
portal_pid=$!
trap 'kill $shop_pid $portal_pid 2>/dev/null || true' EXIT INT TERM

# A ready-to-call demo account, pointing at the demo shop (idempotent).
target/release/ibex --dev settings set demo-account "api_key=$SHOP_KEY" "api_base_url=http://$SHOP_ADDR" >/dev/null

cat <<TXT

  ibex is starting on $IBEX_PUBLIC_URL  (demo shop API on http://$SHOP_ADDR)
  Simulated Infobip portal: http://$PORTAL_ADDR  (sign in, Exchange → My apps → Open)
  Context card: http://$PORTAL_ADDR/conversations  (pick a conversation; the card is on the right)
  Webhooks the partner received: http://$SHOP_ADDR/_sim/webhooks  (ibex webhooks list: what ibex sent)
  Call a function as Infobip would:
    target/release/ibex --dev call order-status order_id=1001 --account demo-account
  Manifest for App shell:
    target/release/ibex --dev manifest --product answers

TXT
target/release/ibex serve --dev
