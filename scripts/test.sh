#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs and starts the real kube-apiserver + etcd
# and moto's ECR server, runs lints, unit and integration tests, then stops the servers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/testenv.sh install
trap 'scripts/testenv.sh stop' EXIT
scripts/testenv.sh start
# shellcheck source=/dev/null
source target/testenv/env.sh

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
cargo test --all-targets --locked --no-fail-fast
