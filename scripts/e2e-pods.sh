#!/usr/bin/env bash
# shellcheck disable=SC2034 # many checks are eval'd strings, whose reads shellcheck does not see
# Pods and the pull Secret on a real v1.36.3 cluster (scripts/cluster.sh: control plane with the
# controller-manager and scheduler, a kubelet on containerd, the registry stand-in for ECR):
#
#   stuck pods:  a Deployment's pod created before the ServiceAccount lists the Secret
#     stays in ImagePullBackOff after `sync`; `status` names it; `sync --delete-stuck-pods`
#     deletes it and its replacement pulls and runs; a bare stuck pod, a pod with
#     imagePullSecrets of its own and a Job's pod (backoffLimit 0) are left alone, and the Job
#     neither fails nor counts a failure.
#   born linked:  with deploy/born-linked applied, a Deployment created in a new
#     namespace before any pass gets a pod whose spec already names the Secret; it waits in
#     ErrImagePull/ImagePullBackOff, the next `sync` writes the Secret, and the SAME pod pulls and
#     runs without being deleted (the first scenario is the same sequence without the policy);
#     an opted-out namespace's ServiceAccount gets no entry.
#
#   bash scripts/e2e-pods.sh        (root; takes /tmp/ecr-refresh-node.lock itself, waiting for it;
#                                    a caller that already holds it sets ECR_REFRESH_E2E_LOCKED=1)
#
# Prints `ok - …`/`not ok - …` per check and `e2e-pods: N passed, M failed`; exits 1 on any
# failure. The cluster is torn down on exit. Knobs: ECR_REFRESH_E2E_TOOL (the binary, default
# target/debug/ecr-refresh, built if missing), ECR_REFRESH_E2E_WAIT (seconds a pod may take to
# run after its Secret is there, 75: the kubelet retries a failed pull after 10 s, then 20 s, 40 s).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCK=/tmp/ecr-refresh-node.lock
# Re-run under the node lock: one kubelet, registry and /etc/hosts line per machine.
if [ "${ECR_REFRESH_E2E_LOCKED:-}" != 1 ]; then
  exec env ECR_REFRESH_E2E_LOCKED=1 flock "$LOCK" bash "$0" "$@"
fi
cd "$ROOT"
TOOL=${ECR_REFRESH_E2E_TOOL:-$ROOT/target/debug/ecr-refresh}
WAIT_RUN=${ECR_REFRESH_E2E_WAIT:-75}
SECRET=awsecr-cred
POLICY=ecr-refresh-born-linked

log() { printf 'e2e-pods: %s\n' "$*" >&2; }
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
summary() { echo "e2e-pods: $PASSED passed, $FAILED failed"; }

[ -x "$TOOL" ] || cargo build --locked --bin ecr-refresh >&2
trap 'scripts/cluster.sh down; summary' EXIT
t0=$SECONDS
scripts/cluster.sh up || { not_ok "scripts/cluster.sh up"; exit 1; }
# shellcheck source=/dev/null
source "${ECR_REFRESH_CLUSTER_RUN:-$ROOT/target/cluster}/env.sh"
# Outside the cluster's run folder, which `down` removes: kept for a look after a failure.
LOGS=$ROOT/target/e2e-pods-logs
rm -rf "$LOGS" && mkdir -p "$LOGS"
log "cluster up in $((SECONDS - t0))s"

