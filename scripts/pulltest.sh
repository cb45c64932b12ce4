#!/usr/bin/env bash
# End-to-end proof that a kubelet pulls a private image with nothing but the Secret that
# `ecr-refresh sync` wrote. Real parts only: Debian's docker-registry (TLS + htpasswd, user AWS,
# password = moto's GetAuthorizationToken) standing in for ECR under the ECR host name, Debian's
# containerd + runc, and the kubelet built with the test apiserver, registered to it.
#
#   scripts/testenv.sh start && bash scripts/pulltest.sh
#
# Needs root (apt, /etc/hosts, containers), kubectl on PATH and the servers of scripts/testenv.sh
# (ECR_REFRESH_TESTENV_RUN, default target/testenv). Prints one `ok - …`/`not ok - …` line per
# check and `pulltest: N passed, M failed`; exits 1 on any failure. Everything it starts or creates
# (processes, mounts, cgroups, the hosts line, kubelet/containerd state, node, pods) is removed on
# exit, and also at the next start if a run was killed before it could clean up.
# Knobs: ECR_REFRESH_PULLTEST_IP (registry address, 127.0.0.77), ECR_REFRESH_PULLTEST_KUBELET_PORT
# (10350; healthz on the port 2 below), ECR_REFRESH_PULLTEST_WAIT (seconds per pod, 90).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=${ECR_REFRESH_TESTENV_RUN:-$ROOT/target/testenv}
WORK=$RUN_DIR/pull
LOGS=$RUN_DIR/pulltest-logs
ACCOUNT=123456789012
REGION=us-west-2
HOST=$ACCOUNT.dkr.ecr.$REGION.amazonaws.com
IMAGE=$HOST/team/app:1
# Never pulled: imported into containerd, because nothing can be downloaded here.
PAUSE_IMAGE=pause.ecr-refresh.invalid/pause:1
REGISTRY_IP=${ECR_REFRESH_PULLTEST_IP:-127.0.0.77}
KUBELET_PORT=${ECR_REFRESH_PULLTEST_KUBELET_PORT:-10350}
KUBELET_HEALTHZ_PORT=$((KUBELET_PORT - 2))
NODE=ecr-refresh-pulltest
HOSTS_MARK="# ecr-refresh pulltest"
SECRET=awsecr-cred
# Paths the kubelet, containerd, skopeo (its blob cache) and umount (utab) use whatever their
# flags say; removed afterwards if they were not there before.
GLOBAL_PATHS=(/var/lib/kubelet /var/log/pods /var/log/containers /run/containerd /run/mount
  /var/lib/containers /var/lib/containers/cache /var/lib/containers/cache/blob-info-cache-v1.boltdb)
# The kernel settings the kubelet changes at start; put back afterwards.
SYSCTLS=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes)
WAIT_POD=${ECR_REFRESH_PULLTEST_WAIT:-90}

passed=0 failed=0 in_run="" logs_fresh=""
log() { printf 'pulltest: %s\n' "$*" >&2; }
die() {
  log "error: $*"
  # In main's shell a broken bring-up is a failed check, with the summary line.
  if [ -n "$in_run" ]; then
    echo "not ok - $*"
    for f in registry containerd kubelet; do
      [ -n "$logs_fresh" ] && [ -f "$LOGS/$f.log" ] || continue
      echo "# --- $f.log (last 10 lines)"; tail -n 10 "$LOGS/$f.log" | sed 's/^/# /'
    done
    echo "pulltest: $passed passed, $((failed + 1)) failed"
  fi
  exit 1
}

ok() { passed=$((passed + 1)); echo "ok - $*"; }
not_ok() { failed=$((failed + 1)); echo "not ok - $*"; }

