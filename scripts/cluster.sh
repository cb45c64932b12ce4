#!/usr/bin/env bash
# One real Kubernetes cluster on loopback for end-to-end tests: etcd, kube-apiserver,
# kube-controller-manager and kube-scheduler v1.36.3 (../shared/k8s), one node (Debian's containerd
# + runc and the kubelet v1.36.3), the registry stand-in for ECR serving the private image
# $ECR_REFRESH_CLUSTER_IMAGE (user AWS, moto's password), and moto's ECR server.
#
#   flock /tmp/ecr-refresh-node.lock bash -c \
#     'trap "scripts/cluster.sh down" EXIT; scripts/cluster.sh up && . target/cluster/env.sh && ...'
#
#   up    (re)starts everything, waits until the node is Ready and the controller-manager has
#         made the `default` ServiceAccount, and writes $ECR_REFRESH_CLUSTER_RUN/env.sh
#   down  stops and removes everything (processes, mounts, cgroups, the hosts line, kubelet and
#         containerd state, sysctls, the run folder); idempotent, safe from a trap
#   issuer FLAG...  restarts kube-apiserver with these --service-account-issuer/-jwks-uri flags
#         in place of its own (what `ecr-refresh oidc publish` tells an admin to set)
#
# Needs root and kubectl. Run it under `flock /tmp/ecr-refresh-node.lock` (the node's host name,
# registry address and /var/lib/kubelet exist once per machine): it refuses to start otherwise.
# Knobs (defaults): ECR_REFRESH_CLUSTER_RUN (target/cluster), ECR_REFRESH_CLUSTER_ETCD_PORT (32100,
# peer +1), ECR_REFRESH_CLUSTER_APISERVER_PORT (32143), ECR_REFRESH_CLUSTER_CONTROLLER_MANAGER_PORT
# (32157), ECR_REFRESH_CLUSTER_SCHEDULER_PORT (32159), ECR_REFRESH_CLUSTER_KUBELET_PORT (32150,
# healthz 32148), ECR_REFRESH_CLUSTER_MOTO_PORT (32155), ECR_REFRESH_CLUSTER_ECR_ENDPOINT (a running
# moto to use instead of starting one), ECR_REFRESH_CLUSTER_VERSION (v1.36.3),
# ECR_REFRESH_CLUSTER_APISERVER_ARGS (extra kube-apiserver flags), ECR_REFRESH_PULLTEST_IP.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CLUSTER_RUN=${ECR_REFRESH_CLUSTER_RUN:-$ROOT/target/cluster}
WORK=$CLUSTER_RUN
LOGS=$CLUSTER_RUN/logs
VERSION=${ECR_REFRESH_CLUSTER_VERSION:-v1.36.3}
ETCD_PORT=${ECR_REFRESH_CLUSTER_ETCD_PORT:-32100}
APISERVER_PORT=${ECR_REFRESH_CLUSTER_APISERVER_PORT:-32143}
CM_PORT=${ECR_REFRESH_CLUSTER_CONTROLLER_MANAGER_PORT:-32157}
SCHEDULER_PORT=${ECR_REFRESH_CLUSTER_SCHEDULER_PORT:-32159}
KUBELET_PORT=${ECR_REFRESH_CLUSTER_KUBELET_PORT:-32150}
MOTO_PORT=${ECR_REFRESH_CLUSTER_MOTO_PORT:-32155}
NODE=ecr-refresh-node
BRIDGE=ecr-refresh0
NODE_KUBECONFIG=$CLUSTER_RUN/kubeconfig
LOCK=/tmp/ecr-refresh-node.lock
# Stopped in this order by `down`, after the node.
CONTROL_PLANE=(kube-scheduler kube-controller-manager kube-apiserver etcd moto)

log() { printf 'cluster: %s\n' "$*" >&2; }
# shellcheck source=scripts/node.sh
source "$(dirname "${BASH_SOURCE[0]}")/node.sh"
die() { DIED="error: $*"; log "$DIED"; exit 1; }

k() { kubectl --kubeconfig "$NODE_KUBECONFIG" --request-timeout=20s "$@"; }

require_lock() {
  # flock -n succeeds only if nobody holds the lock, i.e. our caller does not.
  if flock -n "$LOCK" true; then die "run under \`flock $LOCK\` (one node per machine)"; fi
}

