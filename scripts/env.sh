# Sourced by the other scripts: tool paths, so cargo-leptos finds wasm-bindgen and wasm-opt (from npm's binaryen)
# on PATH instead of trying to download them.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$HOME/.cargo/bin:$root/end2end/node_modules/.bin:$PATH"
export LEPTOS_SITE_ROOT="$root/target/site"
cd "$root"
