#!/usr/bin/env bash
# Checks that the workspace's declared `rust-version` is not below what any
# dependency declares it needs (a floor, not a build: no other toolchain can be
# installed on our machines; the build itself runs on the installed one). It
# reads the crates' manifests, so on a new machine it downloads them first.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --format-version 1 --locked --filter-platform x86_64-unknown-linux-gnu |
python3 -c '
import json, re, sys
meta = json.load(sys.stdin)
used = {node["id"] for node in meta["resolve"]["nodes"]}
def version(text):
    return tuple(int(part) for part in text.split(".")[:2])
declared = re.search(r"^rust-version = \"([0-9.]+)\"", open("Cargo.toml").read(), re.M).group(1)
needs = max((version(p["rust_version"]), p["name"]) for p in meta["packages"]
            if p.get("rust_version") and p["source"] and p["id"] in used)
if needs[0] > version(declared):
    sys.exit(f"check-msrv: rust-version {declared} is below {needs[1]}, which needs {needs[0][0]}.{needs[0][1]}")
print(f"check-msrv: rust-version {declared} >= every dependency (highest: {needs[1]} {needs[0][0]}.{needs[0][1]})")
'
