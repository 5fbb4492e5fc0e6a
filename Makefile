# ferroloop — `make help` lists the targets.
PY ?= python3.11
VENV ?= .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-stamp
export PYO3_PYTHON := $(abspath $(VPY))

.PHONY: help venv build test check test-python pytest cargo-test conformance conformance-all demo bench peers bench-peers bench-per-op bench-net bench-report bench-subprocess stress-tls bench-flood bench-stats fuzz asan memcheck soak lint fmt stubtest pythons test-versions wheels release-check clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml requirements-dev.txt
	@command -v $(PY) >/dev/null || { echo "need $(PY) (set PY=...)"; exit 1; }
	test -x $(VPY) || $(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)  ## create .venv with the build and test tools

build: $(STAMP)  ## build the extension (release) into .venv
	VIRTUAL_ENV=$(abspath $(VENV)) $(VENV)/bin/maturin develop --release -q

test: test-versions  ## every test on every supported Python (3.11-3.15): what CI runs

check: build  ## every test on one interpreter, PY (default python3.11): pytest, cargo test, conformance
	$(VPY) -m pytest -q
	cargo test -q
	$(VPY) tests/conformance/run.py -j 2

test-python: build  ## what depends on the interpreter: pytest and conformance on PY
	$(VPY) -m pytest -q
	$(VPY) tests/conformance/run.py -j 2

pytest: build  ## ferroloop's own pytest suite
	$(VPY) -m pytest -q

cargo-test:  ## pure-Rust unit tests
	cargo test -q

conformance: build  ## CPython's test_asyncio on ferroloop, checked against expected failures
	$(VPY) tests/conformance/run.py -j 2

conformance-all: build  ## every test_asyncio module that measures a loop, not only the default set
	$(VPY) tests/conformance/run.py -j 2 --all

demo: build  ## showcase: a real asyncio workload on ferroloop beside the stdlib loop
	$(VPY) demo/showcase.py

BENCH_ARGS ?=
bench: build  ## loop-core benchmarks: ferroloop vs asyncio vs uvloop, as ratios (BENCH_ARGS="--peers ...")
	$(VPY) -m pip install -q uvloop
	$(VPY) benches/run.py $(BENCH_ARGS)

# rsloop has no wheel for every Python and its sdist uses an unstable
# feature: stable Rust builds it with RUSTC_BOOTSTRAP (a few minutes, once).
RSLOOP_ENV := RUSTUP_TOOLCHAIN=stable RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zcrate-attr=feature(allocator_api)"
peers: build  ## install the Rust peer loops rloop and rsloop into the venv
	$(VPY) -m pip install -q uvloop rloop
	$(VPY) -c "import rsloop" 2>/dev/null || $(RSLOOP_ENV) $(VPY) -m pip install -q rsloop

bench-peers: peers  ## make bench with rloop and rsloop columns, vs the best peer, and the fairness table
	$(VPY) benches/run.py --peers $(BENCH_ARGS)

