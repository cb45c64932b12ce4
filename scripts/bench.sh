#!/usr/bin/env bash
# Benchmarks `ecr-refresh sync` against a real kube-apiserver + etcd and moto's ECR server,
# and writes the results to BENCHMARKS.md (overwriting it).
#
#   scripts/bench.sh                          # N = 100, 1000 and 10000 namespaces (~6-8 min)
#   BENCH_SIZES="100 1000" scripts/bench.sh   # quicker (~3 min with a warm build): no 10,000
#
# Setting up 10,000 namespaces + ServiceAccounts took ~30 s here (~600 objects/s), and its
# passes ~2.5 min, so 10,000 is in the default set.
#
# For every N it creates namespaces bench-<N>-<i> with a `default` ServiceAccount (no
# controller-manager runs, so nothing creates them for us), then times three passes of
# `ecr-refresh sync -n 'bench-<N>-*' -o json`: first (everything created and linked), steady
# (moto's fixed token: everything current), steady-rotating (an ECR stand-in returning a new token
# on every call, as real ECR does: every Secret rewritten) and steady-c1 (steady with
# --concurrency 1, the baseline). Before that, on BENCH_COMPARE_N namespaces, the tool side by
# side with a CronJob-style shell loop (aws ecr get-login-password; kubectl delete + create
# secret, kubectl patch serviceaccount). Requests are
# counted by the server (apiserver_request_total on /metrics), peak RSS by /usr/bin/time -v.
# Each pass is checked (all created/unchanged, all ServiceAccounts linked, exit 0); the script
# exits non-zero if a check fails. The measuring is done by scripts/bench/bench.py.
#
# Those passes run with --refresh-all (everything due: what every pass cost before due-only, and
# what a token rotation still costs). Then scripts/bench/due.py measures due-only passes (its section of BENCHMARKS.md, between the
# due-only markers): a pass with nothing due at BENCH_DUE_QUIET_N namespaces, 60 passes side by side
# on 1,000 namespaces (rewrite everything against due-only), and a simulated day with tokens that
# last 60 s. BENCH_ONLY_DUE=1 runs only that part (~5 min) and leaves the rest of BENCHMARKS.md.
# Last, scripts/bench/tenants.py puts `sync --tenants` (1,000 namespaces, 10 tenants, each its
# own role) side by side with one token for all (its section, between the tenants markers);
# BENCH_ONLY_TENANTS=1 runs only that part (~2 min).
#
# Only the write-up changed (e.g. scripts/bench/notes.md)? Re-render without measuring:
#   python3 scripts/bench/bench.py --render <target>/bench-results/results.json \
#     --markdown BENCHMARKS.md --notes scripts/bench/notes.md
#
# It runs its OWN test servers (not the default instance others' tests use), and stops them at
# the end. Environment knobs (defaults in brackets):
#   BENCH_SIZES               namespace counts ["100 1000 10000"]
#   BENCH_REPEAT              runs of each steady pass; the median is reported [3]
#   BENCH_IDLE_WAIT           seconds to wait before each pass for others' compilers to finish [20]
#   BENCH_IDLE_PROBE          seconds to watch the idle apiserver's own requests first [20]
#   BENCH_EXTRA_CONCURRENCY   extra steady passes at these --concurrency values, e.g. "4 32 64" [""]
#   BENCH_REV                 build and measure this git revision (e.g. HEAD) instead of the
#                             working tree, from a clean export [working tree]
#   BENCH_SYNC_ARGS           extra arguments for every sync run, e.g. "--timeout 30m" [""]
#   BENCH_WORKERS             client threads creating namespaces [16]
#   BENCH_COMPARE_N           namespaces for the side-by-side run against a kubectl shell loop;
#                             empty skips it [100]
#   BENCH_AWSCLI_VENV         venv holding the AWS CLI (pip install awscli) for that loop; made if
#                             missing [~/.cache/ecr-refresh/bench/awscli-venv]
#   BENCH_RUN_DIR             test servers' run dir [target/bench-env]
#   BENCH_ETCD_PORT / BENCH_APISERVER_PORT / BENCH_MOTO_PORT   [33790 / 36443 / 35055]
#   BENCH_ONLY_DUE=1          only scripts/bench/due.py [unset: everything]
#   BENCH_ONLY_TENANTS=1      only scripts/bench/tenants.py [unset: everything]
#   BENCH_TENANTS_N           namespaces of each mode of the tenants comparison [1000]
#   BENCH_DUE_QUIET_N         namespaces of the due-only pass with nothing due [10000]
#   BENCH_OUTPUT              markdown file to write [BENCHMARKS.md]
#   BENCH_NOTES               markdown appended to it (hand-written findings) [scripts/bench/notes.md]
#   BENCH_KEEP_SERVERS=1      leave the servers running afterwards (stop: see the last log line)
#   CARGO_TARGET_DIR          honoured for the release build [target/]; BENCH_REV builds in its
#                             bench-rev-target/
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
START=$(date +%s)

