#!/usr/bin/env bash
# What one write of the pull Secret costs kube-apiserver and etcd, per way of writing it: the CPU
# figure behind "a 10,000-namespace rotating pass cannot take 5 s on 2 cores". For each
# kube-apiserver that `scripts/testenv.sh servers` lists, it starts its OWN servers, runs the Go
# probe in scripts/bench/writecost/ (N Secrets per candidate, one warm-up round, then REPS
# round-robin rounds; medians) and stops them. Prints a markdown table on stdout.
#
#   scripts/bench/writecost.sh                                   # N = 2000, 3 rounds (~2 min a server)
#   WRITECOST_N=1000 WRITECOST_REPS=2 scripts/bench/writecost.sh # quicker
#
# Candidates: get (a read, for scale); ssa (server-side apply, what ecr-refresh sends); ssa-noop
# (the same apply again: changes nothing); jp-label (JSON patch: test our label, replace data, add
# each annotation); jp-rv (the same, guarded by a test of resourceVersion); merge (merge patch, no
# guard); put (the whole object with its resourceVersion).
# CPU is read from /proc/<pid>/stat, so it counts every request the servers served meanwhile
# (nothing else talks to these servers). Wall time depends on what else the machine runs.
#
# Environment (defaults in brackets): WRITECOST_N [2000], WRITECOST_REPS [3],
# WRITECOST_RUN_DIR [target/writecost-env], WRITECOST_ETCD_PORT / WRITECOST_APISERVER_PORT /
# WRITECOST_MOTO_PORT [34790 / 37443 / 36055], CARGO_TARGET_DIR [target/] (the probe is built there).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"

log() { printf 'writecost: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

case "${1:-}" in
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) die "unknown argument $1 (configure with environment variables; see --help)" ;;
esac

N=${WRITECOST_N:-2000}
REPS=${WRITECOST_REPS:-3}
[[ $N =~ ^[1-9][0-9]*$ ]] || die "WRITECOST_N: '$N' is not a positive integer"
[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "WRITECOST_REPS: '$REPS' is not a positive integer"
# ecr-refresh's own CPU per namespace in a rotating pass (BENCHMARKS.md: 2.3 CPU s at 10,000).
CLIENT_MS=0.2

export ECR_REFRESH_TESTENV_RUN=${WRITECOST_RUN_DIR:-$ROOT/target/writecost-env}
export ECR_REFRESH_TESTENV_ETCD_PORT=${WRITECOST_ETCD_PORT:-34790}
export ECR_REFRESH_TESTENV_APISERVER_PORT=${WRITECOST_APISERVER_PORT:-37443}
export ECR_REFRESH_TESTENV_MOTO_PORT=${WRITECOST_MOTO_PORT:-36055}
PROBE=${CARGO_TARGET_DIR:-$ROOT/target}/writecost/writecost

# Go as testenv.sh gets it for its kube-apiserver build: Debian's golang-go.
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
apt_install golang-go || die "cannot install golang-go"
log "installing the test servers (idempotent; the first time builds kube-apiserver, ~8 min)"
scripts/testenv.sh install
mkdir -p "$(dirname "$PROBE")"
(cd scripts/bench/writecost && go build -o "$PROBE" .) || die "go build of the probe failed"

mapfile -t servers < <(scripts/testenv.sh servers)
[ ${#servers[@]} -gt 0 ] || die "scripts/testenv.sh servers listed no kube-apiserver"

trap 'scripts/testenv.sh stop || true' EXIT
rows=""
for line in "${servers[@]}"; do
  label=${line%% *} bin=${line#* }
  log "$label: starting own servers (etcd :$ECR_REFRESH_TESTENV_ETCD_PORT, kube-apiserver :$ECR_REFRESH_TESTENV_APISERVER_PORT) in $ECR_REFRESH_TESTENV_RUN"
  ECR_REFRESH_TESTENV_APISERVER_BIN=$bin scripts/testenv.sh start
  # shellcheck disable=SC1091
  . "$ECR_REFRESH_TESTENV_RUN/env.sh"
  rows+=$("$PROBE" -label "$label" -n "$N" -reps "$REPS")$'\n' || die "$label: the probe failed"
done # the next start stops these servers first; the trap stops the last

echo "writecost.sh, $(date -u '+%Y-%m-%d %H:%M UTC'): N = $N Secrets per candidate, median of $REPS rounds, $(nproc) CPUs, load average at the end $(cut -d' ' -f1-3 /proc/loadavg)."
echo
echo "| server | candidate | apiserver CPU-ms/req | etcd CPU-ms/req | wall s ($N req, 16 at a time) | 10k pass on 2 cores ≥ s | answers |"
echo "|---|---|---|---|---|---|---|"
# The floor: every namespace's write costs apiserver + etcd + the tool's CPU, and 2 cores can
# give at most 2 CPU-s per second.
printf '%s' "$rows" | awk -F'\t' -v c="$CLIENT_MS" \
  '{ printf "| %s | %s | %.2f | %.2f | %.2f | %.1f | %s |\n", $1, $2, $3, $4, $5, ($3 + $4 + c) * 10000 / 2 / 1000, $6 }'