install() {
  [ "$(id -u)" = 0 ] || die "needs root (apt-get, /etc/hosts, containers)"
  command -v kubectl >/dev/null || die "kubectl not found on PATH"
  apt_install "${NODE_PACKAGES[@]}" etcd-server || die "could not install the packages the cluster needs"
  local name
  for name in kube-apiserver kube-controller-manager kube-scheduler kubelet; do
    BIN[$name]=$(unpack_k8s "$name" "$VERSION") || die "no $VERSION/$name.xz under ../shared/k8s (or \$ECR_REFRESH_K8S_DIR)"
  done
  KUBELET=${BIN[kubelet]}
  if [ -z "${ECR_REFRESH_CLUSTER_ECR_ENDPOINT:-}" ]; then
    MOTO=$("$ROOT/scripts/testenv.sh" moto-path)
    [ -x "$MOTO" ] || "$ROOT/scripts/testenv.sh" install-moto
  fi
}

start_control_plane() {
  local token; token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  ADMIN_TOKEN=$token
  echo "$token,admin,admin-uid,\"system:masters\"" >"$CLUSTER_RUN/tokens.csv"
  openssl genrsa -out "$CLUSTER_RUN/sa.key" 2048 2>/dev/null
  openssl rsa -in "$CLUSTER_RUN/sa.key" -pubout -out "$CLUSTER_RUN/sa.pub" 2>/dev/null
  mkdir -p "$CLUSTER_RUN/etcd" "$CLUSTER_RUN/certs"
  start_bg etcd etcd --data-dir "$CLUSTER_RUN/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "default=http://127.0.0.1:$((ETCD_PORT + 1))"
  wait_up etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health" || die "etcd did not come up; see $LOGS/etcd.log"

  APISERVER=https://127.0.0.1:$APISERVER_PORT
  # The kubelet listens on loopback only, which a node may not report as its IP: the apiserver
  # reaches it by the node's name, mapped to 127.0.0.1 in /etc/hosts (start_node).
  # Extra flags are a list, split on purpose; a comma inside a flag's value is not a separator.
  # shellcheck disable=SC2054,SC2206
  APISERVER_CMD=("${BIN[kube-apiserver]}" --etcd-servers="http://127.0.0.1:$ETCD_PORT"
    --bind-address=127.0.0.1 --secure-port="$APISERVER_PORT" --cert-dir="$CLUSTER_RUN/certs"
    --token-auth-file="$CLUSTER_RUN/tokens.csv" --authorization-mode=Node,RBAC
    --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$CLUSTER_RUN/sa.pub"
    --service-account-signing-key-file="$CLUSTER_RUN/sa.key" --api-audiences=https://kubernetes.default.svc
    --service-cluster-ip-range=10.0.0.0/24 --kubelet-preferred-address-types=Hostname
    ${ECR_REFRESH_CLUSTER_APISERVER_ARGS:-})
  # Kept for `issuer`, which restarts the apiserver with other issuer flags.
  declare -p APISERVER_CMD >"$CLUSTER_RUN/kube-apiserver.cmd"
  start_bg kube-apiserver "${APISERVER_CMD[@]}"
  cat >"$NODE_KUBECONFIG" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: cluster
  cluster:
    server: $APISERVER
    certificate-authority: $CLUSTER_RUN/ca.crt
users:
- name: admin
  user:
    token: $ADMIN_TOKEN
contexts:
- name: cluster
  context: {cluster: cluster, user: admin}
current-context: cluster
KCFG
  wait_up kube-apiserver 90 curl -skf -H "Authorization: Bearer $ADMIN_TOKEN" "$APISERVER/readyz" ||
    die "kube-apiserver did not become ready; see $LOGS/kube-apiserver.log"
  # Its generated serving certificate is followed by the CA that signed it: the cluster's CA,
  # which the controller-manager publishes to every namespace as kube-root-ca.crt.
  awk '/BEGIN CERTIFICATE/{n++} n==2' "$CLUSTER_RUN/certs/apiserver.crt" >"$CLUSTER_RUN/ca.crt"
  [ -s "$CLUSTER_RUN/ca.crt" ] || die "no CA certificate in $CLUSTER_RUN/certs/apiserver.crt"
  k get --raw /readyz >/dev/null || die "the admin kubeconfig does not reach $APISERVER"

  start_bg kube-controller-manager "${BIN[kube-controller-manager]}" --kubeconfig="$NODE_KUBECONFIG" \
    --leader-elect=false --service-account-private-key-file="$CLUSTER_RUN/sa.key" \
    --root-ca-file="$CLUSTER_RUN/ca.crt" --use-service-account-credentials=false \
    --secure-port="$CM_PORT" --bind-address=127.0.0.1 --authentication-skip-lookup=true
  start_bg kube-scheduler "${BIN[kube-scheduler]}" --kubeconfig="$NODE_KUBECONFIG" --leader-elect=false \
    --secure-port="$SCHEDULER_PORT" --bind-address=127.0.0.1 --authentication-skip-lookup=true
}

