#!/usr/bin/env bash
# Installs and starts what the services and their tests need on a Debian machine
# like ours: system libraries, a running PostgreSQL whose `postgres` role logs in
# with the password `postgres` over TCP, the tansu Kafka-protocol broker, and
# what scripts/check-image.sh builds and runs images with (mmdebstrap, buildah,
# podman).
# Idempotent: every step is skipped when already done. Arguments name further
# Debian packages a caller needs (bench/run.sh: wrk).
set -euo pipefail

TANSU_VERSION=0.6.0
TANSU_ROOT="${TANSU_ROOT:-$HOME/.cache/tansu-$TANSU_VERSION-dynostore}"
PG_VERSION=15
CARGO_DENY_VERSION=0.20.2
CARGO_DENY_ROOT="${CARGO_DENY_ROOT:-$HOME/.cache/cargo-deny-$CARGO_DENY_VERSION}"
CHECKOV_VERSION=3.3.30
# Debian 12's prometheus package, for its promtool.
PROMETHEUS_DEB_VERSION=2.42.0

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() { if [ "$(id -u)" = 0 ]; then su postgres -c "$1"; else sudo -u postgres sh -c "$1"; fi; }

missing=()
for pkg in libpq-dev libssl-dev pkg-config "postgresql-$PG_VERSION" "postgresql-client-$PG_VERSION" docker-compose \
    mmdebstrap buildah podman runc binutils curl "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "prepare: installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

if ! pg_lsclusters -h | awk -v v="$PG_VERSION" '$1 == v && $2 == "main"' | grep -q online; then
    echo "prepare: starting PostgreSQL $PG_VERSION"
    as_root pg_ctlcluster "$PG_VERSION" main start
fi
for _ in $(seq 1 50); do
    pg_isready -q -h 127.0.0.1 -p 5432 && break
    sleep 0.2
done
as_postgres "psql -qtAc \"ALTER ROLE postgres PASSWORD 'postgres'\"" >/dev/null

# Validates the Kubernetes manifests offline (it ships the schemas).
if ! command -v kubernetes-validate >/dev/null 2>&1; then
    echo "prepare: installing kubernetes-validate"
    python3 -m pip install -q kubernetes-validate==1.37.0
fi

# Checks the Kubernetes manifests (scripts/check-deploy.sh), in a virtual
# environment of its own: its pinned dependencies (packaging, boto3, ...) would
# otherwise replace the versions schemathesis and kubernetes-validate run with.
CHECKOV_ROOT="${CHECKOV_ROOT:-$HOME/.cache/checkov-$CHECKOV_VERSION}"
if [ ! -x "$CHECKOV_ROOT/bin/checkov" ]; then
    echo "prepare: installing checkov $CHECKOV_VERSION in $CHECKOV_ROOT"
    python3 -m venv --clear "$CHECKOV_ROOT"
    "$CHECKOV_ROOT/bin/python" -m pip install -q "checkov==$CHECKOV_VERSION"
fi

# Generates hostile requests from the services' OpenAPI documents.
if ! command -v st >/dev/null 2>&1; then
    echo "prepare: installing schemathesis"
    python3 -m pip install -q schemathesis==4.32.5
fi

# promtool checks the alert rules (scripts/check-observability.sh). Debian's
# `prometheus` package ships it; only that binary is extracted from the
# package, so no Prometheus server is installed or started.
PROMTOOL_ROOT="${PROMTOOL_ROOT:-$HOME/.cache/promtool-$PROMETHEUS_DEB_VERSION}"
if [ ! -x "$PROMTOOL_ROOT/promtool" ]; then
    echo "prepare: extracting promtool from Debian's prometheus package into $PROMTOOL_ROOT"
    deb_dir=$(mktemp -d)
    if ! (cd "$deb_dir" && apt-get download -qq prometheus 2>/dev/null); then
        as_root apt-get update -qq
        (cd "$deb_dir" && apt-get download -qq prometheus)
    fi
    dpkg-deb -x "$deb_dir"/prometheus_*.deb "$deb_dir/root"
    mkdir -p "$PROMTOOL_ROOT"
    cp "$deb_dir/root/usr/bin/promtool" "$PROMTOOL_ROOT/promtool"
    rm -rf "$deb_dir"
fi

# The broker's default build has no storage engine; `dynostore` gives memory://.
if [ ! -x "$TANSU_ROOT/bin/tansu" ]; then
    echo "prepare: installing tansu $TANSU_VERSION (once per machine, ~15 min on 2 cores)"
    cargo install tansu --locked --version "$TANSU_VERSION" --features dynostore --root "$TANSU_ROOT"
fi
# The dependency policy's checker (deny.toml), built from crates.io like tansu.
if [ ! -x "$CARGO_DENY_ROOT/bin/cargo-deny" ]; then
    echo "prepare: installing cargo-deny $CARGO_DENY_VERSION (once per machine, ~5 min on 2 cores)"
    cargo install cargo-deny --locked --version "$CARGO_DENY_VERSION" --root "$CARGO_DENY_ROOT"
fi
echo "prepare: PostgreSQL on 127.0.0.1:5432, tansu at $TANSU_ROOT/bin/tansu, cargo-deny at $CARGO_DENY_ROOT/bin"
