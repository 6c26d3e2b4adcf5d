# syntax=docker/dockerfile:1.7
# The meshmq image: core-node, replicant-node and loadtest on distroless (glibc, no shell),
# running as the distroless `nonroot` user (uid/gid 65532). Built by scripts/build-image;
# how to run it: docs/container.md. Kubernetes manifests: deploy/kubernetes/.
#
# Default command: a standalone broker (replicant-node with its embedded core) listening on
# every interface. Following the secure default it refuses to start until it is given an
# API key for the HTTP API (MESHMQ_LISTENERS__API_KEY or MESHMQ_API_KEY__BOOTSTRAP_FILE)
# and either an authenticator (--config FILE with [[authentication]]) or
# MESHMQ_LISTENERS__ALLOW_ANONYMOUS=true.

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
COPY . .
# The registry cache and the target directory live in cache mounts: a rebuild after a source
# change recompiles only what changed. The binaries are copied out in the same step (the
# target cache mount is not part of the image).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p core-node -p replicant-node -p loadtest \
    && mkdir -p /out/bin /out/var/lib/meshmq \
    && cp target/release/core-node target/release/replicant-node target/release/loadtest /out/bin/

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="meshmq" \
      org.opencontainers.image.description="MQTT 3.1.1/5.0 broker: core-node, replicant-node, loadtest" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/meshmq/meshmq"
COPY --from=builder /out/bin/ /usr/local/bin/
# The data directory (the embedded core's store, certificates, the node's state), owned by
# the nonroot user so a volume mounted there is writable once its owner or fsGroup is 65532.
COPY --from=builder --chown=65532:65532 /out/var/lib/meshmq /var/lib/meshmq
USER 65532:65532
WORKDIR /var/lib/meshmq
ENV MESHMQ_NODE__DATA_DIR=/var/lib/meshmq \
    MESHMQ_LISTENERS__MQTT_BIND=0.0.0.0:1883 \
    MESHMQ_LISTENERS__WS_BIND=0.0.0.0:8083 \
    MESHMQ_LISTENERS__HTTP_BIND=0.0.0.0:18083
# 1883 MQTT, 8883 MQTT/TLS, 8083 WebSocket, 8084 secure WebSocket, 18083 replicant HTTP API;
# 5370/udp replicant peer QUIC; 4370/udp core QUIC and 18084 core HTTP (core-node).
EXPOSE 1883 8883 8083 8084 18083 5370/udp 4370/udp 18084
VOLUME ["/var/lib/meshmq"]
ENTRYPOINT ["/usr/local/bin/replicant-node"]