log() { printf 'bench [+%ss]: %s\n' "$(($(date +%s) - START))" "$*" >&2; }
die() { log "error: $*"; exit 1; }

case "${1:-}" in
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) die "unknown argument $1 (configure with environment variables; see --help)" ;;
esac

SIZES=${BENCH_SIZES:-100 1000 10000}
for n in $SIZES; do [[ $n =~ ^[1-9][0-9]*$ ]] || die "BENCH_SIZES: '$n' is not a positive integer"; done

export ECR_REFRESH_TESTENV_RUN=${BENCH_RUN_DIR:-$ROOT/target/bench-env}
export ECR_REFRESH_TESTENV_ETCD_PORT=${BENCH_ETCD_PORT:-33790}
export ECR_REFRESH_TESTENV_APISERVER_PORT=${BENCH_APISERVER_PORT:-36443}
export ECR_REFRESH_TESTENV_MOTO_PORT=${BENCH_MOTO_PORT:-35055}
OUTPUT=${BENCH_OUTPUT:-$ROOT/BENCHMARKS.md}
NOTES=${BENCH_NOTES:-$ROOT/scripts/bench/notes.md}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT_DIR=$TARGET_DIR/bench-results

# What this script needs beyond scripts/testenv.sh: GNU time (peak RSS), python3 and its venv.
# shellcheck source=scripts/lib.sh
source "$ROOT/scripts/lib.sh"
apt_install time python3 python3-venv || die "cannot install what the benchmark needs"

# The shell loop it is compared with: the AWS CLI from PyPI in a venv of its own, kubectl from the
# machine.
COMPARE_N=${BENCH_COMPARE_N-100}
[ -n "${BENCH_ONLY_DUE:-}${BENCH_ONLY_TENANTS:-}" ] && COMPARE_N=
AWSCLI_VENV=${BENCH_AWSCLI_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ecr-refresh/bench/awscli-venv}
if [ -n "$COMPARE_N" ]; then
  [[ $COMPARE_N =~ ^[1-9][0-9]*$ ]] || die "BENCH_COMPARE_N: '$COMPARE_N' is not a positive integer"
  command -v kubectl >/dev/null || die "the side-by-side run needs kubectl on PATH (or BENCH_COMPARE_N=)"
  if [ ! -x "$AWSCLI_VENV/bin/aws" ]; then
    log "pip install awscli into $AWSCLI_VENV"
    { python3 -m venv "$AWSCLI_VENV" && "$AWSCLI_VENV/bin/pip" install -q awscli; } ||
      die "could not install the AWS CLI (or skip the side-by-side run with BENCH_COMPARE_N=)"
  fi
fi

log "installing the test servers (idempotent; the first time builds kube-apiserver, ~6 min)"
scripts/testenv.sh install

# What is measured: the working tree by default, or a committed revision (BENCH_REV=HEAD)
# exported to a clean folder, e.g. while the working tree is half-edited.
SRC=$ROOT
BUILD_DIR=$TARGET_DIR
if [ -n "${BENCH_REV:-}" ]; then
  # A target dir of its own: in a shared one cargo takes the other tree's binary as fresh (same
  # package fingerprint; the dep-info names the other tree's files, which did not change).
  BUILD_DIR=$TARGET_DIR/bench-rev-target
  rev=$(git rev-parse --verify "${BENCH_REV}^{commit}") || die "BENCH_REV=$BENCH_REV is not a commit"
  SRC=$TARGET_DIR/bench-src
  if [ "$(cat "$SRC/.bench-rev" 2>/dev/null)" != "$rev" ]; then # unchanged: keep mtimes, no rebuild
    rm -rf "$SRC"; mkdir -p "$SRC"
    git archive "$rev" | tar -x -C "$SRC"
    echo "$rev" >"$SRC/.bench-rev"
  fi
  REVISION="$(git log -1 --format='%h %s' "$rev" -- src Cargo.toml Cargo.lock | cut -c1-100) — the last commit to src/ as of $(git rev-parse --short "$rev") (BENCH_REV=$BENCH_REV)"
else
  REVISION="$(git log -1 --format='%h %s' -- src Cargo.toml Cargo.lock | cut -c1-100) — the last commit to src/ as of $(git rev-parse --short HEAD)"
  if ! git diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null ||
    [ -n "$(git ls-files --others --exclude-standard -- src)" ]; then
    REVISION="$REVISION + uncommitted changes in src/"
  fi
fi
log "cargo build --release of $SRC (CARGO_TARGET_DIR=$BUILD_DIR)"
(cd "$SRC" && CARGO_TARGET_DIR=$BUILD_DIR cargo build --release --quiet) || die "release build failed (try BENCH_REV=HEAD to measure the last commit)"
BIN=$BUILD_DIR/release/ecr-refresh
[ -x "$BIN" ] || die "$BIN was not built"

