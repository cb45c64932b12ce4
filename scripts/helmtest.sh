#!/usr/bin/env bash
# Checks the Helm chart charts/ecr-refresh with the pinned helm (scripts/testenv.sh install-helm).
#
#   scripts/helmtest.sh          lint, schema refusals, the drift test against deploy/, and
#                                `kubectl apply --dry-run=server` against the running test server
#                                (scripts/testenv.sh start; target/testenv or $ECR_REFRESH_TESTENV_RUN):
#                                one that serves ValidatingAdmissionPolicy gets every option, one
#                                that does not (1.20.2) must get the chart's refusal when forced
#   scripts/helmtest.sh server   only the checks against the running test server
#   flock /tmp/ecr-refresh-node.lock scripts/helmtest.sh cluster
#                                helm install / upgrade / uninstall on a real v1.36.3 cluster
#                                (scripts/cluster.sh), with the image clustertest.sh builds
#
# One source of truth: the chart holds no copy of deploy/. files/deploy is a link to it and the
# templates read every object from there at render time (charts/ecr-refresh/templates). The drift
# test renders both (kubectl kustomize, helm template) for every component and optional file and
# compares them object by object; a new component or file in deploy/ that the chart does not offer
# fails it with the instruction to add a value for it.
# Each check prints `ok - …` or `not ok - …`; the last line is `helmtest: N passed, M failed`.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=${ECR_REFRESH_TESTENV_RUN:-$ROOT/target/testenv}
CHART=$ROOT/charts/ecr-refresh
KUBECTL=${KUBECTL:-kubectl}

log() { printf 'helmtest: %s\n' "$*" >&2; }
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"

# Each kustomize component of deploy/ and the chart values that render the same.
declare -A COMPONENTS=(
  [allow-delete]="allowDelete=true"
  [allow-force]="admissionPolicies.allowForce=true"
  # The component's placeholder namespace and hosts, so the two render the same.
  [argocd]="argocd.namespace=argocd,argocd.hosts={123456789012.dkr.ecr.us-east-1.amazonaws.com,123456789012.dkr-ecr.us-east-1.on.aws}"
  [born-linked]="bornLinked=true"
  [without-admission-policy]="admissionPolicies.install=never"
  [tenants]="tenants.enabled=true"
  # The component's placeholder ARN, so the two render the same without normalising anything.
  [web-identity]="aws.credentials.mode=webIdentity,aws.credentials.webIdentity.roleArn=arn:aws:iam::123456789012:role/ecr-refresh"
)
# Each file of deploy/ that deploy/kustomization.yaml does not list: the values that add it
# (checked against kustomize with the file added), "+FILE" for a file applied together with FILE
# (its values render both, checked against kustomize with both added), or "-" and why the chart
# leaves it out.
declare -A FILES=(
  [stuck-pods-rbac.yaml]="stuckPodsRbac=true"
  [stuck-pods-policy.yaml]="+stuck-pods-rbac.yaml"
  [prometheusrule.yaml]="prometheusRule.enabled=true"
  [namespaced-rbac.yaml]="- an alternative to rbac.yaml for a few named namespaces; the chart grants the cluster-wide RBAC"
  [alerts.yaml]="- a Prometheus rule file, not a Kubernetes object; prometheusRule.enabled renders the same rules"
)
# What `auto` finds on a current cluster, for rendering without one.
API_VERSIONS=admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy,admissionregistration.k8s.io/v1/MutatingAdmissionPolicy,monitoring.coreos.com/v1/PrometheusRule
# Every option on (credentials in both non-default modes are added per render).
ALL_ON=allowDelete=true,admissionPolicies.allowForce=true,admissionPolicies.install=always,bornLinked=true,stuckPodsRbac=true,prometheusRule.enabled=true,argocd.namespace=argocd,argocd.allowDelete=true
ALL_VALUES=(
  --set "$ALL_ON"
  --set image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef
  --set schedule=@hourly --set secretName=ecr-pull --set aws.region=eu-west-1
  --set-string 'aws.registries={210987654321,123456789012.dkr.ecr.us-west-2.amazonaws.com}'
  --set 'argocd.hosts={123456789012.dkr.ecr.eu-west-1.amazonaws.com,123456789012.dkr-ecr.eu-west-1.on.aws}'
  --set 'namespaces.include={team-*,apps}' --set 'namespaces.exclude={team-sandbox}'
  --set namespaces.selector=ecr=yes --set pushgateway=http://pushgateway.monitoring:9091
  --set prometheusRule.labels.release=kube-prometheus
  --set resources.limits.memory=256Mi --set priorityClassName=system-cluster-critical --set hostNetwork=true
  --set 'tolerations[0].key=dedicated' --set 'tolerations[0].operator=Exists'
  --set 'affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=kubernetes.io/arch'
  --set 'affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=In'
  --set 'affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].values={amd64,arm64}'
  --set 'extraEnv[0].name=ECR_REFRESH_CONCURRENCY' --set-string 'extraEnv[0].value=8'
  --set 'extraArgs={--delete-stuck-pods}'
  --set 'extraVolumes[0].name=helper' --set 'extraVolumes[0].emptyDir.medium=Memory'
  --set 'extraVolumeMounts[0].name=helper' --set 'extraVolumeMounts[0].mountPath=/helper'
)
CREDENTIAL_MODES=(
  "aws.credentials.mode=webIdentity,aws.credentials.webIdentity.roleArn=arn:aws:iam::123456789012:role/ecr-refresh"
  "aws.credentials.mode=credentialProcess,aws.credentials.credentialProcess.command=/helper/aws-creds --json"
)

