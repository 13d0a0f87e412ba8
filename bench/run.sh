#!/usr/bin/env bash
# The benchmark: each process measured beside this machine's own limits, in one
# run (a ratio within one run is what counts on a noisy machine). Builds release
# binaries, starts a throw-away database, a tansu broker and the services on free
# ports, runs every point, stops everything it started, prints the table and
# writes it into BENCHMARKS.md (between the results markers).
#
#   bench/run.sh                      # DURATION=15 s per load point, MESSAGES=500000
#   DURATION=5 MESSAGES=100000 bench/run.sh
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15}
MESSAGES=${MESSAGES:-500000}
CONNECTIONS=${CONNECTIONS:-32}
# Which groups of points to run (a partial run prints its table but leaves
# BENCHMARKS.md alone): api (1, 2), ingest (3), enricher (4, 5).
POINTS=${POINTS:-api,ingest,enricher}
want() { [[ ",$POINTS," == *",$1,"* ]]; }
OUT=${OUT:-BENCHMARKS.md}

scripts/prepare.sh wrk >/dev/null
cargo build --release --locked --bins -q
cargo build --release --locked -q -p user-info-consumer --example produce
cargo build --release --locked -q -p profile-enricher --example stub_upstream
BIN="${CARGO_TARGET_DIR:-target}/release"
TANSU="${TANSU_ROOT:-$HOME/.cache/tansu-0.6.0-dynostore}/bin/tansu"

ADMIN=postgres://postgres:postgres@127.0.0.1:5432
DB=bench_api_$$
INGEST_DB=bench_ingest_$$
WORK=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for db in "$DB" "$INGEST_DB"; do
        psql -q "$ADMIN/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_http() {
    for _ in $(seq 300); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
    echo "bench: nothing healthy at $1" >&2; exit 1
}
peak_rss() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }
start() { # log-name command... ; sets $PID
    "${@:2}" >"$WORK/$1.log" 2>&1 &
    PID=$!
    pids+=("$PID")
}
# wrk_point name url script -> RPS P50 P99 ERRORS
wrk_point() {
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$3" "$2" >"$WORK/$1.wrk"
    RPS=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' "$WORK/$1.wrk")
    P50=$(awk '$1 == "50%" {print $2}' "$WORK/$1.wrk")
    P99=$(awk '$1 == "99%" {print $2}' "$WORK/$1.wrk")
    ERRORS=$(awk '/Non-2xx/ {print $5}' "$WORK/$1.wrk"); ERRORS=${ERRORS:-0}
}
pgbench_tps() { # database args... -> TPS
    pgbench "$ADMIN/$1" "${@:2}" >"$WORK/pgbench.out" 2>&1
    TPS=$(awk '/^tps/ {printf "%.0f", $3}' "$WORK/pgbench.out")
}
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
rows=()
row() { rows+=("| $1 | $2 | $3 | $4 | $5 | $6 | $7 | $8 |"); echo "bench: $1: $2 ($7, target $8)"; }

psql -q "$ADMIN/postgres" -c "CREATE DATABASE $DB" -c "CREATE DATABASE $INGEST_DB"

get_errors=-; post_errors=-; instant_errors=-; slow_errors=-
if want api; then
# --- 1, 2: user-info against pgbench ------------------------------------------
port=$(free_port)
start user-info env USER_INFO_HOST=127.0.0.1 USER_INFO_PORT="$port" DATABASE_URL="$ADMIN/$DB" "$BIN/user-info"
ui=$PID
wait_http "http://127.0.0.1:$port/ready"
psql -q "$ADMIN/$DB" -c "INSERT INTO user_info (user_id, first_name, last_name, email, phone_number)
    SELECT ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'First' || g, 'Last' || g,
           'user' || g || '@example.com', '+1 555 ' || g FROM generate_series(1, 10000) AS g"
pgbench -q -i -s 10 "$ADMIN/$DB" >/dev/null 2>&1
# Steady state for both sides: no autovacuum or checkpoint of the fresh tables
# running into the first point, and the service's connections open (a short
# unmeasured warm-up per point).
psql -q "$ADMIN/$DB" -c "VACUUM ANALYZE" -c "CHECKPOINT"
warm_up() { wrk -t2 -c"$CONNECTIONS" -d2s -s "$2" "$1" >/dev/null; }

