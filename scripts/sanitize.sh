#!/usr/bin/env bash
# ferroloop under the memory checkers: `make asan` and `make memcheck`.
#
#   bash scripts/sanitize.sh asan      # AddressSanitizer build, the pytest suite on ferroloop
#   bash scripts/sanitize.sh memcheck  # valgrind memcheck over the loop and transport tests
#
# Each builds its own copy of the extension (its own cargo target directory
# and virtualenv, so the normal build in .venv is untouched), runs the tests
# with only the ferroloop param of each test (FERROLOOP_TEST_LOOPS=ferroloop),
# and ends with a summary: how many error reports the checker wrote, and how
# many of those have a ferroloop frame in their stack. It exits non-zero if
# the tests failed or any report involves ferroloop.
#
# asan: the stable toolchain builds with `-Zsanitizer=address` when
#   RUSTC_BOOTSTRAP=1; an explicit --target keeps the proc-macros (which run
#   inside rustc) uninstrumented. CPython is not instrumented, so gcc's ASan
#   runtime is preloaded into it, and PYTHONMALLOC=malloc sends Python's
#   allocations through the interposed malloc, so a Python object freed too
#   early by Rust code is caught as well. Leak checking is off: an interpreter
#   leaks its own globals at exit by design.
# memcheck: valgrind cannot run rustix's direct vDSO lookup (rustix issue
#   #1559: the first clock read segfaults), so this build enables the crate's
#   `memcheck` feature, which makes rustix go through libc.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:?usage: sanitize.sh asan|memcheck}
PY=${PY:-python3.11}
TARGET=x86_64-unknown-linux-gnu
out=target/sanitize-$mode
rm -rf "$out/logs"
mkdir -p "$out/logs"

venv=.venv-$mode
if [ ! -x "$venv/bin/python" ]; then
  "$PY" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
fi
"$venv/bin/python" -m pip install -q -r requirements-dev.txt

# A wheel installed into the checker's own virtualenv, not `maturin
# develop`: an editable install would put the instrumented extension into
# python/ferroloop/, where .venv's editable install of the same Python
# version would load it too.
build() {
  rm -rf "$out/wheel"
  CARGO_TARGET_DIR=$out/cargo PYO3_PYTHON=$(pwd)/$venv/bin/python \
    "$venv/bin/maturin" build --release -q -i "$venv/bin/python" -o "$out/wheel" "$@"
  "$venv/bin/python" -m pip install -q --force-reinstall --no-deps "$out"/wheel/*.whl
}

# Counts the checker's reports, and those that are ferroloop's: a report
# runs from its first line (`start`) to the first line matching `end`
# (ASan's SUMMARY line; valgrind's empty `==PID== ` line). An ASan report
# is ours if any frame is the extension's (its symbols, ferroloop:: or
# _ferroloop, or its Rust sources, /src/...rs). A memcheck report is ours if
# the faulting frame (the first `at`) is, or the stack that explains it:
# where the block was freed or allocated, or (--track-origins) where the
# uninitialised value was made. Only the stack around a report is not
# enough: every Python callback, CPython's own false positives included,
# runs below the loop's frames.
summarise() {
  local start=$1 end=$2 rule=$3
  local counts
  counts=$(cat "$out"/logs/* 2>/dev/null | awk -v start="$start" -v end="$end" -v rule="$rule" '
    function ours_frame(line) { return line ~ /ferroloop::|_ferroloop\.|\/src\/[a-z_\/]+\.rs/ }
    $0 ~ start { inside = 1; n++; mine = 0; first_at = 1; cause = 0; next }
    !inside { next }
    rule == "any" && ours_frame($0) { mine = 1 }
    rule == "cause" && / at 0x/ && first_at { first_at = 0; if (ours_frame($0)) mine = 1 }
    rule == "cause" && /(free.d|alloc.d|was created by)/ { cause = 1 }
    rule == "cause" && cause && ours_frame($0) { mine = 1 }
    $0 ~ end { inside = 0; ours += mine }
    END { if (inside) ours += mine; printf "%d %d", n, ours }')
  set -- $counts
  echo "$mode: $1 error report(s) in $out/logs, $2 of them ferroloop's"
  [ "$2" -eq 0 ]
}

status=0
case $mode in
asan)
  RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zsanitizer=address -Cdebuginfo=1" build --target "$TARGET"
  libasan=$(gcc -print-file-name=libasan.so)
  [ -f "$libasan" ] || { echo "asan: gcc's libasan.so not found (apt-get install gcc)"; exit 1; }
  echo "asan: pytest on ferroloop with $libasan preloaded"
  LD_PRELOAD=$libasan PYTHONMALLOC=malloc FERROLOOP_TEST_LOOPS=ferroloop \
    ASAN_OPTIONS="detect_leaks=0:halt_on_error=0:log_path=$(pwd)/$out/logs/asan" \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider \
      --deselect tests/test_recipes.py "${@:2}" || status=$?
  summarise '^==[0-9]+==ERROR: AddressSanitizer' '^SUMMARY: AddressSanitizer' any || status=1
  ;;
memcheck)
  command -v valgrind >/dev/null || {
    if [ "$(id -u)" = 0 ]; then apt-get install -y -q valgrind >/dev/null; else
      echo "memcheck: needs valgrind (apt-get install valgrind)"; exit 1; fi
  }
  RUSTFLAGS="-Cdebuginfo=1" build --features memcheck
  echo "memcheck: the loop and transport tests on ferroloop under valgrind"
  PYTHONMALLOC=malloc FERROLOOP_TEST_LOOPS=ferroloop \
    valgrind --tool=memcheck --track-origins=yes --error-exitcode=0 --trace-children=no \
      --log-file="$(pwd)/$out/logs/memcheck.%p" \
      "$venv/bin/python" -m pytest -q -p no:cacheprovider -o timeout=1200 \
        "${@:2}" tests/test_scheduling.py tests/test_tcp.py tests/test_unix_udp.py \
        tests/test_pipes.py tests/test_subprocess.py tests/test_tasks_futures.py \
        tests/test_reentrancy.py || status=$?
  summarise '^==[0-9]+== (Invalid|Conditional jump|Use of uninitialised|Syscall param|Mismatched free|Source and destination overlap)' '^==[0-9]+== $' cause || status=1
  ;;
*)
  echo "usage: sanitize.sh asan|memcheck"; exit 2 ;;
esac
exit $status
