#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs and starts the real kube-apiserver + etcd
# and moto's ECR server, runs lints, unit and integration tests and the packaging checks, then
# runs the integration tests again against every other kube-apiserver version available
# (scripts/testenv.sh servers), and stops the servers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/testenv.sh install
trap 'scripts/testenv.sh stop' EXIT
mapfile -t SERVERS < <(scripts/testenv.sh servers)
[ ${#SERVERS[@]} -gt 0 ] || { echo "test.sh: no kube-apiserver to test against" >&2; exit 1; }
# No test process may ever ask the EC2 metadata service (169.254.169.254) for anything.
export AWS_EC2_METADATA_DISABLED=true

# Starts the given server and says which version answers, so every leg's log names its server.
start_leg() { # number, label, binary
  ECR_REFRESH_TESTENV_APISERVER_BIN=$3 scripts/testenv.sh start
  # shellcheck source=/dev/null
  source target/testenv/env.sh
  local version
  version=$(curl -skf -H "Authorization: Bearer $ECR_REFRESH_TEST_ADMIN_TOKEN" \
    "$ECR_REFRESH_TEST_APISERVER/version" | jq -er .gitVersion)
  echo "== leg $1/${#SERVERS[@]}: kube-apiserver $version ($2, $3) =="
}

# The same server restarted empty (testenv.sh start wipes its etcd).
fresh_server() { # binary
  ECR_REFRESH_TESTENV_APISERVER_BIN=$1 scripts/testenv.sh start
  # shellcheck source=/dev/null
  source target/testenv/env.sh
}

cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings
# The scripts too (shellcheck from testenv.sh install), following what they source.
mapfile -t SCRIPTS < <(git ls-files '*.sh' .ci/run)
shellcheck -x -S warning "${SCRIPTS[@]}"

read -r label bin <<<"${SERVERS[0]}"
start_leg 1 "$label" "$bin"
cargo test --all-targets --locked --no-fail-fast
# One node per machine (kubelet, containerd, the registry stand-in): pull test and cluster test
# take turns with any other run on this machine.
NODE_LOCK=/tmp/ecr-refresh-node.lock
# A kubelet really pulls a private image with the Secret the tool wrote (root; uses target/testenv).
flock "$NODE_LOCK" bash scripts/pulltest.sh
# A real v1.36.3 cluster (scripts/cluster.sh, on its own ports): stuck pods and pods born linked,
# with a real kubelet and controller-manager (root; takes /tmp/ecr-refresh-node.lock, ~2 min).
bash scripts/e2e-pods.sh
# Dockerfile lint, manifest validation, the static binaries for x86_64 and arm64 (the arm64 one
# under qemu-user) in an empty rootfs (plain and with the in-cluster config), against the same
# servers.
bash scripts/check-packaging.sh
# deploy/ on a real v1.36.3 cluster (scripts/cluster.sh): the CronJob fires, its image runs,
# new namespaces are covered, pods pull (about 5 minutes; its own servers).
flock "$NODE_LOCK" bash scripts/clustertest.sh
# The README's keyless quick start word for word on that cluster: oidc publish, the apiserver
# flags it prints, the documents served over HTTPS, oidc check, and the CronJob with the
# web-identity component syncing with no AWS key anywhere (STS stand-in that verifies; ~2 min).
flock "$NODE_LOCK" bash scripts/keylesstest.sh
# The Helm chart: lint, schema, the drift test against deploy/, dry-runs against this leg's
# server (helm from scripts/testenv.sh install); then helm install/upgrade/uninstall on the
# real v1.36.3 cluster. Its dry-runs get the server fresh: helm refuses to adopt objects that
# the tests above left under deploy/'s own names (the README quick start installs deploy/ as is).
fresh_server "$bin"
bash scripts/helmtest.sh
flock "$NODE_LOCK" bash scripts/helmtest.sh cluster
# Pushgateway + Prometheus on loopback: the pushed metrics and the alerts they fire.
bash scripts/metricstest.sh

# The other servers: the integration tests again (nothing is rebuilt).
for i in "${!SERVERS[@]}"; do
  [ "$i" -eq 0 ] && continue
  read -r label bin <<<"${SERVERS[$i]}"
  scripts/testenv.sh stop
  start_leg $((i + 1)) "$label" "$bin"
  cargo test --locked --no-fail-fast --test '*'
  # The chart against this server too (policies forced on where it lacks them, or every option),
  # fresh as on the first leg.
  fresh_server "$bin"
  bash scripts/helmtest.sh server
  # The pull test again with the kubelet of this version, where there is one (../shared/k8s).
  if scripts/testenv.sh unpack kubelet "$label" >/dev/null; then flock "$NODE_LOCK" bash scripts/pulltest.sh; fi
done
