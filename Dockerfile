# syntax=docker/dockerfile:1
# One multi-stage build for the three binaries; pick one with `--target`:
#   docker build --target user-info .
#   docker build --target user-info-consumer .
#   docker build --target profile-enricher .
# and their split-off debug information (for symbolising a core dump or a perf
# profile of a release image):
#   docker build --target debug-symbols --output type=local,dest=debug-symbols .
# Dependencies are compiled in their own cached layer (cargo-chef), so a code
# change rebuilds only the workspace crates. Base images are named in full
# (registry included), so podman and buildah build it without short-name aliases.

FROM docker.io/library/rust:1.95-slim-bookworm AS chef
# zlib1g-dev: librdkafka links the system zlib (dynamically, so the runtime
# carries libz.so.1) instead of whatever libz-sys would otherwise build.
# binutils: strip and objcopy.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev zlib1g-dev pkg-config make g++ binutils \
 && rm -rf /var/lib/apt/lists/* \
 && cargo install cargo-chef --locked --version 0.1.73
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json
COPY . .
# The release profile keeps line tables (debug = "line-tables-only": 85-90 MiB per
# binary). They are split off into /out/debug/<binary>.debug and the shipped
# binary keeps only its symbol table (13-17 MiB), enough for named frames in a
# panic's backtrace; a .gnu_debuglink names the debug file.
# Then every shared library a binary needs must be one the runtime provides
# (distroless cc: glibc, libgcc_s, libstdc++, OpenSSL; plus the zlib copied in):
# the build fails here rather than the container at start.
RUN cargo build --release --locked --bins \
 && mkdir -p /out/bin /out/debug \
 && for bin in user-info user-info-consumer profile-enricher; do \
      cp "target/release/$bin" "/out/bin/$bin" \
      && objcopy --only-keep-debug "/out/bin/$bin" "/out/debug/$bin.debug" \
      && strip --strip-debug "/out/bin/$bin" \
      && objcopy --add-gnu-debuglink="/out/debug/$bin.debug" "/out/bin/$bin" \
      && ldd "/out/bin/$bin" | awk '{print $1}' \
         | grep -Ev '^(linux-vdso\.so|/lib(64)?/ld-linux|libc\.so|libm\.so|libdl\.so|libpthread\.so|librt\.so|libgcc_s\.so|libstdc\+\+\.so|libssl\.so\.3|libcrypto\.so\.3|libz\.so\.1)' \
         | { ! grep . ; } \
      || { echo "$bin: a shared library the runtime image lacks (see above)" >&2; exit 1; }; \
    done \
 && ls -l /out/bin /out/debug \
 && lib="/usr/lib/$(gcc -print-multiarch)" \
 && mkdir -p "/out/rootfs$lib" \
 && cp -L "$lib/libz.so.1" "/out/rootfs$lib/libz.so.1"

FROM scratch AS debug-symbols
COPY --from=builder /out/debug/ /

# Runtime: Google's distroless cc image (Debian 12, as the builder): glibc,
# libgcc_s, libstdc++, OpenSSL 3 and CA certificates, no shell and no package
# manager. zlib, which librdkafka links, is the one library it lacks: copied
# from the builder (same Debian release). Health checks need no shell: each
# binary has `--health-check`, which probes its own /health. Distroless has no
# version tags: `nonroot` is the variant whose default user is not root (the
# USER below is ours, 10001, as in deploy/); pin it by digest when releasing
# (`gcr.io/distroless/cc-debian12:nonroot@sha256:...`).
FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=builder /out/rootfs/ /
COPY LICENSE /usr/share/doc/user-services/LICENSE
USER 10001:10001
ENV LOG_FORMAT=json

FROM runtime AS user-info
COPY --from=builder /out/bin/user-info /usr/local/bin/user-info
EXPOSE 9810
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["/usr/local/bin/user-info", "--health-check"]
ENTRYPOINT ["/usr/local/bin/user-info"]

FROM runtime AS user-info-consumer
COPY --from=builder /out/bin/user-info-consumer /usr/local/bin/user-info-consumer
EXPOSE 9811
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["/usr/local/bin/user-info-consumer", "--health-check"]
ENTRYPOINT ["/usr/local/bin/user-info-consumer"]

FROM runtime AS profile-enricher
COPY --from=builder /out/bin/profile-enricher /usr/local/bin/profile-enricher
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["/usr/local/bin/profile-enricher", "--health-check"]
ENTRYPOINT ["/usr/local/bin/profile-enricher"]