start_moto() {
  if [ -n "${ECR_REFRESH_CLUSTER_ECR_ENDPOINT:-}" ]; then
    ECR_ENDPOINT=$ECR_REFRESH_CLUSTER_ECR_ENDPOINT
  else
    ECR_ENDPOINT=http://127.0.0.1:$MOTO_PORT
    start_bg moto env MOTO_PORT="$MOTO_PORT" "$MOTO" -H 127.0.0.1 -p "$MOTO_PORT"
    wait_up moto 30 curl -sf "$ECR_ENDPOINT/moto-api/" || die "moto did not come up; see $LOGS/moto.log"
  fi
  PASSWORD=$(node_moto_password "$ECR_ENDPOINT") && [ -n "$PASSWORD" ] ||
    die "moto at $ECR_ENDPOINT did not answer GetAuthorizationToken"
}

write_env() {
  cat >"$CLUSTER_RUN/env.sh.tmp" <<ENV
export ECR_REFRESH_CLUSTER_RUN=$CLUSTER_RUN
export ECR_REFRESH_CLUSTER_KUBECONFIG=$NODE_KUBECONFIG
export ECR_REFRESH_CLUSTER_APISERVER=$APISERVER
export ECR_REFRESH_CLUSTER_APISERVER_HOST=127.0.0.1
export ECR_REFRESH_CLUSTER_APISERVER_PORT=$APISERVER_PORT
export ECR_REFRESH_CLUSTER_CA=$CLUSTER_RUN/ca.crt
export ECR_REFRESH_CLUSTER_ADMIN_TOKEN=$ADMIN_TOKEN
export ECR_REFRESH_CLUSTER_ECR_ENDPOINT=$ECR_ENDPOINT
export ECR_REFRESH_CLUSTER_REGION=$REGION
export ECR_REFRESH_CLUSTER_IMAGE=$IMAGE
export ECR_REFRESH_CLUSTER_REGISTRY_CA=$CLUSTER_RUN/certs/ca.crt
export ECR_REFRESH_CLUSTER_NODE=$NODE
export ECR_REFRESH_CLUSTER_CONTAINERD_SOCK=$SOCK
export ECR_REFRESH_CLUSTER_VERSION=$VERSION
ENV
  mv "$CLUSTER_RUN/env.sh.tmp" "$CLUSTER_RUN/env.sh"
}

