# syntax=docker/dockerfile:1
#
# The kvrocks-operator image: one static (musl) binary on distroless, run as non-root.
#
#   docker build -t kvrocks-operator:0.1.0 .
#
# The builder compiles with the toolchain pinned in rust-toolchain.toml (rustup installs it when
# the base image's differs) and the exact dependency versions of Cargo.lock (--locked).

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot

FROM ${RUST_IMAGE} AS builder
ARG TARGET=x86_64-unknown-linux-musl
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The toolchain file first, so the toolchain and the musl target are a cached layer of their own.
COPY rust-toolchain.toml ./
RUN rustup toolchain install \
 && rustup target add "${TARGET}"
COPY . .
# ring (rustls) compiles C: point cc-rs at musl-gcc for the musl target.
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CARGO_TERM_COLOR=never
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p kvrocks-operator --target "${TARGET}" \
 && cp "target/${TARGET}/release/kvrocks-operator" /kvrocks-operator \
 && strip /kvrocks-operator

FROM ${RUNTIME_IMAGE}
LABEL org.opencontainers.image.title="kvrocks-operator" \
      org.opencontainers.image.description="Kubernetes operator for Apache Kvrocks" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/kvrocks-operator/kvrocks-operator"
COPY --from=builder /kvrocks-operator /kvrocks-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/kvrocks-operator"]
CMD ["run"]
