# backbone-regularizer: `make run` runs the embedded default, `make test` runs the tests.
# Both work on a fresh machine: they find Python 3.10, install uv if missing and build .venv
# from the committed lock (uv.lock) before doing anything else.

SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# uv as a module of any Python 3 on PATH, installed on first use.
UV := python3 -m uv
export TF_CPP_MIN_LOG_LEVEL := 3
export PYTHONWARNINGS := ignore::FutureWarning

.PHONY: run test test-fast lint bench clean-venv

$(VENV)/.synced: pyproject.toml uv.lock
	@python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv
	UV="$(UV)" $(UV) sync --frozen --python "$$(UV='$(UV)' .ci/find-python)"
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

bench: $(VENV)/.synced
	$(PY) -m benchmarks.run

clean-venv:
	rm -rf $(VENV)
