#!/usr/bin/env bash
# End-to-end check of `sync --pushgateway` and deploy/alerts.yaml: promtool's unit tests of the
# rules, then Debian's prometheus-pushgateway and prometheus started here on loopback (private
# ports and data dirs; Prometheus scrapes the gateway and evaluates alerts.yaml), and real runs of
# the tool against the test apiserver (scripts/testenv.sh start must have run first): a good run,
# a run without an ECR token (exit 3), a run with a failed namespace (exit 1), a run that cannot
# reach the cluster (exit 4), a run stopped by SIGTERM and a run whose push
# fails. Asserts on what Prometheus's HTTP API returns for the metrics and the alerts.
#
#   scripts/metricstest.sh
#
# Prints `ok - NAME` or `not ok - NAME: REASON` per check, and last `metricstest: N passed, M
# failed`; exits 1 if any failed. Installs prometheus, prometheus-pushgateway, python3-yaml, jq
# and curl if missing (without starting their system services).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=${ECR_REFRESH_TESTENV_RUN:-$ROOT/target/testenv}
PGW_PORT=${ECR_REFRESH_METRICSTEST_PUSHGATEWAY_PORT:-29091}
PROM_PORT=${ECR_REFRESH_METRICSTEST_PROMETHEUS_PORT:-29090}
BIN=${ECR_REFRESH_BIN:-$ROOT/target/debug/ecr-refresh}
KUBECTL=${KUBECTL:-kubectl}
INSTANCE="metricstest-$$-$RANDOM"
PGW="http://127.0.0.1:$PGW_PORT"
PROM="http://127.0.0.1:$PROM_PORT"

log() { printf 'metricstest: %s\n' "$*" >&2; }
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

