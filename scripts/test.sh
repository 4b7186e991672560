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
# The workspace check above compiles `app` with ssr and hydrate together; the browser build has hydrate alone.
cargo clippy -p frontend --target wasm32-unknown-unknown -- -D warnings
step "cargo test (SQLite and PostgreSQL)"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# Per package, not --workspace: a workspace build unifies features and would compile `app` for the server with
# `hydrate` too, which the real server never is (server-side rendering then tries browser-only task spawning).
cargo test -p app --features ssr --all-targets -p server -p ibex-sim 2>&1 | tee "$log"
cargo_passed=$(awk '/^test result:/ {s += $4} END {print s + 0}' "$log")
step "release build (server + hydrate wasm)"
cargo leptos build --release --split
cargo build --release -p ibex-sim
step "end-to-end (Playwright, Debian Chromium)"
(cd end2end && npx playwright test) 2>&1 | tee "$log"
e2e_passed=$(awk '$2 == "passed" && $1 ~ /^[0-9]+$/ {print $1}' "$log" | tail -n 1)

# One closing line for the whole run (every step above stops the script on a failure).
printf '\nibex: %d passed, 0 failed\n' "$((cargo_passed + ${e2e_passed:-0}))"
