#!/usr/bin/env bash
# Runs every check and test: formatting, lints, unit and integration tests
# against a real PostgreSQL and a real Kafka-protocol broker (tansu).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/prepare.sh
export TANSU_BIN="${TANSU_ROOT:-$HOME/.cache/tansu-0.6.0-dynostore}/bin/tansu"
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"

scripts/check-deploy.sh
scripts/check-observability.sh
scripts/check-msrv.sh
# deny.toml: licences, bans and sources (the advisory database cannot be fetched here).
"${CARGO_DENY_ROOT:-$HOME/.cache/cargo-deny-0.20.2}/bin/cargo-deny" --log-level error --locked check licenses bans sources
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The system test (crates/user-info-consumer/tests/system) runs the release binaries.
cargo build --release --locked --bins
export SYSTEM_BIN_DIR="${CARGO_TARGET_DIR:-$PWD/target}/release"
# The runtime images built from those binaries on a Debian 12 base, and run.
scripts/check-image.sh
cargo test --workspace --locked
scripts/api-fuzz.sh
