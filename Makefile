# ferroloop — `make help` lists the targets.
PY ?= python3.11
VENV ?= .venv
VPY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-stamp
export PYO3_PYTHON := $(abspath $(VPY))

.PHONY: help venv build test pytest cargo-test conformance conformance-all demo bench bench-net bench-subprocess stress-tls lint fmt stubtest test-versions clean

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

test: build  ## every test: pytest, cargo test, conformance (modules in scope)
	$(VPY) -m pytest -q
	cargo test -q
	$(VPY) tests/conformance/run.py -j 2

pytest: build  ## ferroloop's own pytest suite
	$(VPY) -m pytest -q

cargo-test:  ## pure-Rust unit tests
	cargo test -q

conformance: build  ## CPython's test_asyncio on ferroloop, checked against expected failures
	$(VPY) tests/conformance/run.py -j 2

conformance-all: build  ## every loop-measuring test_asyncio module (later issues' too)
	$(VPY) tests/conformance/run.py -j 2 --all

demo: build  ## showcase: a real asyncio workload on ferroloop beside the stdlib loop
	$(VPY) demo/showcase.py

bench: build  ## loop-core benchmarks: ferroloop vs asyncio vs uvloop, as ratios
	$(VPY) -m pip install -q uvloop
	$(VPY) benches/run.py

bench-net: build  ## networking benchmarks (echo, UDP, HTTP(S) under wrk, TLS, idle-conn RSS) vs asyncio, uvloop, a Rust floor
	$(VPY) -m pip install -q uvloop httptools aiohttp trustme
	@command -v wrk >/dev/null || echo "note: wrk is not installed (apt-get install wrk): the HTTP rows will show n/a"
	cargo build --release --manifest-path benches/loadgen/Cargo.toml
	$(VPY) benches/net.py

stress-tls: build  ## TLS leak check: 50,000 TLS connections in a row on ferroloop, RSS and fds before/after
	$(VPY) benches/stress_tls.py

bench-subprocess: build  ## subprocess benchmarks (spawn-and-wait, communicate through cat) vs asyncio, uvloop
	$(VPY) -m pip install -q uvloop
	$(VPY) benches/subprocess_bench.py

lint:  ## cargo fmt --check, clippy -D warnings, mypy stubtest
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
	$(MAKE) stubtest

fmt:  ## format the Rust sources
	cargo fmt

stubtest: build  ## check the .pyi stubs against the built module
	$(VPY) -m mypy.stubtest ferroloop --allowlist tests/stubtest-allowlist.txt

test-versions:  ## build and run the test suite on 3.12 and 3.13 too (.venv-3.12, .venv-3.13)
	for v in 3.12 3.13; do \
	  $(MAKE) test PY=$$HOME/.pyenv/versions/$$(ls $$HOME/.pyenv/versions | grep "^$$v" | tail -1)/bin/python VENV=.venv-$$v || exit 1; \
	done

clean:  ## remove build products and virtualenvs
	cargo clean
	rm -rf .venv .venv-3.1*