warm_up "http://127.0.0.1:$port" bench/get_user.lua
wrk_point get "http://127.0.0.1:$port" bench/get_user.lua
pgbench_tps "$DB" -S -n -c 16 -j 2 -T "$DURATION"
row "GET /user (10,000 users)" "$RPS req/s" "$P50" "$P99" "$(peak_rss "$ui") MiB" "pgbench -S, 16 clients: $TPS tps" "$(ratio "$RPS" "$TPS")" ">= 0.6"
get_errors=$ERRORS

warm_up "http://127.0.0.1:$port" bench/post_user.lua
wrk_point post "http://127.0.0.1:$port" bench/post_user.lua
pgbench_tps "$DB" -n -f bench/pgbench/upsert.sql -c 16 -j 2 -T "$DURATION"
row "POST /user update" "$RPS req/s" "$P50" "$P99" "$(peak_rss "$ui") MiB" "single-row upsert, 16 clients: $TPS tps" "$(ratio "$RPS" "$TPS")" ">= 0.6"
post_errors=$ERRORS
kill "$ui"
fi

if want ingest; then
# --- 3: consumer ingest against batched upserts ---------------------------------
kport=$(free_port)
start tansu "$TANSU" broker --listener-url "tcp://127.0.0.1:$kport" \
    --advertised-listener-url "tcp://127.0.0.1:$kport" --storage-engine memory://tansu/
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$kport") 2>/dev/null && break; sleep 0.1; done
"$TANSU" topic create bench_users --partitions 3 --broker "tcp://127.0.0.1:$kport" >/dev/null
"$TANSU" topic create bench_users.dlq --partitions 1 --broker "tcp://127.0.0.1:$kport" >/dev/null
"$BIN/examples/produce" "127.0.0.1:$kport" bench_users "$MESSAGES" 2>"$WORK/produce.log"

mport=$(free_port)
started=$(date +%s.%N)
start consumer env DATABASE_URL="$ADMIN/$INGEST_DB" KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:$kport" \
    KAFKA_TOPIC=bench_users KAFKA_DLQ_TOPIC=bench_users.dlq KAFKA_GROUP_ID="bench-$$" \
    CONSUMER_METRICS_HOST=127.0.0.1 CONSUMER_METRICS_PORT="$mport" "$BIN/user-info-consumer"
consumer=$PID
deadline=$((SECONDS + 900))
until [ "$(psql -tA "$ADMIN/$INGEST_DB" -c 'SELECT count(*) FROM user_info' 2>/dev/null || echo 0)" = "$MESSAGES" ]; do
    [ $SECONDS -lt $deadline ] || { echo "bench: ingest did not finish" >&2; exit 1; }
    sleep 0.5
done
read -r first last < <(psql -tA -F' ' "$ADMIN/$INGEST_DB" -c \
    "SELECT extract(epoch FROM min(created_at)), extract(epoch FROM max(created_at)) FROM user_info")
join=$(python3 -c "print(f'{$first - $started:.1f}')")
rate=$(python3 -c "print(f'{($MESSAGES - 1) / max($last - $first, 1e-3):.0f}')")
consumer_rss=$(peak_rss "$consumer")
kill "$consumer"
psql -q "$ADMIN/$INGEST_DB" -c "CREATE TABLE bench_batch (LIKE user_info INCLUDING ALL)"
pgbench_tps "$INGEST_DB" -n -f bench/pgbench/batch_upsert.sql -c 1 -j 1 -T "$DURATION"
batch_rows=$((TPS * 500))
row "consumer ingest ($MESSAGES messages, cold)" "$rate msg/s" "first row after ${join} s" "-" "$consumer_rss MiB" "batched upsert (500 rows), 1 client: $batch_rows rows/s" "$(ratio "$rate" "$batch_rows")" ">= 0.5"
# The same batches with the offsets kept beside them, as the consumer commits them.
pgbench_tps "$INGEST_DB" -n -f bench/pgbench/batch_upsert_offsets.sql -c 1 -j 1 -T "$DURATION"
offsets_rows=$((TPS * 500))
row "offsets in PostgreSQL (cost)" "$offsets_rows rows/s" "-" "-" "-" "batched upsert without them: $batch_rows rows/s" "$(ratio "$offsets_rows" "$batch_rows")" ">= 0.9"

