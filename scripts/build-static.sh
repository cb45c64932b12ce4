#!/usr/bin/env bash
# Builds static (musl) release binaries of ecr-refresh for x86_64 and aarch64 (arm64).
#
#   scripts/build-static.sh [ARCH...]  install what is missing (idempotent), build each ARCH
#                                      (x86_64 or amd64, aarch64 or arm64; default: x86_64
#                                      aarch64) and print each binary's path on stdout, one line
#                                      per ARCH, in the order given
#
# Needs rustup (adds the musl targets). aws-lc-sys compiles C, so each target needs a C compiler
# that targets musl:
# - the machine's own architecture: Debian's musl-tools (`musl-gcc`), installed with apt-get when
#   missing (as root), as before;
# - the other one (aarch64 on an x86_64 machine, or the reverse in a buildx builder on arm64):
#   `cargo zigbuild`, with zig as the C compiler and linker, both pinned from PyPI into a venv
#   under ~/.cache/ecr-refresh/. Zig ships musl's headers and start files for every target, so
#   aws-lc is compiled against the same libc it is linked with, and the pins give the same
#   toolchain on every machine. Debian's `gcc-aarch64-linux-gnu` targets glibc (its headers and
#   start files), and bookworm has no aarch64 musl cross compiler, so it would build aws-lc
#   against one libc and link it with another.
# Honours CARGO_TARGET_DIR; progress goes to stderr so stdout holds the paths alone.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/ecr-refresh
ZIG_VENV=$CACHE_DIR/zigbuild-venv
ZIG_SPEC='ziglang==0.15.2 cargo-zigbuild==0.24.1'

log() { printf 'build-static: %s\n' "$*" >&2; }
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
die() { log "error: $*"; exit 1; }

target_of() { # ARCH: the Rust target triple
  case "$1" in
    x86_64 | amd64) echo x86_64-unknown-linux-musl ;;
    aarch64 | arm64) echo aarch64-unknown-linux-musl ;;
    *) die "unknown architecture '$1': use x86_64 (amd64) or aarch64 (arm64)" ;;
  esac
}

is_native() { [ "${1%%-*}" = "$(uname -m)" ]; } # target triple

install_prereqs() { # target triple
  local target=$1
  command -v cargo >/dev/null || die "cargo not found: install Rust with rustup first"
  command -v rustup >/dev/null || die "rustup not found: it is needed to add the $target target"
  if ! rustup target list --installed | grep -qx "$target"; then
    log "rustup target add $target"
    rustup target add "$target" >&2
  fi
  if is_native "$target"; then
    # aws-lc-sys compiles C (and needs a musl-targeting compiler to link statically).
    if ! command -v musl-gcc >/dev/null; then
      command -v dpkg >/dev/null || die "musl-gcc not found and this is not a Debian system: install musl-tools"
      apt_install --no-recommends musl-tools || die "could not install musl-tools"
    fi
  else
    pip_venv "$ZIG_VENV" "$ZIG_SPEC" || die "could not install $ZIG_SPEC into $ZIG_VENV"
  fi
}

build() { # target triple; prints the binary's path
  local target=$1 target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
  (
    cd "$ROOT"
    if is_native "$target"; then
      log "cargo build --release --locked --target $target (target dir $target_dir)"
      # C code (aws-lc-sys) must be compiled against musl's headers; Rust links it itself.
      local cc_var="CC_${target//-/_}"
      env "$cc_var=${!cc_var:-musl-gcc}" \
        cargo build --release --locked --target "$target" --bin ecr-refresh >&2
    else
      log "cargo zigbuild --release --locked --target $target (target dir $target_dir)"
      # The venv first on PATH: cargo finds cargo-zigbuild there, and it finds zig through the
      # venv's python3 (`python3 -m ziglang`).
      PATH="$ZIG_VENV/bin:$PATH" cargo zigbuild --release --locked --target "$target" --bin ecr-refresh >&2
    fi
  )
  local bin="$target_dir/$target/release/ecr-refresh"
  [ -x "$bin" ] || die "cargo finished but $bin is missing"
  # Resolve a relative CARGO_TARGET_DIR against the repository root, where cargo ran.
  case "$bin" in /*) ;; *) bin="$ROOT/$bin" ;; esac
  log "built $bin ($(stat -c %s "$bin") bytes)"
  printf '%s\n' "$bin"
}

[ $# -gt 0 ] || set -- x86_64 aarch64
targets=()
for arch in "$@"; do targets+=("$(target_of "$arch")"); done
for target in "${targets[@]}"; do
  install_prereqs "$target"
  build "$target"
done
