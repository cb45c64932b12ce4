#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs and starts the real kube-apiserver + etcd
# and moto's ECR server, runs lints, unit and integration tests and the packaging checks, then
# stops the servers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/testenv.sh install
trap 'scripts/testenv.sh stop' EXIT
scripts/testenv.sh start
# shellcheck source=/dev/null
source target/testenv/env.sh
# No test process may ever ask the EC2 metadata service (169.254.169.254) for anything.
export AWS_EC2_METADATA_DISABLED=true

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked --no-fail-fast
# Dockerfile lint, manifest validation, the static binary in an empty rootfs, the CronJob's own
# command and the README quick start, against the same servers.
bash scripts/check-packaging.sh