apt_updated=""
apt_install() {
  local missing=()
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ -z "$apt_updated" ]; then apt-get update -qq; apt_updated=1; fi
  # containerd and docker-registry ship services: keep the packages from starting system ones.
  local rc=/usr/sbin/policy-rc.d created=""
  if [ ! -e "$rc" ]; then printf '#!/bin/sh\nexit 101\n' >"$rc"; chmod +x "$rc"; created=1; fi
  log "apt-get install ${missing[*]}"
  local status=0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null || status=$?
  [ -z "$created" ] || rm -f "$rc"
  [ "$status" = 0 ] || die "apt-get install ${missing[*]} failed"
}

install() {
  [ "$(id -u)" = 0 ] || die "needs root (apt-get, /etc/hosts, containers)"
  command -v kubectl >/dev/null || die "kubectl not found on PATH"
  apt_install docker-registry skopeo containerd runc busybox-static apache2-utils openssl curl jq
  if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kubelet" ]; then
    KUBELET=$KUBEBUILDER_ASSETS/kubelet
  else
    KUBELET=$(env -u KUBEBUILDER_ASSETS "$ROOT/scripts/testenv.sh" kubelet-path)
    [ -x "$KUBELET" ] || env -u KUBEBUILDER_ASSETS "$ROOT/scripts/testenv.sh" install
    [ -x "$KUBELET" ] || die "no kubelet at $KUBELET after scripts/testenv.sh install"
  fi
  TOOL=$ROOT/target/debug/ecr-refresh
  [ -x "$TOOL" ] || (cd "$ROOT" && cargo build --locked)
}

# --- a one-layer OCI image holding busybox-static ---------------------------------------------

blob() { # file -> moves it into the layout's blobs, prints "digest size"
  local d; d=$(sha256sum "$1" | cut -d' ' -f1)
  local size; size=$(stat -c %s "$1")
  mv "$1" "$OCI_DIR/blobs/sha256/$d"
  echo "sha256:$d $size"
}

# oci_image DIR NAME CMD_JSON: an OCI layout whose only manifest runs CMD_JSON from busybox.
oci_image() {
  local dir=$1 name=$2 cmd=$3 tmp="$WORK/image-tmp" arch; arch=$(dpkg --print-architecture)
  OCI_DIR=$dir
  rm -rf "$tmp" && mkdir -p "$tmp/rootfs/bin" "$dir/blobs/sha256"
  cp /bin/busybox "$tmp/rootfs/bin/busybox"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$tmp/rootfs" -cf "$tmp/layer.tar" bin
  local diff_id; diff_id=sha256:$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)
  gzip -n "$tmp/layer.tar"
  local layer; read -r -a layer <<<"$(blob "$tmp/layer.tar.gz")"
  jq -cn --arg arch "$arch" --arg diff "$diff_id" --argjson cmd "$cmd" \
    '{architecture:$arch, os:"linux", config:{Cmd:$cmd}, rootfs:{type:"layers", diff_ids:[$diff]}}' >"$tmp/config.json"
  local config; read -r -a config <<<"$(blob "$tmp/config.json")"
  jq -cn --arg cd "${config[0]}" --argjson cs "${config[1]}" --arg ld "${layer[0]}" --argjson ls "${layer[1]}" \
    '{schemaVersion:2, mediaType:"application/vnd.oci.image.manifest.v1+json",
      config:{mediaType:"application/vnd.oci.image.config.v1+json", digest:$cd, size:$cs},
      layers:[{mediaType:"application/vnd.oci.image.layer.v1.tar+gzip", digest:$ld, size:$ls}]}' >"$tmp/manifest.json"
  local manifest; read -r -a manifest <<<"$(blob "$tmp/manifest.json")"
  jq -cn --arg md "${manifest[0]}" --argjson ms "${manifest[1]}" --arg arch "$arch" --arg name "$name" \
    '{schemaVersion:2, manifests:[{mediaType:"application/vnd.oci.image.manifest.v1+json", digest:$md, size:$ms,
      platform:{architecture:$arch, os:"linux"},
      annotations:{"org.opencontainers.image.ref.name":"1", "io.containerd.image.name":$name}}]}' >"$dir/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
  rm -rf "$tmp"
}

