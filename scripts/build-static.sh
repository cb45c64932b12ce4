#!/usr/bin/env bash
# Builds a static release binary of ecr-refresh for x86_64-unknown-linux-musl.
#
#   scripts/build-static.sh        install what is missing (idempotent), build, and print the
#                                  binary's path on the last line of stdout
#
# Needs: rustup (adds the musl target) and, for aws-lc-sys, a musl C compiler (Debian's
# musl-tools, installed with apt-get when missing and running as root).
# Honours CARGO_TARGET_DIR; progress goes to stderr so stdout stays the path alone.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=x86_64-unknown-linux-musl

log() { printf 'build-static: %s\n' "$*" >&2; }
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
die() { log "error: $*"; exit 1; }


install_prereqs() {
  command -v cargo >/dev/null || die "cargo not found: install Rust with rustup first"
  command -v rustup >/dev/null || die "rustup not found: it is needed to add the $TARGET target"
  if ! rustup target list --installed | grep -qx "$TARGET"; then
    log "rustup target add $TARGET"
    rustup target add "$TARGET" >&2
  fi
  # aws-lc-sys compiles C (and needs a musl-targeting compiler to link statically).
  if ! command -v musl-gcc >/dev/null; then
    command -v dpkg >/dev/null || die "musl-gcc not found and this is not a Debian system: install musl-tools"
    apt_install --no-recommends musl-tools || die "could not install musl-tools"
  fi
}

build() {
  local target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
  log "cargo build --release --locked --target $TARGET (target dir $target_dir)"
  (
    cd "$ROOT"
    # C code (aws-lc-sys) must be compiled against musl's headers; Rust links it itself.
    CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-musl-gcc} \
      cargo build --release --locked --target "$TARGET" --bin ecr-refresh >&2
  )
  local bin="$target_dir/$TARGET/release/ecr-refresh"
  [ -x "$bin" ] || die "cargo finished but $bin is missing"
  # Resolve a relative CARGO_TARGET_DIR against the repository root, where cargo ran.
  case "$bin" in /*) ;; *) bin="$ROOT/$bin" ;; esac
  log "built $bin ($(stat -c %s "$bin") bytes)"
  printf '%s\n' "$bin"
}

install_prereqs
build
