#!/usr/bin/env bash
# End-to-end proof that a kubelet pulls a private image with nothing but the Secret that
# `ecr-refresh sync` wrote. Real parts only: Debian's docker-registry (TLS + htpasswd, user AWS,
# password = moto's GetAuthorizationToken) standing in for ECR under the ECR host name, Debian's
# containerd + runc, and a kubelet of the test apiserver's own version, registered to it: the 1.20.2
# one built with it, or for a newer apiserver the kubelet of that version from ../shared/k8s.
# The node parts are shared with scripts/cluster.sh (scripts/node.sh).
#
#   scripts/testenv.sh start && bash scripts/pulltest.sh
#
# Needs root (apt, /etc/hosts, containers), kubectl on PATH and the servers of scripts/testenv.sh
# (ECR_REFRESH_TESTENV_RUN, default target/testenv). Prints one `ok - …`/`not ok - …` line per
# check and `pulltest: N passed, M failed`; exits 1 on any failure. Everything it starts or creates
# (processes, mounts, cgroups, the hosts line, kubelet/containerd state, node, pods) is removed on
# exit, and also at the next start if a run was killed before it could clean up.
# Knobs: ECR_REFRESH_PULLTEST_IP (registry address, 127.0.0.77), ECR_REFRESH_PULLTEST_KUBELET_PORT
# (10350; healthz on the port 2 below), ECR_REFRESH_PULLTEST_WAIT (seconds per pod, 90),
# ECR_REFRESH_PULLTEST_KUBELET (a kubelet binary to use instead), ECR_REFRESH_PULLTEST_TENANT_IP
# (the tenants' registry address, 127.0.0.78), ECR_REFRESH_PULLTEST_TOOL (the ecr-refresh binary,
# default target/debug/ecr-refresh, built if missing).
# Then tenants (`sync --tenants`): one registry whose repositories team-a/app and team-b/app each
# open only to its own team's token (as ECR repository policies do), and an STS and ECR stand-in
# that gives each team's role its own token (scripts/py/pulltest_tenants.py): each team's
# namespace pulls its own image and not the other's, and moving a namespace flips that in a pass.
# Before the tenants, GitOps (`sync --argocd-namespace`): real helm (scripts/testenv.sh install-helm)
# pushes a chart to oci://<ECR host>/charts and pulls it back with only the Secrets sync wrote: the
# Argo CD repo-creds Secret's username/password and the Flux Secret's .dockerconfigjson as helm's
# registry config; with no credentials, or with a token the registry no longer accepts, it gets 401.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=${ECR_REFRESH_TESTENV_RUN:-$ROOT/target/testenv}
WORK=$RUN_DIR/pull
LOGS=$RUN_DIR/pulltest-logs
KUBELET_PORT=${ECR_REFRESH_PULLTEST_KUBELET_PORT:-10350}
NODE=ecr-refresh-pulltest
NODE_KUBECONFIG=$RUN_DIR/kubeconfig
SECRET=awsecr-cred
WAIT_POD=${ECR_REFRESH_PULLTEST_WAIT:-90}

in_run="" logs_fresh=""
log() { printf 'pulltest: %s\n' "$*" >&2; }
# shellcheck source=scripts/node.sh
source "$(dirname "${BASH_SOURCE[0]}")/node.sh"
die() {
  log "error: $*"
  # In main's shell a broken bring-up is a failed check, with the summary line.
  if [ -n "$in_run" ]; then
    echo "not ok - $*"
    for f in registry containerd kubelet; do
      [ -n "$logs_fresh" ] && [ -f "$LOGS/$f.log" ] || continue
      echo "# --- $f.log (last 10 lines)"; tail -n 10 "$LOGS/$f.log" | sed 's/^/# /'
    done
    echo "pulltest: $PASSED passed, $((FAILED + 1)) failed"
  fi
  exit 1
}



