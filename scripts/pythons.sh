#!/usr/bin/env bash
# CPython 3.14 and 3.15 for ferroloop's tests, from Debian's unstable suite.
#
#   scripts/pythons.sh setup         make (or reuse) the chroot; idempotent
#   scripts/pythons.sh run CMD ...   run CMD inside it, in this checkout
#   scripts/pythons.sh clean         unmount leftovers and delete the chroot
#
# Why a chroot: pyenv here stops at 3.13 and no interpreter can be downloaded,
# but Debian's sid ships python3.14/python3.15 with their -dev, -venv and
# test-suite packages (CPython's own test.test_asyncio) and a Rust toolchain to
# build the extension against them. The chroot is cached outside the checkout
# (FERROLOOP_SID, default /var/cache/ferroloop/sid), so a second run on the
# same machine, or a CI run in a fresh clone, reuses it; a fresh machine
# builds it in a few minutes. `run` mounts /proc, /dev (with /dev/pts and
# /dev/shm) and the checkout at the same path inside, and unmounts all of them
# when CMD ends, however it ends. Needs root.
set -euo pipefail

ROOT=${FERROLOOP_SID:-/var/cache/ferroloop/sid}
VERSIONS=(3.14 3.15)
# What the tests need inside: the interpreters with venv, headers and their
# own test suite; a Rust toolchain and linker to build the extension; make.
PACKAGES=(ca-certificates make gcc libc6-dev rustc cargo procps)
for v in "${VERSIONS[@]}"; do
  PACKAGES+=("python$v" "python$v-venv" "python$v-dev" "libpython$v-testsuite")
done
STAMP="$ROOT/.ferroloop-ready"
CHECKOUT=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "pythons.sh: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot and mount)"

mirror() {
  # The Debian mirror this machine's apt already uses (deb822 or one-line form).
  local uri
  uri=$(grep -hE '^URIs:.*debian/?$' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1 | awk '{print $2}')
  [ -n "$uri" ] || uri=$(grep -hE '^deb [^ ]*debian/? ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -1 | awk '{print $2}')
  echo "${uri:-http://deb.debian.org/debian}"
}

unmount_all() {
  # Every mount below ROOT, deepest first: also clears what a killed run left.
  local m
  for m in $(awk -v r="$ROOT/" 'index($2, r) == 1 {print $2}' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
}

in_root() {
  # A clean environment inside: only what pip, cargo and the tests need.
  env -i HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" CI="${CI:-}" \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    CARGO_HTTP_CAINFO=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 \
    DEBIAN_FRONTEND=noninteractive \
    CARGO_TARGET_DIR="${CARGO_TARGET_DIR_SID:-$CHECKOUT/target/sid}" \
    chroot "$ROOT" "$@"
}

setup() {
  local want
  want=$(printf '%s\n' "${PACKAGES[@]}" | sha256sum | cut -c1-16)
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    echo "pythons.sh: reusing $ROOT ($(ls "$ROOT/usr/bin" | grep -E '^python3\.[0-9]+$' | tr '\n' ' '))"
    return
  fi
  unmount_all
  if [ ! -x "$ROOT/usr/bin/apt-get" ]; then
    command -v debootstrap >/dev/null || {
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    }
    rm -rf "$ROOT"
    mkdir -p "$(dirname "$ROOT")"
    echo "pythons.sh: debootstrap sid into $ROOT"
    debootstrap --variant=minbase sid "$ROOT" "$(mirror)" >/dev/null
  fi
  # The certificate authorities this machine trusts (registries may be reached
  # through an intercepting proxy), and name resolution for localhost.
  mkdir -p "$ROOT/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$ROOT/usr/local/share/ca-certificates/" 2>/dev/null || true
  cp /etc/hosts /etc/resolv.conf "$ROOT/etc/" 2>/dev/null || true
  mount -t proc proc "$ROOT/proc"
  trap unmount_all EXIT
  # sid's Release file may be older than this machine's clock accepts.
  in_root apt-get -qq -o Acquire::Check-Valid-Until=false update
  echo "pythons.sh: installing ${PACKAGES[*]}"
  in_root apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
  in_root update-ca-certificates >/dev/null 2>&1 || true
  in_root apt-get clean
  unmount_all
  trap - EXIT
  echo "$want" > "$STAMP"
  for v in "${VERSIONS[@]}"; do in_root "python$v" -VV; done
  in_root rustc --version
}

run() {
  [ -f "$STAMP" ] || setup
  unmount_all
  trap unmount_all EXIT INT TERM
  mount -t proc proc "$ROOT/proc"
  mount --rbind /dev "$ROOT/dev"
  mount --make-rslave "$ROOT/dev"
  mkdir -p "$ROOT$CHECKOUT"
  mount --bind "$CHECKOUT" "$ROOT$CHECKOUT"
  cp /etc/hosts /etc/resolv.conf "$ROOT/etc/" 2>/dev/null || true
  local rc=0
  in_root /bin/sh -c 'cd "$0" && exec "$@"' "$CHECKOUT" "$@" || rc=$?
  unmount_all
  trap - EXIT INT TERM
  return $rc
}

# One user of the chroot at a time: `run` unmounts what it finds there, so
# a second one would pull the mounts from under the first.
mkdir -p "$(dirname "$ROOT")"
exec 9>"$ROOT.lock"
flock 9

case "${1:-}" in
  setup) setup ;;
  run) shift; [ $# -gt 0 ] || die "run needs a command"; run "$@" ;;
  clean) unmount_all; rm -rf "$ROOT" ;;
  *) die "usage: $0 setup | run CMD ... | clean" ;;
esac
