#!/usr/bin/env bash
# Runs the whole product on this machine: PostgreSQL (started if needed, the
# database created), a tansu Kafka-protocol broker with the topics, and the three
# services from release builds. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/prepare.sh
TANSU="${TANSU_ROOT:-$HOME/.cache/tansu-0.6.0-dynostore}/bin/tansu"
if [ -f .env ]; then set -a; . ./.env; set +a; fi
export DATABASE_URL="${DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/user_info}"
export KAFKA_BOOTSTRAP_SERVERS="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}"
export KAFKA_TOPIC="${KAFKA_TOPIC:-user_service}"
export KAFKA_DLQ_TOPIC="${KAFKA_DLQ_TOPIC:-user_service.dlq}"

database="${DATABASE_URL##*/}"; database="${database%%\?*}"
admin_url="${DATABASE_URL%/*}/postgres"
if ! psql "$admin_url" -tAc "SELECT 1 FROM pg_database WHERE datname = '$database'" | grep -q 1; then
    psql "$admin_url" -qc "CREATE DATABASE \"$database\""
fi

cargo build --release --locked --bins
bin="${CARGO_TARGET_DIR:-target}/release"

pids=()
cleanup() {
    trap - EXIT INT TERM
    [ ${#pids[@]} -gt 0 ] && kill "${pids[@]}" 2>/dev/null || true
    wait || true
}
trap cleanup EXIT INT TERM

"$TANSU" broker --listener-url "tcp://$KAFKA_BOOTSTRAP_SERVERS" \
    --advertised-listener-url "tcp://$KAFKA_BOOTSTRAP_SERVERS" --storage-engine memory://tansu/ &
pids+=($!)
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/${KAFKA_BOOTSTRAP_SERVERS%:*}/${KAFKA_BOOTSTRAP_SERVERS#*:}") 2>/dev/null && break
    sleep 0.1
done
"$TANSU" topic create "$KAFKA_TOPIC" --partitions 3 --broker "tcp://$KAFKA_BOOTSTRAP_SERVERS" || true
"$TANSU" topic create "$KAFKA_DLQ_TOPIC" --partitions 1 --broker "tcp://$KAFKA_BOOTSTRAP_SERVERS" || true

"$bin/user-info" & pids+=($!)
"$bin/user-info-consumer" & pids+=($!)
"$bin/profile-enricher" & pids+=($!)
echo "user-info on :${USER_INFO_PORT:-9810}, profile-enricher on :${ENRICHER_PORT:-8000}, consumer metrics on :${CONSUMER_METRICS_PORT:-9811}; Ctrl-C stops all"
wait -n