install() {
  [ "$(id -u)" = 0 ] || die "needs root (apt-get, /etc/hosts, containers)"
  command -v kubectl >/dev/null || die "kubectl not found on PATH"
  apt_install "${NODE_PACKAGES[@]}" || die "could not install the packages the pull test needs"
  if [ -n "${ECR_REFRESH_PULLTEST_KUBELET:-}" ]; then
    KUBELET=$ECR_REFRESH_PULLTEST_KUBELET
  elif KUBELET=$(unpack_k8s kubelet "$(k version -o json 2>/dev/null | jq -r .serverVersion.gitVersion)"); then
    : # the kubelet of the apiserver's own version, from ../shared/k8s
  elif [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "$KUBEBUILDER_ASSETS/kubelet" ]; then
    KUBELET=$KUBEBUILDER_ASSETS/kubelet
  else
    KUBELET=$(env -u KUBEBUILDER_ASSETS "$ROOT/scripts/testenv.sh" kubelet-path)
    [ -x "$KUBELET" ] || env -u KUBEBUILDER_ASSETS "$ROOT/scripts/testenv.sh" install
    [ -x "$KUBELET" ] || die "no kubelet at $KUBELET after scripts/testenv.sh install"
  fi
  TOOL=${ECR_REFRESH_PULLTEST_TOOL:-$ROOT/target/debug/ecr-refresh}
  if [ -z "${ECR_REFRESH_PULLTEST_TOOL:-}" ] && [ ! -x "$TOOL" ]; then (cd "$ROOT" && cargo build --locked); fi
  [ -x "$TOOL" ] || die "no ecr-refresh binary at $TOOL"
  HELM=$("$ROOT/scripts/testenv.sh" helm-path)
  [ -x "$HELM" ] || "$ROOT/scripts/testenv.sh" install-helm >&2 || die "could not install helm (scripts/testenv.sh install-helm)"
}

k() { kubectl --kubeconfig "$RUN_DIR/kubeconfig" --cache-dir "$WORK/kube-cache" --request-timeout=20s "$@"; }

# --- teardown (idempotent; also run at start for a killed earlier run) -------------------------

