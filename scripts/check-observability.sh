#!/usr/bin/env bash
# Checks deploy/observability with promtool: the alert rules parse
# (`promtool check rules`) and fire when they should and only then (the unit
# tests in alerts.test.yaml). That every series the rules and the dashboard
# query is one the processes register is a Rust test
# (crates/observability/tests/names.rs, run by `cargo test`).
# promtool comes from Debian's `prometheus` package, extracted (not installed)
# by scripts/prepare.sh into $PROMTOOL_ROOT.
set -euo pipefail
cd "$(dirname "$0")/../deploy/observability"

PROMTOOL_ROOT="${PROMTOOL_ROOT:-$HOME/.cache/promtool-2.42.0}"
if [ -x "$PROMTOOL_ROOT/promtool" ]; then
    promtool="$PROMTOOL_ROOT/promtool"
elif command -v promtool >/dev/null 2>&1; then
    promtool=promtool
else
    echo "check-observability: promtool not found (scripts/prepare.sh extracts it into $PROMTOOL_ROOT)" >&2
    exit 1
fi
"$promtool" check rules alerts.yaml
"$promtool" test rules alerts.test.yaml
python3 -c 'import json, sys; json.load(open("dashboard.json"))' \
    || { echo "check-observability: dashboard.json is not JSON" >&2; exit 1; }
echo "check-observability: alert rules parse and pass their unit tests"