stop_servers() {
  if [ -n "${BENCH_KEEP_SERVERS:-}" ]; then
    log "servers left running; stop them with: ECR_REFRESH_TESTENV_RUN=$ECR_REFRESH_TESTENV_RUN ECR_REFRESH_TESTENV_ETCD_PORT=$ECR_REFRESH_TESTENV_ETCD_PORT ECR_REFRESH_TESTENV_APISERVER_PORT=$ECR_REFRESH_TESTENV_APISERVER_PORT ECR_REFRESH_TESTENV_MOTO_PORT=$ECR_REFRESH_TESTENV_MOTO_PORT scripts/testenv.sh stop"
  else
    scripts/testenv.sh stop || true
  fi
}
trap stop_servers EXIT
log "starting own servers: etcd :$ECR_REFRESH_TESTENV_ETCD_PORT, kube-apiserver :$ECR_REFRESH_TESTENV_APISERVER_PORT, moto :$ECR_REFRESH_TESTENV_MOTO_PORT in $ECR_REFRESH_TESTENV_RUN"
scripts/testenv.sh start
# shellcheck disable=SC1091
. "$ECR_REFRESH_TESTENV_RUN/env.sh"

rm -rf "$OUT_DIR"
# How this run was invoked, for BENCHMARKS.md: the BENCH_* settings that were given.
# (grep finds nothing when no BENCH_* is set: under pipefail that must not end the script.)
COMMAND=$(env | { grep -E '^BENCH_(SIZES|REPEAT|IDLE_WAIT|IDLE_PROBE|EXTRA_CONCURRENCY|REV|SYNC_ARGS|WORKERS|COMPARE_N|ONLY_DUE|DUE_QUIET_N|ONLY_TENANTS|TENANTS_N)=' || true; } | sort |
  sed -E 's/^([A-Z_]+)=(.*)$/\1="\2"/' | tr '\n' ' ')scripts/bench.sh
extra=()
for a in ${BENCH_SYNC_ARGS:-}; do extra+=(--sync-arg="$a"); done
set +e
rc=0
if [ -z "${BENCH_ONLY_DUE:-}${BENCH_ONLY_TENANTS:-}" ]; then
# shellcheck disable=SC2086
python3 "$ROOT/scripts/bench/bench.py" \
  --binary "$BIN" --sizes $SIZES --run-dir "$ECR_REFRESH_TESTENV_RUN" --out-dir "$OUT_DIR" \
  --markdown "$OUTPUT" --root "$ROOT" --workers "${BENCH_WORKERS:-16}" \
  --repeat "${BENCH_REPEAT:-3}" --idle-wait "${BENCH_IDLE_WAIT:-20}" --idle-probe "${BENCH_IDLE_PROBE:-20}" --notes "$NOTES" --revision "$REVISION" --command "$COMMAND" \
  --ports "etcd $ECR_REFRESH_TESTENV_ETCD_PORT, kube-apiserver $ECR_REFRESH_TESTENV_APISERVER_PORT, moto $ECR_REFRESH_TESTENV_MOTO_PORT" \
  --compare-n "${COMPARE_N:-0}" --awscli-venv "$AWSCLI_VENV" \
  --extra-concurrency ${BENCH_EXTRA_CONCURRENCY:-} "${extra[@]}"
rc=$?
fi
if [ -z "${BENCH_ONLY_TENANTS:-}" ]; then
python3 "$ROOT/scripts/bench/due.py" --binary "$BIN" --out-dir "$OUT_DIR" --markdown "$OUTPUT.due" \
  --workers "${BENCH_WORKERS:-16}" --idle-wait "${BENCH_IDLE_WAIT:-20}" \
  --quiet-n "${BENCH_DUE_QUIET_N:-10000}" --command "$COMMAND" || rc=1
fi
if [ -z "${BENCH_ONLY_DUE:-}" ]; then
python3 "$ROOT/scripts/bench/tenants.py" --binary "$BIN" --out-dir "$OUT_DIR" --markdown "$OUTPUT.tenants" \
  --workers "${BENCH_WORKERS:-16}" --idle-wait "${BENCH_IDLE_WAIT:-20}" \
  --n "${BENCH_TENANTS_N:-1000}" --command "$COMMAND" || rc=1
fi
set -e
total=$(($(date +%s) - START))
log "total runtime ${total} s (including install, build, server start and setup)"
# Record the total in BENCHMARKS.md (re-rendered from the saved results; measures nothing).
if [ -f "$OUT_DIR/results.json" ]; then
  python3 "$ROOT/scripts/bench/bench.py" --render "$OUT_DIR/results.json" --total-seconds "$total" \
    --markdown "$OUTPUT" --notes "$NOTES" >/dev/null || true
fi
# The due-only section goes in last (bench.py rewrites the whole file), replacing the old one.
if [ -f "$OUTPUT.due" ]; then
  python3 "$ROOT/scripts/py/bench_merge_due_section.py" "$OUTPUT" "$OUTPUT.due"
  rm -f "$OUTPUT.due"
fi
if [ -f "$OUTPUT.tenants" ]; then
  python3 "$ROOT/scripts/py/bench_merge_due_section.py" "$OUTPUT" "$OUTPUT.tenants" tenants
  rm -f "$OUTPUT.tenants"
fi
exit $rc
