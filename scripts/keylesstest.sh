#!/usr/bin/env bash
# The README's keyless quick start, followed word for word on a real Kubernetes v1.36.3 cluster
# (scripts/cluster.sh), with no AWS key anywhere.
#
#   flock /tmp/ecr-refresh-node.lock bash scripts/keylesstest.sh
#
# The README's own code blocks are read from README.md and run (`ecr-refresh` and `kubectl` on
# PATH, KUBECONFIG the cluster admin's), so the test breaks when they do. The only changes are
# named in SUBSTITUTIONS and in clustertest.sh's OVERLAY_CHANGES (what a loopback cluster
# needs), plus AWS_ENDPOINT_URL_STS:
#   1. `ecr-refresh oidc publish` against the live cluster; the apiserver is restarted with
#      exactly the --service-account-issuer/-jwks-uri flags it prints (public URL first);
#   2. public/ is "uploaded": served over HTTPS at the issuer URL (no port) on a loopback address,
#      with a test CA; `ecr-refresh oidc check` passes;
#   3. the IAM steps go to the stand-ins: scripts/oidc/sts_standin.py registers the provider,
#      creates the role from the trust-policy.json that publish wrote, and enforces it (RS256
#      signature against the JWKS fetched from the URL, iss, aud, sub, exp/nbf); moto's ECR then
#      accepts only credentials that moto's STS issued;
#   4. the README's kustomization (deploy/ + web-identity + its AWS_ROLE_ARN patch) is applied
#      without the key Secret, its step 4 runs the CronJob once, its step 5 checks a pull.
# Then: the Job's pod exchanged its projected token (the stand-in accepted it), every namespace
# is synced, and no Secret, ConfigMap, pod, Job or CronJob in the cluster holds an AWS key.
#
# Each check prints `ok - …` or `not ok - …`; the last line is `keylesstest: N passed, M failed`.
# Needs root and kubectl. Knobs: ECR_REFRESH_STATIC_BIN, ECR_REFRESH_KEYLESS_IP (127.47.0.1, the
# issuer's host, port 443), ECR_REFRESH_KEYLESS_STS_PORT (32172).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=scripts/clustertest.sh
source "$ROOT/scripts/clustertest.sh"
RUN=$ROOT/target/keylesstest
IP=${ECR_REFRESH_KEYLESS_IP:-127.47.0.1}
STS_PORT=${ECR_REFRESH_KEYLESS_STS_PORT:-32172}
ISSUER=https://$IP/my-cluster
SUBJECT=system:serviceaccount:kube-system:ecr-refresh
FIRST_RUN=ecr-refresh-first-run
log() { printf 'keylesstest: %s\n' "$*" >&2; }
finish() {
  echo "keylesstest: $PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}

# What the README's blocks hold that this cluster cannot have, and what stands in for it.
SUBSTITUTIONS=(
  "https://oidc.example.com/my-cluster -> $ISSUER (a loopback address, port 443)"
  "<path or URL of deploy/> -> the relative path of deploy/"
  "123456789012.dkr.ecr.eu-west-1.amazonaws.com/my-repo:tag -> the registry stand-in's private image"
  "step 5: a wait until ecr-check has run before its \`kubectl delete pod\` (a reader watches \`get pod\`)"
)

# readme_block WORD: the README quick start's first fenced block that contains WORD, with the
# substitutions made.
readme_block() {
  python3 "$ROOT/scripts/py/keylesstest_readme_block.py" "$ROOT/README.md" "$1" "$ISSUER" "$(realpath --relative-to="$RUN/laptop" "$ROOT/deploy")" \
    "$ECR_REFRESH_CLUSTER_IMAGE"
}

# A CA and a certificate for $IP, as a public issuer URL's host has one.
make_ca() {
  local d=$RUN/ca
  mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=ecr-refresh keyless test CA" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null &&
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$IP" -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null &&
    printf 'subjectAltName=IP:%s\nbasicConstraints=CA:FALSE\n' "$IP" >"$d/ext.cnf" &&
    openssl x509 -req -days 1 -CAcreateserial -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" \
      -extfile "$d/ext.cnf" -out "$d/server.crt" 2>/dev/null
}

# --- 1. publish, and the apiserver flags it prints ---------------------------------------------

publish_prints_flags() {
  (cd "$RUN/laptop" && bash -euo pipefail -c "$(readme_block 'oidc publish')") >"$RUN/publish.out" 2>&1 ||
    { cat "$RUN/publish.out"; return 1; }
  grep -oE -- '--service-account-(issuer|jwks-uri)=[^ ]+' "$RUN/publish.out" >"$RUN/flags"
  echo "printed: $(tr '\n' ' ' <"$RUN/flags")"
  # The public issuer first (it signs new tokens), the cluster's own second (tokens already
  # issued stay valid), the JWKS at the public URL.
  diff <(printf '%s\n' "--service-account-issuer=$ISSUER" "--service-account-issuer=https://kubernetes.default.svc" \
    "--service-account-jwks-uri=$ISSUER/openid/v1/jwks") "$RUN/flags" &&
    [ -s "$RUN/laptop/ecr-refresh-oidc/public/.well-known/openid-configuration" ] &&
    [ -s "$RUN/laptop/ecr-refresh-oidc/public/openid/v1/jwks" ] && [ -s "$RUN/laptop/ecr-refresh-oidc/trust-policy.json" ]
}

# Tokens the apiserver now issues carry the public iss; in-cluster clients still work.
apiserver_issues_public_iss() {
  local token claims
  token=$(k -n kube-system create token default --audience sts.amazonaws.com --duration 10m) || return 1
  claims=$(cut -d. -f2 <<<"$token" | tr '_-' '/+' | base64 -d 2>/dev/null)
  echo "claims: $claims"
  jq -e --arg iss "$ISSUER" '.iss == $iss and .sub == "system:serviceaccount:kube-system:default" and .aud == ["sts.amazonaws.com"]' <<<"$claims" >/dev/null &&
    k wait --for=condition=Ready "node/$ECR_REFRESH_CLUSTER_NODE" --timeout=60s >/dev/null
}

stage_publish() {
  mkdir -p "$RUN/laptop"
  log "substitutions in the README's blocks: $(printf '%s; ' "${SUBSTITUTIONS[@]}")"
  check "README step 1: \`ecr-refresh oidc publish\` writes public/ and trust-policy.json, and prints the apiserver flags (public issuer first, the old one second)" \
    publish_prints_flags
  [ -s "$RUN/flags" ] || { REASON="publish printed no apiserver flags"; return 1; }
  mapfile -t flags <"$RUN/flags"
  "$ROOT/scripts/cluster.sh" issuer "${flags[@]}" || { REASON="could not restart kube-apiserver with ${flags[*]}"; return 1; }
  check "the apiserver, restarted with exactly those flags, issues tokens with iss $ISSUER; the node stays Ready" \
    wait_for 30 apiserver_issues_public_iss
}

# --- 2. upload and check ------------------------------------------------------------------------

start_https() {
  python3 "$ROOT/scripts/oidc/serve_https.py" --bind "$IP" --port 443 --cert "$RUN/ca/server.crt" \
    --key "$RUN/ca/server.key" --dir "$RUN/laptop/ecr-refresh-oidc/public" --prefix "${ISSUER#https://"$IP"}" \
    >"$RUN/https.out" 2>"$RUN/https.log" &
  echo $! >"$RUN/https.pid"
  wait_for 20 grep -qx ready "$RUN/https.out"
}

oidc_check_passes() {
  (cd "$RUN/laptop" && SSL_CERT_FILE=$RUN/ca/ca.crt bash -euo pipefail -c "$(readme_block 'oidc check')") 2>&1
}

stage_upload() {
  make_ca || { REASON="openssl could not make the test CA"; return 1; }
  start_https || { REASON="serve_https.py did not start on $IP:443: $(cat "$RUN/https.log")"; return 1; }
  check "README step 1: \`ecr-refresh oidc check\` exits 0 against the served documents and the live cluster" oidc_check_passes
}

# --- 3. IAM and STS at the stand-ins ---------------------------------------------------------------

start_sts() {
  local python
  python=$(dirname "$("$ROOT/scripts/testenv.sh" moto-path)")/python
  "$python" "$ROOT/scripts/oidc/sts_standin.py" --port "$STS_PORT" --moto "$ECR_REFRESH_CLUSTER_ECR_ENDPOINT" \
    --provider-url "$ISSUER" --trust-policy "$RUN/laptop/ecr-refresh-oidc/trust-policy.json" \
    --ca-file "$RUN/ca/ca.crt" --setup-role ecr-refresh >"$RUN/sts.out" 2>"$RUN/sts.log" &
  echo $! >"$RUN/sts.pid"
  wait_for 30 grep -qx ready "$RUN/sts.out"
}

# moto's IAM checks are on: a key moto never issued gets nothing from ECR.
unissued_key_refused() {
  local out rc=0
  out=$(env -u AWS_PROFILE KUBECONFIG="$ECR_REFRESH_CLUSTER_KUBECONFIG" AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE \
    AWS_SECRET_ACCESS_KEY=not-issued AWS_ENDPOINT_URL="$ECR_REFRESH_CLUSTER_ECR_ENDPOINT" AWS_REGION="$ECR_REFRESH_CLUSTER_REGION" \
    "$STATIC_BIN" sync -n my-app --dry-run 2>&1) || rc=$?
  echo "exit $rc: $(tail -n 2 <<<"$out")"
  [ "$rc" = 3 ]
}

stage_iam() {
  start_sts || { REASON="sts_standin.py did not start: $(tail -n 5 "$RUN/sts.log")"; return 1; }
  k create namespace my-app >/dev/null || { REASON="could not create namespace my-app"; return 1; }
  check "moto's ECR refuses a key its STS did not issue (sync exits 3)" unissued_key_refused
}

# --- 4. the README's kustomization, run once, checked ----------------------------------------------

write_keyless_overlay() {
  local o=$RUN/laptop
  readme_block 'components:' >"$o/readme-kustomization.yaml" || return 1
  write_overlay # clustertest's loopback patch, in $RUN/overlay
  cp "$RUN/overlay/loopback.yaml" "$o/loopback.yaml"
  python3 "$ROOT/scripts/py/keylesstest_write_keyless_overlay.py" "$o/readme-kustomization.yaml" "$o/kustomization.yaml" "$APP_IMAGE" "http://127.0.0.1:$STS_PORT"
  # STS at the stand-in: the SDK's standard per-service endpoint variable.
  cat >>"$o/loopback.yaml" <<YAML
                - {name: AWS_ENDPOINT_URL_STS, value: "http://127.0.0.1:$STS_PORT"}
YAML
}

# The applied CronJob: the README's role, the projected STS token, no Secret read as env.
cronjob_is_keyless() {
  k -n kube-system get cronjob ecr-refresh -o json | jq -e '.spec.jobTemplate.spec.template.spec as $p
    | ($p.containers[0].env | map({(.name): .value}) | add) as $env
    | $env.AWS_ROLE_ARN == "arn:aws:iam::123456789012:role/ecr-refresh"
      and $env.AWS_WEB_IDENTITY_TOKEN_FILE == "/var/run/secrets/sts.amazonaws.com/serviceaccount/token"
      and all($p.containers[0].envFrom[]?; .secretRef == null)
      and ([$p.volumes[].projected.sources[]?.serviceAccountToken | select(.audience == "sts.amazonaws.com")] | length) == 1' ||
    { k -n kube-system get cronjob ecr-refresh -o json | jq -c '.spec.jobTemplate.spec.template.spec | {env: .containers[0].env, envFrom: .containers[0].envFrom, volumes}'; return 1; }
}

run_once() {
  (cd "$RUN/laptop" && timeout 180 bash -euo pipefail -c "$(readme_block 'create job --from')") >"$RUN/step4.out" 2>&1 ||
    { tail -n 5 "$RUN/step4.out"; return 1; }
  grep -q '"type":"report"' "$RUN/step4.out" || { echo "logs printed no report:"; tail -n 5 "$RUN/step4.out"; return 1; }
}

sts_accepted_the_pod() {
  grep -F "sts_standin: " "$RUN/sts.log" | tail -n 5
  grep -qxF "sts_standin: accepted token of $SUBJECT" "$RUN/sts.log" && ! grep -q "refused" "$RUN/sts.log"
}

# No AWS key anywhere in the cluster: no Secret or ConfigMap holds one (by key name or an
# `aws_access_key_id` profile line), and no pod, Job or CronJob sets one or reads a Secret as env.
no_key_anywhere() {
  local found
  found=$({
    k get secrets -A -o json | jq -r '.items[] | . as $s | (.data // {}) | to_entries[]
      | select((.key | test("AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY)"; "i")) or (.value | @base64d | test("aws_access_key_id|AKIA|ASIA"; "i")))
      | "Secret \($s.metadata.namespace)/\($s.metadata.name) key \(.key)"'
    k get configmaps -A -o json | jq -r '.items[] | . as $c | (.data // {}) | to_entries[]
      | select((.key | test("AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY)"; "i")) or (.value | test("aws_access_key_id"; "i")))
      | "ConfigMap \($c.metadata.namespace)/\($c.metadata.name) key \(.key)"'
    local kind
    for kind in pods jobs cronjobs; do
      k get "$kind" -A -o json | jq -r --arg kind "$kind" '.items[] | . as $o | [.. | objects | select(has("containers")) | .containers[]]
        | .[] | select(any(.env[]?; .name | test("AWS_(ACCESS_KEY_ID|SECRET_ACCESS_KEY)")) or any(.envFrom[]?; .secretRef != null))
        | "\($kind) \($o.metadata.namespace)/\($o.metadata.name) container \(.name)"'
    done
  } 2>&1)
  local n; n=$(k get pods -A -o name | wc -l)
  echo "looked at every Secret, ConfigMap, Job, CronJob and $n pods: ${found:-nothing found}"
  [ -z "$found" ] && [ "$n" -gt 0 ]
}

# README step 5. A reader looks at `get pod` until the pod has run; the test waits for that
# before the block's last line deletes it.
# The trust policy publish wrote is what STS enforces: a token of another ServiceAccount of the
# same cluster (same issuer, key and audience) gets no credentials, and sync says why.
another_service_account_refused() {
  local tok=$RUN/other.token out rc=0
  k -n kube-system create token default --audience sts.amazonaws.com --duration 10m >"$tok" || return 1
  out=$(env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_PROFILE KUBECONFIG="$ECR_REFRESH_CLUSTER_KUBECONFIG" \
    AWS_ROLE_ARN=arn:aws:iam::123456789012:role/ecr-refresh AWS_WEB_IDENTITY_TOKEN_FILE="$tok" AWS_ROLE_SESSION_NAME=other \
    AWS_ENDPOINT_URL="$ECR_REFRESH_CLUSTER_ECR_ENDPOINT" AWS_ENDPOINT_URL_STS="http://127.0.0.1:$STS_PORT" \
    AWS_REGION="$ECR_REFRESH_CLUSTER_REGION" "$STATIC_BIN" sync -n my-app --dry-run 2>&1) || rc=$?
  echo "exit $rc: $(grep -i 'web identity' <<<"$out" | tail -n 1 | cut -c1-300)"
  [ "$rc" = 3 ] && grep -qi 'web identity' <<<"$out" &&
    grep -qx 'sts_standin: refused: AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity' "$RUN/sts.log"
}

readme_step5() {
  (cd "$RUN/laptop" && bash -euo pipefail -c "$(readme_block 'kubectl run ecr-check' |
    sed 's/^kubectl delete pod ecr-check/kubectl wait --for=jsonpath={.status.phase}=Succeeded pod\/ecr-check -n my-app --timeout=90s \&\& &/')") \
    >"$RUN/step5.out" 2>&1 ||
    { cat "$RUN/step5.out"; k -n my-app get events -o custom-columns=R:.reason,M:.message | tail -n 5; return 1; }
  grep -q 'name: awsecr-cred' "$RUN/step5.out" && grep -q 'kubernetes.io/dockerconfigjson' "$RUN/step5.out" &&
    grep -q 'pod/ecr-check condition met' "$RUN/step5.out" ||
    { echo "README step 5's output lacks the link, the Secret or the finished pod:"; cat "$RUN/step5.out"; return 1; }
  grep -qE '"(HEAD|GET) /v2/team/app/manifests/1 HTTP/1.1" 200 .*"containerd/' "$ECR_REFRESH_CLUSTER_RUN/logs/registry.log" ||
    { echo "the registry log shows no authorized manifest fetch by containerd"; return 1; }
}

stage_apply_and_run() {
  write_keyless_overlay || { REASON="could not write the kustomization from the README"; return 1; }
  APPLIED_AT=$(date -u +%s)
  check "README step 3: kubectl apply -k of the README's kustomization (deploy/ + web-identity + the role patch), no key Secret" \
    k apply -k "$RUN/laptop"
  check "the CronJob has the README's AWS_ROLE_ARN, the STS token (audience sts.amazonaws.com), no Secret as env" cronjob_is_keyless
  check "README step 4: create job --from=cronjob/ecr-refresh, wait for it, and its logs" run_once
  wait_done "$FIRST_RUN" 90
  local pod; pod=$(job_pod "$FIRST_RUN")
  k -n kube-system logs "$pod" >"$RUN/first.log" 2>&1
  check "Job $FIRST_RUN completed" is_complete
  check "its pod ran $APP_IMAGE and exited 0" pod_ran_image_and_exited_0 "$pod"
  check "its log is JSON lines ending with the report (exit_code 0)" log_is_json_lines "$RUN/first.log" 0
  check "the STS stand-in verified and accepted the pod's projected token ($SUBJECT, iss $ISSUER) and refused none" sts_accepted_the_pod
  check "every namespace has Secret $SECRET for ${ECR_REFRESH_CLUSTER_IMAGE%%/*} and default lists it" every_namespace_synced
  check "no Secret, ConfigMap, pod, Job or CronJob in the cluster holds an AWS access key" no_key_anywhere
  check "README step 5: the link and the Secret are there, and ecr-check pulls the private image (Completed)" readme_step5
  check "the trust policy publish wrote is enforced: a token of kube-system/default is refused (sync exits 3, naming web identity)" \
    another_service_account_refused
}

main() {
  local t0=$SECONDS
  [ "$(id -u)" = 0 ] || { echo "keylesstest: needs root" >&2; exit 1; }
  apt_install python3 python3-yaml jq curl openssl || { echo "keylesstest: could not install what it needs" >&2; exit 1; }
  # shellcheck source=scripts/node.sh
  source "$ROOT/scripts/node.sh"
  STATIC_BIN=${ECR_REFRESH_STATIC_BIN:-$("$ROOT/scripts/build-static.sh" x86_64 | tail -n 1)}
  [ -x "$STATIC_BIN" ] || { echo "keylesstest: no static binary" >&2; exit 1; }
  cleanup
  trap 'cleanup' EXIT
  trap 'exit 130' INT TERM
  mkdir -p "$RUN/bin" "$RUN/laptop"
  # The README's commands as a user types them.
  ln -sf "$STATIC_BIN" "$RUN/bin/ecr-refresh"
  export PATH=$RUN/bin:$PATH
  stage "image" stage_image
  "$ROOT/scripts/cluster.sh" up || { not_ok "scripts/cluster.sh up"; finish; return; }
  # shellcheck source=/dev/null
  source "$ECR_REFRESH_CLUSTER_RUN/env.sh"
  export KUBECONFIG=$ECR_REFRESH_CLUSTER_KUBECONFIG
  SOCK=$ECR_REFRESH_CLUSTER_CONTAINERD_SOCK
  import_image "$RUN/image" || { not_ok "ctr images import $APP_IMAGE"; finish; return; }
  local t1=$SECONDS
  stage "publish" stage_publish
  stage "upload and check" stage_upload
  stage "IAM at the stand-ins" stage_iam
  stage "apply and run" stage_apply_and_run
  log "took $((SECONDS - t0))s ($((t1 - t0))s image and bring-up, $((SECONDS - t1))s on the cluster)"
  finish
}

main "$@"
