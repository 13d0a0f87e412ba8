#!/usr/bin/env bash
# Throughput of profile-enricher's POST /users (SPEC's README example), measured with wrk:
#   (a) instant upstream: a second profile-enricher's /dummy-enrich;
#   (b) upstream answering after 50 ms, MAX_CONCURRENCY=8 (ceiling 8 / 0.05 s = 160 req/s).
# Everything started here is stopped on exit. Tunables: DURATION, CONNECTIONS, THREADS,
# RUST_LOG / LOG_FORMAT (of the enricher under test), BASE_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
BASE_PORT=${BASE_PORT:-18100}
BIN=target/release/profile-enricher

command -v wrk >/dev/null || { echo "wrk is required (apt-get install -y wrk)" >&2; exit 1; }
cargo build --release -p profile-enricher

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

wait_for() { # url: any HTTP answer counts
  for _ in $(seq 100); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.1
  done
  echo "nothing answered at $1" >&2
  exit 1
}

# start_enricher PORT [VAR=value ...]
start_enricher() {
  local port=$1
  shift
  env ENRICHER_HOST=127.0.0.1 ENRICHER_PORT="$port" API_TOKENS= \
    RUST_LOG="${RUST_LOG:-warn}" LOG_FORMAT="${LOG_FORMAT:-}" "$@" "$BIN" >/dev/null 2>&1 &
  pids+=($!)
  wait_for "http://127.0.0.1:$port/health"
}

run_wrk() { # title port
  echo "== $1"
  wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s bench/post_users.lua \
    "http://127.0.0.1:$2"
  echo
}

instant_upstream=$BASE_PORT
slow_upstream=$((BASE_PORT + 1))
enricher_a=$((BASE_PORT + 2))
enricher_b=$((BASE_PORT + 3))

start_enricher "$instant_upstream" RUST_LOG=warn EXTERNAL_API_URL=
start_enricher "$enricher_a" EXTERNAL_API_URL="http://127.0.0.1:$instant_upstream/dummy-enrich"
run_wrk "(a) instant upstream (second profile-enricher's /dummy-enrich)" "$enricher_a"

python3 bench/slow_upstream.py "$slow_upstream" 0.05 &
pids+=($!)
wait_for "http://127.0.0.1:$slow_upstream/"
start_enricher "$enricher_b" EXTERNAL_API_URL="http://127.0.0.1:$slow_upstream/enrich" MAX_CONCURRENCY=8
run_wrk "(b) 50 ms upstream, MAX_CONCURRENCY=8 (ceiling 160 req/s)" "$enricher_b"