# A subshell without -e: one failed step must not stop the others.
teardown() (
  set +e
  [ -d "$WORK" ] || exit 0
  kill_pidfile "$WORK/tenant-aws.pid"
  kill_pidfile "$WORK/tenant-registry.pid"
  node_teardown
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

run_pod() { # ns name [image]
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
    image: ${3:-$IMAGE}
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

expect_success() { # ns pod description [image]
  run_pod "$1" "$2" "${4:-$IMAGE}" || { not_ok "$3 (could not create the pod)"; return 0; }
  if wait_for "$WAIT_POD" succeeded "$1" "$2"; then ok "$3"
  else not_ok "$3 (phase: $(phase "$1" "$2"))"; diagnose "$1" "$2"; fi
}

expect_401() { # ns pod description [image]
  run_pod "$1" "$2" "${4:-$IMAGE}" || { not_ok "$3 (could not create the pod)"; return 0; }
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

  if [ "$(kubelet_minor "$KUBELET")" -lt 27 ]; then
    # The kubelet's compiled-in ECR provider looked for AWS credentials and found none.
    if grep -q NoCredentialProviders "$LOGS/kubelet.log"; then ok "the kubelet's own ECR credential provider found no AWS credentials"
    else not_ok "the kubelet's own ECR credential provider found no AWS credentials"; tail -n 20 "$LOGS/kubelet.log" | sed 's/^/# /'; fi
  else
    # 1.27+ has no compiled-in provider; an external one would need this flag.
    if ! tr '\0' '\n' <"/proc/$(cat "$WORK/kubelet.pid")/cmdline" | grep -q image-credential-provider; then
      ok "the kubelet has no credential provider (none compiled in since 1.27, none configured)"
    else not_ok "the kubelet has no credential provider (started with --image-credential-provider-*)"; fi
  fi

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
  expect_401 "$b" dual-1 "pod in $b (not synced) naming the dual-stack host fails with 401 Unauthorized" "$DUAL_IMAGE"
  check_sync "$b"
  expect_success "$b" app-2 "after the sync a new pod in $b Succeeds"
  expect_success "$b" dual-2 "after the sync a new pod in $b pulls $DUAL_IMAGE with only our Secret" "$DUAL_IMAGE"

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

# --- GitOps: an OCI Helm chart pulled with the Secrets Argo CD and Flux read -------------------

CHART=pulltest-chart
CHART_VERSION=0.1.0

# helm with its home, config, cache, data and temp dirs under $WORK: nothing lands in root's home.
helm() {
  env -i PATH=/usr/bin:/bin HOME="$WORK/helm/home" TMPDIR="$WORK/helm/tmp" \
    HELM_CONFIG_HOME="$WORK/helm/config" HELM_CACHE_HOME="$WORK/helm/cache" HELM_DATA_HOME="$WORK/helm/data" \
    "$HELM" "$@"
}

# The last lines of a log as comments, every password this test knows blanked out.
redacted_tail() { # file
  local t; t=$(tail -n 5 "$1" 2>/dev/null)
  t=${t//"$PASSWORD"/(redacted)}
  [ -z "${ROTATED:-}" ] || t=${t//"$ROTATED"/(redacted)}
  printf '%s\n' "$t" | sed 's/^/# /'
}

# A hand-written chart, packaged and pushed to oci://$HOST/charts as AWS with moto's token. The
# login goes to a throwaway registry config (password on stdin), removed after the push.
push_chart() {
  local d=$WORK/helm/src/$CHART
  mkdir -p "$d/templates" "$WORK/helm/tmp"
  printf 'apiVersion: v2\nname: %s\nversion: %s\ndescription: pulled by scripts/pulltest.sh\n' \
    "$CHART" "$CHART_VERSION" >"$d/Chart.yaml"
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s}\ndata: {greeting: hello}\n' "$CHART" \
    >"$d/templates/configmap.yaml"
  helm package "$d" -d "$WORK/helm" >"$LOGS/helm-push.log" 2>&1 || die "helm package failed; see $LOGS/helm-push.log"
  CHART_TGZ=$WORK/helm/$CHART-$CHART_VERSION.tgz
  printf '%s' "$PASSWORD" | helm registry login "$HOST" --username AWS --password-stdin \
    --ca-file "$WORK/certs/ca.crt" --registry-config "$WORK/helm/push.json" >>"$LOGS/helm-push.log" 2>&1 ||
    die "helm registry login $HOST failed; see $LOGS/helm-push.log"
  helm push "$CHART_TGZ" "oci://$HOST/charts" --ca-file "$WORK/certs/ca.crt" \
    --registry-config "$WORK/helm/push.json" >>"$LOGS/helm-push.log" 2>&1 ||
    die "helm push to oci://$HOST/charts failed; see $LOGS/helm-push.log"
  rm -f "$WORK/helm/push.json"
  # For the pulls that must bring no credentials of their own.
  echo '{"auths":{}}' >"$WORK/helm/empty.json"
}

# The registry's answers to the chart's manifest requests after line N of its access log, e.g.
# "401 200" (a client's first request is the anonymous one that gets the challenge).
manifest_codes() { # N
  tail -n +$(($1 + 1)) "$LOGS/registry.log" |
    sed -n "s|.*\"[A-Z]* /v2/charts/$CHART/manifests/$CHART_VERSION HTTP/[0-9.]*\" \([0-9]*\) .*|\1|p" | xargs
}
manifest_answered() { [ -n "$(manifest_codes "$1")" ]; }

# pull_chart LABEL HOST HELM_FLAGS...: helm pull of the chart from HOST into a fresh folder, its
# output in $LOGS/helm-pull-LABEL.log. Sets PULL_CODES (manifest_codes) and PULLED (the .tgz, or
# nothing).
pull_chart() {
  local label=$1 host=$2 out=$WORK/helm/pull-$1 before; shift 2
  rm -rf "$out" && mkdir -p "$out"
  before=$(wc -l <"$LOGS/registry.log")
  helm pull "oci://$host/charts/$CHART" --version "$CHART_VERSION" --ca-file "$WORK/certs/ca.crt" \
    -d "$out" "$@" >"$LOGS/helm-pull-$label.log" 2>&1 || true
  # The access log's line is written as the response goes out: give the last one a moment.
  wait_for 5 manifest_answered "$before" || true
  PULL_CODES=$(manifest_codes "$before")
  PULLED=$out/$CHART-$CHART_VERSION.tgz
  [ -f "$PULLED" ] || PULLED=""
}

# ok when the pull brought the very .tgz that was pushed, after a 200 for the manifest.
expect_pulled() { # description label host helm-flags...
  local what=$1 label=$2; shift
  pull_chart "$@"
  if [ -n "$PULLED" ] && cmp -s "$PULLED" "$CHART_TGZ" && [[ " $PULL_CODES " == *" 200 "* ]]; then ok "$what"
  else not_ok "$what (registry answered: ${PULL_CODES:-nothing})"; redacted_tail "$LOGS/helm-pull-$label.log"; fi
}

# ok when the pull brought nothing and the registry answered its manifest requests 401, never 200.
expect_refused() { # description label host helm-flags...
  local what=$1 label=$2; shift
  pull_chart "$@"
  if [ -z "$PULLED" ] && [[ " $PULL_CODES " == *" 401 "* ]] && [[ " $PULL_CODES " != *" 200 "* ]]; then ok "$what"
  else not_ok "$what (registry answered: ${PULL_CODES:-nothing}; pulled: ${PULLED:-nothing})"; redacted_tail "$LOGS/helm-pull-$label.log"; fi
}

sync_gitops() { # flux-ns argocd-ns -> ecr-refresh's exit code
  local rc=0
  env -i PATH=/usr/bin:/bin HOME="$WORK/home" KUBECONFIG="$RUN_DIR/kubeconfig" \
    AWS_ENDPOINT_URL="$ECR_ENDPOINT" AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE AWS_SECRET_ACCESS_KEY=test-secret-key \
    AWS_REGION=$REGION AWS_EC2_METADATA_DISABLED=true \
    "$TOOL" sync -n "$1" --argocd-namespace "$2" >"$LOGS/sync-gitops.log" 2>&1 || rc=$?
  return $rc
}

# One field of an Argo CD repo-creds Secret, decoded; nothing if there is no such Secret or key.
argocd_field() { # ns host key
  { k -n "$1" get secret "ecr-refresh.$2" -o json 2>/dev/null | jq -r --arg k "$3" '.data[$k] // empty | @base64d'; } || true
}

# The Secret as Argo CD expects it: Opaque, both labels, exactly these keys, moto's token. The
# password is compared inside jq (from its environment, never an argument or output).
argocd_shaped() { # ns host
  k -n "$1" get secret "ecr-refresh.$2" -o json 2>/dev/null | PW=$PASSWORD jq -e --arg h "$2" '
    .type == "Opaque"
    and .metadata.labels["app.kubernetes.io/managed-by"] == "ecr-refresh"
    and .metadata.labels["argocd.argoproj.io/secret-type"] == "repo-creds"
    and (.data | keys) == ["enableOCI", "password", "type", "url", "username"]
    and (.data | map_values(@base64d)) == {enableOCI: "true", password: env.PW, type: "helm", url: "\($h)/", username: "AWS"}' >/dev/null
}

# What the Secret holds, for a failure: decoded, the password replaced by whether it is the token.
argocd_show() { # ns host
  local json; json=$(k -n "$1" get secret "ecr-refresh.$2" -o json 2>&1) || { printf '# %s\n' "$json"; return 0; }
  PW=$PASSWORD jq -c '{type, labels: .metadata.labels, data: ((.data // {}) | map_values(@base64d)
    | if has("password") then .password |= if . == env.PW then "(the token)" else "(not the token)" end else . end)}' \
    <<<"$json" 2>&1 | sed 's/^/# /' || true
}

# The registry's htpasswd gets PASSWORD (on stdin, bcrypt). Debian's docker-registry (distribution
# 2.8.2+ds1) re-reads the file when it changes: seen, the very next request went by the new
# file, so no restart is needed. Waits until the registry accepts the new password.
set_registry_password() { # password
  printf '%s\n' "$1" | htpasswd -nBi AWS >"$WORK/registry/htpasswd.new" 2>/dev/null &&
    cat "$WORK/registry/htpasswd.new" >"$WORK/registry/htpasswd" && rm -f "$WORK/registry/htpasswd.new" &&
    wait_for 10 registry_accepts "$1"
}
registry_accepts() { # password: curl reads it from its config on stdin, not from its arguments
  [ "$(printf 'user = "AWS:%s"\n' "$1" | curl -s -o /dev/null -w '%{http_code}' --cacert "$WORK/certs/ca.crt" \
    -K - "https://$HOST/v2/")" = 200 ]
}

gitops_checks() {
  local flux=$1 argo=$2
  push_chart

  if sync_gitops "$flux" "$argo"; then ok "ecr-refresh sync -n $flux --argocd-namespace $argo exits 0"
  else not_ok "ecr-refresh sync -n $flux --argocd-namespace $argo exits 0"; redacted_tail "$LOGS/sync-gitops.log"; fi

  # Argo CD: one repo-creds Secret per registry host, the hosts the Flux Secret names.
  local want got
  want=$(k -n "$flux" get secret "$SECRET" -o jsonpath='{.data.\.dockerconfigjson}' 2>/dev/null | base64 -d |
    jq -r '.auths | keys[] | "ecr-refresh.\(.)"' 2>/dev/null | sort | xargs || true)
  got=$(k -n "$argo" get secrets -l app.kubernetes.io/managed-by=ecr-refresh,argocd.argoproj.io/secret-type=repo-creds \
    -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' 2>/dev/null | sort | xargs || true)
  if [ -n "$want" ] && [ "$got" = "$want" ]; then ok "Argo CD: one repo-creds Secret in $argo per registry host of the Flux Secret ($got)"
  else not_ok "Argo CD: one repo-creds Secret in $argo per registry host of the Flux Secret (want [$want], got [$got])"; fi
  if argocd_shaped "$argo" "$HOST"; then
    ok "Argo CD: ecr-refresh.$HOST is Opaque, labelled repo-creds and managed-by ecr-refresh, with exactly enableOCI=true, password=the token, type=helm, url=$HOST/, username=AWS"
  else not_ok "Argo CD: ecr-refresh.$HOST has the repo-creds shape"; argocd_show "$argo" "$HOST"; fi

  # Pulled as Argo CD's repo server does: the Secret's url, username and password. helm pull has no
  # --password-stdin: the token is in its arguments while it runs, and never printed.
  # The main host's Secret always (a missing one is a failed pull), then any other host's.
  local name url user pw
  for name in "ecr-refresh.$HOST" $(xargs -n1 <<<"$got" | grep -vxF "ecr-refresh.$HOST" || true); do
    url=$(argocd_field "$argo" "${name#ecr-refresh.}" url)
    user=$(argocd_field "$argo" "${name#ecr-refresh.}" username)
    pw=$(argocd_field "$argo" "${name#ecr-refresh.}" password)
    if [ -z "$url" ]; then not_ok "Argo CD: $name has a url to pull the chart from"; continue; fi
    # Argo CD hands a template's credentials to each repository URL its url is a plain prefix
    # of: the charts under the host, and not a look-alike host (hence the url's slash).
    if [[ "${url%/}/charts" == "$url"* ]] && [[ "${url%/}.attacker.example/charts" != "$url"* ]]; then
      ok "Argo CD: $name's url $url prefixes ${url%/}/charts and not ${url%/}.attacker.example/charts"
    else not_ok "Argo CD: $name's url $url prefixes ${url%/}/charts and not ${url%/}.attacker.example/charts"; fi
    url=${url%/}
    expect_pulled "Argo CD: helm pull oci://$url/charts/$CHART --version $CHART_VERSION with $name's username and password brings the pushed chart" \
      "argocd-$url" "$url" --username "$user" --password "$pw" --registry-config "$WORK/helm/empty.json"
  done
  # helm's own registry config (under $WORK/helm/config) was never written: no credentials at all.
  expect_refused "Argo CD: the same pull with no credentials gets 401" anonymous "$HOST"

  # A token from a past pass that the registry no longer accepts. moto hands out the same token on
  # every call (AWS:<account>-auth-token), so the registry moves on instead: its htpasswd gets a
  # new password, as ECR stops accepting a token once it has expired. The Secret keeps the old one.
  pw=$(argocd_field "$argo" "$HOST" password)
  ROTATED=rotated-$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
  if [ -z "$pw" ]; then not_ok "Argo CD: no token in ecr-refresh.$HOST to show refused once the registry moves on"
  elif set_registry_password "$ROTATED"; then
    expect_refused "Argo CD: after the registry's password moves on, the pull with the token ecr-refresh.$HOST still holds gets 401" \
      argocd-old "$HOST" --username AWS --password "$pw" --registry-config "$WORK/helm/empty.json"
  else not_ok "the registry did not take a new password from its htpasswd within 10s"; fi
  set_registry_password "$PASSWORD" || die "the registry did not take moto's password back within 10s"
  expect_pulled "Argo CD: with moto's token accepted again the same pull with ecr-refresh.$HOST succeeds" \
    argocd-again "$HOST" --username AWS --password "$pw" --registry-config "$WORK/helm/empty.json"

  # Flux: an OCI HelmRepository's secretRef names a kubernetes.io/dockerconfigjson Secret; helm
  # reads the same file format as its registry config.
  local type; type=$(k -n "$flux" get secret "$SECRET" -o jsonpath='{.type}' 2>/dev/null || true)
  (umask 077 && k -n "$flux" get secret "$SECRET" -o jsonpath='{.data.\.dockerconfigjson}' 2>/dev/null | base64 -d \
    >"$WORK/helm/flux-config.json") || true
  if [ "$type" = kubernetes.io/dockerconfigjson ]; then
    expect_pulled "Flux: helm pull oci://$HOST/charts/$CHART with $flux/$SECRET's .dockerconfigjson as its registry config brings the pushed chart" \
      flux "$HOST" --registry-config "$WORK/helm/flux-config.json"
  else not_ok "Flux: $flux/$SECRET is a kubernetes.io/dockerconfigjson Secret (type: ${type:-none})"; fi
  expect_refused "Flux: the same pull with an empty registry config {\"auths\":{}} gets 401" \
    flux-empty "$HOST" --registry-config "$WORK/helm/empty.json"
}

# --- tenants: one registry, a repository per team, each team's token opens only its own -------

TENANT_ACCOUNT=210987654321
TENANT_HOST=$TENANT_ACCOUNT.dkr.ecr.$REGION.amazonaws.com
TENANT_IP=${ECR_REFRESH_PULLTEST_TENANT_IP:-127.0.0.78}
ROLE_A=arn:aws:iam::$TENANT_ACCOUNT:role/team-a
ROLE_B=arn:aws:iam::$TENANT_ACCOUNT:role/team-b

# The registry stand-in for ECR with repository policies, and the STS and ECR stand-in that
# gives each role its own token (scripts/py/pulltest_tenants.py), on TENANT_HOST.
start_tenant_registry() {
  local c=$WORK/certs d=$WORK/tenant-registry
  mkdir -p "$d"
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$TENANT_HOST" -keyout "$c/tenant.key" -out "$c/tenant.csr" 2>/dev/null
  printf 'subjectAltName=DNS:%s\n' "$TENANT_HOST" >"$c/tenant.ext"
  openssl x509 -req -in "$c/tenant.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" -CAcreateserial -days 1 \
    -extfile "$c/tenant.ext" -out "$c/tenant.crt" 2>/dev/null
  # The registry itself has no auth and listens on the loopback only: the front checks.
  cat >"$d/config.yml" <<YML
version: 0.1
log: {level: info, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $d/data}}
http: {addr: $TENANT_IP:5000, secret: pulltest}
YML
  start_bg tenant-registry env -i docker-registry serve "$d/config.yml"
  wait_up tenant-registry 20 curl -s -o /dev/null "http://$TENANT_IP:5000/v2/" ||
    die "the tenants' registry did not come up on $TENANT_IP:5000; see $LOGS/tenant-registry.log"
  TENANT_SECRET=$(head -c 8 /dev/urandom | od -An -tx1 | tr -d ' \n')
  AWS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  start_bg tenant-aws python3 "$ROOT/scripts/py/pulltest_tenants.py" "$AWS_PORT" "$TENANT_IP" \
    "$c/tenant.crt" "$c/tenant.key" "http://$TENANT_IP:5000" "$TENANT_SECRET" "$ROLE_A" "$ROLE_B"
  echo "$TENANT_IP $TENANT_HOST $HOSTS_MARK" >>/etc/hosts
  wait_up tenant-aws 20 curl -s -o /dev/null --cacert "$c/ca.crt" "https://$TENANT_HOST/v2/" ||
    die "the tenants' registry front did not come up; see $LOGS/tenant-aws.log"
  for team in team-a team-b; do
    oci_image "$WORK/$team" "$TENANT_HOST/$team/app:1" "[\"/bin/busybox\",\"echo\",\"hello from $team\"]"
    skopeo --policy <(echo '{"default":[{"type":"insecureAcceptAnything"}]}') copy -q --dest-tls-verify=false \
      "oci:$WORK/$team:1" "docker://$TENANT_IP:5000/$team/app:1" >/dev/null || die "skopeo could not push $team/app:1"
  done
}

sync_tenants() { # label -> ecr-refresh's exit code; the JSON report in $LOGS/sync-tenants-<label>.json
  local rc=0
  env -i PATH=/usr/bin:/bin HOME="$WORK/home" KUBECONFIG="$RUN_DIR/kubeconfig" \
    AWS_ENDPOINT_URL="http://127.0.0.1:$AWS_PORT" AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE \
    AWS_SECRET_ACCESS_KEY=test-secret-key AWS_REGION=$REGION AWS_EC2_METADATA_DISABLED=true \
    "$TOOL" sync -n "pull-t*-$SUFFIX" --tenants "$WORK/tenants.yaml" -o json \
    >"$LOGS/sync-tenants-$1.json" 2>"$LOGS/sync-tenants-$1.log" || rc=$?
  return $rc
}

tenant_checks() {
  local ta=$1 tb=$2 img_a=$TENANT_HOST/team-a/app:1 img_b=$TENANT_HOST/team-b/app:1
  start_tenant_registry
  local url="https://$TENANT_HOST/v2" ca=$WORK/certs/ca.crt pw_a="pw-team-a-$TENANT_SECRET" pw_b="pw-team-b-$TENANT_SECRET" codes
  local accept='Accept: application/vnd.oci.image.manifest.v1+json'
  codes="$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" "$url/team-a/app/manifests/1")"
  codes+=" $(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" -H "$accept" -u "AWS:$pw_a" "$url/team-a/app/manifests/1")"
  codes+=" $(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" -H "$accept" -u "AWS:$pw_a" "$url/team-b/app/manifests/1")"
  codes+=" $(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" -H "$accept" -u "AWS:$pw_b" "$url/team-b/app/manifests/1")"
  if [ "$codes" = "401 200 401 200" ]; then ok "tenants' registry: anonymous 401; team-a's password opens team-a/app (200), not team-b/app (401); team-b's opens team-b/app (200)"
  else not_ok "tenants' registry: anonymous 401, each team's password opens only its own repository (got $codes)"; fi

  k label namespace "$ta" team=a >/dev/null && k label namespace "$tb" team=b >/dev/null
  cat >"$WORK/tenants.yaml" <<YAML
