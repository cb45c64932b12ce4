# shellcheck shell=bash
# shellcheck disable=SC2034 # its settings are read by the scripts that source it
# The node parts shared by scripts/pulltest.sh and scripts/cluster.sh (sourced, never run): the
# registry stand-in for ECR (Debian's docker-registry, TLS, htpasswd user AWS), OCI images made
# without a Docker daemon, containerd + runc, a kubelet of either version, and a teardown that
# leaves nothing behind. Only one node may run on a machine at a time (the host name, port 443 on
# the registry address, /var/lib/kubelet): callers run under `flock /tmp/ecr-refresh-node.lock`.
#
# The sourcing script defines log() and die(), and sets before use:
#   WORK   the node's state folder (removed by node_teardown)
#   LOGS   where each server's log goes
#   NODE_KUBECONFIG  the kubeconfig the kubelet registers with
#   NODE   the node name; KUBELET the kubelet binary; KUBELET_PORT (healthz on the port 2 below)
#   PASSWORD  the registry password (node_moto_password prints moto's)
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ACCOUNT=123456789012
REGION=us-west-2
HOST=$ACCOUNT.dkr.ecr.$REGION.amazonaws.com
IMAGE=$HOST/team/app:1
# The same registry under its dual-stack (IPv6) name, served by the same stand-in.
DUAL_HOST=$ACCOUNT.dkr-ecr.$REGION.on.aws
DUAL_IMAGE=$DUAL_HOST/team/app:1
# Never pulled: imported into containerd, because nothing can be downloaded here.
PAUSE_IMAGE=pause.ecr-refresh.invalid/pause:1
REGISTRY_IP=${ECR_REFRESH_PULLTEST_IP:-127.0.0.77}
# The same mark for every script, so any teardown removes any leftover line.
HOSTS_MARK="# ecr-refresh pulltest"
# Paths the kubelet, containerd, skopeo (its blob cache) and umount (utab) use whatever their
# flags say; removed afterwards if they were not there before.
GLOBAL_PATHS=(/var/lib/kubelet /var/log/pods /var/log/containers /run/containerd /run/mount
  /var/lib/containers /var/lib/containers/cache /var/lib/containers/cache/blob-info-cache-v1.boltdb
  /var/lib/cni /run/netns)
# The kernel settings the kubelet changes at start; put back afterwards.
SYSCTLS=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops kernel/keys/root_maxkeys kernel/keys/root_maxbytes)
NODE_PACKAGES=(docker-registry skopeo containerd containernetworking-plugins runc busybox-static apache2-utils openssl curl jq xz-utils)
# unpack_k8s NAME VERSION: ../shared/k8s/VERSION/NAME.xz unpacked into the test cache (its path).
unpack_k8s() { "$(dirname "${BASH_SOURCE[0]}")/testenv.sh" unpack "$1" "$2"; }

# --- OCI images, written as an OCI layout by hand ----------------------------------------------

blob() { # file -> moves it into the layout's blobs, prints "digest size"
  local d; d=$(sha256sum "$1" | cut -d' ' -f1)
  local size; size=$(stat -c %s "$1")
  mv "$1" "$OCI_DIR/blobs/sha256/$d"
  echo "sha256:$d $size"
}

# oci_layout DIR NAME ROOTFS CONFIG_JSON: an OCI layout whose only manifest has one layer, the
# tree ROOTFS exactly as it is (owners and modes kept), and the image config CONFIG_JSON.
oci_layout() {
  local dir=$1 name=$2 rootfs=$3 cfg=$4 tmp="$1.tmp" arch; arch=$(dpkg --print-architecture)
  OCI_DIR=$dir
  rm -rf "$tmp" "$dir" && mkdir -p "$tmp" "$dir/blobs/sha256"
  tar --sort=name --mtime=@0 --numeric-owner -C "$rootfs" -cf "$tmp/layer.tar" .
  local diff_id; diff_id=sha256:$(sha256sum "$tmp/layer.tar" | cut -d' ' -f1)
  gzip -n "$tmp/layer.tar"
  local layer; read -r -a layer <<<"$(blob "$tmp/layer.tar.gz")"
  jq -cn --arg arch "$arch" --arg diff "$diff_id" --argjson cfg "$cfg" \
    '{architecture:$arch, os:"linux", config:$cfg, rootfs:{type:"layers", diff_ids:[$diff]}}' >"$tmp/config.json"
  local config; read -r -a config <<<"$(blob "$tmp/config.json")"
  jq -cn --arg cd "${config[0]}" --argjson cs "${config[1]}" --arg ld "${layer[0]}" --argjson ls "${layer[1]}" \
    '{schemaVersion:2, mediaType:"application/vnd.oci.image.manifest.v1+json",
      config:{mediaType:"application/vnd.oci.image.config.v1+json", digest:$cd, size:$cs},
      layers:[{mediaType:"application/vnd.oci.image.layer.v1.tar+gzip", digest:$ld, size:$ls}]}' >"$tmp/manifest.json"
  local manifest; read -r -a manifest <<<"$(blob "$tmp/manifest.json")"
  jq -cn --arg md "${manifest[0]}" --argjson ms "${manifest[1]}" --arg arch "$arch" --arg name "$name" \
    '{schemaVersion:2, manifests:[{mediaType:"application/vnd.oci.image.manifest.v1+json", digest:$md, size:$ms,
      platform:{architecture:$arch, os:"linux"},
      annotations:{"org.opencontainers.image.ref.name":($name | sub(".*:"; "")), "io.containerd.image.name":$name}}]}' >"$dir/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$dir/oci-layout"
  rm -rf "$tmp"
}