k() { kubectl --kubeconfig "$ECR_REFRESH_CLUSTER_KUBECONFIG" --request-timeout=20s "$@"; }
tool() { # args... (as the cluster admin; moto is the ECR the registry stand-in trusts)
  env -i PATH=/usr/bin:/bin HOME="$LOGS" KUBECONFIG="$ECR_REFRESH_CLUSTER_KUBECONFIG" \
    AWS_ENDPOINT_URL="$ECR_REFRESH_CLUSTER_ECR_ENDPOINT" AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE \
    AWS_SECRET_ACCESS_KEY=test-secret-key AWS_REGION="$ECR_REFRESH_CLUSTER_REGION" \
    AWS_EC2_METADATA_DISABLED=true "$TOOL" "$@"
}
wait_for() { # seconds, command...
  local until=$((SECONDS + $1)); shift
  until "$@"; do [ $SECONDS -lt $until ] || return 1; sleep 1; done
}
namespace() { # name [opt-out]: a namespace whose default ServiceAccount the controller-manager made
  local opt='{}'
  [ -z "${2:-}" ] || opt='{"ecr-refresh/opt-out": "true"}'
  # Annotated at creation: the controller-manager makes the ServiceAccount a moment later.
  echo "{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"metadata\":{\"name\":\"$1\",\"annotations\":$opt}}" |
    k create -f - >/dev/null
  wait_for 30 k -n "$1" get serviceaccount default >/dev/null 2>&1
}
# Every pod here runs the private image; Always: each start really pulls.
CONTAINER="{name: app, image: $ECR_REFRESH_CLUSTER_IMAGE, imagePullPolicy: Always, command: [/bin/busybox, sleep, \"3600\"]}"
deployment() { # ns name [pull secret of its own] [ServiceAccount]
  local own="" sa=""
  [ -z "${3:-}" ] || own="imagePullSecrets: [{name: $3}]"
  [ -z "${4:-}" ] || sa="serviceAccountName: $4"
  k apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: $2, namespace: $1}
spec:
  replicas: 1
  selector: {matchLabels: {app: $2}}
  template:
    metadata: {labels: {app: $2}}
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 0
      $own
      $sa
      containers:
      - $CONTAINER
YAML
}
job() { # ns name: a Job whose one pod runs the private image; a single failure fails it
  k apply -f - >/dev/null <<YAML
apiVersion: batch/v1
kind: Job
metadata: {name: $2, namespace: $1}
spec:
  backoffLimit: 0
  template:
    metadata: {labels: {app: $2}}
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: 0
      restartPolicy: Never
      containers:
      - $CONTAINER
YAML
}
job_unharmed() { # ns name: not Failed, no failed pod counted
  local status; status=$(k -n "$1" get job "$2" -o json | jq -c '.status')
  echo "$status" | jq -e '(.failed // 0) == 0 and ([.conditions[]? | select(.type == "Failed")] | length) == 0' >/dev/null ||
    { echo "# job $2: $status"; return 1; }
}
bare_pod() { # ns name
  k apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: $2, namespace: $1}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 0
  containers:
  - $CONTAINER
YAML
}
pod_of() { # ns app: the name of its pod that is not being deleted
  k -n "$1" get pods -l "app=$2" -o json 2>/dev/null |
    jq -r '[.items[] | select(.metadata.deletionTimestamp == null)][0].metadata.name // empty'
}
uid_of() { k -n "$1" get pod "$2" -o jsonpath='{.metadata.uid}' 2>/dev/null; }
waiting() { k -n "$1" get pod "$2" -o jsonpath='{.status.containerStatuses[0].state.waiting.reason}' 2>/dev/null; }
pull_failing() { case "$(waiting "$1" "$2")" in ErrImagePull | ImagePullBackOff) true ;; *) false ;; esac; }
running() { [ "$(k -n "$1" get pod "$2" -o jsonpath='{.status.containerStatuses[0].started}' 2>/dev/null)" = true ]; }
names_secret() { k -n "$1" get pod "$2" -o jsonpath='{.spec.imagePullSecrets[*].name}' | grep -qw "$SECRET"; }
lacks_secret() { ! names_secret "$@"; }
diagnose() { # ns pod
  {
    k -n "$1" get pod "$2" -o jsonpath='{.spec.imagePullSecrets}{"\n"}{.status.containerStatuses}{"\n"}' 2>&1
    k -n "$1" get events --field-selector "involvedObject.name=$2" -o custom-columns=REASON:.reason,MESSAGE:.message 2>&1 | tail -n 5
  } | sed 's/^/# /'
}
# The pod of Deployment $2 in $1 once the kubelet failed to pull it; "" if it never did.
stuck_pod() {
  local sns=$1 sapp=$2 pod=""
  wait_for 60 eval 'pod=$(pod_of "$sns" "$sapp") && [ -n "$pod" ] && pull_failing "$sns" "$pod"' || { echo ""; return; }
  echo "$pod"
}
# Runs `tool` with its report in $LOGS/$1.log (its logs in .err); true when it exits 0.
logged() {
  local name=$1; shift
  tool "$@" >"$LOGS/$name.log" 2>"$LOGS/$name.err" && return 0
  cat "$LOGS/$name.log" "$LOGS/$name.err" | tail -n 20 | sed 's/^/# /'
  return 1
}