WORK=$(mktemp -d /tmp/ecr-refresh-helmtest.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# helm, without its note that files/deploy is a link (it is one on purpose).
helm() { "$HELM" "$@" 2> >(grep -v 'found symbolic link in path' >&2); }
render() { helm template ecr-refresh "$CHART_DIR" -n kube-system "$@"; }

# --- offline -------------------------------------------------------------------------------------

check_lint() {
  local out
  out=$(helm lint --strict "$CHART" 2>&1) || { REASON=$(tail -n 5 <<<"$out" | tr '\n' ' '); return 1; }
}

# refused DESCRIPTION WANT ARGS...: helm template must fail and say WANT (the key).
refused() {
  local want=$2 out; shift 2
  if out=$(render "$@" 2>&1); then REASON="rendered without complaint"; return 1; fi
  grep -qF -- "$want" <<<"$out" || { REASON="the error does not name $want: $(tr '\n' ' ' <<<"$out" | cut -c1-300)"; return 1; }
}
check_typo() { refused typo "additional properties 'schedul' not allowed" --set schedul=@daily; }
check_nested_typo() { refused typo "at '/aws': additional properties 'regoin' not allowed" --set aws.regoin=eu-west-1; }
check_wrong_type() { refused type "at '/bornLinked': got string, want boolean" --set-string bornLinked=true; }
check_unknown_mode() { refused mode "at '/aws/credentials/mode': value must be one of 'secret', 'webIdentity', 'credentialProcess'" --set aws.credentials.mode=keyless; }
check_mode_needs_arn() { refused arn "at '/aws/credentials/webIdentity/roleArn': minLength" --set aws.credentials.mode=webIdentity; }
check_policies_value() { refused install "at '/admissionPolicies/install': value must be one of 'auto', 'always', 'never'" --set admissionPolicies.install=yes; }
# An empty resourceNames would grant every Secret in Argo CD's namespace: no hosts, no Role,
# whether the schema is checked or skipped.
check_argocd_needs_hosts() { refused hosts "at '/argocd/hosts': minItems: got 0, want 1" --set argocd.namespace=argocd; }
check_argocd_needs_hosts_unchecked() { refused hosts "argocd.namespace=argocd, but argocd.hosts is empty" --skip-schema-validation --set argocd.namespace=argocd; }
check_argocd_ecr_hosts() { refused host "at '/argocd/hosts/0': 'github.com' does not match pattern" --set argocd.namespace=argocd --set 'argocd.hosts={github.com}'; }
check_argocd_hosts_need_namespace() { refused namespace "at '/argocd/hosts': maxItems: got 1, want 0" --set 'argocd.hosts={123456789012.dkr.ecr.us-east-1.amazonaws.com}'; }

# `helm package` resolves the link: the packaged chart holds deploy/'s files and renders the same.
# tenants.rules (--set-file) is the ConfigMap's file as given, byte for byte, and the tool reads
# it where the CronJob mounts it.
check_tenants_rules() {
  local rules=$WORK/rules.yaml got
  printf 'tenants:\n  - name: web\n    namespaces: ["web-*"]\n    roleArn: arn:aws:iam::210987654321:role/web-pull\n' >"$rules"
  got=$(render --set tenants.enabled=true --set-file tenants.rules="$rules" | python3 -c '
import sys, yaml
for d in yaml.safe_load_all(sys.stdin):
    if d and d["kind"] == "ConfigMap" and d["metadata"]["name"] == "ecr-refresh-tenants":
        sys.stdout.write(d["data"]["tenants.yaml"])
') || { REASON="could not render with tenants.rules"; return 1; }
  [ "$got" = "$(cat "$rules")" ] || { REASON="the ConfigMap holds: $got"; return 1; }
}

check_package() {
  helm package "$CHART" -d "$WORK/pkg" >/dev/null || { REASON="helm package failed"; return 1; }
  local tgz; tgz=$(ls "$WORK"/pkg/ecr-refresh-*.tgz)
  # (A list first: grep -q ending early would fail the pipe under pipefail.)
  tar tzf "$tgz" >"$WORK/pkg/list" && grep -qx 'ecr-refresh/files/deploy/admission-policy.yaml' "$WORK/pkg/list" || { REASON="$tgz lacks files/deploy/admission-policy.yaml"; return 1; }
  diff <(render --api-versions "$API_VERSIONS") <(CHART_DIR=$tgz render --api-versions "$API_VERSIONS") >/dev/null ||
    { REASON="the packaged chart renders differently"; return 1; }
}

# Installed in another namespace, nothing names kube-system: the ServiceAccount, the bindings, the
# ledger's Role, the born-linked policy's parameter and the user name every admission policy
# matches all move.
check_other_namespace() {
  local out
  out=$(helm template ecr-refresh "$CHART" -n ecr-system --api-versions "$API_VERSIONS" --set bornLinked=true,allowDelete=true,stuckPodsRbac=true) ||
    { REASON="helm template failed"; return 1; }
  if grep -n kube-system <<<"$out"; then REASON="kube-system is still named: $(grep kube-system <<<"$out" | head -n 3 | tr '\n' ' ')"; return 1; fi
  [ "$(grep -c "request.userInfo.username == 'system:serviceaccount:ecr-system:ecr-refresh'" <<<"$out")" -eq 5 ] ||
    { REASON="the policies do not all match system:serviceaccount:ecr-system:ecr-refresh"; return 1; }
  # The ledger's Role and RoleBinding, the born-linked reader's (its settings ConfigMap), and the
  # CronJob finding the ledger in its own namespace.
  local placed; placed=$(python3 -c 'import sys, yaml
for d in yaml.safe_load_all(sys.stdin):
    if d and d["kind"] in ("Role", "RoleBinding"): print(d["kind"], d["metadata"]["namespace"], d["metadata"]["name"])
    if d and d["kind"] == "CronJob":
        env = d["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"]
        print(*[e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") for e in env if e["name"] == "ECR_REFRESH_STATE_NAMESPACE"])' <<<"$out")
  [ "$(sort <<<"$placed")" = "$(printf 'Role ecr-system ecr-refresh\nRole ecr-system ecr-refresh-born-linked-reader\nRoleBinding ecr-system ecr-refresh\nRoleBinding ecr-system ecr-refresh-born-linked-reader\nmetadata.namespace' | sort)" ] ||
    { REASON="want the Roles and RoleBindings ecr-refresh and ecr-refresh-born-linked-reader in ecr-system and ECR_REFRESH_STATE_NAMESPACE from metadata.namespace: $(tr '\n' ' ' <<<"$placed")"; return 1; }
}

# The README's values table is the one scripts/helm-values-table.py makes from values.yaml.
check_values_table() {
  local want got
  want=$(python3 "$ROOT/scripts/helm-values-table.py" "$CHART/values.yaml") || { REASON="helm-values-table.py failed"; return 1; }
  got=$(sed -n '/<!-- helm-values-table: begin -->/,/<!-- helm-values-table: end -->/p' "$ROOT/README.md" | sed '1d;$d')
  [ "$want" = "$got" ] || { REASON="README.md's values table differs from values.yaml: regenerate it with python3 scripts/helm-values-table.py charts/ecr-refresh/values.yaml (between the helm-values-table markers): $(diff <(echo "$got") <(echo "$want") | head -n 6 | tr '\n' ' ')"; return 1; }
}

# kustomize_with DEPLOY OUT [COMPONENT|FILE...]: deploy/ plus components (dirs) or files.
kustomize_with() {
  local out=$2 dir deploy
  dir=$(mktemp -d "$WORK/k.XXXXXX")
  # kustomize takes relative paths only.
  deploy=$(realpath --relative-to="$dir" "$1")
  shift 2
  {
    echo "resources: [$deploy$(for x in "$@"; do [ -f "$dir/$deploy/$x" ] && printf ', %s' "$deploy/$x"; done)]"
    echo "components: [$(for x in "$@"; do [ -d "$dir/$deploy/$x" ] && printf '%s, ' "$deploy/$x"; done)]"
  } >"$dir/kustomization.yaml"
  "$KUBECTL" kustomize --load-restrictor=LoadRestrictionsNone "$dir" >"$out"
}

# drift DEPLOY CHART [defaults]: every component and optional file of DEPLOY (or the defaults
# only), rendered by kustomize and by the chart, compared; also fails on anything in DEPLOY the
# chart does not know.
drift() {
  local deploy=$1 CHART_DIR=$2 only=${3:-} x name values problems=""
  for x in "$deploy"/*/; do
    name=$(basename "$x")
    [ -n "${COMPONENTS[$name]:-}" ] || problems+="deploy/$name/ is a component the chart does not offer: add a value for it (charts/ecr-refresh/values.yaml, values.schema.json, templates/objects.yaml) and its line in COMPONENTS in scripts/helmtest.sh. "
  done
  local base; base=$(python3 -c 'import sys, yaml; print(" ".join(yaml.safe_load(open(sys.argv[1]))["resources"]))' "$deploy/kustomization.yaml")
  for x in "$deploy"/*.yaml; do
    name=$(basename "$x")
    [ "$name" = kustomization.yaml ] && continue
    [[ " $base " == *" $name "* ]] && continue
    [ -n "${FILES[$name]:-}" ] || problems+="deploy/$name is not in deploy/kustomization.yaml and the chart does not offer it: add a value for it (or say why not) in FILES in scripts/helmtest.sh. "
  done
  [ -z "$problems" ] || { echo "$problems"; return 1; }
  local cases=("defaults|") all_values="" all_parts=()
  for name in "${!COMPONENTS[@]}"; do cases+=("component $name|${COMPONENTS[$name]}|$name"); done
  local with x2
  for name in "${!FILES[@]}"; do
    values=${FILES[$name]}
    [ "${values:0:1}" = - ] || [ "${values:0:1}" = + ] && continue
    with=""
    for x2 in "${!FILES[@]}"; do [ "${FILES[$x2]}" = "+$name" ] && with+=" $x2"; done
    cases+=("file $name$with|$values|$name$with")
  done
  # Every option that can be on at once.
  for name in "${!COMPONENTS[@]}" "${!FILES[@]}"; do
    values=${COMPONENTS[$name]:-${FILES[$name]}}
    [ "${values:0:1}" = - ] || [ "$name" = without-admission-policy ] && continue
    [ "${values:0:1}" = + ] || all_values+=${all_values:+,}$values
    all_parts+=("$name")
  done
  cases+=("every option|$all_values|${all_parts[*]}")
  [ "$only" != defaults ] || cases=("defaults|")
  local c what parts i=0 rc=0
  for c in "${cases[@]}"; do
    IFS='|' read -r what values parts <<<"$c"
    i=$((i + 1))
    # shellcheck disable=SC2086 # parts is a list
    kustomize_with "$deploy" "$WORK/k$i.yaml" $parts || { echo "kubectl kustomize failed ($what)"; rc=1; continue; }
    render --api-versions "$API_VERSIONS" ${values:+--set "$values"} >"$WORK/h$i.yaml" || { echo "helm template failed ($what)"; rc=1; continue; }
    python3 "$ROOT/scripts/helm-compare.py" "$WORK/k$i.yaml" "$WORK/h$i.yaml" "$what" || rc=1
  done
  return "$rc"
}

check_drift() {
  local out
  out=$(drift "$ROOT/deploy" "$CHART" 2>&1) && { log "$(grep -c ', the same in' <<<"$out") renderings compared"; return 0; }
  REASON=$(tr '\n' ' ' <<<"$out" | cut -c1-1500)
  return 1
}

# The drift test itself, on copies: a change to one side only must fail it, with the instruction;
# a change the chart follows by construction (a rule in a deploy/ file) must not.
copies() {
  rm -rf "$WORK/copy" && mkdir -p "$WORK/copy"
  cp -r "$ROOT/deploy" "$WORK/copy/deploy"
  cp -r "$CHART" "$WORK/copy/chart" && ln -sfn "$WORK/copy/deploy" "$WORK/copy/chart/files/deploy"
}
check_drift_sees_chart_change() {
  copies
  sed -i 's|^schedule: .*|schedule: "*/10 * * * *"|' "$WORK/copy/chart/values.yaml"
  local out; out=$(drift "$WORK/copy/deploy" "$WORK/copy/chart" defaults 2>&1) && { REASON="passed with the chart's schedule changed"; return 1; }
  grep -q "CronJob/kube-system/ecr-refresh .spec.schedule: deploy/ '2-59/5 \* \* \* \*', chart '\*/10 \* \* \* \*'" <<<"$out" ||
    { REASON="not the expected failure: $(tr '\n' ' ' <<<"$out" | cut -c1-400)"; return 1; }
}
check_drift_sees_new_component() {
  copies
  mkdir "$WORK/copy/deploy/node-local"
  printf 'apiVersion: kustomize.config.k8s.io/v1alpha1\nkind: Component\n' >"$WORK/copy/deploy/node-local/kustomization.yaml"
  local out; out=$(drift "$WORK/copy/deploy" "$WORK/copy/chart" 2>&1) && { REASON="passed with a component the chart does not know"; return 1; }
  grep -q "deploy/node-local/ is a component the chart does not offer: add a value" <<<"$out" ||
    { REASON="not the expected failure: $(tr '\n' ' ' <<<"$out" | cut -c1-400)"; return 1; }
}
check_drift_sees_new_kustomize_feature() {
  copies
  printf 'commonLabels:\n  team: infra\n' >>"$WORK/copy/deploy/kustomization.yaml"
  local out; out=$(drift "$WORK/copy/deploy" "$WORK/copy/chart" defaults 2>&1) && { REASON="passed with commonLabels in deploy/kustomization.yaml"; return 1; }
  grep -q "deploy/kustomization.yaml uses \`commonLabels\`, which the chart does not read" <<<"$out" ||
    { REASON="not the expected failure: $(tr '\n' ' ' <<<"$out" | cut -c1-400)"; return 1; }
}
check_chart_follows_deploy() {
  copies
  # A new rule in rbac.yaml and a new policy file in the kustomization: the chart has them too.
  sed -i 's|    verbs: \["get", "list"\]|    verbs: ["get", "list", "watch"]|' "$WORK/copy/deploy/rbac.yaml"
  grep -q '"watch"' "$WORK/copy/deploy/rbac.yaml" || { REASON="the test's edit of rbac.yaml did not apply"; return 1; }
  sed -n '/^---$/,$p' "$WORK/copy/deploy/stuck-pods-rbac.yaml" | sed 's/ecr-refresh-stuck-pods/ecr-refresh-extra/' >"$WORK/copy/deploy/extra.yaml"
  sed -i 's|^  - cronjob.yaml|  - cronjob.yaml\n  - extra.yaml|' "$WORK/copy/deploy/kustomization.yaml"
  local out; out=$(drift "$WORK/copy/deploy" "$WORK/copy/chart" defaults 2>&1) || { REASON=$(tr '\n' ' ' <<<"$out" | cut -c1-600); return 1; }
  CHART_DIR=$WORK/copy/chart render --api-versions "$API_VERSIONS" | grep 'name: ecr-refresh-extra' >/dev/null || { REASON="the chart did not render deploy/extra.yaml"; return 1; }
}

# --- against the running test server ---------------------------------------------------------------

kadm() { "$KUBECTL" --kubeconfig "$ECR_REFRESH_TEST_KUBECONFIG" "$@"; }
# helm template with the server's capabilities (discovery), as helm install sees them.
render_server() { CHART_DIR=$CHART render --dry-run=server --kubeconfig "$ECR_REFRESH_TEST_KUBECONFIG" "$@"; }

testenv_ready() {
  [ -f "$RUN_DIR/env.sh" ] || { REASON="no test server ($RUN_DIR/env.sh missing): run scripts/testenv.sh start"; return 1; }
  # shellcheck source=/dev/null
  . "$RUN_DIR/env.sh"
  SERVER_VERSION=$(kadm version -o json 2>/dev/null | jq -r .serverVersion.gitVersion) && [ -n "$SERVER_VERSION" ] ||
    { REASON="the test server at $ECR_REFRESH_TEST_APISERVER does not answer"; return 1; }
  if kadm api-resources --api-group=admissionregistration.k8s.io -o name | grep -x validatingadmissionpolicies.admissionregistration.k8s.io >/dev/null; then
    SERVES_POLICIES=1
  else
    SERVES_POLICIES=""
  fi
}

# A stand-in for the Prometheus Operator's CRD (the real one is not reachable here): lets the
# server accept a PrometheusRule and the chart see monitoring.coreos.com/v1 served.
prometheusrule_crd() {
  kadm get crd prometheusrules.monitoring.coreos.com >/dev/null 2>&1 && return 0
  kadm apply -f - >/dev/null <<'YAML' || return 1
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: prometheusrules.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: PrometheusRule, plural: prometheusrules, singular: prometheusrule, listKind: PrometheusRuleList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                groups:
                  type: array
                  items: {type: object, x-kubernetes-preserve-unknown-fields: true}
YAML
  kadm wait --for=condition=Established crd/prometheusrules.monitoring.coreos.com --timeout=30s >/dev/null &&
    for _ in $(seq 1 30); do kadm api-resources --api-group=monitoring.coreos.com 2>/dev/null | grep prometheusrules >/dev/null && return 0; sleep 1; done
  return 1
}

# dry_run NAME helm-args...: renders with the server's capabilities and has the server accept it.
dry_run() {
  local name=$1 out; shift
  render_server "$@" >"$WORK/$name.yaml" 2>"$WORK/$name.err" || { REASON="helm template: $(tr '\n' ' ' <"$WORK/$name.err" | cut -c1-400)"; return 1; }
  out=$(kadm apply --dry-run=server -f "$WORK/$name.yaml" 2>&1) || { REASON="kubectl apply --dry-run=server: $(tr '\n' ' ' <<<"$out" | cut -c1-600)"; return 1; }
  log "$name: $(grep -c 'created (server dry run)' <<<"$out") objects accepted by kube-apiserver $SERVER_VERSION"
}
kind_names() { python3 -c 'import sys, yaml; print(" ".join(d["kind"] + "/" + d["metadata"]["name"] for d in yaml.safe_load_all(open(sys.argv[1])) if d))' "$1"; }
kinds() { python3 -c 'import sys, yaml; print(" ".join(sorted(d["apiVersion"] + "/" + d["kind"] for d in yaml.safe_load_all(open(sys.argv[1])) if d)))' "$1"; }

check_defaults_current() {
  dry_run defaults || return 1
  local k; k=$(kinds "$WORK/defaults.yaml")
  # auto found the four policies; the CronJob is batch/v1.
  [ "$(grep -o 'admissionregistration.k8s.io/v1/ValidatingAdmissionPolicy ' <<<"$k " | wc -l)" -eq 4 ] &&
    [[ " $k " == *" batch/v1/CronJob "* ]] || { REASON="unexpected objects: $k"; return 1; }
}
check_every_option_current() {
  local mode i=0
  prometheusrule_crd || { REASON="could not create the PrometheusRule stand-in CRD"; return 1; }
  # argocd.namespace's Role and RoleBinding go there.
  kadm get namespace argocd >/dev/null 2>&1 || kadm create namespace argocd >/dev/null ||
    { REASON="could not create namespace argocd"; return 1; }
  for mode in "${CREDENTIAL_MODES[@]}"; do
    i=$((i + 1))
    dry_run "every-option-$i" "${ALL_VALUES[@]}" --set "$mode" || return 1
  done
  local k; k=$(kinds "$WORK/every-option-1.yaml")
  for want in admissionregistration.k8s.io/v1/MutatingAdmissionPolicy monitoring.coreos.com/v1/PrometheusRule; do
    [[ " $k " == *" $want "* ]] || { REASON="$want missing: $k"; return 1; }
  done
  # stuckPodsRbac brings deploy/stuck-pods-policy.yaml where the policies are installed.
  local names; names=$(kind_names "$WORK/every-option-1.yaml")
  for want in ValidatingAdmissionPolicy/ecr-refresh-stuck-pods ValidatingAdmissionPolicyBinding/ecr-refresh-stuck-pods; do
    [[ " $names " == *" $want "* ]] || { REASON="stuckPodsRbac=true did not render $want"; return 1; }
  done
  for want in Role/ecr-refresh-argocd RoleBinding/ecr-refresh-argocd; do
    [[ " $names " == *" $want "* ]] || { REASON="argocd.namespace did not render $want"; return 1; }
  done
  grep -q 'audience: sts.amazonaws.com' "$WORK/every-option-1.yaml" &&
    grep -q 'credential_process = /helper/aws-creds --json' "$WORK/every-option-2.yaml" ||
    { REASON="a credentials mode did not render"; return 1; }
}
check_forced_on_old() {
  local out
  if out=$(render_server --set admissionPolicies.install=always 2>&1); then REASON="rendered on $SERVER_VERSION"; return 1; fi
  grep -qF "admissionPolicies.install=always, but this cluster (Kubernetes $SERVER_VERSION) does not serve admissionregistration.k8s.io/v1 ValidatingAdmissionPolicy" <<<"$out" ||
    { REASON="not the chart's message: $(tr '\n' ' ' <<<"$out" | cut -c1-400)"; return 1; }
  log "forced on $SERVER_VERSION: $(grep -o 'admissionPolicies.install=always.*' <<<"$out" | cut -c1-200)"
}
check_born_linked_old() {
  local out
  if out=$(render_server --set bornLinked=true 2>&1); then REASON="rendered on $SERVER_VERSION"; return 1; fi
  grep -qF "bornLinked=true, but this cluster (Kubernetes $SERVER_VERSION) does not serve admissionregistration.k8s.io/v1 MutatingAdmissionPolicy" <<<"$out" ||
    { REASON="not the chart's message: $(tr '\n' ' ' <<<"$out" | cut -c1-400)"; return 1; }
}
# Without the policies, stuckPodsRbac is the RBAC alone: the server takes it, no policy in it.
check_stuck_pods_old() {
  dry_run stuck-pods-old --set stuckPodsRbac=true || return 1
  local names; names=$(kind_names "$WORK/stuck-pods-old.yaml")
  [[ " $names " == *" ClusterRole/ecr-refresh-stuck-pods "* ]] && [[ " $names " != *"ValidatingAdmissionPolicy"* ]] ||
    { REASON="want ClusterRole/ecr-refresh-stuck-pods and no policy: $names"; return 1; }
}
check_defaults_old() {
  dry_run defaults-old || return 1
  local k; k=$(kinds "$WORK/defaults-old.yaml")
  # The CronJob in the version the server serves (batch/v1beta1 on 1.20).
  local cronjob=batch/v1/CronJob
  kadm api-resources --api-group=batch -o wide | grep -E '^cronjobs .*batch/v1 ' >/dev/null || cronjob=batch/v1beta1/CronJob
  [[ " $k " != *"ValidatingAdmissionPolicy"* ]] && [[ " $k " == *" $cronjob "* ]] ||
    { REASON="unexpected objects (want $cronjob, no policies): $k"; return 1; }
}

main_offline_and_server() {
  HELM=$("$ROOT/scripts/testenv.sh" helm-path)
  [ -x "$HELM" ] || "$ROOT/scripts/testenv.sh" install-helm || { echo "helmtest: cannot install helm" >&2; exit 1; }
  apt_install python3-yaml jq || { echo "helmtest: could not install python3-yaml, jq" >&2; exit 1; }
  local t0=$SECONDS
  CHART_DIR=$CHART
  run_check "helm lint --strict charts/ecr-refresh" check_lint
  run_check "schema: a misspelled top-level value is refused, naming it (schedul)" check_typo
  run_check "schema: a misspelled nested value is refused, naming it (aws.regoin)" check_nested_typo
  run_check "schema: a wrong type is refused, naming the key (bornLinked: \"true\")" check_wrong_type
  run_check "schema: an unknown credentials mode is refused, naming the key and the modes" check_unknown_mode
  run_check "schema: mode webIdentity without a role ARN is refused, naming the key" check_mode_needs_arn
  run_check "schema: admissionPolicies.install takes auto, always or never" check_policies_value
  run_check "schema: argocd.namespace without argocd.hosts is refused, naming the key" check_argocd_needs_hosts
  run_check "argocd.namespace without argocd.hosts fails with the chart's message when the schema is skipped" check_argocd_needs_hosts_unchecked
  run_check "schema: argocd.hosts takes ECR registry hosts only" check_argocd_ecr_hosts
  run_check "schema: argocd.hosts without argocd.namespace is refused" check_argocd_hosts_need_namespace
  run_check "installed in another namespace (-n ecr-system), the policies and bindings follow it" check_other_namespace
  run_check "tenants.rules (--set-file) becomes the tenants ConfigMap's file as given" check_tenants_rules
  run_check "helm package: the packaged chart carries deploy/'s files and renders the same" check_package
  run_check "README's values table is generated from values.yaml (scripts/helm-values-table.py)" check_values_table
  run_check "drift: deploy/ and the chart render the same objects (defaults, each component and file, every option)" check_drift
  run_check "drift test fails when only the chart changes (its schedule default)" check_drift_sees_chart_change
  run_check "drift test fails when deploy/ gains a component the chart does not offer" check_drift_sees_new_component
  run_check "drift test fails when deploy/kustomization.yaml uses a kustomize feature the chart does not read" check_drift_sees_new_kustomize_feature
  run_check "the chart follows a changed rule and a new file in deploy/kustomization.yaml by itself" check_chart_follows_deploy
  server_checks
  echo "helmtest: $PASSED passed, $FAILED failed ($((SECONDS - t0))s)"
  [ "$FAILED" -eq 0 ]
}

# Against the running test server: every option where it serves the policies (v1.36.3), the
# chart's refusals and the plain install where it does not (1.20.2).
server_checks() {
  if testenv_ready; then
    if [ -n "$SERVES_POLICIES" ]; then
      run_check "kube-apiserver $SERVER_VERSION: defaults (policies found by auto, batch/v1 CronJob) pass kubectl apply --dry-run=server" check_defaults_current
      run_check "kube-apiserver $SERVER_VERSION: every option, each credentials mode, pass kubectl apply --dry-run=server" check_every_option_current
    else
      run_check "kube-apiserver $SERVER_VERSION: admissionPolicies.install=always fails with the chart's message" check_forced_on_old
      run_check "kube-apiserver $SERVER_VERSION: bornLinked=true fails with the chart's message" check_born_linked_old
      run_check "kube-apiserver $SERVER_VERSION: defaults (no policies) pass kubectl apply --dry-run=server" check_defaults_old
      run_check "kube-apiserver $SERVER_VERSION: stuckPodsRbac=true renders the RBAC without deploy/stuck-pods-policy.yaml and passes kubectl apply --dry-run=server" check_stuck_pods_old
    fi
  else
    run_check "a running test server to dry-run against" false
  fi
}

main_server() {
  HELM=$("$ROOT/scripts/testenv.sh" helm-path)
  [ -x "$HELM" ] || "$ROOT/scripts/testenv.sh" install-helm || { echo "helmtest: cannot install helm" >&2; exit 1; }
  local t0=$SECONDS
  CHART_DIR=$CHART
  server_checks
  echo "helmtest: $PASSED passed, $FAILED failed ($((SECONDS - t0))s)"
  [ "$FAILED" -eq 0 ]
}

# --- on the real cluster ---------------------------------------------------------------------------
# The image and the Job helpers are clustertest.sh's (sourced). The only values that differ from
# a real install are the ones a loopback cluster needs, as clustertest.sh's overlay names them:
# the imported image, hostNetwork, the loopback apiserver and the ECR stand-in, its region, and a
# schedule of every minute.

helm_k() { "$HELM" --kubeconfig "$ECR_REFRESH_CLUSTER_KUBECONFIG" -n kube-system "$@" 2> >(grep -v 'found symbolic link in path' >&2); }

write_test_values() {
  cat >"$RUN/values.yaml" <<YAML
image: {repository: ${APP_IMAGE%:*}, tag: ${APP_IMAGE##*:}}
hostNetwork: true
schedule: "* * * * *"
aws: {region: $ECR_REFRESH_CLUSTER_REGION}
namespaces: {include: [helm-a]}
stuckPodsRbac: true
extraEnv:
  - {name: KUBERNETES_SERVICE_HOST, value: "$ECR_REFRESH_CLUSTER_APISERVER_HOST"}
  - {name: KUBERNETES_SERVICE_PORT, value: "$ECR_REFRESH_CLUSTER_APISERVER_PORT"}
  - {name: AWS_ENDPOINT_URL, value: "$ECR_REFRESH_CLUSTER_ECR_ENDPOINT"}
YAML
}

has_pull_secret() { # namespace: our Secret for the registry, and default lists it
  local t
  t=$(k -n "$1" get secret "$SECRET" -o json 2>/dev/null | jq -r --arg h "${ECR_REFRESH_CLUSTER_IMAGE%%/*}" \
    'select(.type == "kubernetes.io/dockerconfigjson") | .data[".dockerconfigjson"] | @base64d | fromjson | .auths | has($h)')
  [ "$t" = true ] || { echo "$1: no Secret $SECRET for the registry"; return 1; }
  k -n "$1" get serviceaccount default -o json | jq -e --arg s "$SECRET" '[.imagePullSecrets[]?.name] | index($s)' >/dev/null ||
    { echo "$1: ServiceAccount default does not list $SECRET"; return 1; }
}
untouched() { # namespace: no Secret of ours
  ! k -n "$1" get secret "$SECRET" >/dev/null 2>&1 || { echo "$1 has Secret $SECRET"; return 1; }
}
# The report of the log names exactly these namespaces.
report_names() { # log, namespaces...
  local log=$1; shift
  local got; got=$(jq -r 'select(.type? == "report") | [.namespaces[].name] | sort | join(" ")' "$log")
  echo "report namespaces: [$got]"
  [ "$got" = "$*" ]
}
job_logs() { # job -> $RUN/<job>.log, every attempt
  local p
  : >"$RUN/$1.log"
  for p in $(k -n kube-system get pods -l "job-name=$1" -o jsonpath='{.items[*].metadata.name}'); do
    k -n kube-system logs "$p" >>"$RUN/$1.log" 2>&1
  done
}

stage_helm_install() {
  k -n kube-system create secret generic ecr-refresh-aws \
    --from-literal=AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE --from-literal=AWS_SECRET_ACCESS_KEY=test-secret-key >/dev/null ||
    { REASON="could not create Secret ecr-refresh-aws"; return 1; }
  k create namespace helm-a >/dev/null && k create namespace helm-b >/dev/null && k create namespace helm-attack >/dev/null ||
    { REASON="could not create the namespaces"; return 1; }
  wait_for 30 k -n helm-b get serviceaccount default || { REASON="no ServiceAccount helm-b/default"; return 1; }
  write_test_values
  INSTALLED_AT=$(date -u +%s)
  check "helm install ecr-refresh charts/ecr-refresh -n kube-system (test image, every minute, namespaces.include=[helm-a], stuckPodsRbac)" \
    helm_k install ecr-refresh "$CHART" -f "$RUN/values.yaml"
  helm_k get manifest ecr-refresh >"$RUN/manifest.yaml" || { REASON="helm get manifest failed"; return 1; }
  check "auto installed the four ValidatingAdmissionPolicies, stuckPodsRbac the pod-delete one, and their bindings (v1.36.3 serves them)" \
    test "$(grep -c '^kind: ValidatingAdmissionPolicy' "$RUN/manifest.yaml")" -eq 10
}

stage_helm_first_firing() {
  wait_new_job $((INSTALLED_AT - 61)) 100 || { REASON="no Job within 100 s of helm install"; return 1; }
  FIRST_SCHEDULED=$JOB_SCHEDULED
  wait_done "$JOB" 90 || { REASON="Job $JOB did not finish in 90 s ($JOB_STATE)"; return 1; }
  job_logs "$JOB"
  check "the CronJob fired ($JOB, scheduled $(date -u -d "@$JOB_SCHEDULED" +%T)) and completed" is_complete
  check "its pod ran $APP_IMAGE and exited 0" pod_ran_image_and_exited_0 "$(job_pod "$JOB")"
  check "helm-a has Secret $SECRET for the registry and default lists it" has_pull_secret helm-a
  check "helm-b (not in namespaces.include) was left alone, and the report names helm-a only" \
    eval 'untouched helm-b && report_names "$RUN/$JOB.log" helm-a'
}

# The attacks of tests/it/admission_policy.rs, with a token of the chart's ServiceAccount: each must
# be refused, and nothing written. The Secrets go by server-side apply (a PATCH, which RBAC
# allows by name: the request the policy alone stops).
as_sa() {
  kubectl --kubeconfig "$RUN/sa.kubeconfig" --request-timeout=20s "$@"
}
refused_with() { # message, kubectl args...: must fail and say message
  local want=$1 out; shift
  if out=$(as_sa "$@" 2>&1); then echo "allowed: $out"; return 1; fi
  grep -qF -- "$want" <<<"$out" || { echo "refused, but not with \"$want\": $out"; return 1; }
}
secret_doc() { # type annotations-json data-json
  jq -n --arg t "$1" --argjson a "$2" --argjson d "$3" '{apiVersion: "v1", kind: "Secret",
    metadata: {name: "awsecr-cred", namespace: "helm-attack", labels: {"app.kubernetes.io/managed-by": "ecr-refresh"}, annotations: $a},
    type: $t, data: $d}'
}
stage_attacks() {
  local token
  token=$(k -n kube-system create token ecr-refresh --duration=10m) || { REASON="kubectl create token ecr-refresh failed"; return 1; }
  cat >"$RUN/sa.kubeconfig" <<KCFG
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "$ECR_REFRESH_CLUSTER_APISERVER", certificate-authority: "$ECR_REFRESH_CLUSTER_CA"}}]
users: [{name: sa, user: {token: "$token"}}]
contexts: [{name: c, context: {cluster: c, user: sa}}]
current-context: c
KCFG
  check "the token is the chart's ServiceAccount" eval 'as_sa auth whoami -o jsonpath="{.status.userInfo.username}" | grep -x system:serviceaccount:kube-system:ecr-refresh >/dev/null'
  local minting other
  minting=$(secret_doc kubernetes.io/service-account-token '{"kubernetes.io/service-account.name": "default"}' '{}')
  other=$(secret_doc Opaque '{}' '{".dockerconfigjson": "eyJhdXRocyI6e319"}')
  check "token minting (a service-account-token Secret of our name) is refused by ecr-refresh-secrets" \
    refused_with "ValidatingAdmissionPolicy 'ecr-refresh-secrets' with binding 'ecr-refresh-secrets' denied request: ecr-refresh writes only Secrets of type kubernetes.io/dockerconfigjson" \
    apply --server-side --field-manager=attacker -f - <<<"$minting"
  check "a Secret of another type (Opaque) of our name is refused by ecr-refresh-secrets" \
    refused_with "ValidatingAdmissionPolicy 'ecr-refresh-secrets' with binding 'ecr-refresh-secrets' denied request: ecr-refresh writes only Secrets of type kubernetes.io/dockerconfigjson" \
    apply --server-side --field-manager=attacker -f - <<<"$other"
  check "a Secret of another name is refused by RBAC" refused_with 'cannot create resource "secrets"' \
    -n helm-attack create secret generic other --from-literal=a=b
  check "a token for another ServiceAccount (TokenRequest) is refused by RBAC" refused_with 'cannot create resource "serviceaccounts/token"' \
    -n helm-attack create token default
  check "a workload-identity annotation on a ServiceAccount is refused by ecr-refresh-service-accounts" \
    refused_with "ValidatingAdmissionPolicy 'ecr-refresh-service-accounts'" \
    -n helm-attack annotate serviceaccount default iam.gke.io/gcp-service-account=admin@p.iam.gserviceaccount.com
  # stuckPodsRbac lets the token delete pods anywhere; deploy/stuck-pods-policy.yaml, which the
  # chart installs with it, refuses every delete sync would not make (a bare pod here).
  k -n helm-attack run victim --image=registry.invalid/none:1 --restart=Never >/dev/null || { REASON="could not create pod helm-attack/victim"; return 1; }
  check "deleting a bare pod (RBAC allows it with stuckPodsRbac) is refused by ecr-refresh-stuck-pods" \
    refused_with "ValidatingAdmissionPolicy 'ecr-refresh-stuck-pods' with binding 'ecr-refresh-stuck-pods' denied request: ecr-refresh deletes only" \
    -n helm-attack delete pod victim --wait=false
  check "the pod is still there" k -n helm-attack get pod victim
  check "nothing was written in helm-attack" eval '[ -z "$(k -n helm-attack get secrets -o name)" ] && ! k -n helm-attack get sa default -o json | jq -e ".metadata.annotations // {} | has(\"iam.gke.io/gcp-service-account\")" >/dev/null'
}

stage_upgrade() {
  # A schedule that fires once, two whole minutes ahead; the every-minute schedule would fire
  # in the minute between, so a Job there means the upgrade was not followed.
  local now skipped target
  now=$(date -u +%s)
  skipped=$(((now / 60 + 1) * 60))
  [ $((skipped - now)) -ge 20 ] || skipped=$((skipped + 60))
  target=$((skipped + 60))
  local schedule; schedule="$(date -u -d "@$target" +%-M) $(date -u -d "@$target" +%-H) * * *"
  check "helm upgrade: schedule \"$schedule\", namespaces.include=[helm-b]" \
    helm_k upgrade ecr-refresh "$CHART" -f "$RUN/values.yaml" --set "schedule=$schedule" --set 'namespaces.include={helm-b}'
  local upgraded; upgraded=$(date -u +%s)
  [ "$upgraded" -lt "$skipped" ] || { REASON="helm upgrade ended after $(date -u -d "@$skipped" +%T); cannot tell the schedules apart"; return 1; }
  check "the CronJob and the settings ConfigMap carry the new values" eval \
    '[ "$(k -n kube-system get cronjob ecr-refresh -o jsonpath="{.spec.schedule}")" = "$schedule" ] &&
     [ "$(k -n kube-system get configmap ecr-refresh -o jsonpath="{.data.ECR_REFRESH_NAMESPACE}")" = helm-b ]'
  # Jobs of the old schedule up to the upgrade are fine; the first one after it must be the new.
  wait_new_job "$upgraded" $((target - $(date -u +%s) + 60)) || { REASON="no firing by $(date -u -d "@$target" +%T) + 60 s"; return 1; }
  check "the next firing follows the new schedule: $(date -u -d "@$target" +%T), none at $(date -u -d "@$skipped" +%T)" \
    eval "echo \"next Job $JOB scheduled \$(date -u -d @$JOB_SCHEDULED +%T)\"; [ $JOB_SCHEDULED -eq $target ]"
  wait_done "$JOB" 90 || { REASON="Job $JOB did not finish in 90 s ($JOB_STATE)"; return 1; }
  job_logs "$JOB"
  check "it completed" is_complete
  check "it followed the new namespaces: helm-b has the Secret and the link, the report names helm-b only" \
    eval 'has_pull_secret helm-b && report_names "$RUN/$JOB.log" helm-b'
}

stage_uninstall() {
  local objects
  # What the install made and what the last revision holds (the upgrade could add objects).
  helm_k get manifest ecr-refresh >"$RUN/manifest-last.yaml" || { REASON="helm get manifest failed"; return 1; }
  objects=$(python3 -c 'import sys, yaml
seen = set()
for path in sys.argv[1:]:
    for d in yaml.safe_load_all(open(path)):
        # "-" for a cluster-scoped object: `read` would shift the name into an empty field.
        if d: seen.add((d["kind"], d["metadata"].get("namespace") or "-", d["metadata"]["name"]))
for o in sorted(seen): print(*o)' "$RUN/manifest.yaml" "$RUN/manifest-last.yaml")
  check "the Role and RoleBinding of the ledger are among them, in kube-system (the release namespace)" \
    eval 'grep -qx "Role kube-system ecr-refresh" <<<"$objects" && grep -qx "RoleBinding kube-system ecr-refresh" <<<"$objects"'
  check "helm uninstall ecr-refresh" helm_k uninstall ecr-refresh --wait --timeout 60s
  gone() {
    local kind ns name left="" out
    while read -r kind ns name; do
      [ "$ns" != - ] || ns=""
      # Only NotFound counts as gone; any other error (a kind the server does not know) does not.
      if out=$(k ${ns:+-n "$ns"} get "$kind" "$name" -o name 2>&1); then
        left+="$kind/$name "
      elif ! grep -q NotFound <<<"$out"; then
        left+="$kind/$name ($out) "
      fi
    done <<<"$objects"
    [ -z "$left" ] || { echo "still there: $left"; return 1; }
  }
  check "every one of the $(wc -l <<<"$objects") objects the chart made is gone" wait_for 30 gone
  check "the CronJob's Jobs went with it (garbage collector)" wait_for 60 eval '[ -z "$(k -n kube-system get jobs -l app.kubernetes.io/name=ecr-refresh -o name)" ]'
  check "the pull Secrets stay in the namespaces (README: prune --uninstall removes them)" eval 'has_pull_secret helm-a && has_pull_secret helm-b'
  check "the ledger ConfigMap ecr-refresh-state the runs wrote stays (README: delete it by hand)" k -n kube-system get configmap ecr-refresh-state
}

main_cluster() {
  local t0=$SECONDS
  [ "$(id -u)" = 0 ] || { echo "helmtest: needs root" >&2; exit 1; }
  HELM=$("$ROOT/scripts/testenv.sh" helm-path)
  [ -x "$HELM" ] || "$ROOT/scripts/testenv.sh" install-helm || { echo "helmtest: cannot install helm" >&2; exit 1; }
  # shellcheck source=scripts/clustertest.sh
  source "$ROOT/scripts/clustertest.sh"
  RUN=$ROOT/target/helmtest
  log() { printf 'helmtest: %s\n' "$*" >&2; }
  finish() {
    echo "helmtest cluster: $PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ]
  }
  apt_install python3 python3-yaml jq curl || { echo "helmtest: could not install python3-yaml, jq" >&2; exit 1; }
  # shellcheck source=scripts/node.sh
  source "$ROOT/scripts/node.sh"
  STATIC_BIN=${ECR_REFRESH_STATIC_BIN:-$("$ROOT/scripts/build-static.sh" x86_64 | tail -n 1)}
  [ -x "$STATIC_BIN" ] || { echo "helmtest: no static binary" >&2; exit 1; }
  cleanup
  trap 'cleanup' EXIT
  trap 'exit 130' INT TERM
  mkdir -p "$RUN"
  stage "image" stage_image
  "$ROOT/scripts/cluster.sh" up || { not_ok "scripts/cluster.sh up"; finish; return; }
  # shellcheck source=/dev/null
  source "$ECR_REFRESH_CLUSTER_RUN/env.sh"
  SOCK=$ECR_REFRESH_CLUSTER_CONTAINERD_SOCK
  import_image "$RUN/image" || { not_ok "ctr images import $APP_IMAGE"; finish; return; }
  local t1=$SECONDS
  stage "helm install" stage_helm_install
  stage "first firing" stage_helm_first_firing
  stage "attacks with the chart's identity" stage_attacks
  stage "helm upgrade" stage_upgrade
  stage "helm uninstall" stage_uninstall
  log "took $((SECONDS - t0))s ($((t1 - t0))s image and bring-up, $((SECONDS - t1))s on the cluster)"
  finish
}

case "${1:-}" in
  "") main_offline_and_server ;;
  server) main_server ;;
  cluster) main_cluster ;;
  *) echo "usage: $0 [server|cluster]" >&2; exit 2 ;;
esac