# --- bring-up ----------------------------------------------------------------------------------

start_bg() { # name, command... (pid in $WORK/name.pid, log in $LOGS/name.log)
  local name=$1; shift
  # 9<&-: the lock must die with this script, not live on in the servers.
  setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null 9<&- &
  echo $! >"$WORK/$name.pid"
}

wait_for() { # seconds, command...: true once the command succeeds, false after the timeout
  local secs=$1; shift
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.5
  done
}

running() { kill -0 "$(cat "$WORK/$1.pid")" 2>/dev/null; }
# wait_up NAME SECONDS COMMAND...: like wait_for, but gives up as soon as server NAME has exited.
wait_up() {
  local name=$1 secs=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    running "$name" && [ $SECONDS -lt $end ] || return 1
    sleep 0.5
  done
}

k() { kubectl --kubeconfig "$RUN_DIR/kubeconfig" --cache-dir "$WORK/kube-cache" --request-timeout=20s "$@"; }

moto_password() {
  # GetAuthorizationToken straight from moto (not through the tool), signed for $REGION.
  local token
  token=$(curl -sSf --max-time 20 -X POST "$ECR_ENDPOINT/" \
    -H 'X-Amz-Target: AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken' \
    -H 'Content-Type: application/x-amz-json-1.1' \
    -H "Authorization: AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20240101/$REGION/ecr/aws4_request, SignedHeaders=host, Signature=0" \
    -d '{}' | jq -er '.authorizationData[0].authorizationToken') || return 1
  printf '%s' "$token" | base64 -d | cut -d: -f2-
}

start_registry() {
  local c=$WORK/certs
  mkdir -p "$c" "$WORK/registry"
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=ecr-refresh-pulltest-ca \
    -keyout "$c/ca.key" -out "$c/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$HOST" -keyout "$c/registry.key" -out "$c/registry.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s\n' "$HOST" >"$c/ext"
  openssl x509 -req -in "$c/registry.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" -CAcreateserial -days 1 \
    -extfile "$c/ext" -out "$c/registry.crt" 2>/dev/null
  cat /etc/ssl/certs/ca-certificates.crt "$c/ca.crt" >"$c/bundle.crt"
  # skopeo reads every *.crt/*.key in its cert dir as a client pair: give it the CA alone.
  mkdir -p "$c/trust" && cp "$c/ca.crt" "$c/trust/ca.crt"
  # The registry accepts only AWS:<the password moto's ECR hands out>; bcrypt is required.
  htpasswd -Bbn AWS "$PASSWORD" >"$WORK/registry/htpasswd" 2>/dev/null
  cat >"$WORK/registry/config.yml" <<YML
version: 0.1
log: {level: info, accesslog: {disabled: false}}
storage: {filesystem: {rootdirectory: $WORK/registry/data}}
http:
  addr: $REGISTRY_IP:443
  secret: pulltest
  tls: {certificate: $c/registry.crt, key: $c/registry.key}
auth:
  htpasswd: {realm: ecr-refresh-pulltest, path: $WORK/registry/htpasswd}
YML
  start_bg registry env -i docker-registry serve "$WORK/registry/config.yml"
  # Only now: the name resolves to the stand-in for as long as the test runs.
  if grep -q "[[:space:]]$HOST\([[:space:]]\|$\)" /etc/hosts; then die "/etc/hosts already maps $HOST; remove that line first"; fi
  echo "$REGISTRY_IP $HOST $HOSTS_MARK" >>/etc/hosts
  wait_up registry 20 curl -s -o /dev/null --cacert "$c/ca.crt" "https://$HOST/v2/" ||
    die "the registry did not come up on $REGISTRY_IP:443; see $LOGS/registry.log"
}