tenants:
  - name: team-a
    namespaceSelector: team=a
    roleArn: $ROLE_A
  - name: team-b
    namespaceSelector: team=b
    roleArn: $ROLE_B
YAML
  if sync_tenants first && [ "$(jq -r --arg a "$ta" --arg b "$tb" \
    '[.namespaces[] | select(.name == $a or .name == $b) | "\(.name)=\(.tenant)"] | join(" ")' \
    "$LOGS/sync-tenants-first.json")" = "$ta=team-a $tb=team-b" ]; then
    ok "ecr-refresh sync --tenants exits 0; $ta is team-a's, $tb team-b's"
  else not_ok "ecr-refresh sync --tenants exits 0; $ta is team-a's, $tb team-b's"; sed 's/^/# /' "$LOGS/sync-tenants-first.log"; fi
  expect_success "$ta" own-1 "team-a's namespace $ta pulls team-a's image" "$img_a"
  expect_401 "$ta" other-1 "team-a's namespace $ta cannot pull team-b's image (401 Unauthorized)" "$img_b"
  expect_success "$tb" own-1 "team-b's namespace $tb pulls team-b's image" "$img_b"
  expect_401 "$tb" other-1 "team-b's namespace $tb cannot pull team-a's image (401 Unauthorized)" "$img_a"

  # Moving $ta to team-b: one pass, one write (only team-b's role assumed), and it flips.
  k label namespace "$ta" team=b --overwrite >/dev/null
  local before; before=$(grep -c 'sts: AssumeRole' "$LOGS/tenant-aws.log" || true)
  if sync_tenants moved && [ "$(jq -r '.summary.updated' "$LOGS/sync-tenants-moved.json")" = 1 ] &&
    [ "$(grep 'sts: AssumeRole' "$LOGS/tenant-aws.log" | tail -n +$((before + 1)) | sort -u)" = "sts: AssumeRole $ROLE_B" ]; then
    ok "after moving $ta to team-b one pass rewrites only its Secret, assuming only team-b's role"
  else not_ok "after moving $ta to team-b one pass rewrites only its Secret, assuming only team-b's role"
    sed 's/^/# /' "$LOGS/sync-tenants-moved.log" "$LOGS/sync-tenants-moved.json" "$LOGS/tenant-aws.log"; fi
  expect_success "$ta" own-2 "after the move $ta pulls team-b's image" "$img_b"
  expect_401 "$ta" other-2 "after the move $ta can no longer pull team-a's image (401 Unauthorized)" "$img_a"
}

