# syntax=docker/dockerfile:1.7
#
# Switchboard signaling server image.
#
#   docker buildx build -f docker/server.Dockerfile -t switchboard:dev .
#   docker buildx build -f docker/server.Dockerfile --platform linux/amd64,linux/arm64 .
#
# The builder always runs on the build host's own platform and cross-compiles a
# static musl binary for the target platform with cargo-zigbuild, so a
# multi-arch build needs no CPU emulation. Dependencies are compiled in their
# own layer (cargo-chef), which is reused until Cargo.toml/Cargo.lock change.
# The final image is distroless/static: one binary, CA certificates, no shell,
# no package manager, running as uid/gid 65532.

ARG RUST_VERSION=1.95
ARG CARGO_CHEF_VERSION=0.1.78
ARG CARGO_ZIGBUILD_VERSION=0.24.0
ARG ZIGLANG_VERSION=0.15.2

# --- toolchain: rust + musl targets + zig linker + cargo-chef (shared by both images)
FROM --platform=$BUILDPLATFORM rust:${RUST_VERSION}-bookworm AS chef
ARG CARGO_CHEF_VERSION
ARG CARGO_ZIGBUILD_VERSION
ARG ZIGLANG_VERSION
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/zig \
    && /opt/zig/bin/pip install --no-cache-dir \
        "ziglang==${ZIGLANG_VERSION}" "cargo-zigbuild==${CARGO_ZIGBUILD_VERSION}" \
    && ln -s /opt/zig/bin/cargo-zigbuild /usr/local/cargo/bin/cargo-zigbuild \
    && rustup target add x86_64-unknown-linux-musl aarch64-unknown-linux-musl \
    && cargo install --locked cargo-chef --version "${CARGO_CHEF_VERSION}" \
    && rm -rf /usr/local/cargo/registry
ENV PATH="/opt/zig/bin:${PATH}"
WORKDIR /src

# --- planner: reduce the workspace to a dependency recipe
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

# --- build: dependencies first (cached layer), then the workspace itself
FROM chef AS build
ARG TARGETARCH
RUN case "${TARGETARCH}" in \
        amd64) echo x86_64-unknown-linux-musl ;; \
        arm64) echo aarch64-unknown-linux-musl ;; \
        *) echo "unsupported TARGETARCH: ${TARGETARCH}" >&2; exit 1 ;; \
    esac > /rust-target
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --zigbuild --target "$(cat /rust-target)" \
        --recipe-path recipe.json -p switchboard --bin switchboard
COPY . .
RUN cargo zigbuild --release --locked --target "$(cat /rust-target)" \
        -p switchboard --bin switchboard \
    && install -D -m 0755 "target/$(cat /rust-target)/release/switchboard" /out/switchboard

# --- runtime
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="switchboard" \
      org.opencontainers.image.description="Switchboard WebRTC signaling server" \
      org.opencontainers.image.source="https://github.com/switchboard-dev/switchboard" \
      org.opencontainers.image.url="https://github.com/switchboard-dev/switchboard" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="switchboard-dev" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/switchboard /usr/local/bin/switchboard
ENV PORT=8080
EXPOSE 8080
USER 65532:65532
# The image has no shell or HTTP client: the binary probes itself (GET /ready
# on PORT). Kubernetes ignores HEALTHCHECK and uses the HTTP probes of the
# charts; Docker and Compose use this.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/switchboard", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/switchboard"]