start_containerd() {
  local d=$WORK/containerd
  mkdir -p "$d" "$WORK/cni"
  SOCK=$d/containerd.sock
  cat >"$d/config.toml" <<TOML
version = 2
root = "$d/root"
state = "$d/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "$SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$d/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # The kubelet asks for oom_score_adj -998; without CAP_SYS_RESOURCE runc then fails every sandbox.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$WORK/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$d/runc"
TOML
  # A per-registry hosts.toml with ca = … was not honoured; the process-wide bundle is.
  start_bg containerd env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin SSL_CERT_FILE="$WORK/certs/bundle.crt" \
    containerd --config "$d/config.toml"
  wait_up containerd 20 ctr -a "$SOCK" version || die "containerd did not come up; see $LOGS/containerd.log"
  oci_image "$WORK/pause" "$PAUSE_IMAGE" '["/bin/busybox","sleep","2147483647"]'
  tar -C "$WORK/pause" -cf "$WORK/pause.tar" .
  ctr -a "$SOCK" -n k8s.io images import "$WORK/pause.tar" >/dev/null
}

start_kubelet() {
  local d=$WORK/kubelet
  mkdir -p "$d"
  # env -i: the kubelet's built-in ECR credential provider must find no AWS credentials, so the
  # Secret is its only source.
  start_bg kubelet env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$KUBELET" \
    --kubeconfig="$RUN_DIR/kubeconfig" --hostname-override="$NODE" \
    --container-runtime=remote --container-runtime-endpoint="unix://$SOCK" \
    --cgroup-driver=cgroupfs --cgroups-per-qos=false --enforce-node-allocatable= --fail-swap-on=false \
    --root-dir="$d" --cert-dir="$d/pki" --volume-plugin-dir="$d/volume-plugins" \
    --address=127.0.0.1 --port="$KUBELET_PORT" --read-only-port=0 \
    --healthz-bind-address=127.0.0.1 --healthz-port="$KUBELET_HEALTHZ_PORT" \
    --make-iptables-util-chains=false --eviction-hard= --image-gc-high-threshold=100 \
    --v=2
  wait_up kubelet 60 k get node "$NODE" || die "the kubelet did not register node $NODE; see $LOGS/kubelet.log"
}

# --- teardown (idempotent; also run at start for a killed earlier run) -------------------------

kill_pidfile() {
  local f=$1 pid
  [ -f "$f" ] || return 0
  pid=$(cat "$f")
  kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 -- "-$pid" 2>/dev/null || true
  rm -f "$f"
}