main() {
  in_run=1
  [ -f "$RUN_DIR/env.sh" ] || die "no $RUN_DIR/env.sh: run scripts/testenv.sh start first"
  # shellcheck source=/dev/null
  ECR_ENDPOINT=$(source "$RUN_DIR/env.sh" && echo "$ECR_REFRESH_TEST_ECR_ENDPOINT")
  k get --raw /readyz >/dev/null || die "the test apiserver in $RUN_DIR does not answer"
  install

  # One pull test at a time on a machine: the host name, /var/log/pods and the node name are shared.
  # Locking /etc/hosts itself leaves no lock file behind.
  exec 9</etc/hosts
  flock -w 600 9 || die "another pull test has held a lock on /etc/hosts for 10 minutes"
  teardown
  rm -rf "$LOGS" && mkdir -p "$WORK/home" "$LOGS" && logs_fresh=1
  node_record_state
  trap teardown EXIT
  trap 'exit 130' INT TERM

  local t0=$SECONDS suffix; suffix=$(head -c 4 /dev/urandom | od -An -tx1 | tr -d ' \n')
  local a=pull-a-$suffix b=pull-b-$suffix ta=pull-ta-$suffix tb=pull-tb-$suffix
  local flux=pull-flux-$suffix argo=pull-argocd-$suffix
  SUFFIX=$suffix
  for ns in "$a" "$b" "$ta" "$tb" "$flux" "$argo"; do
    echo "$ns" >>"$WORK/namespaces"
    k create namespace "$ns" >/dev/null
    # No controller-manager here: the ServiceAccount a pod is admitted with must be made by hand.
    k -n "$ns" create serviceaccount default >/dev/null
  done
  PASSWORD=$(node_moto_password "$ECR_ENDPOINT") && [ -n "$PASSWORD" ] || die "moto at $ECR_ENDPOINT did not answer GetAuthorizationToken"
  start_registry
  oci_image "$WORK/app" "$IMAGE" '["/bin/busybox","echo","hello from a private image"]'
  push_image "$WORK/app" "$IMAGE" || die "skopeo could not push $IMAGE"
  start_containerd
  start_kubelet
  log "stack up in $((SECONDS - t0))s (kubelet $KUBELET, $("$KUBELET" --version), as node $NODE, registry $REGISTRY_IP as $HOST)"

  local t1=$SECONDS
  checks "$a" "$b"
  gitops_checks "$flux" "$argo"
  tenant_checks "$ta" "$tb"
  log "checks took $((SECONDS - t1))s"
  echo "pulltest: $PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}

main "$@"
