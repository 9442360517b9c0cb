# The two commands the README opens with. Both work on a fresh machine.
PYTHON ?= python3

.PHONY: demo test build fuzz bench

## Build and install meshcore (with matplotlib, for the demo's plot), then run the demo.
demo:
	$(PYTHON) -m pip install -q ".[demo]"
	$(PYTHON) -m meshcore demo

## Install what the tests need (apt packages when root, Python test deps, the build) and run
## every check: cargo test / clippy / fmt, ruff, mypy, stubtest, pytest, and a bounded fuzz run.
test:
	bash scripts/test.sh

build:
	$(PYTHON) -m pip install -q .

fuzz:
	FUZZ_SECONDS=$${FUZZ_SECONDS:-300} bash scripts/fuzz.sh

bench:
	$(PYTHON) -m pip install -q ".[bench]"
	$(PYTHON) benches/bench_wire.py