# A subshell without -e: one failed step must not stop the others.
teardown() (
  set +e
  [ -d "$WORK" ] || exit 0
  local sock=$WORK/containerd/containerd.sock
  kill_pidfile "$WORK/kubelet.pid"
  # Containers run under shims that leave containerd's process group: stop them through it.
  if [ -S "$sock" ]; then
    for id in $(timeout 10 ctr -a "$sock" -n k8s.io containers ls -q 2>/dev/null); do
      timeout 10 ctr -a "$sock" -n k8s.io tasks delete -f "$id" >/dev/null 2>&1 || true
      timeout 10 ctr -a "$sock" -n k8s.io containers rm "$id" >/dev/null 2>&1 || true
    done
  fi
  kill_pidfile "$WORK/containerd.pid"
  # Any shim of ours still alive (found by our private socket path in its command line).
  for p in $(pgrep -f -- "-address $sock" 2>/dev/null || true); do kill -9 "$p" 2>/dev/null || true; done
  kill_pidfile "$WORK/registry.pid"
  if [ -f /etc/hosts ] && grep -q "$HOSTS_MARK" /etc/hosts; then
    # Rewrite in place: /etc/hosts may be a bind mount that cannot be replaced.
    grep -v "$HOSTS_MARK" /etc/hosts >"$WORK/hosts.new" || true
    cat "$WORK/hosts.new" >/etc/hosts
  fi
  # Mounts under our paths, deepest first.
  local roots=("$WORK")
  if [ -f "$WORK/created" ]; then mapfile -t -O 1 roots <"$WORK/created"; roots[0]=$WORK; fi
  for r in "${roots[@]}"; do
    awk -v r="$r" '$2 == r || index($2, r "/") == 1 {print $2}' /proc/mounts | sort -r |
      while read -r m; do umount -l "$m" 2>/dev/null || true; done
  done
  # cgroups containerd made for the k8s.io namespace (cgroupfs driver), if we made them. Whatever
  # still runs in them is a container of ours whose shim is gone (a killed earlier run).
  if [ -f "$WORK/created-cgroups" ]; then
    local left=""
    while read -r cg; do
      [ -d "$cg" ] || continue
      left=1
      find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null |
        while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done
    done <"$WORK/created-cgroups"
    for _ in $(seq 1 20); do
      [ -n "$left" ] || break
      left=""
      while read -r cg; do
        [ -d "$cg" ] || continue
        find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        [ -d "$cg" ] && left=1
      done <"$WORK/created-cgroups"
      [ -z "$left" ] || sleep 0.25
    done
  fi
  if [ -f "$WORK/created" ]; then while read -r p; do rm -rf "$p"; done <"$WORK/created"; fi
  if [ -f "$WORK/sysctl.saved" ]; then
    while read -r key val; do
      [ "$(cat "/proc/sys/$key" 2>/dev/null)" = "$val" ] || echo "$val" >"/proc/sys/$key" 2>/dev/null || true
    done <"$WORK/sysctl.saved"
  fi
  if [ -f "$WORK/namespaces" ] && [ -f "$RUN_DIR/kubeconfig" ]; then
    while read -r ns; do
      k -n "$ns" delete pods --all --force --grace-period=0 >/dev/null 2>&1 || true
      k delete namespace "$ns" --wait=false >/dev/null 2>&1 || true
    done <"$WORK/namespaces"
    k delete node "$NODE" --wait=false >/dev/null 2>&1 || true
    k -n kube-node-lease delete lease "$NODE" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
)

