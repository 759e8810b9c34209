# Every target works from a fresh clone with only Python 3.11+ and make:
# the virtualenv is created on first use and refreshed when pyproject.toml changes.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck check simulate bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## The main job: the finance pipeline on the shipped sample statement.
run: $(STAMP)
	$(BIN)/genie run config/pipelines/finance.yaml

## Lint, type-check, then the whole test suite (what CI runs).
test: lint typecheck
	$(BIN)/pytest --cov --cov-report=term

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

## 10,000 finance sessions on virtual time (docs/simulation.md); the plot goes to docs/.
simulate: $(STAMP)
	$(BIN)/genie simulate config/pipelines/finance.yaml --sessions 10000 --concurrency 4 \
		--seed 7 --fault 'latency:*=lognormal,mean=200ms' --out docs/simulation-finance.png

## The benchmark harness: fan-out/fan-in, per hop, memory, start-up; writes benchmarks/results/.
bench: $(STAMP)
	$(BIN)/genie bench

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
