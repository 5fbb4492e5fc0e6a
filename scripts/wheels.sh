#!/usr/bin/env bash
# Release artifacts: one manylinux2014 wheel per supported CPython, an sdist,
# and the checks that prove them (RELEASING.md says when to run what).
#
#   scripts/wheels.sh build    sdist + one wheel per interpreter into dist/
#   scripts/wheels.sh check    every check below on what dist/ holds
#
# Wheels for 3.11-3.13 are built with pyenv's interpreters (or python3.N on
# PATH), those for 3.14 and 3.15 inside scripts/pythons.sh's chroot. All are
# linked by zig (the `ziglang` package) against glibc 2.17, i.e.
# manylinux2014: the widest compatibility a Rust 1.64+ std allows.
#
# Environment: VENV (default .venv), the virtualenv holding maturin and the
# release tools of requirements-release.txt; make venv creates it.
set -euo pipefail
cd "$(dirname "$0")/.."
CHECKOUT=$PWD
VENV=${VENV:-.venv}
TOOLS=$CHECKOUT/$VENV/bin
HOST_VERSIONS=(3.11 3.12 3.13)
CHROOT_VERSIONS=(3.14 3.15)
ALL_VERSIONS=("${HOST_VERSIONS[@]}" "${CHROOT_VERSIONS[@]}")
DIST=$CHECKOUT/dist
# Scratch (raw wheels, smoke virtualenvs) inside the checkout, where the chroot sees it too.
WORK=$CHECKOUT/target/release-work

say() { echo "wheels.sh: $*"; }
die() { echo "wheels.sh: FAILED: $*" >&2; exit 1; }

host_python() {
  # pyenv's newest 3.N, else python3.N from PATH (as the Makefile chooses).
  local found
  found=$(ls -d "$HOME"/.pyenv/versions/"$1".*/bin/python 2>/dev/null | sort -V | tail -1 || true)
  echo "${found:-$(command -v "python$1" || die "no python$1")}"
}

version() { sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1; }

maturin_wheel() {
  # maturin_wheel PYTHON OUTDIR: one wheel, debug info kept (stripped later).
  # maturin finds zig on PATH: the tools virtualenv's bin/ goes first.
  PATH="$(dirname "$(command -v maturin)"):$PATH" maturin build --profile wheel --zig \
    --compatibility manylinux2014 -i "$1" -o "$2"
}

# Inside the chroot: the wheel for one of its interpreters.
build_one() {
  local py=$1 venv=$2
  make -s venv PY="$py" VENV="$venv" >/dev/null
  "$venv/bin/pip" install -q -r requirements-release.txt
  PATH="$CHECKOUT/$venv/bin:$PATH" maturin_wheel "$py" "$WORK/raw"
}