record_state() {
  # What exists now is someone else's: only what appears during the run is removed afterwards.
  : >"$WORK/created"
  for p in "${GLOBAL_PATHS[@]}"; do [ -e "$p" ] || echo "$p" >>"$WORK/created"; done
  : >"$WORK/created-cgroups"
  for c in /sys/fs/cgroup/*/; do [ -e "${c}k8s.io" ] || echo "${c}k8s.io" >>"$WORK/created-cgroups"; done
  : >"$WORK/sysctl.saved"
  for s in "${SYSCTLS[@]}"; do
    [ -r "/proc/sys/$s" ] && echo "$s $(cat "/proc/sys/$s")" >>"$WORK/sysctl.saved"
  done
  return 0
}

# --- checks ------------------------------------------------------------------------------------

diagnose() { # ns pod
  {
    echo "--- pod $1/$2"
    k -n "$1" get pod "$2" -o jsonpath='{.spec.imagePullSecrets}{"\n"}{.status}{"\n"}' 2>&1 || true
    echo "--- events"
    k -n "$1" get events --field-selector "involvedObject.name=$2" \
      -o custom-columns=REASON:.reason,MESSAGE:.message 2>&1 || true
    for f in kubelet containerd registry; do echo "--- $f.log (last 10 lines)"; tail -n 10 "$LOGS/$f.log" 2>/dev/null; done
  } | sed 's/^/# /'
}

sync_ns() { # ns -> ecr-refresh's exit code
  local rc=0
  env -i PATH=/usr/bin:/bin HOME="$WORK/home" KUBECONFIG="$RUN_DIR/kubeconfig" \
    AWS_ENDPOINT_URL="$ECR_ENDPOINT" AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE AWS_SECRET_ACCESS_KEY=test-secret-key \
    AWS_REGION=$REGION AWS_EC2_METADATA_DISABLED=true \
    "$TOOL" sync -n "$1" >"$LOGS/sync-$1.log" 2>&1 || rc=$?
  return $rc
}

check_sync() { # ns
  if sync_ns "$1"; then ok "ecr-refresh sync -n $1 exits 0"
  else not_ok "ecr-refresh sync -n $1 exits 0"; sed 's/^/# /' "$LOGS/sync-$1.log"; fi
}

run_pod() { # ns name
  k apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $2, namespace: $1}
spec:
  nodeName: $NODE
  hostNetwork: true
  automountServiceAccountToken: false
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: $IMAGE
    imagePullPolicy: Always
YAML
}

phase() { k -n "$1" get pod "$2" -o jsonpath='{.status.phase}' 2>/dev/null; }
events() { k -n "$1" get events --field-selector "involvedObject.name=$2" -o jsonpath='{range .items[*]}{.message}{"\n"}{end}' 2>/dev/null; }
succeeded() { [ "$(phase "$1" "$2")" = Succeeded ]; }
failed_401() {
  local ev; ev=$(events "$1" "$2")
  [ "$(phase "$1" "$2")" = Pending ] && grep -q ErrImagePull <<<"$ev" && grep -q '401 Unauthorized' <<<"$ev"
}

expect_success() { # ns pod description
  run_pod "$1" "$2" || { not_ok "$3 (could not create the pod)"; return 0; }
  if wait_for "$WAIT_POD" succeeded "$1" "$2"; then ok "$3"
  else not_ok "$3 (phase: $(phase "$1" "$2"))"; diagnose "$1" "$2"; fi
}

expect_401() { # ns pod description
  run_pod "$1" "$2" || { not_ok "$3 (could not create the pod)"; return 0; }
  if wait_for "$WAIT_POD" failed_401 "$1" "$2"; then ok "$3"
  else not_ok "$3 (phase: $(phase "$1" "$2"))"; diagnose "$1" "$2"; fi
}

secret_payload() { k -n "$1" get secret "$SECRET" -o jsonpath='{.data.\.dockerconfigjson}' 2>/dev/null; }

checks() {
  local a=$1 b=$2
  # The stand-in enforces what ECR enforces: no anonymous or wrong-password pulls.
  local url="https://$HOST/v2/team/app/manifests/1" ca=$WORK/certs/ca.crt codes
  codes="$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" "$url") $(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" -u AWS:wrong "$url") $(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" -u "AWS:$PASSWORD" -H 'Accept: application/vnd.oci.image.manifest.v1+json' "$url")"
  if [ "$codes" = "401 401 200" ]; then ok "registry: anonymous 401, wrong password 401, moto's password 200"
  else not_ok "registry: anonymous 401, wrong password 401, moto's password 200 (got $codes)"; fi

  # The kubelet's compiled-in ECR provider looked for AWS credentials and found none.
  if grep -q NoCredentialProviders "$LOGS/kubelet.log"; then ok "the kubelet's own ECR credential provider found no AWS credentials"
  else not_ok "the kubelet's own ECR credential provider found no AWS credentials"; tail -n 20 "$LOGS/kubelet.log" | sed 's/^/# /'; fi

  check_sync "$a"
  run_pod "$a" app-1 || true
  local ips; ips=$(k -n "$a" get pod app-1 -o jsonpath='{.spec.imagePullSecrets[*].name}' 2>/dev/null || true)
  if [ "$ips" = "$SECRET" ]; then ok "pod in $a got imagePullSecrets [$SECRET] from its ServiceAccount"
  else not_ok "pod in $a got imagePullSecrets [$SECRET] from its ServiceAccount (got [$ips])"; fi
  if wait_for "$WAIT_POD" succeeded "$a" app-1; then ok "pod in $a pulled $IMAGE and Succeeded"
  else not_ok "pod in $a pulled $IMAGE and Succeeded (phase: $(phase "$a" app-1))"; diagnose "$a" app-1; fi
  # Every request needs credentials there, so a 200 for the tag proves containerd sent them.
  if grep -qE '"(HEAD|GET) /v2/team/app/manifests/1 HTTP/1.1" 200 .*"containerd/' "$LOGS/registry.log"; then
    ok "the registry served the manifest to containerd with credentials (200)"
  else not_ok "the registry served the manifest to containerd with credentials (200)"; tail -n 10 "$LOGS/registry.log" | sed 's/^/# /'; fi

  expect_401 "$b" app-1 "pod in $b (not synced) fails with ErrImagePull and 401 Unauthorized"
  check_sync "$b"
  expect_success "$b" app-2 "after the sync a new pod in $b Succeeds"

  local good; good=$(secret_payload "$a")
  local bad; bad=$(jq -cn --arg h "$HOST" --arg a "$(printf 'AWS:tampered' | base64 -w0)" \
    '{auths:{($h):{username:"AWS", password:"tampered", auth:$a}}}' | base64 -w0)
  k -n "$a" patch secret "$SECRET" --type=json \
    -p "[{\"op\":\"replace\",\"path\":\"/data/.dockerconfigjson\",\"value\":\"$bad\"}]" >/dev/null ||
    not_ok "could not tamper with the Secret in $a"
  expect_401 "$a" app-2 "with a tampered password a new pod in $a fails with 401 Unauthorized"
  check_sync "$a"
  local now; now=$(secret_payload "$a")
  if [ -n "$good" ] && [ "$now" = "$good" ]; then ok "the sync restored the Secret's payload in $a"
  else not_ok "the sync restored the Secret's payload in $a"; fi
  expect_success "$a" app-3 "after the repair a new pod in $a Succeeds"
}

main() {
  in_run=1
  install
  [ -f "$RUN_DIR/env.sh" ] || die "no $RUN_DIR/env.sh: run scripts/testenv.sh start first"
  # shellcheck source=/dev/null
  ECR_ENDPOINT=$(source "$RUN_DIR/env.sh" && echo "$ECR_REFRESH_TEST_ECR_ENDPOINT")
  k get --raw /readyz >/dev/null || die "the test apiserver in $RUN_DIR does not answer"

  # One pull test at a time on a machine: the host name, /var/log/pods and the node name are shared.
  # Locking /etc/hosts itself leaves no lock file behind.
  exec 9</etc/hosts
  flock -w 600 9 || die "another pull test has held a lock on /etc/hosts for 10 minutes"
  teardown
  rm -rf "$LOGS" && mkdir -p "$WORK/home" "$LOGS" && logs_fresh=1
  record_state
  trap teardown EXIT
  trap 'exit 130' INT TERM

  local t0=$SECONDS suffix; suffix=$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
  local a=pull-a-$suffix b=pull-b-$suffix
  for ns in "$a" "$b"; do
    echo "$ns" >>"$WORK/namespaces"
    k create namespace "$ns" >/dev/null
    # No controller-manager here: the ServiceAccount a pod is admitted with must be made by hand.
    k -n "$ns" create serviceaccount default >/dev/null
  done
  PASSWORD=$(moto_password) && [ -n "$PASSWORD" ] || die "moto at $ECR_ENDPOINT did not answer GetAuthorizationToken"
  start_registry
  oci_image "$WORK/app" "$IMAGE" '["/bin/busybox","echo","hello from a private image"]'
  skopeo --policy <(echo '{"default":[{"type":"insecureAcceptAnything"}]}') copy -q \
    --dest-creds "AWS:$PASSWORD" --dest-cert-dir "$WORK/certs/trust" "oci:$WORK/app:1" "docker://$IMAGE" >/dev/null ||
    die "skopeo could not push $IMAGE"
  start_containerd
  start_kubelet
  log "stack up in $((SECONDS - t0))s (kubelet $KUBELET as node $NODE, registry $REGISTRY_IP as $HOST)"

  local t1=$SECONDS
  checks "$a" "$b"
  log "checks took $((SECONDS - t1))s"
  echo "pulltest: $passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}

main "$@"
