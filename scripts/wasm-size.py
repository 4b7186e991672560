#!/usr/bin/env python3
"""The wasm a page loads, raw and gzip -9: the main module plus the chunks of the lazy island(s) it has, as
cargo-leptos --split's manifest lists them. Usage: wasm-size.py PKG_DIR ISLAND_PREFIX... (e.g. row_action_control);
prints "raw_bytes gzip_bytes"."""
import gzip
import json
import pathlib
import sys

pkg = pathlib.Path(sys.argv[1])
manifest = json.loads((pkg / "__wasm_split_manifest.json").read_text())
files = {"ibex"}
for prefix in sys.argv[2:]:
    islands = [k for k in manifest if k.startswith(prefix)]
    if not islands:
        sys.exit(f"no lazy island {prefix}* in the split manifest")
    for island in islands:
        files.update(manifest[island])
raw = sum((pkg / f"{f}.wasm").stat().st_size for f in files)
packed = sum(len(gzip.compress((pkg / f"{f}.wasm").read_bytes(), 9)) for f in files)
print(raw, packed)