CALLGRIND := .venv-callgrind
bench-per-op: peers  ## ns per call_soon and per callback run, GC on/off, every loop; instructions (callgrind)
	test -x $(CALLGRIND)/bin/python || $(PY) -m venv $(CALLGRIND)
	$(CALLGRIND)/bin/python -m pip install -q maturin uvloop rloop
	rm -rf target/callgrind/wheel
	CARGO_TARGET_DIR=target/callgrind PYO3_PYTHON=$(abspath $(CALLGRIND))/bin/python $(CALLGRIND)/bin/maturin build --release -q \
	  -i $(CALLGRIND)/bin/python --features memcheck -o target/callgrind/wheel
	$(CALLGRIND)/bin/python -m pip install -q --force-reinstall --no-deps target/callgrind/wheel/*.whl
	$(VPY) benches/per_op.py --callgrind --callgrind-python $(CALLGRIND)/bin/python

bench-net: build  ## networking benchmarks (echo, UDP, HTTP(S) under wrk, TLS, idle-conn RSS) vs asyncio, uvloop, a Rust floor
	$(VPY) -m pip install -q uvloop httptools aiohttp trustme
	@command -v wrk >/dev/null || echo "note: wrk is not installed (apt-get install wrk): the HTTP rows will show n/a"
	cargo build --release --manifest-path benches/loadgen/Cargo.toml
	$(VPY) benches/net.py

stress-tls: build  ## TLS leak check: 50,000 TLS connections in a row on ferroloop, RSS and fds before/after
	$(VPY) benches/stress_tls.py

bench-report: build  ## both benchmark suites, written up: docs/benchmarks.md with tables and PNG charts (~12 min)
	$(VPY) -m pip install -q -r benches/requirements.txt
	@command -v wrk >/dev/null || echo "note: wrk is not installed (apt-get install wrk): the HTTP rows will show n/a"
	cargo build --release --manifest-path benches/loadgen/Cargo.toml
	$(VPY) benches/report.py

bench-subprocess: build  ## subprocess benchmarks (spawn-and-wait, communicate through cat) vs asyncio, uvloop
	$(VPY) -m pip install -q uvloop
	$(VPY) benches/subprocess_bench.py

bench-flood: build  ## call_soon_threadsafe floods: timer lateness, backlog, RSS with 1-8 producer threads, per loop
	$(VPY) -m pip install -q uvloop
	$(VPY) benches/threadsafe_flood.py

SOAK_SECONDS ?= 300

soak: build  ## soak: TCP echo with resets and half-closes, timers, threadsafe calls, subprocesses for SOAK_SECONDS; fails if RSS, fds, tasks or blocks grow
	$(VPY) benches/soak.py --seconds $(SOAK_SECONDS)

NOSTATS := .venv-nostats
bench-stats: build  ## what always-on loop.stats() costs: bench rows with and without statistics compiled in
	test -x $(NOSTATS)/bin/python || $(PY) -m venv $(NOSTATS)
	$(NOSTATS)/bin/python -m pip install -q maturin
	rm -rf target/nostats/wheel
	CARGO_TARGET_DIR=target/nostats PYO3_PYTHON=$(abspath $(NOSTATS))/bin/python $(NOSTATS)/bin/maturin build --release -q \
	  -i $(NOSTATS)/bin/python --features no-stats -o target/nostats/wheel
	$(NOSTATS)/bin/python -m pip install -q --force-reinstall --no-deps target/nostats/wheel/*.whl
	$(VPY) benches/stats_cost.py --without $(NOSTATS)/bin/python
	cargo build --release --manifest-path benches/loadgen/Cargo.toml
	$(VPY) benches/net.py --only tcp1k tcp10k tcp100k unix1k udp1k --loops ferroloop --rounds 5 --nostats $(NOSTATS)/bin/python

FUZZ_SCALE ?= 1
fuzz: build  ## differential fuzzing, long: random operation sequences on ferroloop and asyncio's loop must agree
	FERROLOOP_FUZZ=$(FUZZ_SCALE) $(VPY) -m pytest -p no:cacheprovider -q tests/test_fuzz.py

asan: $(STAMP)  ## AddressSanitizer build; the pytest suite on ferroloop; reports attributed to ferroloop
	PY=$(PY) bash scripts/sanitize.sh asan

memcheck: $(STAMP)  ## valgrind memcheck over the loop and transport tests on ferroloop
	PY=$(PY) bash scripts/sanitize.sh memcheck

lint:  ## cargo fmt --check, clippy -D warnings, mypy stubtest
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(MAKE) stubtest

fmt:  ## format the Rust sources
	cargo fmt

stubtest: build  ## check the .pyi stubs against the built module
	$(VPY) -m mypy.stubtest ferroloop --allowlist tests/stubtest-allowlist.txt

pythons:  ## CPython 3.14 and 3.15 (with their test suites) in a cached Debian sid chroot; needs root
	bash scripts/pythons.sh setup

# pyenv's newest 3.N, else python3.N from PATH.
pyenv_python = $(or $(lastword $(sort $(wildcard $(HOME)/.pyenv/versions/$(1).*/bin/python))),python$(1))

test-versions: pythons  ## check on PY (3.11), pytest and conformance on 3.12, 3.13 (pyenv), 3.14 and 3.15 (chroot)
	$(MAKE) check
	$(MAKE) test-python PY=$(call pyenv_python,3.12) VENV=.venv-3.12
	$(MAKE) test-python PY=$(call pyenv_python,3.13) VENV=.venv-3.13
	bash scripts/pythons.sh run make test-python PY=python3.14 VENV=.venv-3.14
	bash scripts/pythons.sh run make test-python PY=python3.15 VENV=.venv-3.15

wheels: $(STAMP) pythons  ## sdist + one manylinux2014 wheel per supported CPython (3.11-3.15) into dist/
	VENV=$(VENV) bash scripts/wheels.sh build

release-check: wheels  ## build everything, then check each wheel and the sdist and smoke-test them without Rust (RELEASING.md)
	VENV=$(VENV) bash scripts/wheels.sh check

clean:  ## remove build products and virtualenvs
	cargo clean
	rm -rf .venv .venv-3.1* .venv-asan .venv-memcheck .venv-nostats .venv-callgrind dist
