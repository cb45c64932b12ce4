# syntax=docker/dockerfile:1

# Build stage: the Rust toolchain compiles a static (musl) binary, so the final image needs no
# libc. scripts/build-static.sh installs the musl target and musl-tools itself, the same way it
# does on a developer's machine or in CI.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
ENV CARGO_TARGET_DIR=/src/target
# BuildKit cache mounts keep downloaded crates and build output between image builds. The script
# prints the binary's path; it is copied out in this same step since cache mounts are not kept.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    bin="$(scripts/build-static.sh)" \
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