WORK=$(mktemp -d /tmp/ecr-refresh-metricstest.XXXXXX)
PIDS=()
CREATED_NAMESPACES=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  done
  if [ ${#CREATED_NAMESPACES[@]} -gt 0 ]; then
    kadm delete namespace --wait=false "${CREATED_NAMESPACES[@]}" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT


kadm() { "$KUBECTL" --kubeconfig "$ECR_REFRESH_TEST_KUBECONFIG" "$@"; }

# Runs the binary with a clean environment; output in $WORK/NAME.out and .err, exit code in RC.
run_tool() { # name ecr-endpoint args...
  local name=$1 endpoint=$2
  shift 2
  env -i PATH=/usr/bin:/bin HOME="$WORK" KUBECONFIG="${TOOL_KUBECONFIG:-$ECR_REFRESH_TEST_KUBECONFIG}" \
    AWS_ENDPOINT_URL="$endpoint" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
    AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
    "$BIN" sync --request-timeout 3s --timeout 30s "$@" >"$WORK/$name.out" 2>"$WORK/$name.err"
  RC=$?
}

# One value of an instant query, or "none".
query() { # promql
  curl -sf -G "$PROM/api/v1/query" --data-urlencode "query=$1" |
    jq -r 'if .data.result | length == 1 then .data.result[0].value[1] else "none" end'
}

# Waits until `query PROMQL` prints WANT (Prometheus scrapes every second); sets GOT.
wait_value() { # promql want
  for _ in $(seq 1 60); do
    GOT=$(query "$1")
    [ "$GOT" = "$2" ] && return 0
    sleep 0.5
  done
  return 1
}

# The state of alert NAME for our instance: firing, pending or inactive.
alert_state() { # name
  curl -sf "$PROM/api/v1/alerts" |
    jq -r --arg a "$1" --arg i "$INSTANCE" \
      '[.data.alerts[] | select(.labels.alertname == $a and .labels.instance == $i) | .state] | first // "inactive"'
}

# Waits until every NAME=STATE holds at once (rules are evaluated every second); sets REASON.
wait_alerts() { # NAME=STATE...
  local pair ok
  for _ in $(seq 1 40); do
    ok=1
    for pair in "$@"; do
      [ "$(alert_state "${pair%=*}")" = "${pair#*=}" ] || { ok=""; break; }
    done
    [ -n "$ok" ] && return 0
    sleep 0.5
  done
  REASON="alerts:"
  for pair in "$@"; do REASON+=" ${pair%=*}=$(alert_state "${pair%=*}") (want ${pair#*=})"; done
  return 1
}

new_namespace() { # prefix; sets NEW_NS
  NEW_NS="metrics-$1-$(date +%s)-$$-$RANDOM"
  kadm create namespace "$NEW_NS" >/dev/null || return 1
  CREATED_NAMESPACES+=("$NEW_NS")
  kadm -n "$NEW_NS" create serviceaccount default >/dev/null
}

# ---------------------------------------------------------------------------------------------
# Checks: each returns 0, or 1 with REASON set.

check_rules_valid() {
  local out
  out=$(promtool check rules "$ROOT/deploy/alerts.yaml" 2>&1) || { REASON=$out; return 1; }
}

check_rules_unit_tests() {
  local out
  out=$(promtool test rules "$ROOT/tests/alerts/alerts_test.yaml" 2>&1) || { printf '%s\n' "$out" >&2; REASON="promtool test rules failed (output above)"; return 1; }
}

check_prometheusrule_same_rules() {
  local out
  out=$(python3 "$ROOT/scripts/py/metricstest_check_prometheusrule_same_rules.py" "$ROOT/deploy/alerts.yaml" "$ROOT/deploy/prometheusrule.yaml" 2>&1
  ) || { REASON=$out; return 1; }
}

start_servers() {
  mkdir -p "$WORK/prom-data"
  cp "$ROOT/deploy/alerts.yaml" "$WORK/alerts.yaml"
  cat >"$WORK/prometheus.yml" <<YML
global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files: [alerts.yaml]
scrape_configs:
  - job_name: pushgateway
    # Keep the job and instance labels the tool pushed, as the README says to.
    honor_labels: true
    static_configs:
      - targets: ["127.0.0.1:$PGW_PORT"]
YML
  # Debian's build persists to /var/lib/prometheus by default, shared by every run on the
  # machine: keep this run's groups to itself.
  prometheus-pushgateway --web.listen-address="127.0.0.1:$PGW_PORT" \
    --persistence.file="$WORK/pushgateway.data" >"$WORK/pushgateway.log" 2>&1 &
  PIDS+=($!)
  prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/prom-data" \
    --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
  PIDS+=($!)
  local _
  for _ in $(seq 1 100); do
    curl -sf "$PGW/-/ready" >/dev/null && curl -sf "$PROM/-/ready" >/dev/null && return 0
    sleep 0.2
  done
  tail -n 5 "$WORK/pushgateway.log" "$WORK/prometheus.log" >&2
  return 1
}

check_servers() {
  [ -f "$RUN_DIR/env.sh" ] || { REASON="test servers not started ($RUN_DIR/env.sh missing): run scripts/testenv.sh start"; return 1; }
  # shellcheck source=/dev/null
  . "$RUN_DIR/env.sh"
  [ -x "$BIN" ] || { REASON="$BIN not built (cargo build)"; return 1; }
  start_servers || { REASON="pushgateway or prometheus did not become ready"; return 1; }
  local loaded
  loaded=$(curl -sf "$PROM/api/v1/rules" | jq -r '[.data.groups[].rules[].name] | sort | join(",")')
  [ "$loaded" = "EcrRefreshLastRunFailed,EcrRefreshNamespacesFailed,EcrRefreshNoRecentSuccess,EcrRefreshTokenExpiresSoon" ] ||
    { REASON="Prometheus loaded rules: ${loaded:-none}"; return 1; }
}

SUCCESS_TS=""
check_good_run() {
  local ns1 ns2 sel
  new_namespace a || { REASON="cannot create a namespace"; return 1; }
  ns1=$NEW_NS
  new_namespace b || { REASON="cannot create a namespace"; return 1; }
  ns2=$NEW_NS
  run_tool good "$ECR_REFRESH_TEST_ECR_ENDPOINT" -n "$ns1,$ns2" --pushgateway "$PGW" --pushgateway-instance "$INSTANCE"
  [ "$RC" = 0 ] || { tail -n 5 "$WORK/good.err" >&2; REASON="sync exited $RC, expected 0"; return 1; }
  sel="{job=\"ecr-refresh\",instance=\"$INSTANCE\"}"
  wait_value "ecr_refresh_last_run_exit_code$sel" 0 || { REASON="exit code metric: $GOT"; return 1; }
  wait_value "ecr_refresh_last_run_namespaces{instance=\"$INSTANCE\",outcome=\"created\"}" 2 ||
    { REASON="created namespaces: $GOT, expected 2"; return 1; }
  wait_value "ecr_refresh_last_run_namespaces{instance=\"$INSTANCE\",outcome=\"failed\"}" 0 ||
    { REASON="failed namespaces: $GOT, expected 0"; return 1; }
  wait_value "ecr_refresh_last_run_ecr_calls$sel" 1 || { REASON="ecr_calls: $GOT, expected 1"; return 1; }
  # moto's token expires 2015-01-01T00:00:00Z.
  wait_value "ecr_refresh_token_expiry_timestamp_seconds$sel" 1420070400 ||
    { REASON="token expiry: $GOT, expected 1420070400"; return 1; }
  local requests
  requests=$(query "ecr_refresh_last_run_api_requests$sel")
  [ "$requests" != none ] && [ "$requests" -ge 5 ] || { REASON="api_requests: $requests"; return 1; }
  [ "$(query "ecr_refresh_last_run_api_retries$sel")" = 0 ] || { REASON="api_retries not 0"; return 1; }
  SUCCESS_TS=$(query "ecr_refresh_last_success_timestamp_seconds$sel")
  local now; now=$(date +%s)
  [ "$SUCCESS_TS" != none ] && [ $((now - ${SUCCESS_TS%.*})) -lt 60 ] ||
    { REASON="last success timestamp: $SUCCESS_TS (now $now)"; return 1; }
  # That token is long expired, so that alert fires; nothing else does.
  wait_alerts EcrRefreshTokenExpiresSoon=firing EcrRefreshLastRunFailed=inactive \
    EcrRefreshNamespacesFailed=inactive EcrRefreshNoRecentSuccess=inactive
}

check_no_token_run() {
  [ -n "$SUCCESS_TS" ] || { REASON="no good run before"; return 1; }
  local ns sel="{job=\"ecr-refresh\",instance=\"$INSTANCE\"}"
  new_namespace c || { REASON="cannot create a namespace"; return 1; }
  ns=$NEW_NS
  sleep 1.1 # a later run must have a later timestamp
  # ECR at a closed port: no token, exit 3.
  run_tool notoken "http://127.0.0.1:9" -n "$ns" --pushgateway "$PGW" --pushgateway-instance "$INSTANCE"
  [ "$RC" = 3 ] || { tail -n 5 "$WORK/notoken.err" >&2; REASON="sync exited $RC, expected 3"; return 1; }
  wait_value "ecr_refresh_last_run_exit_code$sel" 3 || { REASON="exit code metric: $GOT, expected 3"; return 1; }
  [ "$(query "ecr_refresh_last_success_timestamp_seconds$sel")" = "$SUCCESS_TS" ] ||
    { REASON="the failed run changed the last success timestamp"; return 1; }
  # The run fetched no token: the expiry of the token last written stays.
  [ "$(query "ecr_refresh_token_expiry_timestamp_seconds$sel")" = 1420070400 ] ||
    { REASON="token expiry changed"; return 1; }
  wait_alerts EcrRefreshLastRunFailed=firing EcrRefreshNoRecentSuccess=inactive
}

check_failed_namespace_run() {
  local ns sel="{job=\"ecr-refresh\",instance=\"$INSTANCE\"}"
  new_namespace d || { REASON="cannot create a namespace"; return 1; }
  ns=$NEW_NS
  # A namespace that does not exist fails; the other one is unchanged (written before).
  run_tool failedns "$ECR_REFRESH_TEST_ECR_ENDPOINT" -n "$ns,$ns-missing" --pushgateway "$PGW" --pushgateway-instance "$INSTANCE"
  [ "$RC" = 1 ] || { tail -n 5 "$WORK/failedns.err" >&2; REASON="sync exited $RC, expected 1"; return 1; }
  wait_value "ecr_refresh_last_run_exit_code$sel" 1 || { REASON="exit code metric: $GOT, expected 1"; return 1; }
  wait_value "ecr_refresh_last_run_namespaces{instance=\"$INSTANCE\",outcome=\"failed\"}" 1 ||
    { REASON="failed namespaces: $GOT, expected 1"; return 1; }
  wait_value "ecr_refresh_last_run_namespaces{instance=\"$INSTANCE\",outcome=\"created\"}" 1 ||
    { REASON="created namespaces: $GOT, expected 1"; return 1; }
  [ "$(query "ecr_refresh_last_success_timestamp_seconds$sel")" = "$SUCCESS_TS" ] ||
    { REASON="the failed run changed the last success timestamp"; return 1; }
  wait_alerts EcrRefreshNamespacesFailed=firing EcrRefreshLastRunFailed=firing
}

check_cluster_unreachable_run() {
  local sel="{job=\"ecr-refresh\",instance=\"$INSTANCE\"}"
  # The same kubeconfig, its server moved to a closed port: exit 4, and the run still pushes.
  sed 's#server: .*#server: https://127.0.0.1:9#' "$ECR_REFRESH_TEST_KUBECONFIG" >"$WORK/closed.kubeconfig"
  TOOL_KUBECONFIG=$WORK/closed.kubeconfig run_tool nocluster "$ECR_REFRESH_TEST_ECR_ENDPOINT" -n whatever \
    --pushgateway "$PGW" --pushgateway-instance "$INSTANCE"
  [ "$RC" = 4 ] || { tail -n 5 "$WORK/nocluster.err" >&2; REASON="sync exited $RC, expected 4"; return 1; }
  wait_value "ecr_refresh_last_run_exit_code$sel" 4 || { REASON="exit code metric: $GOT, expected 4"; return 1; }
  [ "$(query "ecr_refresh_last_success_timestamp_seconds$sel")" = "$SUCCESS_TS" ] ||
    { REASON="the failed run changed the last success timestamp"; return 1; }
  wait_alerts EcrRefreshLastRunFailed=firing
}

check_interrupted_run() {
  local ns pid sel="{job=\"ecr-refresh\",instance=\"$INSTANCE\"}"
  new_namespace i || { REASON="cannot create a namespace"; return 1; }
  ns=$NEW_NS
  # Without its `default` ServiceAccount the run waits for one until SIGTERM stops it (what a
  # CronJob's activeDeadlineSeconds sends).
  kadm -n "$ns" delete serviceaccount default >/dev/null || { REASON="cannot delete the ServiceAccount"; return 1; }
  (
    run_tool interrupted "$ECR_REFRESH_TEST_ECR_ENDPOINT" -n "$ns" --service-account-wait 60s \
      --pushgateway "$PGW" --pushgateway-instance "$INSTANCE"
    exit "$RC"
  ) &
  pid=$!
  sleep 3
  pkill -TERM -f -- "--pushgateway-instance $INSTANCE" || { REASON="the run was not running after 3s"; return 1; }
  wait "$pid"
  RC=$?
  [ "$RC" = 1 ] || { tail -n 5 "$WORK/interrupted.err" >&2; REASON="sync exited $RC after SIGTERM, expected 1"; return 1; }
  grep -q "SIGTERM" "$WORK/interrupted.err" || { REASON="the run did not say it was stopped by SIGTERM"; return 1; }
  wait_value "ecr_refresh_last_run_exit_code$sel" 1 || { REASON="exit code metric: $GOT, expected 1"; return 1; }
  wait_value "ecr_refresh_last_run_namespaces{instance=\"$INSTANCE\",outcome=\"failed\"}" 1 ||
    { REASON="failed namespaces: $GOT, expected 1"; return 1; }
  [ "$(query "ecr_refresh_last_success_timestamp_seconds$sel")" = "$SUCCESS_TS" ] ||
    { REASON="the interrupted run changed the last success timestamp"; return 1; }
}

check_success_again() {
  local ns sel="{job=\"ecr-refresh\",instance=\"$INSTANCE\"}"
  new_namespace e || { REASON="cannot create a namespace"; return 1; }
  ns=$NEW_NS
  run_tool again "$ECR_REFRESH_TEST_ECR_ENDPOINT" -n "$ns" --pushgateway "$PGW" --pushgateway-instance "$INSTANCE"
  [ "$RC" = 0 ] || { REASON="sync exited $RC, expected 0"; return 1; }
  wait_value "ecr_refresh_last_run_exit_code$sel" 0 || { REASON="exit code metric: $GOT"; return 1; }
  local ts; ts=$(query "ecr_refresh_last_success_timestamp_seconds$sel")
  [ "$ts" != "$SUCCESS_TS" ] && [ "${ts%.*}" -gt "${SUCCESS_TS%.*}" ] ||
    { REASON="last success timestamp did not move on: $ts (before $SUCCESS_TS)"; return 1; }
  wait_value "ecr_refresh_last_run_namespaces{instance=\"$INSTANCE\",outcome=\"failed\"}" 0 ||
    { REASON="failed namespaces: $GOT, expected 0 (a POST must overwrite it)"; return 1; }
  wait_alerts EcrRefreshNamespacesFailed=inactive EcrRefreshLastRunFailed=inactive
}

check_default_instance() {
  # Without --pushgateway-instance the group is named after the kubeconfig's context.
  local ns ctx
  ctx=$(kadm config current-context)
  new_namespace f || { REASON="cannot create a namespace"; return 1; }
  ns=$NEW_NS
  run_tool ctx "$ECR_REFRESH_TEST_ECR_ENDPOINT" -n "$ns" --pushgateway "$PGW"
  [ "$RC" = 0 ] || { REASON="sync exited $RC"; return 1; }
  wait_value "ecr_refresh_last_run_exit_code{job=\"ecr-refresh\",instance=\"$ctx\"}" 0 ||
    { REASON="no group with instance=\"$ctx\" (got $GOT)"; return 1; }
}

# Which instance a run names by itself: in-cluster only when it would use the in-cluster
# config (no kubeconfig, the pod's KUBERNETES_SERVICE_HOST); a kubeconfig it cannot read names
# nothing, and the push is skipped with a warning rather than counted under in-cluster.
check_default_instance_without_a_context() {
  local groups
  printf 'apiVersion: v1\nkind: Config\nusers:\n- name: u\n   user: {token: x}\n' >"$WORK/broken.kubeconfig"
  TOOL_KUBECONFIG=$WORK/broken.kubeconfig run_tool brokenkc "$ECR_REFRESH_TEST_ECR_ENDPOINT" -n whatever --pushgateway "$PGW"
  [ "$RC" = 2 ] || { tail -n 5 "$WORK/brokenkc.err" >&2; REASON="sync with a broken kubeconfig exited $RC, expected 2"; return 1; }
  grep -q "could not push metrics" "$WORK/brokenkc.err" || { REASON="no 'could not push metrics' warning"; return 1; }
  grep -q -- "--pushgateway-instance" "$WORK/brokenkc.err" || { REASON="the warning does not name --pushgateway-instance"; return 1; }
  groups=$(curl -sf "$PGW/api/v1/metrics" | jq '[.data[] | select(.labels.instance == "in-cluster")] | length')
  [ "$groups" = 0 ] || { REASON="a laptop run with a broken kubeconfig pushed under instance=\"in-cluster\""; return 1; }
  # No kubeconfig at all, in a pod (no service account token here, so the run fails): in-cluster.
  env -i PATH=/usr/bin:/bin HOME="$WORK" KUBERNETES_SERVICE_HOST=127.0.0.1 KUBERNETES_SERVICE_PORT=9 \
    AWS_ENDPOINT_URL="$ECR_REFRESH_TEST_ECR_ENDPOINT" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
    AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
    "$BIN" sync --request-timeout 3s --timeout 30s -n whatever --pushgateway "$PGW" >"$WORK/incluster.out" 2>"$WORK/incluster.err"
  RC=$?
  [ "$RC" != 0 ] || { REASON="the in-cluster run without a token exited 0"; return 1; }
  wait_value "ecr_refresh_last_run_exit_code{job=\"ecr-refresh\",instance=\"in-cluster\"}" "$RC" ||
    { tail -n 5 "$WORK/incluster.err" >&2; REASON="no group with instance=\"in-cluster\" and exit code $RC (got $GOT)"; return 1; }
}

check_push_failure_keeps_exit_code() {
  local ns
  new_namespace g || { REASON="cannot create a namespace"; return 1; }
  ns=$NEW_NS
  run_tool pushfail "$ECR_REFRESH_TEST_ECR_ENDPOINT" -n "$ns" --pushgateway "http://127.0.0.1:9" --pushgateway-instance "$INSTANCE"
  [ "$RC" = 0 ] || { REASON="sync exited $RC with an unreachable Pushgateway, expected 0"; return 1; }
  grep -q "could not push metrics" "$WORK/pushfail.err" || { REASON="no 'could not push metrics' warning on stderr"; return 1; }
}

check_dry_run_pushes_nothing() {
  local ns groups
  new_namespace h || { REASON="cannot create a namespace"; return 1; }
  ns=$NEW_NS
  run_tool dryrun "$ECR_REFRESH_TEST_ECR_ENDPOINT" -n "$ns" --dry-run --pushgateway "$PGW" --pushgateway-instance "$INSTANCE-dry"
  [ "$RC" = 0 ] || { REASON="sync --dry-run exited $RC"; return 1; }
  grep -q "metrics not pushed" "$WORK/dryrun.err" || { REASON="no 'metrics not pushed' on stderr"; return 1; }
  groups=$(curl -sf "$PGW/api/v1/metrics" | jq --arg i "$INSTANCE-dry" '[.data[] | select(.labels.instance == $i)] | length')
  [ "$groups" = 0 ] || { REASON="the Pushgateway has a group for the dry run ($groups)"; return 1; }
}

check_no_secrets_pushed() {
  local all
  all=$(curl -sf "$PGW/metrics") || { REASON="cannot read $PGW/metrics"; return 1; }
  # moto's ECR password, the admin token of the test apiserver, the AWS secret key variable.
  local secret
  for secret in "123456789012-auth-token" "$ECR_REFRESH_TEST_ADMIN_TOKEN" "QVdTOjEyMzQ1Njc4OTAxMi1hdXRoLXRva2Vu"; do
    if grep -qF "$secret" <<<"$all"; then REASON="the Pushgateway holds a credential"; return 1; fi
  done
  grep -q "ecr_refresh_last_run_exit_code" <<<"$all" || { REASON="no ecr-refresh metrics on the gateway"; return 1; }
}

# ---------------------------------------------------------------------------------------------


if ! apt_install --no-recommends prometheus prometheus-pushgateway python3-yaml jq curl; then
  echo "not ok - install prometheus, prometheus-pushgateway, python3-yaml, jq, curl"
  echo "metricstest: 0 passed, 1 failed"
  exit 1
fi

run_check "deploy/alerts.yaml is valid (promtool check rules)" check_rules_valid
run_check "alert unit tests (promtool test rules tests/alerts/alerts_test.yaml)" check_rules_unit_tests
run_check "deploy/prometheusrule.yaml holds the same rules as deploy/alerts.yaml" check_prometheusrule_same_rules
run_check "pushgateway and prometheus on loopback, alerts.yaml loaded" check_servers
run_check "a good run: metrics in Prometheus, only EcrRefreshTokenExpiresSoon fires (moto's token is expired)" check_good_run
run_check "a run without an ECR token (exit 3): exit code pushed, last success kept, EcrRefreshLastRunFailed fires" check_no_token_run
run_check "a run with a failed namespace (exit 1): counts pushed, EcrRefreshNamespacesFailed fires" check_failed_namespace_run
run_check "a run that cannot reach the cluster (exit 4) pushes its exit code, last success kept" check_cluster_unreachable_run
run_check "a run stopped by SIGTERM pushes its outcome before it exits" check_interrupted_run
run_check "a good run again: last success moves on, failed count back to 0, alerts resolve" check_success_again
run_check "the default instance label is the kube context" check_default_instance
run_check "a broken kubeconfig names no instance (push skipped, never in-cluster); no kubeconfig in a pod is in-cluster" check_default_instance_without_a_context
run_check "an unreachable Pushgateway is a warning and keeps exit code 0" check_push_failure_keeps_exit_code
run_check "a --dry-run pushes nothing" check_dry_run_pushes_nothing
run_check "no credential in what the Pushgateway holds" check_no_secrets_pushed

echo "metricstest: $PASSED passed, $FAILED failed"
[ "$FAILED" = 0 ]
