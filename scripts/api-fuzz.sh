#!/usr/bin/env bash
# Hostile input from the published contracts: schemathesis generates requests from
# each service's GET /openapi.json (fixed seed, bounded examples) and fails on any
# 5xx, any answer that does not conform to the document, any schema-valid request
# refused and any schema-invalid request accepted. Starts the debug binaries that
# `cargo test` built, on free ports, and stops them by PID.
set -euo pipefail
cd "$(dirname "$0")/.."

SEED=${SEED:-1}
EXAMPLES=${EXAMPLES:-100}
BIN="${CARGO_TARGET_DIR:-target}/debug"
ADMIN=${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}
DB=api_fuzz_$$
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" 2>/dev/null || true
    rm -rf .schemathesis
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_ready() {
    for _ in $(seq 200); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
    echo "api-fuzz: nothing ready at $1" >&2; exit 1
}
fuzz() {
    echo "api-fuzz: $1"
    # One worker: hypothesis parses lambda sources with `ast`, which CPython 3.11.7
    # can break on when two threads do it at once ("AST constructor recursion
    # depth mismatch", a schemathesis runtime error, not a finding).
    SCHEMATHESIS_HOOKS=scripts/api_fuzz_hooks.py st --config-file scripts/schemathesis.toml \
        run "$1/openapi.json" --checks all --seed "$SEED" --max-examples "$EXAMPLES" \
        --workers 1 --request-timeout 10
}

psql -q "$ADMIN" -c "CREATE DATABASE $DB"
port=$(free_port)
USER_INFO_HOST=127.0.0.1 USER_INFO_PORT=$port RUST_LOG=warn \
    DATABASE_URL="${ADMIN%/*}/$DB" "$BIN/user-info" >/dev/null 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$port/ready"
fuzz "http://127.0.0.1:$port"

port=$(free_port)
ENRICHER_HOST=127.0.0.1 ENRICHER_PORT=$port RUST_LOG=warn "$BIN/profile-enricher" >/dev/null 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$port/health"
fuzz "http://127.0.0.1:$port"
echo "api-fuzz: both services conform"
