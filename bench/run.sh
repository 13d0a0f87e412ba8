#!/usr/bin/env bash
# The benchmark: each process measured beside a reference that does the same work
# directly, in one run (a ratio within one run is what counts on a noisy machine).
# Builds release binaries, starts throw-away databases, a tansu broker and the
# services on free ports, runs every point, stops everything it started, prints
# the tables and writes them into BENCHMARKS.md (between the results markers).
#
#   bench/run.sh                      # DURATION=15 s per load point, MESSAGES=500000
#   DURATION=5 MESSAGES=100000 bench/run.sh
#   POINTS=enricher bench/run.sh      # some groups only (BENCHMARKS.md left alone)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-15}
MESSAGES=${MESSAGES:-500000}
CONNECTIONS=${CONNECTIONS:-32}
# Profiles through the enricher's Kafka mode (at 160/s: ~20 s).
PROFILES=${PROFILES:-3000}
# Which groups of points to run: api, ingest, enricher.
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
WORK=$(mktemp -d)
pids=()
databases=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    for db in "${databases[@]}"; do
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
# A process's own CPU so far (utime + stime), in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# cpu_per_request ticks-before ticks-after requests -> microseconds of CPU each
cpu_per_request() { python3 -c "print(f'{($2 - $1) * 1e6 / $(getconf CLK_TCK) / max($3, 1):.0f}')"; }
start() { # log-name command... ; sets $PID
    "${@:2}" >"$WORK/$1.log" 2>&1 &
    PID=$!
    pids+=("$PID")
}
stop() { kill "$1"; wait "$1" 2>/dev/null || true; }
new_database() { # name
    databases+=("$1")
    psql -q "$ADMIN/postgres" -c "CREATE DATABASE $1"
}
metric() { # url name -> the metric's value (0 until it shows)
    curl -sf "$1" 2>/dev/null | awk -v n="$2" '$1 == n {v = $2} END {printf "%d", v + 0}'
}
# wrk_point name url script [script args] -> RPS P50 P99 ERRORS
wrk_point() {
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$3" "$2" -- "${@:4}" >"$WORK/$1.wrk"
    RPS=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' "$WORK/$1.wrk")
    P50=$(awk '$1 == "50%" {print $2}' "$WORK/$1.wrk")
    P99=$(awk '$1 == "99%" {print $2}' "$WORK/$1.wrk")
    ERRORS=$(awk '/Non-2xx/ {print $5}' "$WORK/$1.wrk"); ERRORS=${ERRORS:-0}
    REQUESTS=$(awk '/requests in/ {print $1}' "$WORK/$1.wrk")
    errors+=("$1 $ERRORS")
}
warm_up() { wrk -t2 -c"$CONNECTIONS" -d2s -s "$2" "$1" -- "${@:3}" >/dev/null; }
pgbench_tps() { # database args... -> TPS
    pgbench "$ADMIN/$1" "${@:2}" >"$WORK/pgbench.out" 2>&1 || { cat "$WORK/pgbench.out" >&2; exit 1; }
    TPS=$(awk '/^tps/ {printf "%.0f", $3}' "$WORK/pgbench.out")
}
ratio() { python3 -c "print(f'{$1 / $2:.2f}')"; }
errors=()
# Rows of the tables, each "| ... |" line kept in the array of its table.
main_rows=(); api_rows=(); ingest_rows=()
row() { main_rows+=("| $1 | $2 | $3 | $4 | $5 | $6 | $7 | $8 |"); echo "bench: $1: $2 ($6; $7, target $8)"; }

broker=""
ensure_broker() {
    [ -n "$broker" ] && return
    kport=$(free_port)
    start tansu "$TANSU" broker --listener-url "tcp://127.0.0.1:$kport" \
        --advertised-listener-url "tcp://127.0.0.1:$kport" --storage-engine memory://tansu/
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$kport") 2>/dev/null && break; sleep 0.1; done
    broker="127.0.0.1:$kport"
}
topic() { # name partitions
    "$TANSU" topic create "$1" --partitions "$2" --broker "tcp://$broker" >/dev/null
}

