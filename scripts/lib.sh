# shellcheck shell=bash
# Shared by the scripts in this folder (sourced, never run). The sourcing script defines log().

# Installs the Debian packages that are missing; returns non-zero if it cannot. Services the
# packages ship are not started: every script here starts its own servers, on its own ports.
apt_updated=""
apt_install() { # [--no-recommends] package...
  local opts=() missing=() p
  if [ "${1:-}" = --no-recommends ]; then opts+=(--no-install-recommends); shift; fi
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || { log "need root to apt-get install ${missing[*]} (or install them yourself)"; return 1; }
  # A fresh image has no package lists: update once before the first install.
  if [ -z "$apt_updated" ]; then apt-get update -qq >&2 || return 1; apt_updated=1; fi
  local rc=/usr/sbin/policy-rc.d created="" status=0
  if [ ! -e "$rc" ]; then printf '#!/bin/sh\nexit 101\n' >"$rc"; chmod +x "$rc"; created=1; fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${opts[@]}" "${missing[@]}" >/dev/null || status=$?
  [ -z "$created" ] || rm -f "$rc"
  [ "$status" = 0 ] || log "apt-get install ${missing[*]} failed"
  return "$status"
}

# Makes (or reuses) a venv at $1 holding the pip requirements $2 (space-separated, pinned): the
# spec is stamped into the venv once pip succeeded, so changing a pin reinstalls. pip's output
# goes to stderr (scripts that print a result on stdout call this).
pip_venv() { # dir spec
  local dir=$1 spec=$2 stamp=$1/.ecr-refresh-spec
  if [ -x "$dir/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$spec" ]; then return 0; fi
  python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install --no-recommends python3-venv || return 1
  log "installing $spec into $dir"
  mkdir -p "$(dirname "$dir")"
  python3 -m venv "$dir" || return 1
  # shellcheck disable=SC2086 # the spec is a list of requirements
  "$dir/bin/pip" install -q $spec >&2 || return 1
  echo "$spec" >"$stamp"
}

# TAP-style results, counted for each script's summary line. Kept when this file is sourced
# again (node.sh sources it too). BROKEN is set by the first failure, for scripts whose later
# stages depend on the earlier ones.
PASSED=${PASSED:-0}
FAILED=${FAILED:-0}
BROKEN=${BROKEN:-}
ok() { PASSED=$((PASSED + 1)); echo "ok - $*"; }
not_ok() { FAILED=$((FAILED + 1)); BROKEN=1; echo "not ok - $*"; }

# check WHAT COMMAND...: ok if the command succeeds; on failure, the last 25 lines of its output
# as comments. The command runs in a subshell: what it assigns is not kept.
check() {
  local what=$1 out; shift
  if out=$("$@" 2>&1); then ok "$what"; else not_ok "$what"; printf '%s\n' "$out" | tail -n 25 | sed 's/^/# /'; fi
}

# run_check WHAT FUNCTION: ok, or not ok with the REASON the function set.
run_check() {
  REASON=""
  if "$2"; then ok "$1"; else not_ok "$1: ${REASON:-failed}"; fi
}
