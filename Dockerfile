# syntax=docker/dockerfile:1

# Build stage: the Rust toolchain compiles a static (musl) binary, so the final image needs no
# libc. It runs on the build machine's own platform ($BUILDPLATFORM) and cross-compiles for the
# image's ($TARGETARCH: amd64 or arm64), so a multi-platform build needs no emulation:
# `docker buildx build --platform linux/amd64,linux/arm64 .` scripts/build-static.sh installs the
# musl targets and the C compilers itself (musl-tools for the native target, pinned zig +
# cargo-zigbuild from PyPI for the other), the same way it does on a developer's machine or in CI.
FROM --platform=$BUILDPLATFORM rust:1.95-bookworm AS build
ARG TARGETARCH
WORKDIR /src
COPY . .
ENV CARGO_TARGET_DIR=/src/target
# BuildKit cache mounts keep downloaded crates, build output and the zig venv between image
# builds. The script prints the binary's path; it is copied out in this same step since cache
# mounts are not kept.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    --mount=type=cache,target=/root/.cache \
    bin="$(scripts/build-static.sh "${TARGETARCH:?build with BuildKit (docker buildx build)}")" \
    && cp "$bin" /ecr-refresh

# Final stage: distroless/static has CA certificates (for ECR and the API server over TLS) and a
# nonroot user, and no shell or package manager; scratch would lack the CA bundle.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /ecr-refresh /ecr-refresh
# Run as distroless's nonroot user, numerically so the kubelet can verify runAsNonRoot;
# matches runAsUser in deploy/cronjob.yaml.
USER 65532:65532
# Exec form: the binary is PID 1 and receives SIGTERM directly when the Job is stopped.
ENTRYPOINT ["/ecr-refresh"]
CMD ["sync"]
