# syntax=docker/dockerfile:1
# taskpool's binaries in one image: kafka-relay, tasklist-api, taskpool-demo and taskpool
# (single-node, the default command). Dependencies are compiled in their own layer
# (cargo-chef), so a change to taskpool's sources rebuilds only taskpool.
#
#   docker build -t taskpool .
#   docker run -p 8080:8080 taskpool                      # single-node with the demo
#   docker run taskpool kafka-relay --help

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS chef
RUN cargo install cargo-chef --locked --version ^0.1
WORKDIR /build

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
# librdkafka is built from source against the system's OpenSSL and zlib (see decision 0013).
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake libssl-dev zlib1g-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
COPY --from=planner /build/recipe.json recipe.json
RUN cargo chef cook --release --locked --recipe-path recipe.json \
    -p kafka-relay -p tasklist-api -p taskpool-demo -p taskpool
COPY . .
RUN cargo build --release --locked --bins \
    -p kafka-relay -p tasklist-api -p taskpool-demo -p taskpool

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl libssl3 zlib1g \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --create-home --home-dir /var/lib/taskpool taskpool \
    && install -d -o 10001 -g 10001 /var/lib/taskpool/data
COPY --from=builder \
    /build/target/release/kafka-relay \
    /build/target/release/tasklist-api \
    /build/target/release/taskpool-demo \
    /build/target/release/taskpool \
    /usr/local/bin/
# Numeric, so that Kubernetes' runAsNonRoot can tell it is not root.
USER 10001
WORKDIR /var/lib/taskpool
# Single-node defaults for `docker run`; the compose file sets each service's own.
ENV TASKPOOL__HTTP__LISTEN=0.0.0.0:8080 \
    TASKPOOL__DATA__DIR=/var/lib/taskpool/data \
    TASKPOOL__LOG__FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --retries=5 \
    CMD curl -fsS http://127.0.0.1:8080/health/ready || exit 1
CMD ["taskpool"]