up_failed() {
  local f
  for f in "$LOGS"/*.log; do
    [ -f "$f" ] || continue
    log "--- $(basename "$f") (last 5 lines)"; tail -n 5 "$f" | cut -c1-300 >&2
  done
  [ -z "${DIED:-}" ] || log "$DIED"
  cmd_down
}

cmd_up() {
  require_lock
  declare -gA BIN=()
  cmd_down
  install
  local t0=$SECONDS
  mkdir -p "$LOGS"
  node_record_state
  trap 'rc=$?; trap - EXIT; [ "$rc" = 0 ] || up_failed; exit "$rc"' EXIT
  trap 'exit 130' INT TERM
  start_control_plane
  start_moto
  start_registry
  oci_image "$CLUSTER_RUN/app" "$IMAGE" '["/bin/busybox","echo","hello from a private image"]'
  push_image "$CLUSTER_RUN/app" "$IMAGE" || die "skopeo could not push $IMAGE"
  # A pod network, so pods that do not use the host's network start too: a bridge without an
  # address on the host (no routes, no NAT); such pods reach nothing outside the node.
  mkdir -p "$CLUSTER_RUN/cni"
  cat >"$CLUSTER_RUN/cni/10-pods.conflist" <<JSON
{"cniVersion":"0.4.0","name":"pods","plugins":[{"type":"bridge","bridge":"$BRIDGE","isGateway":false,"ipMasq":false,
  "ipam":{"type":"host-local","ranges":[[{"subnet":"10.244.0.0/24"}]],"dataDir":"$CLUSTER_RUN/cni-ipam"}}]}
JSON
  start_containerd
  echo "127.0.0.1 $NODE $HOSTS_MARK" >>/etc/hosts
  start_kubelet
  k wait --for=condition=Ready "node/$NODE" --timeout=90s >/dev/null ||
    die "node $NODE is not Ready: $(k get node "$NODE" -o jsonpath='{.status.conditions[?(@.type=="Ready")].message}')"
  # The controller-manager works once it has made the default namespace's ServiceAccount.
  wait_up kube-controller-manager 60 k -n default get serviceaccount default ||
    die "the controller-manager made no ServiceAccount default/default; see $LOGS/kube-controller-manager.log"
  running kube-scheduler || die "kube-scheduler exited; see $LOGS/kube-scheduler.log"
  write_env
  trap - EXIT INT TERM
  log "up in $((SECONDS - t0))s: $VERSION at $APISERVER, node $NODE, $IMAGE on $REGISTRY_IP, ECR $ECR_ENDPOINT (source $CLUSTER_RUN/env.sh)"
}

# issuer FLAG...: restarts kube-apiserver with these --service-account-issuer and
# --service-account-jwks-uri flags instead of its own, as an admin applies what
# `ecr-refresh oidc publish` prints; the signing key, etcd and every other flag stay, and the
# controller-manager and kubelet reconnect.
cmd_issuer() {
  require_lock
  [ -f "$CLUSTER_RUN/kube-apiserver.cmd" ] && [ -f "$CLUSTER_RUN/env.sh" ] || die "issuer: no cluster is up"
  local a kept=()
  for a in "$@"; do
    case $a in --service-account-issuer=* | --service-account-jwks-uri=*) ;; *) die "issuer: $a is not an issuer flag" ;; esac
  done
  [ $# -gt 0 ] || die "issuer: no flags given"
  # shellcheck source=/dev/null
  source "$CLUSTER_RUN/kube-apiserver.cmd"
  for a in "${APISERVER_CMD[@]}"; do
    case $a in --service-account-issuer=* | --service-account-jwks-uri=*) ;; *) kept+=("$a") ;; esac
  done
  APISERVER_CMD=("${kept[@]}" "$@")
  declare -p APISERVER_CMD >"$CLUSTER_RUN/kube-apiserver.cmd"
  mkdir -p "$LOGS"
  kill_pidfile "$CLUSTER_RUN/kube-apiserver.pid"
  mv "$LOGS/kube-apiserver.log" "$LOGS/kube-apiserver.before-issuer.log" 2>/dev/null || true
  start_bg kube-apiserver "${APISERVER_CMD[@]}"
  # shellcheck source=/dev/null
  source "$CLUSTER_RUN/env.sh"
  wait_up kube-apiserver 90 curl -skf -H "Authorization: Bearer $ECR_REFRESH_CLUSTER_ADMIN_TOKEN" \
    "$ECR_REFRESH_CLUSTER_APISERVER/readyz" || die "kube-apiserver did not become ready with $*; see $LOGS/kube-apiserver.log"
  log "kube-apiserver restarted with $*"
}

cmd_down() {
  [ -d "$CLUSTER_RUN" ] || return 0
  require_lock
  (
    set +e
    node_teardown
    ip link del "$BRIDGE" 2>/dev/null
    for name in "${CONTROL_PLANE[@]}"; do kill_pidfile "$CLUSTER_RUN/$name.pid"; done
  )
  rm -rf "$CLUSTER_RUN"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  issuer) shift; cmd_issuer "$@" ;;
  *) echo "usage: $0 up|down|issuer FLAG..." >&2; exit 2 ;;
esac
