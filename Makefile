# guardstream: the two commands a fresh machine needs (see README.md).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint install install-test system-test-deps bench bench-deps

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/python -m pip install -q -e .

install-test: $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'

## Run the main job on embedded defaults: proxy + demo upstream + example traffic through the openai SDK.
## Needs only the base install (CI runs it as `make demo VENV=.venv-demo`, a fresh venv without extras);
## exits non-zero when an example does not behave as expected.
demo: install
	$(BIN)/guardstream demo

## Debian's Chromium drives the review UI test (never a browser download); skipped where apt is not ours.
system-test-deps:
	@test -x /usr/bin/chromium || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; } || \
	  echo "note: no /usr/bin/chromium; the browser test of the review UI will be skipped"

## Run the whole test suite (installs what the tests need; torch is pinned to the CPU build).
test: install-test system-test-deps
	$(BIN)/python -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

## Lint and type-check (ruff, then mypy: strict on proxy/ and evaluators/; settings in pyproject.toml).
lint: install-test
	$(BIN)/python -m pip install -q -e '.[lint]'
	$(BIN)/ruff check .
	$(BIN)/mypy

## What the benchmark compares with, best effort: nginx and wrk from apt, LiteLLM in its own venv (rows whose
## tool is missing are reported as not run; without wrk the asyncio load generator drives every point).
LITELLM_VENV ?= /work/bench-venvs/litellm
bench-deps:
	@{ command -v wrk >/dev/null && { command -v nginx >/dev/null || test -x /usr/sbin/nginx; }; } || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && apt-get update -q && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx wrk; } || echo "note: no nginx or wrk"
	@test -x $(LITELLM_VENV)/bin/litellm || { $(PY) -m venv $(LITELLM_VENV) && \
	  $(LITELLM_VENV)/bin/pip install -q 'litellm[proxy]'; } || echo "note: no LiteLLM; its rows are skipped"

## Run the benchmark suite and write docs/benchmarks.md (about 12 minutes; `--quick` for a smoke run).
bench: install-test bench-deps
	$(BIN)/python -m pip install -q -e '.[bench]'
	BENCH_LITELLM_VENV=$(LITELLM_VENV) $(BIN)/python -m bench
