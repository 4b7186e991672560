#!/usr/bin/env bash
# Every test: formatting, lints, unit and integration tests on SQLite and PostgreSQL, the release site build,
# and the end-to-end tests in Debian's Chromium. Installs whatever is missing first.
set -euo pipefail
source "$(dirname "$0")/env.sh"
"$root/scripts/install-tools.sh"
"$root/scripts/ensure-postgres.sh"

step() { printf '\n== %s\n' "$*"; }

step "cargo fmt"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
step "cargo test (SQLite and PostgreSQL)"
cargo test --workspace
step "release build (server + hydrate wasm)"
cargo leptos build --release
step "end-to-end (Playwright, Debian Chromium)"
(cd end2end && npx playwright test)
