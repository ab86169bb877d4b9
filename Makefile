# backbone-regularizer: `make run` runs the embedded default, `make test` runs the tests.
# Both work on a fresh machine: they find Python 3.10, install uv if missing and build .venv
# from the committed lock (uv.lock) before doing anything else.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# uv as a module of any Python 3 on PATH, installed on first use.
UV := python3 -m uv
# The extras the app and the tests use (pyproject.toml): s3:// (MinIO tests, object stores),
# KerasHub backbones and OpenLineage events (docs/provenance.md). Not `gpu`: CUDA wheels (2.8 GB) for machines with no GPU.
EXTRAS := --extra s3 --extra kerashub --extra openlineage
# Quiet TensorFlow's C++ logs and FutureWarnings in test and benchmark output. Not for `run`:
# backbone-reg sends them to the run's log file (nothing lost), never to the console.
test test-fast bench: export TF_CPP_MIN_LOG_LEVEL := 3
test test-fast bench: export PYTHONWARNINGS := ignore::FutureWarning

.PHONY: run test test-fast lint bench clean-venv

# --compile-bytecode: a venv without .pyc files compiles ~9000 modules from source in every
# process where PYTHONDONTWRITEBYTECODE is set (27 s of a 50 s cached `run` here).
$(VENV)/.synced: pyproject.toml uv.lock Makefile
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	UV="$(UV)" $(UV) sync --frozen $(EXTRAS) --compile-bytecode --python "$$(UV='$(UV)' .ci/find-python)"
	@touch $@

run: $(VENV)/.synced
	$(VENV)/bin/backbone-reg run

test: $(VENV)/.synced
	$(VENV)/bin/ruff check components pipeline tests benchmarks
	$(VENV)/bin/ruff format --check components pipeline tests benchmarks
	$(PY) -m pytest -q

test-fast: $(VENV)/.synced
	$(PY) -m pytest -q -m "not e2e"

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check components pipeline tests benchmarks
	$(VENV)/bin/ruff format --check components pipeline tests benchmarks

# BENCH_ARGS=--skip-study leaves out the transfer study (~80 min), --skip-retraining the
# retraining schedule (~30 min).
bench: $(VENV)/.synced
	$(PY) -m benchmarks.run $(BENCH_ARGS)

clean-venv:
	rm -rf $(VENV)
