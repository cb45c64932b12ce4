#!/usr/bin/env bash
# End-to-end on a real Kubernetes v1.36.3 cluster (scripts/cluster.sh): the shipped manifests as a
# cluster runs them.
#
#   flock /tmp/ecr-refresh-node.lock bash scripts/clustertest.sh
#
# 1. The image: assembled from the static binary (scripts/build-static.sh) with exactly what the
#    Dockerfile's final stage holds (the binary, the CA bundle and the nonroot user of
#    distroless/static, USER, ENTRYPOINT, CMD), as an OCI layout; a check reads it back and
#    compares it with the Dockerfile, so the two cannot drift. It is imported into containerd.
# 2. deploy/ applied with `kubectl apply -k`, through a test-only overlay whose every change is
#    named in OVERLAY_CHANGES below; a check renders both and proves nothing else differs (not the
#    securityContext, the ServiceAccount, the RBAC or the args).
# 3. On the cluster: the CronJob fires on schedule; its pod runs the image as uid 65532 with a
#    read-only root filesystem, authenticates with its projected ServiceAccount token (the
#    apiserver's audit log names the pod) and exits 0; every namespace has the Secret and the
#    link; every pod-log line is one JSON object and one is the report; a namespace created
#    afterwards (its ServiceAccount made by the controller-manager) is covered by the next firing
#    and a Deployment there pulls the private image; a run that hangs (an ECR stand-in that never
#    answers) blocks the next firing (concurrencyPolicy Forbid) until activeDeadlineSeconds ends
#    it; the Job and pod history stays within the limits.
#
# Each check prints `ok - …` or `not ok - …`; the last line is `clustertest: N passed, M failed`.
# Stages build on each other: after a failed stage the remaining ones are reported as failed
# (not run), never skipped silently. Everything is removed on exit, also on failure or SIGTERM.
# Needs root and kubectl; installs the Debian packages it needs. Knobs: ECR_REFRESH_STATIC_BIN
# (a static binary to use instead of building one), ECR_REFRESH_CLUSTERTEST_HANG_PORT (32170), the
# ECR_REFRESH_CLUSTER_* ports of scripts/cluster.sh.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN=$ROOT/target/clustertest
export ECR_REFRESH_CLUSTER_RUN=$ROOT/target/cluster
HANG_PORT=${ECR_REFRESH_CLUSTERTEST_HANG_PORT:-32170}
APP_IMAGE=ecr-refresh.invalid/ecr-refresh:e2e
SECRET=awsecr-cred
SA_USER=system:serviceaccount:kube-system:ecr-refresh
JOBS_LABEL=app.kubernetes.io/name=ecr-refresh