stuck_pods() {
  local ns=stuck-$RANDOM web bare=lonely own batch
  namespace "$ns"
  deployment "$ns" web
  deployment "$ns" own theirs
  job "$ns" batch
  bare_pod "$ns" "$bare"
  web=$(stuck_pod "$ns" web); own=$(stuck_pod "$ns" own); batch=$(stuck_pod "$ns" batch)
  wait_for 60 pull_failing "$ns" "$bare" || true
  check "a Deployment's pod created before the link waits in ErrImagePull/ImagePullBackOff, without $SECRET" \
    eval '[ -n "$web" ] && lacks_secret "$ns" "$web"'
  [ -n "$web" ] || { diagnose "$ns" "$(pod_of "$ns" web)"; return 0; }
  local web_uid; web_uid=$(uid_of "$ns" "$web")
  local bare_uid own_uid batch_uid; bare_uid=$(uid_of "$ns" "$bare"); own_uid=$(uid_of "$ns" "$own")
  batch_uid=$(uid_of "$ns" "$batch")
  check "sync links the namespace" logged "sync-$ns" sync -n "$ns"
  # The kubelet retries within its back-off (10 s, 20 s, 40 s): give it more than one retry.
  sleep 35
  check "after sync, without the policy, the same pod is still stuck (its spec never gets the Secret)" \
    eval '[ "$(uid_of "$ns" "$web")" = "$web_uid" ] && ! running "$ns" "$web" && lacks_secret "$ns" "$web"'
  tool status -n "$ns" >"$LOGS/status-$ns.log" 2>"$LOGS/status-$ns.err" || true
  check "status names the stuck pod $web, and why" \
    grep -q "pod $web waits in .* its spec lacks $SECRET; created before its ServiceAccount" "$LOGS/status-$ns.log"
  check "status names the bare pod and the one with its own imagePullSecrets" \
    eval 'grep -q "pod $bare waits" "$LOGS/status-$ns.log" && grep -q "pod $own waits" "$LOGS/status-$ns.log"'
  check "sync --delete-stuck-pods exits 0" logged "heal-$ns" sync --delete-stuck-pods -n "$ns"
  check "it deleted exactly the Deployment's pod, and left the other three" \
    eval 'grep -q "^deleted stuck pod $ns/$web " "$LOGS/heal-$ns.log" && [ "$(grep -c "^deleted stuck pod" "$LOGS/heal-$ns.log")" = 1 ] &&
      [ "$(grep -c "^left stuck pod" "$LOGS/heal-$ns.log")" = 3 ]'
  grep "stuck pod" "$LOGS/heal-$ns.log" | sed 's/^/# /'
  local next=""
  wait_for 30 eval 'next=$(pod_of "$ns" web) && [ -n "$next" ] && [ "$(uid_of "$ns" "$next")" != "$web_uid" ]' || true
  check "its replacement names $SECRET, pulls and runs" \
    eval '[ -n "$next" ] && names_secret "$ns" "$next" && wait_for "$WAIT_RUN" running "$ns" "$next"'
  [ -z "$next" ] || running "$ns" "$next" || diagnose "$ns" "$next"
  check "the bare stuck pod is left alone (same pod, still stuck)" \
    eval '[ "$(uid_of "$ns" "$bare")" = "$bare_uid" ] && ! running "$ns" "$bare"'
  k -n "$ns" describe pod "$bare" >"$LOGS/describe-$bare.log" 2>&1 || true
  check "kubectl describe pod $bare shows ecr-refresh's Warning StuckWithoutPullSecret, and what heals it" \
    eval 'grep -q "Warning  *StuckWithoutPullSecret .*ecr-refresh" "$LOGS/describe-$bare.log" &&
      grep -q "created before its ServiceAccount listed $SECRET" "$LOGS/describe-$bare.log"'
  check "the pod with imagePullSecrets of its own is left alone (same pod, still stuck)" \
    eval '[ "$(uid_of "$ns" "$own")" = "$own_uid" ] && ! running "$ns" "$own"'
  check "the Job's pod is left alone (same pod), and the Job (backoffLimit 0) neither failed nor counted a failure" \
    eval '[ -n "$batch" ] && [ "$(uid_of "$ns" "$batch")" = "$batch_uid" ] && job_unharmed "$ns" batch'
}

