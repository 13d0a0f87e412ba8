#!/usr/bin/env bash
# Runtime smoke check of the images without Docker Hub or a Docker engine.
#
# The Dockerfile's runtime stage is distroless cc (Debian 12) plus libz.so.1, the
# binary stripped of its debug information, user 10001:10001, the binary as the
# entrypoint. This script builds the same thing from Debian's own mirror:
#   1. a Debian 12 root filesystem with mmdebstrap (variant `extract`: the files
#      of glibc, libgcc_s, libstdc++, OpenSSL 3 and zlib, plus base-files,
#      netbase, tzdata and the CA certificates; no shell, no package manager, no
#      maintainer script run), cached in ~/.cache/user-services-image (rebuilt
#      when its recipe changes or after 7 days);
#   2. one image per binary with buildah: that root filesystem, the release
#      binary stripped as the Dockerfile strips it, LOG_FORMAT=json, USER
#      10001:10001, the ENTRYPOINT and HEALTHCHECK of the Dockerfile;
#   3. runs each with podman (host network, free ports, read-only root
#      filesystem, every capability dropped, no new privileges: as deploy/ runs
#      them, no database or broker reachable) and checks: /health answers 200,
#      the process runs as 10001:10001, its logs are JSON lines, there is no
#      /bin/sh, `<binary> --health-check` exits 0 in the running container,
#      SIGTERM stops it with exit 0, and `--health-check` then fails;
#   4. removes every container and image it made, also when a check fails.
# Binaries: $SYSTEM_BIN_DIR, else $CARGO_TARGET_DIR/release, else target/release
# (build them first: cargo build --release --locked --bins). Needs root (rootful
# podman) and the Debian packages mmdebstrap, buildah, podman, runc, binutils,
# curl (scripts/prepare.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN_DIR="${SYSTEM_BIN_DIR:-${CARGO_TARGET_DIR:-$PWD/target}/release}"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE="${IMAGE_CHECK_CACHE:-$HOME/.cache/user-services-image}"
RUN_AS=10001:10001
# What distroless cc-debian12 holds (and libz.so.1, which the Dockerfile copies in).
# The libraries are resolved with their dependencies (gcc-12-base);
LIBRARIES=(libc6 libgcc-s1 libstdc++6 libssl3 zlib1g)
# these are data only, unpacked without their dependencies (debconf, openssl:
# tools their maintainer scripts use, which a runtime image does not need).
DATA=(base-files netbase tzdata ca-certificates)
# Bump when the way the root filesystem is made changes: the cache key.
RECIPE=2