log() { printf 'clustertest: %s\n' "$*" >&2; }
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
# stage NAME FUNCTION: runs a stage unless an earlier one failed (then it counts as failed).
stage() {
  if [ -n "$BROKEN" ]; then not_ok "$1: not run, an earlier stage failed"; return; fi
  log "stage: $1"
  REASON=""
  # A stage returns non-zero (with REASON) when it cannot go on; failed checks count themselves.
  "$2" || not_ok "$1: ${REASON:-failed}"
}
finish() {
  echo "clustertest: $PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}

k() { kubectl --kubeconfig "$ECR_REFRESH_CLUSTER_KUBECONFIG" --request-timeout=20s "$@"; }

cleanup() {
  local pid
  for pid in "$RUN"/*.pid; do
    [ -f "$pid" ] && { kill "$(cat "$pid")" 2>/dev/null; rm -f "$pid"; }
  done
  "$ROOT/scripts/cluster.sh" down
  rm -rf "$RUN"
}

# --- 1. the image ---------------------------------------------------------------------------------

# What the Dockerfile's base image gives the final stage, i.e. all the tool needs from it: the CA
# bundle, the nonroot user (65532, home /home/nonroot) and a writable /tmp. A new base image must
# be described here, or the drift check fails.
BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot
base_rootfs() { # dir
  local r=$1
  mkdir -p "$r/etc/ssl/certs" "$r/home/nonroot" "$r/tmp"
  install -m 0644 /etc/ssl/certs/ca-certificates.crt "$r/etc/ssl/certs/ca-certificates.crt"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$r/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'tty:x:5:' 'staff:x:50:' 'nonroot:x:65532:' >"$r/etc/group"
  chmod 0644 "$r/etc/passwd" "$r/etc/group"
  chown -R 0:0 "$r"
  chown 65532:65532 "$r/home/nonroot" && chmod 0700 "$r/home/nonroot"
  chmod 1777 "$r/tmp"
}
BASE_CONFIG='{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"],"WorkingDir":"/home/nonroot","User":"65532"}'

# The final stage's own instructions, reproduced: COPY --from=build /ecr-refresh /ecr-refresh,
# USER 65532:65532, ENTRYPOINT ["/ecr-refresh"], CMD ["sync"].
IMAGE_USER=65532:65532
build_image() {
  local r=$RUN/image-rootfs
  rm -rf "$r" && mkdir -p "$r"
  base_rootfs "$r"
  install -m 0755 -o 0 -g 0 "$STATIC_BIN" "$r/ecr-refresh"
  local cfg
  cfg=$(jq -c --arg user "$IMAGE_USER" '. + {User: $user, Entrypoint: ["/ecr-refresh"], Cmd: ["sync"]}' <<<"$BASE_CONFIG")
  oci_layout "$RUN/image" "$APP_IMAGE" "$r" "$cfg"
  rm -rf "$r"
}

# Reads the layout back (index -> manifest -> config and layer) and compares it with the
# Dockerfile's final stage and with deploy/cronjob.yaml's runAsUser.
image_matches_dockerfile() {
  python3 "$ROOT/scripts/py/clustertest_image_matches_dockerfile.py" "$ROOT/Dockerfile" "$RUN/image" "$STATIC_BIN" "$BASE_IMAGE" "$BASE_CONFIG" "$ROOT/deploy/cronjob.yaml"
}

stage_image() {
  build_image || { REASON="could not assemble the image"; return 1; }
  check "image: assembled from the static binary matches the Dockerfile's final stage (files, owners, USER, ENTRYPOINT, CMD) and runAsUser" \
    image_matches_dockerfile
}

# --- 2. deploy/ through the test-only overlay -------------------------------------------------------

# Every change the overlay makes, by name: what a loopback test cluster needs, nothing else.
OVERLAY_CHANGES=(
  "image: $APP_IMAGE (imported into containerd, not pulled)"
  "hostNetwork: true (no pod network routes to the loopback apiserver)"
  "env KUBERNETES_SERVICE_HOST/PORT: the loopback apiserver (no kube-proxy)"
  "env AWS_ENDPOINT_URL: the ECR stand-in (moto)"
  "env AWS_REGION: us-west-2, the region of the stand-in's registry host"
  "schedule: every minute"
)
write_overlay() {
  local o=$RUN/overlay
  mkdir -p "$o"
  cat >"$o/kustomization.yaml" <<YAML
# Test-only overlay (scripts/clustertest.sh), one change per OVERLAY_CHANGES entry.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(realpath --relative-to="$o" "$ROOT/deploy")
images:
  - name: ghcr.io/ecr-refresh/ecr-refresh
    newName: ${APP_IMAGE%:*}
    newTag: ${APP_IMAGE##*:}
patches:
  - path: loopback.yaml
YAML
  cat >"$o/loopback.yaml" <<YAML
apiVersion: batch/v1
kind: CronJob
metadata:
  name: ecr-refresh
  namespace: kube-system
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        spec:
          hostNetwork: true
          containers:
            - name: ecr-refresh
              env:
                - {name: KUBERNETES_SERVICE_HOST, value: "$ECR_REFRESH_CLUSTER_APISERVER_HOST"}
                - {name: KUBERNETES_SERVICE_PORT, value: "$ECR_REFRESH_CLUSTER_APISERVER_PORT"}
                - {name: AWS_ENDPOINT_URL, value: "$ECR_REFRESH_CLUSTER_ECR_ENDPOINT"}
                - {name: AWS_REGION, value: "$ECR_REFRESH_CLUSTER_REGION"}
YAML
}

# Renders deploy/ and the overlay; undoing exactly the named changes must give deploy/ back.
overlay_changes_only_the_named_fields() {
  kubectl kustomize "$ROOT/deploy" >"$RUN/base.yaml" && kubectl kustomize "$RUN/overlay" >"$RUN/overlay.yaml" || return 1
  python3 "$ROOT/scripts/py/clustertest_overlay_changes_only_the_named_fields.py" "$RUN/base.yaml" "$RUN/overlay.yaml" "$APP_IMAGE"
}

stage_apply() {
  write_overlay
  log "overlay changes: $(printf '%s; ' "${OVERLAY_CHANGES[@]}")"
  check "overlay changes only: $(printf '%s; ' "${OVERLAY_CHANGES[@]}")" overlay_changes_only_the_named_fields
  # README quick start step 2: the AWS keys the CronJob reads (moto takes any).
  k -n kube-system create secret generic ecr-refresh-aws \
    --from-literal=AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE --from-literal=AWS_SECRET_ACCESS_KEY=test-secret-key >/dev/null ||
    { REASON="could not create Secret ecr-refresh-aws"; return 1; }
  k create namespace e2e-a >/dev/null || { REASON="could not create namespace e2e-a"; return 1; }
  APPLIED_AT=$(date -u +%s)
  check "kubectl apply -k (deploy/ through the overlay)" k apply -k "$RUN/overlay"
}

# --- 3. on the cluster ------------------------------------------------------------------------------

jobs_json() { k -n kube-system get jobs -l "$JOBS_LABEL" -o json; }
# The Jobs the CronJob made, oldest first: name, scheduled time (epoch), creation (epoch).
cron_jobs() {
  jobs_json | jq -r '.items[] | select(.metadata.ownerReferences[0].kind == "CronJob")
    | [.metadata.name, (.metadata.annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"] | fromdateiso8601),
       (.metadata.creationTimestamp | fromdateiso8601)] | @tsv' | sort -k2n
}
job_state() { # job -> Complete | Failed:<reason> | active
  k -n kube-system get job "$1" -o json 2>/dev/null | jq -r '
    ([.status.conditions[]? | select(.status == "True" and (.type == "Complete" or .type == "Failed"))] | first) as $c
    | if $c == null then "active" elif $c.type == "Complete" then "Complete" else "Failed:\($c.reason)" end'
}
# wait_new_job AFTER SECONDS: the first CronJob Job scheduled after epoch AFTER; sets JOB.
wait_new_job() {
  local end=$((SECONDS + $2)) line
  while [ $SECONDS -lt $end ]; do
    line=$(cron_jobs | awk -v t="$1" '$2 > t' | head -n 1)
    if [ -n "$line" ]; then read -r JOB JOB_SCHEDULED JOB_CREATED <<<"$line"; return 0; fi
    sleep 2
  done
  return 1
}
wait_done() { # job seconds
  local end=$((SECONDS + $2)) s
  while [ $SECONDS -lt $end ]; do
    s=$(job_state "$1"); [ "$s" != active ] && [ -n "$s" ] && { JOB_STATE=$s; return 0; }
    sleep 2
  done
  JOB_STATE=$(job_state "$1")
  return 1
}
is_complete() { echo "Job state: $JOB_STATE"; [ "$JOB_STATE" = Complete ]; }
job_pod() { k -n kube-system get pods -l "job-name=$1" -o json | jq -r '.items | sort_by(.metadata.creationTimestamp) | last | .metadata.name // empty'; }

fires_on_schedule() {
  local now; now=$(date -u +%s)
  echo "job $JOB scheduled $(date -u -d "@$JOB_SCHEDULED" +%T), created $(date -u -d "@$JOB_CREATED" +%T), applied $(date -u -d "@$APPLIED_AT" +%T)"
  [ $((JOB_SCHEDULED % 60)) -eq 0 ] && [ "$JOB_SCHEDULED" -ge $((APPLIED_AT - 1)) ] &&
    [ "$JOB_SCHEDULED" -le $((APPLIED_AT + 60)) ] && [ $((JOB_CREATED - JOB_SCHEDULED)) -le 10 ] && [ "$now" -ge "$JOB_SCHEDULED" ]
}

# The container as containerd runs it: user, read-only root, privileges.
container_is_locked_down() { # pod
  local id spec
  id=$(k -n kube-system get pod "$1" -o jsonpath='{.status.containerStatuses[0].containerID}')
  spec=$(ctr -a "$ECR_REFRESH_CLUSTER_CONTAINERD_SOCK" -n k8s.io containers info "${id#containerd://}") || return 1
  jq -e '.Spec.process.user.uid == 65532 and .Spec.process.user.gid == 65532 and .Spec.root.readonly == true
    and .Spec.process.noNewPrivileges == true and ((.Spec.process.capabilities.bounding // []) | length) == 0' <<<"$spec" ||
    { jq -c '{user: .Spec.process.user, root: .Spec.root, nnp: .Spec.process.noNewPrivileges, caps: .Spec.process.capabilities}' <<<"$spec"; return 1; }
}

pod_ran_image_and_exited_0() { # pod
  k -n kube-system get pod "$1" -o json | jq -e --arg img "$APP_IMAGE" '
    .spec.containers[0].image == $img and .status.containerStatuses[0].image == $img
    and .status.containerStatuses[0].state.terminated.exitCode == 0 and .status.phase == "Succeeded"' >/dev/null ||
    { k -n kube-system get pod "$1" -o json | jq -c '{image: .spec.containers[0].image, phase: .status.phase,
        state: .status.containerStatuses[0].state}'; return 1; }
}

# The projected token is mounted, and the apiserver saw the writes made with it: the audit log
# names this ServiceAccount and, from the bound token's claims, this pod.
authenticated_with_projected_token() { # pod
  k -n kube-system get pod "$1" -o json | jq -e '
    (.spec.volumes[] | select(.projected.sources[]?.serviceAccountToken) | .name) as $v
    | .spec.containers[0].volumeMounts[] | select(.name == $v and .mountPath == "/var/run/secrets/kubernetes.io/serviceaccount")' >/dev/null ||
    { echo "no projected ServiceAccount token mounted"; return 1; }
  local n
  n=$(jq -s --arg u "$SA_USER" --arg pod "$1" '[.[] | select(.user.username == $u
      and (.user.extra["authentication.kubernetes.io/pod-name"] // []) == [$pod]
      and .objectRef.resource == "secrets" and .verb == "patch" and .responseStatus.code < 300)] | length' "$AUDIT_LOG")
  echo "$n Secret writes by $SA_USER with the token bound to pod $1"
  [ "$n" -ge 1 ]
}

# Every namespace that exists (and is not terminating) has our Secret and the link.
every_namespace_synced() {
  local ns bad=0 t
  for ns in $(k get namespaces -o json | jq -r '.items[] | select(.status.phase == "Active") | .metadata.name'); do
    t=$(k -n "$ns" get secret "$SECRET" -o json 2>/dev/null | jq -r --arg h "${ECR_REFRESH_CLUSTER_IMAGE%%/*}" \
      'select(.type == "kubernetes.io/dockerconfigjson") | .data[".dockerconfigjson"] | @base64d | fromjson | .auths | has($h)')
    if [ "$t" != true ]; then echo "$ns: no Secret $SECRET for the registry"; bad=1; fi
    if ! k -n "$ns" get serviceaccount default -o json | jq -e --arg s "$SECRET" '[.imagePullSecrets[]?.name] | index($s)' >/dev/null; then
      echo "$ns: ServiceAccount default does not list $SECRET"; bad=1
    fi
  done
  [ "$bad" = 0 ]
}

# Every line of the pod's log is one JSON object, and the report ends it.
log_is_json_lines() { # log file, expected exit code ("nonzero" for any failure)
  python3 "$ROOT/scripts/py/clustertest_log_is_json_lines.py" "$1" "$2"
}

stage_first_firing() {
  wait_new_job $((APPLIED_AT - 61)) 100 || { REASON="no Job within 100 s of the apply"; return 1; }
  FIRST_SCHEDULED=$JOB_SCHEDULED
  check "the CronJob fired at the next whole minute (Job created within 10 s of it)" fires_on_schedule
  wait_done "$JOB" 90 || { REASON="Job $JOB did not finish in 90 s ($JOB_STATE)"; return 1; }
  local pod; pod=$(job_pod "$JOB")
  k -n kube-system logs "$pod" >"$RUN/first.log" 2>&1
  check "Job $JOB completed" is_complete
  check "its pod ran $APP_IMAGE and exited 0" pod_ran_image_and_exited_0 "$pod"
  check "its container ran as uid/gid 65532, read-only root filesystem, no privilege escalation, no capabilities" \
    container_is_locked_down "$pod"
  check "it authenticated in-cluster with its projected ServiceAccount token ($SA_USER, bound to the pod)" \
    authenticated_with_projected_token "$pod"
  check "every namespace has Secret $SECRET for ${ECR_REFRESH_CLUSTER_IMAGE%%/*} and default lists it" every_namespace_synced
  check "every line of its pod log is one JSON object, and the report ends it (exit_code 0)" log_is_json_lines "$RUN/first.log" 0
}

late_namespace_covered() {
  local t; t=$(k -n "$LATE" get secret "$SECRET" -o jsonpath='{.type}' 2>&1)
  [ "$t" = kubernetes.io/dockerconfigjson ] || { echo "Secret: $t"; return 1; }
  k -n "$LATE" get serviceaccount default -o json | jq -e --arg s "$SECRET" '[.imagePullSecrets[]?.name] | index($s)' >/dev/null ||
    { echo "default does not list $SECRET"; return 1; }
  # A report line, wherever it is (stdout and stderr reach the log through separate pipes), of
  # any of the firing's attempts.
  jq -e --arg ns "$LATE" 'select(.type? == "report") | .namespaces[] | select(.name == $ns and .outcome == "created")' "$RUN/second.log" >/dev/null ||
    { echo "the report does not list $LATE as created: $(jq -c --arg ns "$LATE" 'select(.type? == "report") | [.namespaces[]? | select(.name == $ns)], .summary' "$RUN/second.log" 2>&1 | head -c 600)"; return 1; }
}

deployment_pulls() {
  k -n "$LATE" create deployment app --image="$ECR_REFRESH_CLUSTER_IMAGE" -- /bin/busybox sleep 3600 >/dev/null || return 1
  k -n "$LATE" rollout status deployment/app --timeout=90s || { k -n "$LATE" get events -o custom-columns=R:.reason,M:.message | tail -n 5; return 1; }
  k -n "$LATE" get pods -l app=app -o json | jq -e --arg s "$SECRET" '.items[0].spec.imagePullSecrets == [{name: $s}]' >/dev/null ||
    { echo "the pod did not get imagePullSecrets [$SECRET]"; return 1; }
  grep -qE '"(HEAD|GET) /v2/team/app/manifests/1 HTTP/1.1" 200 .*"containerd/' "$ECR_REFRESH_CLUSTER_RUN/logs/registry.log" ||
    { echo "the registry log shows no authorized manifest fetch by containerd"; return 1; }
}

stage_late_namespace() {
  LATE=e2e-late-$(head -c 3 /dev/urandom | od -An -tx1 | tr -d ' \n')
  k create namespace "$LATE" >/dev/null || { REASON="could not create $LATE"; return 1; }
  # The test never creates the ServiceAccount: the controller-manager does.
  check "the controller-manager made ServiceAccount $LATE/default" wait_for 30 k -n "$LATE" get serviceaccount default
  local created; created=$(date -u +%s)
  wait_new_job "$FIRST_SCHEDULED" 90 || { REASON="no second firing within 90 s"; return 1; }
  check "the next firing is one minute after the first" test "$JOB_SCHEDULED" -eq $((FIRST_SCHEDULED + 60))
  SECOND_SCHEDULED=$JOB_SCHEDULED
  wait_done "$JOB" 90 && [ "$JOB_STATE" = Complete ] || { REASON="Job $JOB: $JOB_STATE"; return 1; }
  # Every attempt's log: under load the Job may have retried, and the attempt that created the
  # Secret need not be the last one.
  local p
  : >"$RUN/second.log"
  for p in $(k -n kube-system get pods -l "job-name=$JOB" -o jsonpath='{.items[*].metadata.name}'); do
    k -n kube-system logs "$p" >>"$RUN/second.log" 2>&1
  done
  check "namespace $LATE, created after the first run ($(date -u -d "@$created" +%T)), is covered by the next firing" late_namespace_covered
  check "a Deployment in $LATE pulls the private image from the registry stand-in" deployment_pulls
}

# An ECR stand-in that accepts connections and never answers.
start_hang() {
  python3 -c 'import socket, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", '"$HANG_PORT"')); s.listen(64); held = []
while True: held.append(s.accept()[0])' >/dev/null 2>&1 &
  echo $! >"$RUN/hang.pid"
}

cronjob_env_patch() { # op for AWS_ENDPOINT_URL value, request timeout env op, deadline
  k -n kube-system get cronjob ecr-refresh -o json | jq --arg url "$1" --arg rt "$2" --argjson dl "$3" '
    .spec.jobTemplate.spec.activeDeadlineSeconds = $dl
    | .spec.jobTemplate.spec.template.spec.containers[0].env |= (
        map(select(.name != "ECR_REFRESH_REQUEST_TIMEOUT"))
        | map(if .name == "AWS_ENDPOINT_URL" then .value = $url else . end)
        + (if $rt == "" then [] else [{name: "ECR_REFRESH_REQUEST_TIMEOUT", value: $rt}] end))' |
    k replace -f - >/dev/null
}

stage_forbid() {
  start_hang
  # Named changes for this stage only: ECR never answers, each request may wait 2 minutes
  # (env, not args; under the run's --timeout 3m), and activeDeadlineSeconds 80 instead of the manifest's 270 so the test does not wait 4.5 min.
  cronjob_env_patch "http://127.0.0.1:$HANG_PORT" 2m 80 || { REASON="could not patch the CronJob"; return 1; }
  wait_new_job "$SECOND_SCHEDULED" 90 || { REASON="no firing after the patch"; return 1; }
  local hung=$JOB hung_scheduled=$JOB_SCHEDULED pod
  for _ in $(seq 1 30); do pod=$(job_pod "$hung"); [ -n "$pod" ] && [ "$(k -n kube-system get pod "$pod" -o jsonpath='{.status.phase}')" = Running ] && break; sleep 1; done
  # Its log, streamed while it runs: the Job controller deletes the pod at the deadline.
  # (No --request-timeout: it would cut the stream.)
  kubectl --kubeconfig "$ECR_REFRESH_CLUSTER_KUBECONFIG" -n kube-system logs -f "$pod" >"$RUN/hung.log" 2>&1 &
  echo $! >"$RUN/logs-f.pid"
  # Later firings find the endpoint good again.
  cronjob_env_patch "$ECR_REFRESH_CLUSTER_ECR_ENDPOINT" "" 270 || { REASON="could not restore the CronJob"; return 1; }
  local end=$((SECONDS + 150))
  while [ "$(job_state "$hung")" = active ] && [ $SECONDS -lt $end ]; do sleep 2; done
  # When it ended, by the server's clock (its Failed condition), and every other CronJob Job
  # created before that: judged afterwards from the server's timestamps, so the firing that
  # Forbid held back, created the moment the hung Job ended, is not mistaken for one beside it.
  local ended others
  ended=$(k -n kube-system get job "$hung" -o json | jq -r '[.status.conditions[]? | select(.type == "Failed" and .status == "True")
    | .lastTransitionTime | fromdateiso8601] | first // 0')
  others=$(cron_jobs | awk -v t="$hung_scheduled" -v e="$ended" '$2 > t && $3 < e { printf "%s ", $1 }')
  check "Job $hung (ECR never answers) was ended by activeDeadlineSeconds (Failed:DeadlineExceeded)" \
    test "$(job_state "$hung")" = Failed:DeadlineExceeded
  forbid_held() { echo "it ended $(date -u -d "@$ended" +%T); other Jobs created before that: ${others:-none}"; [ -z "$others" ] && [ "$ended" -gt $((hung_scheduled + 60)) ]; }
  check "while it ran past the next minute ($(date -u -d "@$((hung_scheduled + 60))" +%T)), no other Job started (concurrencyPolicy Forbid)" forbid_held
  wait_for 40 test ! -e "/proc/$(cat "$RUN/logs-f.pid")"
  check "its pod log, cut by SIGTERM, is all JSON lines and ends with the report (exit_code != 0)" log_is_json_lines "$RUN/hung.log" nonzero
  wait_new_job "$hung_scheduled" 60 || { REASON="no firing after the hung Job ended"; return 1; }
  check "the blocked firing ($(date -u -d "@$((hung_scheduled + 60))" +%T)) ran only after the hung Job ended" \
    test "$JOB_SCHEDULED" -eq $((hung_scheduled + 60)) -a "$JOB_CREATED" -ge $((ended - 3))
  wait_done "$JOB" 90
  check "and completed with the endpoint restored" is_complete
}

history_within_limits() {
  local limits succeeded failed orphans
  limits=$(k -n kube-system get cronjob ecr-refresh -o jsonpath='{.spec.successfulJobsHistoryLimit} {.spec.failedJobsHistoryLimit}')
  read -r max_ok max_failed <<<"$limits"
  succeeded=$(jobs_json | jq '[.items[] | select(.status.succeeded > 0)] | length')
  failed=$(jobs_json | jq '[.items[] | select(any(.status.conditions[]?; .type == "Failed" and .status == "True"))] | length')
  # Pods of Jobs the CronJob deleted are garbage-collected with them.
  orphans=$(k -n kube-system get pods -l "$JOBS_LABEL" -o json | jq -r --argjson jobs "$(jobs_json | jq '[.items[].metadata.name]')" \
    '[.items[] | select((.metadata.labels["job-name"]) as $j | $jobs | index($j) | not) | .metadata.name] | join(" ")')
  echo "succeeded Jobs $succeeded (limit $max_ok), failed $failed (limit $max_failed), pods of deleted Jobs: [${orphans}]"
  [ "$succeeded" -le "$max_ok" ] && [ "$failed" -le "$max_failed" ] && [ -z "$orphans" ]
}

stage_history() {
  # Three successful runs and one failed one have happened; the CronJob keeps only its limits.
  if wait_for 40 history_within_limits; then ok "Job and pod history within successfulJobsHistoryLimit and failedJobsHistoryLimit, no orphaned pods"
  else not_ok "Job and pod history within the limits: $(history_within_limits)"; fi
}

# ------------------------------------------------------------------------------------------------

main() {
  local t0=$SECONDS
  [ "$(id -u)" = 0 ] || { echo "clustertest: needs root" >&2; exit 1; }
  apt_install python3 python3-yaml jq curl || { echo "clustertest: could not install python3-yaml, jq" >&2; exit 1; }
  # shellcheck source=scripts/node.sh
  source "$ROOT/scripts/node.sh"
  STATIC_BIN=${ECR_REFRESH_STATIC_BIN:-$("$ROOT/scripts/build-static.sh" x86_64 | tail -n 1)}
  [ -x "$STATIC_BIN" ] || { echo "clustertest: no static binary" >&2; exit 1; }
  cleanup
  trap 'cleanup' EXIT
  trap 'exit 130' INT TERM
  mkdir -p "$RUN"
  AUDIT_LOG=$RUN/audit.log
  cat >"$RUN/audit-policy.yaml" <<YAML
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    users: ["$SA_USER"]
  - level: None
YAML
  stage "image" stage_image
  ECR_REFRESH_CLUSTER_APISERVER_ARGS="--audit-policy-file=$RUN/audit-policy.yaml --audit-log-path=$AUDIT_LOG" \
    "$ROOT/scripts/cluster.sh" up || { not_ok "scripts/cluster.sh up"; finish; return; }
  # shellcheck source=/dev/null
  source "$ECR_REFRESH_CLUSTER_RUN/env.sh"
  SOCK=$ECR_REFRESH_CLUSTER_CONTAINERD_SOCK
  import_image "$RUN/image" || { not_ok "ctr images import $APP_IMAGE"; finish; return; }
  local t1=$SECONDS
  stage "apply" stage_apply
  stage "first firing" stage_first_firing
  stage "a namespace created afterwards" stage_late_namespace
  stage "a hung run" stage_forbid
  stage "history" stage_history
  log "took $((SECONDS - t0))s ($((t1 - t0))s image and bring-up, $((SECONDS - t1))s on the cluster)"
  finish
}

# Sourced (scripts/helmtest.sh cluster reuses the image and Job helpers): define only.
[ "${BASH_SOURCE[0]}" != "$0" ] || main "$@"