# oci_image DIR NAME CMD_JSON: an OCI layout whose only manifest runs CMD_JSON from busybox.
oci_image() {
  local root="$1.rootfs"
  rm -rf "$root" && mkdir -p "$root/bin"
  cp /bin/busybox "$root/bin/busybox"
  chown -R 0:0 "$root"
  oci_layout "$1" "$2" "$root" "$(jq -cn --argjson cmd "$3" '{Cmd:$cmd}')"
  rm -rf "$root"
}

# push_image LAYOUT NAME: skopeo copies the layout's image to the registry stand-in as AWS.
push_image() {
  skopeo --policy <(echo '{"default":[{"type":"insecureAcceptAnything"}]}') copy -q \
    --dest-creds "AWS:$PASSWORD" --dest-cert-dir "$WORK/certs/trust" "oci:$1:${2##*:}" "docker://$2" >/dev/null
}

# --- servers -------------------------------------------------------------------------------------

start_bg() { # name, command... (pid in $WORK/name.pid, log in $LOGS/name.log)
  local name=$1; shift
  # Every descriptor above 2 is closed: a lock the caller holds (flock) must not live on in the
  # servers after the caller is gone.
  (
    for fd in /proc/"$BASHPID"/fd/*; do
      fd=${fd##*/}
      [ "$fd" -gt 2 ] && eval "exec $fd>&-"
    done
    exec setsid "$@"
  ) >"$LOGS/$name.log" 2>&1 </dev/null &
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

node_moto_password() { # ECR endpoint
  # GetAuthorizationToken straight from moto (not through the tool), signed for $REGION.
  local token
  token=$(curl -sSf --max-time 20 -X POST "$1/" \
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
  printf 'subjectAltName=DNS:%s,DNS:%s\n' "$HOST" "$DUAL_HOST" >"$c/ext"
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
  # Only now: the name resolves to the stand-in for as long as the node runs.
  for h in "$HOST" "$DUAL_HOST"; do
    if grep -q "[[:space:]]$h\([[:space:]]\|$\)" /etc/hosts; then die "/etc/hosts already maps $h; remove that line first"; fi
  done
  echo "$REGISTRY_IP $HOST $DUAL_HOST $HOSTS_MARK" >>/etc/hosts
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
  import_image "$WORK/pause"
}

import_image() { # OCI layout dir: straight into containerd's k8s.io namespace (no registry)
  tar -C "$1" -cf "$1.tar" . && ctr -a "$SOCK" -n k8s.io images import "$1.tar" >/dev/null && rm -f "$1.tar"
}

# The kubelet's minor version (0 when it does not say, as a build from a source tarball).
kubelet_minor() { "$1" --version 2>/dev/null | sed -n 's/^Kubernetes v1\.\([0-9]*\)\..*/\1/p' | grep . || echo 0; }

start_kubelet() {
  local d=$WORK/kubelet runtime=()
  mkdir -p "$d"
  if [ "$(kubelet_minor "$KUBELET")" -ge 27 ]; then
    # Current kubelets: the runtime endpoints live in the config file (the flags are gone), and
    # failCgroupV1 lets it start on a cgroup v1 host. The flag defaults below are the config's too.
    cat >"$d/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$SOCK
imageServiceEndpoint: unix://$SOCK
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
address: 127.0.0.1
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $((KUBELET_PORT - 2))
makeIPTablesUtilChains: false
evictionHard: {}
imageGCHighThresholdPercent: 100
volumePluginDir: $d/volume-plugins
# Loopback only: the apiserver reads pod logs from here without a client certificate.
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
YAML
    runtime=(--config="$d/config.yaml")
  else
    runtime=(--container-runtime=remote --container-runtime-endpoint="unix://$SOCK"
      --cgroup-driver=cgroupfs --cgroups-per-qos=false --enforce-node-allocatable= --fail-swap-on=false
      --volume-plugin-dir="$d/volume-plugins"
      --address=127.0.0.1 --port="$KUBELET_PORT" --read-only-port=0
      --healthz-bind-address=127.0.0.1 --healthz-port="$((KUBELET_PORT - 2))"
      --make-iptables-util-chains=false --eviction-hard= --image-gc-high-threshold=100)
  fi
  # env -i: the kubelet's built-in ECR credential provider must find no AWS credentials, so the
  # Secret is its only source.
  start_bg kubelet env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$KUBELET" "${runtime[@]}" \
    --kubeconfig="$NODE_KUBECONFIG" --hostname-override="$NODE" \
    --root-dir="$d" --cert-dir="$d/pki" --v=2
  wait_up kubelet 60 kubectl --kubeconfig "$NODE_KUBECONFIG" get node "$NODE" ||
    die "the kubelet did not register node $NODE; see $LOGS/kubelet.log"
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

node_record_state() {
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

# Stops the kubelet, every container, containerd and the registry; removes the hosts line, the
# mounts, cgroups and paths that appeared, and puts the sysctls back. $WORK itself is kept (the
# caller may still need files in it). Run it in a subshell without -e: one failed step must not
# stop the others.
node_teardown() {
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
  return 0
}