fi

if want enricher; then
# --- 4, 5: profile-enricher against a stub upstream ------------------------------
sport=$(free_port)
start stub env PORT="$sport" "$BIN/examples/stub_upstream"
wait_http "http://127.0.0.1:$sport/"
wrk_point stub "http://127.0.0.1:$sport/users" bench/post_profile.lua
stub_rps=$RPS
eport=$(free_port)
start enricher env ENRICHER_HOST=127.0.0.1 ENRICHER_PORT="$eport" EXTERNAL_API_URL="http://127.0.0.1:$sport/enrich" "$BIN/profile-enricher"
enricher=$PID
wait_http "http://127.0.0.1:$eport/health"
wrk_point enrich "http://127.0.0.1:$eport" bench/post_profile.lua
row "POST /users, instant upstream" "$RPS req/s" "$P50" "$P99" "$(peak_rss "$enricher") MiB" "stub upstream alone: $stub_rps req/s" "$(ratio "$RPS" "$stub_rps")" ">= 0.1"
instant_errors=$ERRORS
kill "$enricher"

slow=$(free_port)
start slow-stub env PORT="$slow" DELAY_MS=50 "$BIN/examples/stub_upstream"
wait_http "http://127.0.0.1:$slow/"
# The stub's own answer time is a little over 50 ms (timer granularity, HTTP):
# 8 connections straight at it give the ceiling this machine can really reach.
CONNECTIONS_SAVED=$CONNECTIONS; CONNECTIONS=8
wrk_point slow-stub "http://127.0.0.1:$slow/users" bench/post_profile.lua
CONNECTIONS=$CONNECTIONS_SAVED
slow_ceiling=$RPS
eport=$(free_port)
start enricher-slow env ENRICHER_HOST=127.0.0.1 ENRICHER_PORT="$eport" EXTERNAL_API_URL="http://127.0.0.1:$slow/enrich" "$BIN/profile-enricher"
enricher=$PID
wait_http "http://127.0.0.1:$eport/health"
wrk_point enrich-slow "http://127.0.0.1:$eport" bench/post_profile.lua
row "POST /users, 50 ms upstream, MAX_CONCURRENCY=8" "$RPS req/s" "$P50" "$P99" "$(peak_rss "$enricher") MiB" "ceiling 8 / 0.05 s = 160 req/s (the stub straight, 8 connections: $slow_ceiling req/s)" "$(ratio "$RPS" 160)" ">= 0.97"
slow_errors=$ERRORS
fi

# --- report ------------------------------------------------------------------------
cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
report=$(cat <<REPORT
Run of $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), \`DURATION=$DURATION MESSAGES=$MESSAGES bench/run.sh\`:
load points with \`wrk -t2 -c$CONNECTIONS -d${DURATION}s\`, PostgreSQL $(psql -tA "$ADMIN/postgres" -c 'SHOW server_version' | cut -d' ' -f1), default settings of every service.

| point | throughput | p50 | p99 | peak RSS | beside it, same run | ratio | target |
| --- | --- | --- | --- | --- | --- | --- | --- |
$(printf '%s\n' "${rows[@]}")

Non-2xx answers: GET $get_errors, POST $post_errors, enricher (instant) $instant_errors, enricher (50 ms) $slow_errors.
REPORT
)
echo "$report"
if [ "$POINTS" != "api,ingest,enricher" ]; then
    echo "bench: partial run ($POINTS), $OUT left unchanged"
elif [ -f "$OUT" ] && grep -q '<!-- results:start -->' "$OUT"; then
    python3 - "$OUT" "$report" <<'PY'
import sys
path, report = sys.argv[1], sys.argv[2]
text = open(path).read()
head, rest = text.split("<!-- results:start -->", 1)
_, tail = rest.split("<!-- results:end -->", 1)
open(path, "w").write(f"{head}<!-- results:start -->\n{report}\n<!-- results:end -->{tail}")
PY
else
    printf '# Benchmarks\n\n<!-- results:start -->\n%s\n<!-- results:end -->\n' "$report" >"$OUT"
fi
if [ "$POINTS" = "api,ingest,enricher" ]; then echo "bench: results written to $OUT"; fi