if want api; then
# --- user-info against the same statements, prepared, straight from pgbench -----
DB=bench_api_$$
new_database "$DB"
port=$(free_port)
start user-info env USER_INFO_HOST=127.0.0.1 USER_INFO_PORT="$port" DATABASE_URL="$ADMIN/$DB" "$BIN/user-info"
ui=$PID
wait_http "http://127.0.0.1:$port/ready"
seed_users() { # from to
    psql -q "$ADMIN/$DB" -c "INSERT INTO user_info (user_id, first_name, last_name, email, phone_number)
        SELECT ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'First' || g, 'Last' || g,
               'user' || g || '@example.com', '+1 555 ' || g FROM generate_series($1, $2) AS g"
    # Steady state for both sides: no autovacuum or checkpoint of the fresh rows
    # running into the points.
    psql -q "$ADMIN/$DB" -c "VACUUM ANALYZE" -c "CHECKPOINT"
}
api_points() { # users label
    local users=$1 label=$2
    warm_up "http://127.0.0.1:$port" bench/get_user.lua "$users"
    wrk_point "get-$users" "http://127.0.0.1:$port" bench/get_user.lua "$users"
    local get_rps=$RPS get_p50=$P50 get_p99=$P99
    pgbench_tps "$DB" -M prepared -n -f bench/pgbench/get.sql -D users="$users" -c 16 -j 2 -T "$DURATION"
    local get_ref=$TPS
    warm_up "http://127.0.0.1:$port" bench/post_user.lua "$users"
    wrk_point "post-$users" "http://127.0.0.1:$port" bench/post_user.lua "$users"
    local post_rps=$RPS post_p50=$P50 post_p99=$P99
    pgbench_tps "$DB" -M prepared -n -f bench/pgbench/update.sql -D users="$users" -c 16 -j 2 -T "$DURATION"
    local post_ref=$TPS
    api_rows+=("| $label | $get_rps req/s, p99 $get_p99 | $get_ref tps | $(ratio "$get_rps" "$get_ref") | $post_rps req/s, p99 $post_p99 | $post_ref tps | $(ratio "$post_rps" "$post_ref") |")
    if [ "$users" = 10000 ]; then
        row "GET /user ($label)" "$get_rps req/s" "$get_p50" "$get_p99" "$(peak_rss "$ui") MiB" \
            "its SELECT, prepared, 16 clients: $get_ref tps" "$(ratio "$get_rps" "$get_ref")" ">= 0.6"
        pgbench_tps "$DB" -S -n -c 16 -j 2 -T "$DURATION"
        row "GET /user, the old reference" "$get_rps req/s" "-" "-" "-" \
            "pgbench -S (unprepared, 1M-row pgbench_accounts), 16 clients: $TPS tps" "$(ratio "$get_rps" "$TPS")" "-"
        row "POST /user update ($label)" "$post_rps req/s" "$post_p50" "$post_p99" "$(peak_rss "$ui") MiB" \
            "its UPDATE, prepared, 16 clients: $post_ref tps" "$(ratio "$post_rps" "$post_ref")" ">= 0.8"
        pgbench_tps "$DB" -n -f bench/pgbench/upsert.sql -c 16 -j 2 -T "$DURATION"
        row "POST /user update, the old reference" "$post_rps req/s" "-" "-" "-" \
            "single-row upsert, unprepared, 16 clients: $TPS tps" "$(ratio "$post_rps" "$TPS")" "-"
    fi
}
seed_users 1 10000
pgbench -q -i -s 10 "$ADMIN/$DB" >/dev/null 2>&1
api_points 10000 "10,000 users"
seed_users 10001 1000000
api_points 1000000 "1,000,000 users"
stop "$ui"
fi

