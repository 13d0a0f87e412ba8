# syntax=docker/dockerfile:1
# One multi-stage build for the three binaries; pick one with `--target`:
#   docker build --target user-info .
#   docker build --target user-info-consumer .
#   docker build --target profile-enricher .
# Dependencies are compiled in their own cached layer (cargo-chef), so a code
# change rebuilds only the workspace crates.

FROM rust:1.95-slim-bookworm AS chef
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl-dev pkg-config make g++ \
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
RUN cargo build --release --locked --bins \
 && mkdir /out \
 && cp target/release/user-info target/release/user-info-consumer target/release/profile-enricher /out/

# Small runtime: Debian slim with only the shared libraries the binaries link
# (OpenSSL for TLS to PostgreSQL, Kafka and the upstream; no libpq: PostgreSQL is
# spoken by tokio-postgres), run as a non-root user.
# No shell tools are needed for health checks: each binary has `--health-check`.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin app
USER 10001:10001
ENV LOG_FORMAT=json

FROM runtime AS user-info
COPY --from=builder /out/user-info /usr/local/bin/user-info
EXPOSE 9810
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["user-info", "--health-check"]
ENTRYPOINT ["user-info"]

FROM runtime AS user-info-consumer
COPY --from=builder /out/user-info-consumer /usr/local/bin/user-info-consumer
EXPOSE 9811
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["user-info-consumer", "--health-check"]
ENTRYPOINT ["user-info-consumer"]

FROM runtime AS profile-enricher
COPY --from=builder /out/profile-enricher /usr/local/bin/profile-enricher
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=3 CMD ["profile-enricher", "--health-check"]
ENTRYPOINT ["profile-enricher"]