log() { printf 'check-image: %s\n' "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

if [ "$(id -u)" != 0 ]; then # rootful podman and buildah, as scripts/prepare.sh uses sudo
    exec sudo --preserve-env=SYSTEM_BIN_DIR,CARGO_TARGET_DIR,IMAGE_CHECK_CACHE,DEBIAN_MIRROR,PODMAN_RUNTIME "$PWD/scripts/check-image.sh" "$@"
fi
for tool in mmdebstrap buildah podman "${PODMAN_RUNTIME:-runc}" objcopy strip readelf curl python3; do
    command -v "$tool" >/dev/null || fail "$tool is missing (scripts/prepare.sh installs it)"
done
for bin in user-info user-info-consumer profile-enricher; do
    [ -x "$BIN_DIR/$bin" ] || fail "$BIN_DIR/$bin is missing: cargo build --release --locked --bins"
done

# HEALTHCHECK is a Docker image format field (OCI's has none).
export BUILDAH_FORMAT=docker
tag="check-$$"
work=$(mktemp -d)
containers=()
builders=()
images=()
cleanup() {
    local status=$?
    for name in "${containers[@]}"; do podman rm --force --time 0 "$name" >/dev/null 2>&1 || true; done
    for image in "${images[@]}"; do podman rmi --force "$image" >/dev/null 2>&1 || true; done
    for builder in "${builders[@]}"; do buildah rm "$builder" >/dev/null 2>&1 || true; done
    rm -rf "$work"
    [ "$status" = 0 ] || log "failed (exit $status); everything it started is removed"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs podman, showing what it wrote to stderr only when it fails: without
# systemd, podman logs an error for every HEALTHCHECK timer it cannot make or remove.
quietly() {
    "$@" 2>"$work/stderr" || { local status=$?; cat "$work/stderr" >&2; return "$status"; }
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# --- 1. The root filesystem ---------------------------------------------------
key=$(printf '%s\n' "$RECIPE" "$SUITE" "${LIBRARIES[@]}" -- "${DATA[@]}" | sha256sum | cut -c1-12)
rootfs="$CACHE/rootfs-$SUITE-$key.tar"
if [ -f "$rootfs" ] && [ -n "$(find "$rootfs" -mtime -7)" ]; then
    log "root filesystem: $rootfs (cached)"
else
    log "root filesystem: making $rootfs with mmdebstrap from $MIRROR"
    mkdir -p "$CACHE"
    # shellcheck disable=SC2016 # expanded by the hook's shell, not here
    mmdebstrap --quiet --variant=extract --include="$(IFS=,; echo "${LIBRARIES[*]}")" \
        --extract-hook='set -e; d=$(mktemp -d); cd "$d"; APT_CONFIG="$MMDEBSTRAP_APT_CONFIG" apt-get download -qq -o APT::Sandbox::User=root '"${DATA[*]}"'; for deb in ./*.deb; do dpkg-deb -x "$deb" "$1"; done; cd /; rm -rf "$d"' \
        "$SUITE" "$work/rootfs" "$MIRROR"
    r="$work/rootfs"
    # Only the files: no apt or dpkg state, no device nodes (the runtime mounts /dev),
    # not the host's resolv.conf and hostname mmdebstrap copies in (the runtime
    # provides both), no scripts.
    rm -rf "$r/etc/apt" "$r/var/lib/apt" "$r/var/cache/apt" "$r/var/lib/dpkg" "$r/var/log"/* \
        "$r/etc/resolv.conf" "$r/etc/hostname" "$r/etc/update-motd.d" "$r/usr/sbin/update-ca-certificates"
    find "$r/dev" -mindepth 1 -delete
    # The CA bundle update-ca-certificates would write (its script is not run).
    mkdir -p "$r/etc/ssl/certs"
    find "$r/usr/share/ca-certificates" -name '*.crt' -print0 | sort -z | xargs -0 awk 1 \
        >"$r/etc/ssl/certs/ca-certificates.crt"
    [ "$(grep -c 'BEGIN CERTIFICATE' "$r/etc/ssl/certs/ca-certificates.crt")" -gt 100 ] \
        || fail "the CA bundle has too few certificates"
    # Users and groups as distroless has them (the images' user, 10001, is numeric).
    printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' \
        'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
        'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$r/etc/passwd"
    printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$r/etc/group"
    install -d -m 0700 "$r/root"
    install -d -m 0700 -o 65532 -g 65532 "$r/home/nonroot"
    install -d -m 1777 "$r/tmp"
    for shell in bin/sh bin/bash bin/dash usr/bin/sh usr/bin/bash usr/bin/dash; do
        [ ! -e "$r/$shell" ] || fail "the root filesystem has a shell: /$shell"
    done
    tar --numeric-owner --sort=name -C "$r" -cf "$rootfs.$$" .
    mv "$rootfs.$$" "$rootfs"
    find "$CACHE" -maxdepth 1 -name 'rootfs-*.tar' ! -name "${rootfs##*/}" -delete # older recipes
    rm -rf "$r"
fi

# --- 2. The images --------------------------------------------------------------
runtime="localhost/user-services-check/runtime:$tag"
ctr=$(buildah from --quiet scratch)
builders+=("$ctr")
buildah add --quiet "$ctr" "$rootfs" / >/dev/null
buildah copy --quiet "$ctr" LICENSE /usr/share/doc/user-services/LICENSE >/dev/null
# distroless's environment, and the Dockerfile's USER and LOG_FORMAT.
buildah config --user "$RUN_AS" \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --env LOG_FORMAT=json "$ctr"
buildah commit --quiet --rm "$ctr" "$runtime" >/dev/null
images+=("$runtime")

build_image() { # binary port
    local bin=$1 port=$2 out="$work/bin"
    mkdir -p "$out"
    # As the Dockerfile's builder stage: debug information split off.
    cp "$BIN_DIR/$bin" "$out/$bin"
    objcopy --only-keep-debug "$out/$bin" "$out/$bin.debug"
    strip --strip-debug "$out/$bin"
    objcopy --add-gnu-debuglink="$out/$bin.debug" "$out/$bin"
    if readelf --section-headers --wide "$out/$bin" | grep -Eq '\.debug_(info|line|str|abbrev|ranges|rnglists|loclists)'; then
        fail "$bin: debug sections left after strip --strip-debug"
    fi
    ctr=$(buildah from --quiet "$runtime")
    builders+=("$ctr")
    buildah copy --quiet --chmod 0755 "$ctr" "$out/$bin" "/usr/local/bin/$bin" >/dev/null
    buildah config --port "$port" --entrypoint "[\"/usr/local/bin/$bin\"]" --cmd '' \
        --healthcheck "CMD /usr/local/bin/$bin --health-check" \
        --healthcheck-interval 10s --healthcheck-timeout 3s --healthcheck-retries 3 "$ctr"
    buildah commit --quiet --rm --format docker "$ctr" "localhost/user-services-check/$bin:$tag" >/dev/null
    images+=("localhost/user-services-check/$bin:$tag")
    local config
    config=$(podman image inspect --format '{{.Config.User}} {{json .Config.Entrypoint}} {{json .Config.Healthcheck.Test}}' "localhost/user-services-check/$bin:$tag")
    [ "$config" = "$RUN_AS [\"/usr/local/bin/$bin\"] [\"CMD\",\"/usr/local/bin/$bin\",\"--health-check\"]" ] \
        || fail "$bin: the image's user, entrypoint, health check: $config"
    log "$bin: image built ($(du -k "$out/$bin" | cut -f1) KiB binary, stripped)"
}

# --- 3. Run and check ----------------------------------------------------------
# Rootful podman asks for 1048576 open files and 4194304 processes, which needs
# CAP_SYS_RESOURCE; ask for no more than this shell has (a sandbox may lack it).
limits=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096)
# The image's HEALTHCHECK runs on demand (podman healthcheck run), not from a
# systemd timer (none here).
# runc, not crun: Debian 12's crun refuses hybrid cgroup hierarchies (as here).
security=(--runtime "${PODMAN_RUNTIME:-runc}" --health-interval disable --network host --read-only --cap-drop all --security-opt no-new-privileges "${limits[@]}")
closed=$(free_port) # nothing listens there: no database, no broker

check_service() { # binary port-variable host-variable [VAR=value...]
    local bin=$1 port_var=$2 host_var=$3
    shift 3
    local port name="user-services-check-$bin-$$" image="localhost/user-services-check/$bin:$tag"
    port=$(free_port)
    local env=(--env "$host_var=127.0.0.1" --env "$port_var=$port")
    for setting in "$@"; do env+=(--env "$setting"); done

    containers+=("$name")
    quietly podman run --detach --name "$name" "${security[@]}" "${env[@]}" "$image" >/dev/null \
        || fail "$bin: podman run failed"

    local status="" deadline=$((SECONDS + 30))
    while [ "$SECONDS" -lt "$deadline" ]; do
        status=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port/health" || true)
        [ "$status" = 200 ] && break
        if [ "$(podman inspect --format '{{.State.Running}}' "$name")" != true ]; then
            podman logs "$name" >&2 || true
            fail "$bin: the container exited ($(podman inspect --format '{{.State.ExitCode}}' "$name"))"
        fi
        sleep 0.3
    done
    [ "$status" = 200 ] || { podman logs "$name" >&2; fail "$bin: /health answered '$status' within 30 s, not 200"; }
    log "$bin: /health 200 on port $port"

    local pid ids
    pid=$(podman inspect --format '{{.State.Pid}}' "$name")
    ids=$(awk '/^Uid:/ {u = $2 ":" $3 ":" $4 ":" $5} /^Gid:/ {g = $2 ":" $3 ":" $4 ":" $5} END {print u " " g}' "/proc/$pid/status")
    [ "$ids" = "10001:10001:10001:10001 10001:10001:10001:10001" ] \
        || fail "$bin: the process runs as uid:gid (real, effective, saved, fs) $ids, not 10001"

    local first
    podman logs "$name" >"$work/$bin.log" 2>&1
    first=$(head -n 1 "$work/$bin.log")
    case "$first" in
        '{'*'}') ;;
        *) fail "$bin: the first log line is not JSON: $first" ;;
    esac

    if podman exec "$name" /bin/sh -c true >/dev/null 2>&1; then
        fail "$bin: the image has a shell"
    fi
    log "$bin: runs as 10001:10001, logs JSON lines, has no /bin/sh"

    podman exec "$name" "/usr/local/bin/$bin" --health-check \
        || fail "$bin: --health-check failed against the running process"
    podman healthcheck run "$name" >/dev/null \
        || fail "$bin: the image's HEALTHCHECK reports the running process unhealthy"
    log "$bin: --health-check exits 0 in the running container, HEALTHCHECK healthy"

    if [ "$bin" = profile-enricher ]; then
        # The whole request path in the image: validation, the HTTP client, /dummy-enrich.
        status=$(curl -s -o "$work/enriched.json" -w '%{http_code}' --max-time 10 \
            -H 'content-type: application/json' "http://127.0.0.1:$port/users" \
            -d '{"userId":"1","username":"smoke","email":"smoke@example.com","age":30}')
        if [ "$status" != 200 ] || ! grep -q '"user_category":"high_value"' "$work/enriched.json"; then
            fail "$bin: POST /users answered $status: $(cat "$work/enriched.json")"
        fi
        log "$bin: POST /users 200 through its own /dummy-enrich"
    fi

    quietly podman stop --time 10 "$name" >/dev/null
    local code
    code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
    [ "$code" = 0 ] || { podman logs "$name" >&2; fail "$bin: exit $code after SIGTERM, not 0"; }
    log "$bin: SIGTERM -> exit 0"

    if podman run --rm "${security[@]}" "${env[@]}" "$image" --health-check 2>/dev/null; then
        fail "$bin: --health-check exits 0 with the process stopped"
    fi
    log "$bin: --health-check fails once it is stopped"
}

build_image user-info 9810
build_image user-info-consumer 9811
build_image profile-enricher 8000

check_service user-info USER_INFO_PORT USER_INFO_HOST \
    "DATABASE_URL=postgres://postgres:postgres@127.0.0.1:$closed/user_info"
check_service user-info-consumer CONSUMER_METRICS_PORT CONSUMER_METRICS_HOST \
    "DATABASE_URL=postgres://postgres:postgres@127.0.0.1:$closed/user_info" \
    "KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$closed"
check_service profile-enricher ENRICHER_PORT ENRICHER_HOST

log "ok: the three images start from a Debian 12 runtime without a shell, as 10001:10001"