if want ingest; then
# --- the consumer against its own transaction, prepared, from one pgbench client -
ensure_broker
# ingest_point label shape partitions batch -> appends to the ingest table; sets RATE REF
ingest_point() {
    local label=$1 shape=$2 partitions=$3 batch=$4 n=$((${#ingest_rows[@]} + 1))
    local db=bench_ingest_${$}_$n topic=bench_users_$n
    new_database "$db"
    topic "$topic" "$partitions"
    topic "$topic.dlq" 1
    "$BIN/examples/produce" "$broker" "$topic" "$MESSAGES" "$shape" 2>"$WORK/produce-$n.log"
    local mport; mport=$(free_port)
    # The consumer creates its tables (its migrations, as it starts) on a topic
    # that has nothing; the mixed shape's users must be there before it reads.
    start "consumer-$n-migrate" env DATABASE_URL="$ADMIN/$db" KAFKA_BOOTSTRAP_SERVERS="$broker" \
        KAFKA_TOPIC="$topic.dlq" KAFKA_GROUP_ID="migrate-$n" CONSUMER_METRICS_HOST=127.0.0.1 \
        CONSUMER_METRICS_PORT="$mport" "$BIN/user-info-consumer"
    local migrate=$PID migrations; migrations=$(find migrations -mindepth 1 -maxdepth 1 -type d | wc -l)
    until [ "$(psql -tA "$ADMIN/$db" -c "SELECT count(*) FROM __diesel_schema_migrations" 2>/dev/null || echo 0)" = "$migrations" ]; do
        sleep 0.2
    done
    stop "$migrate"
    if [ "$shape" = mixed ]; then
        psql -q "$ADMIN/$db" -c "INSERT INTO user_info (user_id, first_name, last_name, email, phone_number)
            SELECT ('00000000-0000-4000-8000-' || lpad(g::text, 12, '0'))::uuid, 'First' || g, 'Last' || g,
                   'user' || g || '@example.com', '+1 555 ' || g FROM generate_series(1, 100000) AS g"
    fi
    psql -q "$ADMIN/$db" -c "VACUUM ANALYZE" -c "CHECKPOINT"
    local started; started=$(date +%s.%N)
    start "consumer-$n" env DATABASE_URL="$ADMIN/$db" KAFKA_BOOTSTRAP_SERVERS="$broker" \
        KAFKA_TOPIC="$topic" KAFKA_DLQ_TOPIC="$topic.dlq" KAFKA_GROUP_ID="bench-$n" \
        CONSUMER_BATCH_SIZE="$batch" CONSUMER_METRICS_HOST=127.0.0.1 CONSUMER_METRICS_PORT="$mport" \
        "$BIN/user-info-consumer"
    local consumer=$PID deadline=$((SECONDS + 900))
    # Done when the offsets stored in PostgreSQL (in the batches' transactions)
    # cover every record.
    until [ "$(psql -tA "$ADMIN/$db" -c "SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets WHERE group_id = 'bench-$n'" 2>/dev/null || echo 0)" = "$MESSAGES" ]; do
        [ $SECONDS -lt $deadline ] || { echo "bench: ingest did not finish" >&2; exit 1; }
        sleep 0.5
    done
    local first last
    read -r first last < <(psql -tA -F' ' "$ADMIN/$db" -c \
        "SELECT extract(epoch FROM (SELECT min(updated_at) FROM user_info WHERE updated_at >= to_timestamp($started))),
                extract(epoch FROM (SELECT max(updated_at) FROM consumer_offsets WHERE group_id = 'bench-$n'))")
    local join; join=$(python3 -c "print(f'{$first - $started:.1f}')")
    RATE=$(python3 -c "print(f'{$MESSAGES / max($last - $first, 1e-3):.0f}')")
    local rss; rss=$(peak_rss "$consumer")
    stop "$consumer"
    pgbench_tps "$db" -M prepared -n -f "bench/pgbench/ingest_$shape.sql" -D batch="$batch" -c 1 -j 1 -T "$DURATION"
    REF=$((TPS * batch))
    ingest_rows+=("| $label | $partitions | $batch | $RATE msg/s | $REF rows/s | $(ratio "$RATE" "$REF") | ${join} s | $rss MiB |")
    echo "bench: ingest $label, $partitions partitions, batches of $batch: $RATE msg/s beside $REF rows/s"
    LAST_DB=$db RSS=$rss JOIN=$join
}
ingest_point "new users" new 3 500
row "consumer ingest ($MESSAGES new users, cold)" "$RATE msg/s" "first row after ${JOIN} s" "-" "$RSS MiB" \
    "its transaction (500 rows + offsets), prepared, 1 client: $REF rows/s" "$(ratio "$RATE" "$REF")" ">= 1.0"
# What keeping offsets in PostgreSQL costs: the old reference with and without them.
psql -q "$ADMIN/$LAST_DB" -c "CREATE TABLE bench_batch (LIKE user_info INCLUDING ALL)"
pgbench_tps "$LAST_DB" -n -f bench/pgbench/batch_upsert.sql -c 1 -j 1 -T "$DURATION"
plain=$((TPS * 500))
row "consumer ingest, the old reference" "$RATE msg/s" "-" "-" "-" \
    "500-row upsert into a scratch table, unprepared, 1 client: $plain rows/s" "$(ratio "$RATE" "$plain")" "-"
pgbench_tps "$LAST_DB" -n -f bench/pgbench/batch_upsert_offsets.sql -c 1 -j 1 -T "$DURATION"
row "offsets in PostgreSQL (cost)" "$((TPS * 500)) rows/s" "-" "-" "-" \
    "500-row upsert without them: $plain rows/s" "$(ratio "$((TPS * 500))" "$plain")" ">= 0.9"
ingest_point "mixed: 50 % new, 40 % updates, 10 % tombstones" mixed 3 500
row "consumer ingest ($MESSAGES mixed, cold)" "$RATE msg/s" "first row after ${JOIN} s" "-" "$RSS MiB" \
    "its transactions, prepared, 1 client: $REF rows/s" "$(ratio "$RATE" "$REF")" ">= 1.0"
ingest_point "new users" new 3 100
ingest_point "new users" new 3 2000
ingest_point "new users" new 1 500
fi

if want enricher; then
# --- profile-enricher against stub upstreams -------------------------------------
sport=$(free_port)
start stub env PORT="$sport" "$BIN/examples/stub_upstream"
wait_http "http://127.0.0.1:$sport/"
wrk_point stub "http://127.0.0.1:$sport/users" bench/post_profile.lua
stub_rps=$RPS
eport=$(free_port)
start enricher env ENRICHER_HOST=127.0.0.1 ENRICHER_PORT="$eport" EXTERNAL_API_URL="http://127.0.0.1:$sport/enrich" "$BIN/profile-enricher"
enricher=$PID
wait_http "http://127.0.0.1:$eport/health"
before=$(cpu_ticks "$enricher")
wrk_point enrich "http://127.0.0.1:$eport" bench/post_profile.lua
plain_rps=$RPS plain_cpu=$(cpu_per_request "$before" "$(cpu_ticks "$enricher")" "$REQUESTS")
row "POST /users, instant upstream" "$RPS req/s, $plain_cpu µs CPU each" "$P50" "$P99" "$(peak_rss "$enricher") MiB" "the stub upstream alone: $stub_rps req/s" "$(ratio "$RPS" "$stub_rps")" ">= 0.3"
stop "$enricher"
# The same upstream as a real API is called: a GET whose URL is filled from the
# profile (percent-encoded), an API key header, a JSON pointer and an `into` key -
# paired with the plain POST source above.
start enricher-templated env ENRICHER_HOST=127.0.0.1 ENRICHER_PORT="$eport" ENRICHMENT_SOURCES=people \
    SOURCE_PEOPLE_METHOD=GET SOURCE_PEOPLE_URL="http://127.0.0.1:$sport/person/{userId}?email={email}" \
    SOURCE_PEOPLE_HEADER_X_API_KEY=bench-key SOURCE_PEOPLE_SELECT=/user_category SOURCE_PEOPLE_INTO=category \
    "$BIN/profile-enricher"
enricher=$PID
wait_http "http://127.0.0.1:$eport/health"
before=$(cpu_ticks "$enricher")
wrk_point enrich-templated "http://127.0.0.1:$eport" bench/post_profile.lua
templated_cpu=$(cpu_per_request "$before" "$(cpu_ticks "$enricher")" "$REQUESTS")
row "POST /users, instant upstream as a templated GET source (URL from the profile, key header, select, into)" "$RPS req/s, $templated_cpu µs CPU each" "$P50" "$P99" "$(peak_rss "$enricher") MiB" "the plain POST source above: $plain_rps req/s, $plain_cpu µs CPU each" "$(ratio "$RPS" "$plain_rps")" ">= 0.9"
stop "$enricher"

slow=$(free_port)
start slow-stub env PORT="$slow" DELAY_MS=50 "$BIN/examples/stub_upstream"
wait_http "http://127.0.0.1:$slow/"
failing=$(free_port)
start failing-stub env PORT="$failing" DELAY_MS=50 STATUS=500 "$BIN/examples/stub_upstream"
wait_http "http://127.0.0.1:$slow/"
# The stub's own answer time is a little over 50 ms (HTTP on a busy machine):
# 8 connections straight at it give the ceiling this machine can really reach.
CONNECTIONS_SAVED=$CONNECTIONS; CONNECTIONS=8
wrk_point slow-stub "http://127.0.0.1:$slow/users" bench/post_profile.lua
CONNECTIONS=$CONNECTIONS_SAVED
slow_ceiling=$RPS
ceiling="8 / 0.05 s = 160 req/s (the stub straight, 8 connections: $slow_ceiling req/s)"
eport=$(free_port)
start enricher-slow env ENRICHER_HOST=127.0.0.1 ENRICHER_PORT="$eport" EXTERNAL_API_URL="http://127.0.0.1:$slow/enrich" "$BIN/profile-enricher"
enricher=$PID
wait_http "http://127.0.0.1:$eport/health"
wrk_point enrich-slow "http://127.0.0.1:$eport" bench/post_profile.lua
row "POST /users, 50 ms upstream, MAX_CONCURRENCY=8" "$RPS req/s" "$P50" "$P99" "$(peak_rss "$enricher") MiB" "ceiling $ceiling" "$(ratio "$RPS" 160)" ">= 0.97"
stop "$enricher"

# Three sources at 50 ms, 8 slots each; the optional third always fails (500):
# its breaker opens, so it is mostly skipped, and the two others bound the rate.
eport=$(free_port)
start enricher-sources env ENRICHER_HOST=127.0.0.1 ENRICHER_PORT="$eport" ENRICHMENT_SOURCES=geo,risk,ads \
    SOURCE_GEO_URL="http://127.0.0.1:$slow/geo" SOURCE_RISK_URL="http://127.0.0.1:$slow/risk" \
    SOURCE_ADS_URL="http://127.0.0.1:$failing/ads" SOURCE_ADS_REQUIRED=false "$BIN/profile-enricher"
enricher=$PID
wait_http "http://127.0.0.1:$eport/health"
wrk_point enrich-sources "http://127.0.0.1:$eport" bench/post_profile.lua
row "POST /users, 3 sources at 50 ms (the optional one failing), 8 slots each" "$RPS req/s" "$P50" "$P99" "$(peak_rss "$enricher") MiB" "ceiling $ceiling" "$(ratio "$RPS" 160)" ">= 0.97"
stop "$enricher"

# The Kafka mode: profiles pre-produced, the enricher started on them; its rate
# from its first answer to its last, read off its /metrics.
ensure_broker
topic profiles 3; topic profiles.enriched 3; topic profiles.dlq 1
"$BIN/examples/produce" "$broker" profiles "$PROFILES" profiles 2>"$WORK/produce-profiles.log"
eport=$(free_port)
start enricher-kafka env ENRICHER_HOST=127.0.0.1 ENRICHER_PORT="$eport" EXTERNAL_API_URL="http://127.0.0.1:$slow/enrich" \
    ENRICHER_INPUT_TOPIC=profiles KAFKA_BOOTSTRAP_SERVERS="$broker" KAFKA_GROUP_ID="bench-enricher-$$" "$BIN/profile-enricher"
enricher=$PID
metrics="http://127.0.0.1:$eport/metrics"
deadline=$((SECONDS + 600))
until [ "$(metric "$metrics" enricher_kafka_records_out_total)" -gt 0 ]; do
    [ $SECONDS -lt $deadline ] || { echo "bench: no enriched profile" >&2; exit 1; }
    sleep 0.05
done
first=$(date +%s.%N); first_out=$(metric "$metrics" enricher_kafka_records_out_total)
until [ "$(metric "$metrics" enricher_kafka_records_out_total)" -ge "$PROFILES" ]; do
    [ $SECONDS -lt $deadline ] || { echo "bench: the Kafka mode did not finish" >&2; exit 1; }
    sleep 0.05
done
last=$(date +%s.%N)
rate=$(python3 -c "print(f'{($PROFILES - $first_out) / ($last - $first):.0f}')")
dead=$(metric "$metrics" enricher_kafka_dead_lettered_total)
row "Kafka mode: $PROFILES profiles, 50 ms upstream, MAX_CONCURRENCY=8" "$rate profiles/s" "-" "-" "$(peak_rss "$enricher") MiB" "ceiling $ceiling; dead letters: $dead" "$(ratio "$rate" 160)" ">= 0.97"
stop "$enricher"
fi

# --- report ------------------------------------------------------------------------
cpu=$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)
report="Run of $(date -u '+%Y-%m-%d %H:%M UTC') on $(nproc) cores ($cpu), $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), \`DURATION=$DURATION MESSAGES=$MESSAGES bench/run.sh\`:
load points with \`wrk -t2 -c$CONNECTIONS -d${DURATION}s\`, PostgreSQL $(psql -tA "$ADMIN/postgres" -c 'SHOW server_version' | cut -d' ' -f1), default settings of every service (logging at \`info\`).

| point | throughput | p50 | p99 | peak RSS | beside it, same run | ratio | target |
| --- | --- | --- | --- | --- | --- | --- | --- |
$(printf '%s\n' "${main_rows[@]}")

Non-2xx answers per load point: $(printf '%s, ' "${errors[@]}" | sed 's/, $//')."
if [ ${#api_rows[@]} -gt 0 ]; then
    report+="

**user-info as the table grows** (\`bench/pgbench/get.sql\`, \`update.sql\`: the service's own statements, prepared, 16 clients):

| users | GET /user | its SELECT | ratio | POST /user update | its UPDATE | ratio |
| --- | --- | --- | --- | --- | --- | --- |
$(printf '%s\n' "${api_rows[@]}")"
fi
if [ ${#ingest_rows[@]} -gt 0 ]; then
    report+="

**The consumer's ingest by backlog, partitions and batch size** (\`CONSUMER_BATCH_SIZE\`; beside \`bench/pgbench/ingest_<shape>.sql\` - the consumer's transaction for a batch of that size, prepared, from one client, its rows made by PostgreSQL itself):

| backlog | partitions | batch | consumer | its transaction | ratio | first row after | peak RSS |
| --- | --- | --- | --- | --- | --- | --- | --- |
$(printf '%s\n' "${ingest_rows[@]}")"
fi
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
    echo "bench: results written to $OUT"
else
    printf '# Benchmarks\n\n<!-- results:start -->\n%s\n<!-- results:end -->\n' "$report" >"$OUT"
    echo "bench: results written to $OUT"
fi