strip_debug() {
  # Removes the debug sections from the extension inside a wheel, keeping
  # the symbol table (function names in a backtrace); `wheel pack` rewrites
  # RECORD with the new hashes.
  local whl=$1 tmp
  tmp=$(mktemp -d "$WORK/strip.XXXXXX")
  "$TOOLS/python" -m wheel unpack -d "$tmp" "$whl" >/dev/null
  local so
  for so in "$tmp"/*/ferroloop/_ferroloop*.so; do objcopy --strip-debug "$so"; done
  "$TOOLS/python" -m wheel pack -d "$DIST" "$tmp"/* >/dev/null
  rm -rf "$tmp"
  [ -f "$DIST/$(basename "$whl")" ] || die "wheel pack renamed $(basename "$whl")"
}

build() {
  "$TOOLS/pip" install -q -r requirements-release.txt
  rm -rf "$DIST" "$WORK/raw"
  mkdir -p "$DIST" "$WORK/raw"
  PATH="$TOOLS:$PATH" maturin sdist -o "$DIST"
  local v
  for v in "${HOST_VERSIONS[@]}"; do
    say "wheel for $v"
    PATH="$TOOLS:$PATH" maturin_wheel "$(host_python "$v")" "$WORK/raw"
  done
  for v in "${CHROOT_VERSIONS[@]}"; do
    say "wheel for $v (chroot)"
    bash scripts/pythons.sh run bash scripts/wheels.sh build-one "python$v" ".venv-$v"
  done
  local whl
  for whl in "$WORK"/raw/*.whl; do strip_debug "$whl"; done
  say "built in ${SECONDS} s:"
  ls -l "$DIST"
}

# --- checks -----------------------------------------------------------------

wheel_for() {
  # The one wheel in dist/ for CPython $1 (3.N).
  local tag="cp${1/./}" w
  w=$(ls "$DIST"/ferroloop-"$(version)"-"$tag"-"$tag"-*manylinux*_x86_64*.whl 2>/dev/null || true)
  [ "$(echo "$w" | grep -c .)" = 1 ] || die "expected one $tag wheel in dist/, found: ${w:-none}"
  echo "$w"
}

check_wheel_file() {
  local whl=$1 name
  name=$(basename "$whl")
  say "compliance: $name"
  "$TOOLS/auditwheel" show "$whl" | tee "$WORK/auditwheel.txt"
  grep -q '"manylinux_2_17_x86_64"' "$WORK/auditwheel.txt" || die "$name is not manylinux_2_17 (manylinux2014)"
  local listing
  listing=$("$TOOLS/python" -m zipfile -l "$whl")
  local want
  for want in ferroloop/py.typed ferroloop/_ferroloop.pyi ferroloop/__init__.py \
      licenses/LICENSE-MIT licenses/LICENSE-APACHE; do
    grep -q "$want" <<<"$listing" || die "$name lacks $want"
  done
  # Debug info stripped, symbols kept.
  local tmp so
  tmp=$(mktemp -d "$WORK/inspect.XXXXXX")
  "$TOOLS/python" -m zipfile -e "$whl" "$tmp"
  so=$(ls "$tmp"/ferroloop/_ferroloop*.so)
  ! readelf -S "$so" | grep -q '\.debug_info' || die "$name still carries debug info"
  [ "$(nm "$so" | wc -l)" -gt 1000 ] || die "$name has lost its symbol table"
  say "$name: $(stat -c %s "$whl") bytes, extension $(stat -c %s "$so") bytes, $(nm "$so" | wc -l) symbols"
  rm -rf "$tmp"
}

# smoke_one PYTHON WHEEL: a fresh virtualenv holding only the wheel, and the
# smoke suite run there with nothing but that virtualenv on PATH (no cargo,
# no rustc: in the chroot they live in /usr/bin).
smoke_one() {
  local py=$1 whl=$2 env
  env="$WORK/smoke-$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  rm -rf "$env"
  "$py" -m venv "$env"
  "$env/bin/python" -m pip install -q --no-index --disable-pip-version-check "$whl"
  (cd "$WORK" && env -i HOME="$HOME" LANG=C.UTF-8 PATH="$env/bin" \
    "$env/bin/python" "$CHECKOUT/tests/smoke/smoke.py")
}

check_sdist() {
  local sdist listing
  sdist=$(ls "$DIST"/ferroloop-"$(version)".tar.gz) || die "no sdist in dist/"
  listing=$(tar tzf "$sdist")
  local want
  for want in LICENSE-MIT LICENSE-APACHE build.rs build/platform.rs Cargo.lock \
      python/ferroloop/__init__.py python/ferroloop/_ferroloop.pyi python/ferroloop/py.typed src/lib.rs; do
    grep -q "/$want\$" <<<"$listing" || die "sdist lacks $want"
  done
  ! grep -q '\.so$' <<<"$listing" || die "sdist carries a built extension"
  say "sdist: $(basename "$sdist"), $(stat -c %s "$sdist") bytes, $(grep -c . <<<"$listing") files"

  # An unsupported OS: one clear sentence, before any dependency's error.
  say "sdist on an unsupported OS (faked macos) must stop with ferroloop's sentence"
  local out=$WORK/fake-os.log
  if FERROLOOP_FAKE_TARGET_OS=macos "$TOOLS/pip" wheel -q --no-deps -w "$WORK/fake-os" "$sdist" >"$out" 2>&1; then
    die "the faked macos build succeeded"
  fi
  grep -m1 'ferroloop supports Linux only' "$out" || { tail -30 "$out"; die "no platform sentence in the failed build"; }

  # A real build from the sdist, as pip does it (isolated, maturin from PyPI).
  say "build from the sdist"
  rm -rf "$WORK/from-sdist"
  "$TOOLS/pip" wheel -q --no-deps -w "$WORK/from-sdist" "$sdist"
  smoke_one "$(host_python 3.11)" "$(ls "$WORK"/from-sdist/ferroloop-*.whl)"
}

check_msrv() {
  # `rust-version` must be at least every dependency's (clippy's
  # incompatible_msrv, denied in Cargo.toml, checks our own std API use).
  local declared
  declared=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' Cargo.toml)
  cargo metadata --format-version 1 --locked --filter-platform x86_64-unknown-linux-gnu |
    "$TOOLS/python" -c '
import json, sys
declared = tuple(map(int, sys.argv[1].split(".")))
meta = json.load(sys.stdin)
used = {n["id"] for n in meta["resolve"]["nodes"]}
need = max((tuple(map(int, p["rust_version"].split("."))), p["name"])
           for p in meta["packages"] if p["id"] in used and p["rust_version"])
print("wheels.sh: rust-version %s; the highest a dependency needs: %s (%s)" % (sys.argv[1], ".".join(map(str, need[0][:2])), need[1]))
sys.exit(0 if need[0][:2] <= declared[:2] else 1)
' "$declared" || die "a dependency needs a newer Rust than rust-version"
}

check() {
  mkdir -p "$WORK"
  check_msrv
  "$TOOLS/twine" check --strict "$DIST"/*
  local v
  for v in "${ALL_VERSIONS[@]}"; do check_wheel_file "$(wheel_for "$v")"; done
  for v in "${HOST_VERSIONS[@]}"; do
    say "smoke $v"
    smoke_one "$(host_python "$v")" "$(wheel_for "$v")"
  done
  for v in "${CHROOT_VERSIONS[@]}"; do
    say "smoke $v (chroot)"
    bash scripts/pythons.sh run bash scripts/wheels.sh smoke-one "python$v" "$(wheel_for "$v")"
  done
  check_sdist
  say "all release checks passed (${SECONDS} s)"
}

case "${1:-}" in
  build) build ;;
  check) check ;;
  build-one) build_one "$2" "$3" ;;
  smoke-one) smoke_one "$2" "$3" ;;
  *) echo "usage: scripts/wheels.sh build|check" >&2; exit 2 ;;
esac