born_linked() {
  # The policy, with the CronJob's settings ConfigMap it reads the Secret name from, naming
  # `builder` too (as `--service-account default,builder` does).
  k kustomize deploy/born-linked | k apply -f - >/dev/null
  k create -f deploy/cronjob.yaml --dry-run=client -o json |
    jq 'select(.kind == "ConfigMap") | .data.ECR_REFRESH_SERVICE_ACCOUNT = "default,builder"' |
    k apply -f - >/dev/null
  # The apiserver loads policies asynchronously: wait until a new namespace is born linked.
  local probe=born-probe-$RANDOM
  wait_for 30 eval 'namespace "$probe" && k -n "$probe" get sa default -o jsonpath="{.imagePullSecrets[*].name}" | grep -qw "$SECRET" || { k delete namespace "$probe" --wait=false >/dev/null; probe=born-probe-$RANDOM; false; }' ||
    { not_ok "the born-linked policy links new ServiceAccounts"; return 0; }
  local ns=born-$RANDOM out=born-out-$RANDOM
  namespace "$ns"
  born_pod_pulls_after_sync "$ns" web default || return 0
  namespace "$out" opt-out
  check "an opted-out namespace's default ServiceAccount gets no entry" \
    eval '[ -z "$(k -n "$out" get sa default -o jsonpath="{.imagePullSecrets}")" ]'
  tool status -n "$ns" >"$LOGS/status-$ns.log" 2>"$LOGS/status-$ns.err" || true
  check "status says the policy is installed" grep -q "born-linked policy $POLICY: installed" "$LOGS/status-$ns.log"
  born_linked_builder
}

# With the policy: the pod of a Deployment `app` of ServiceAccount `sa` in `ns`, created
# before any pass, is born naming the Secret and waits on the pull; `sync -n ns ARGS...` writes
# the Secret (the ServiceAccount is already linked) and the same pod pulls and runs, without
# being recreated. False when there was no such pod.
born_pod_pulls_after_sync() { # ns app sa [sync args...]
  local ns=$1 app=$2 sa=$3; shift 3
  local as=""
  [ "$sa" = default ] || as=$sa
  deployment "$ns" "$app" "" "$as"
  local pod; pod=$(stuck_pod "$ns" "$app")
  check "with the policy, the pod of a Deployment of ServiceAccount $sa created before any pass names $SECRET and waits on the pull" \
    eval '[ -n "$pod" ] && names_secret "$ns" "$pod"'
  [ -n "$pod" ] || { diagnose "$ns" "$(pod_of "$ns" "$app")"; return 1; }
  local uid; uid=$(uid_of "$ns" "$pod")
  check "sync${*:+ $*} writes the Secret (the ServiceAccount is already linked)" logged "sync-$ns" sync -n "$ns" "$@"
  check "the same $sa pod pulls and runs, without being recreated" \
    eval 'wait_for "$WAIT_RUN" running "$ns" "$pod" && [ "$(uid_of "$ns" "$pod")" = "$uid" ]'
  running "$ns" "$pod" || diagnose "$ns" "$pod"
}

# A ServiceAccount the settings name besides `default`: born linked, and its pod pulls after
# the next pass (which links the same ones), without being recreated.
born_linked_builder() {
  local ns=born-b-$RANDOM
  namespace "$ns"
  k -n "$ns" create serviceaccount builder >/dev/null
  check "a new namespace's builder ServiceAccount is born listing $SECRET" \
    eval 'k -n "$ns" get sa builder -o jsonpath="{.imagePullSecrets[*].name}" | grep -qw "$SECRET"'
  born_pod_pulls_after_sync "$ns" build builder --service-account default,builder || return 0
  tool status -n "$ns" --service-account default,builder >"$LOGS/status-$ns.log" 2>"$LOGS/status-$ns.err" || true
  check "status says the policy links builder and default at creation, as sync does" \
    grep -q "it links at creation: builder, default (as sync does)" "$LOGS/status-$ns.log"
}

t1=$SECONDS
stuck_pods
born_linked
log "scenarios took $((SECONDS - t1))s"
[ "$FAILED" -eq 0 ]
