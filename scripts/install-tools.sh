#!/usr/bin/env bash
# Installs what building and testing ibex needs on a fresh machine, skipping whatever is already there, so a warm
# machine passes through in seconds. Versions are pinned because newer releases need a newer rustc than the
# machines have, and cargo-leptos would otherwise try to download tools from the internet, which fails here.
set -euo pipefail

CARGO_LEPTOS_VERSION=0.3.10
WASM_BINDGEN_VERSION=0.2.130
BINARYEN_VERSION=132

root="$(cd "$(dirname "$0")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$root/end2end/node_modules/.bin:$PATH"

log() { printf '[install-tools] %s\n' "$*" >&2; }

if ! rustup target list --installed | grep -q '^wasm32-unknown-unknown$'; then
  log "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if ! cargo leptos --version 2>/dev/null | grep -q "$CARGO_LEPTOS_VERSION"; then
  log "installing cargo-leptos $CARGO_LEPTOS_VERSION (about 12 minutes on 2 cores)"
  cargo install cargo-leptos --version "$CARGO_LEPTOS_VERSION" --locked
fi

if ! wasm-bindgen --version 2>/dev/null | grep -q "$WASM_BINDGEN_VERSION"; then
  log "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION"
  # no --locked: its lock file names a crate version the registry here lacks
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

need_apt=()
command -v chromium >/dev/null || need_apt+=(chromium chromium-driver)
command -v nginx >/dev/null || need_apt+=(nginx-light)
command -v wrk >/dev/null || need_apt+=(wrk)
if ((${#need_apt[@]})); then
  log "installing Debian packages: ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Node packages for the end-to-end tests and wasm-opt (binaryen from npm: Debian's wasm-opt 108 breaks hydration)
if [[ ! -x "$root/end2end/node_modules/.bin/wasm-opt" || ! -d "$root/end2end/node_modules/@playwright/test" || ! -d "$root/end2end/node_modules/@axe-core/playwright" ]]; then
  log "installing end2end npm packages"
  (cd "$root/end2end" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
log "tools ready"
