# Every target works from a fresh clone with only Python 3.11+ and make:
# the virtualenv is created on first use and refreshed when pyproject.toml changes.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Two stamps: `make run` needs only the package, its dependencies and libphonenumber for the
# shipped policies (`pip install -e '.[pii]'`);
# the dev tools (ruff, mypy, pytest, pytest-xdist, trio, matplotlib) come with the first
# target that needs them. Installing the dev tools also satisfies `run`, so either order installs once.
# A third for `make ci`: the dev tools plus the harness's peers (bench) and Playwright (browser).
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
ALL_STAMP := $(VENV)/.installed-all
# And `make bench`: the package with the harness's peers and its plot (the bench extra).
BENCH_STAMP := $(VENV)/.installed-bench

# pytest's worker processes (pytest-xdist): one a core. `make test WORKERS=0` runs in one process.
WORKERS ?= auto
# The core suite of `make check`: the message path and the fast unit tests; no subprocesses,
# servers, NATS or browsers.
CORE_TESTS := tests/base tests/message tests/agent tests/runtime tests/policies \
	tests/test_public_api.py
# Left to `make test`: the randomized soaks of the core (thousands of deliveries or generated
# cases, seconds of CPU each) and the one core test that starts processes.
CHECK_SKIPS := \
	tests/runtime/test_accounting.py::test_accounting_holds_under_load \
	tests/runtime/test_chaos.py \
	tests/runtime/test_metrics_counts.py::test_two_runtimes_with_the_same_agents_never_share_counts \
	tests/runtime/test_metrics_counts.py::test_many_agents_many_types_and_every_bound_count_as_the_reference \
	tests/runtime/test_audit_log.py::test_two_processes_appending_are_serialised \
	tests/policies/test_plan.py::test_the_plan_decides_exactly_as_the_policy_list \
	tests/policies/test_content_view.py::test_the_walk_finds_what_the_json_holds \
	tests/policies/test_false_alarms.py::test_generated_statements_are_never_denied

.PHONY: run test coverage lint typecheck check ci simulate bench compiled wheel-compiled test-compiled clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[pii]'
	touch $(RUN_STAMP)

$(DEV_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(DEV_STAMP) $(RUN_STAMP)

$(BENCH_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[bench]'
	touch $(BENCH_STAMP) $(RUN_STAMP)

$(ALL_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,bench,browser]'
	touch $(ALL_STAMP) $(DEV_STAMP) $(BENCH_STAMP) $(RUN_STAMP)

## The main job: the finance pipeline on the shipped sample statement.
run: $(RUN_STAMP)
	$(BIN)/genie run config/pipelines/finance.yaml

## Lint, type-check, then the whole test suite, in parallel. The tests that need the bench or
## browser extra skip without them, naming the extra; `make ci` runs them.
test: lint typecheck
	$(BIN)/pytest -n $(WORKERS) --dist loadgroup

## The whole suite with line and branch coverage, and its report (a report, not a gate: it
## costs the suite about an eighth more time, so `make test` and CI run without it).
coverage: $(DEV_STAMP)
	$(BIN)/pytest -n $(WORKERS) --dist loadgroup --cov --cov-report=term

## The inner loop: lint, type-check (mypy's cache makes it incremental), the core suite.
check: lint typecheck
	$(BIN)/pytest -n $(WORKERS) -q $(CORE_TESTS) $(addprefix --deselect ,$(CHECK_SKIPS))

## What CI runs (.ci/run): `make test` with every extra installed, where a test that would
## skip for a missing optional package fails instead (GENIE_REQUIRE_ALL, tests/conftest.py).
ci: $(ALL_STAMP)
	GENIE_REQUIRE_ALL=1 $(MAKE) --no-print-directory test

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

## 10,000 finance sessions on virtual time (docs/simulation.md); the plot goes to docs/.
simulate: $(DEV_STAMP)
	$(BIN)/genie simulate config/pipelines/finance.yaml --sessions 10000 --concurrency 4 \
		--seed 7 --fault 'latency:*=lognormal,mean=200ms' --out docs/simulation-finance.png

## The benchmark harness: fan-out/fan-in, per hop, memory, start-up; writes benchmarks/results/.
bench: $(BENCH_STAMP)
	$(BIN)/genie bench

## Opt-in: genie's hot modules compiled with mypyc into build/mypyc (needs a C compiler and the
## Python headers; docs/benchmarks.md, "Compiled with mypyc"). Use: PYTHONPATH=build/mypyc.
COMPILED := build/mypyc
# The compiled tree is a copy of genie/: rebuilt when any of its sources changes.
$(COMPILED)/.built: $(DEV_STAMP) tools/mypyc_build.py $(shell find genie -name '*.py')
	$(BIN)/python -c 'import setuptools' 2>/dev/null || $(BIN)/pip install --quiet setuptools
	$(BIN)/python tools/mypyc_build.py --out $(COMPILED)
	touch $@

compiled: $(COMPILED)/.built

## A platform wheel of genie with the hot modules compiled, from the same sources, in dist/
## (genie_bus-VERSION-cp311-cp311-linux_x86_64.whl): pip install it like any wheel
## (docs/install.md, "Compiled"). The pure wheel is built first and the tree's extensions
## take the place of the hot modules' sources.
DIST := dist
wheel-compiled: compiled
	rm -rf build/pure
	$(BIN)/pip wheel --quiet --disable-pip-version-check --no-deps -w build/pure .
	$(BIN)/python tools/mypyc_build.py --wheel build/pure/genie_bus-*-py3-none-any.whl \
		--out $(COMPILED) --dist $(DIST)

## The test suite against genie installed from that wheel, in a fresh environment whose other
## packages are the dev environment's (`-P` keeps the checkout off sys.path and `-p genie`
## imports the installed genie before pytest puts it there; GENIE_COMPILED turns on the
## harness test of `genie bench --compiled` and the check that the hot modules are compiled). COMPILED_TESTS picks files (all by default); the one test that checks genie is
## imported from the checkout cannot pass here.
COMPILED_ENV := build/compiled-env
COMPILED_TESTS ?=
test-compiled: wheel-compiled
	$(BIN)/python tools/mypyc_build.py --install $(DIST) --env $(COMPILED_ENV)
	GENIE_COMPILED=$(abspath $(COMPILED)) $(COMPILED_ENV)/bin/python -P -m pytest -p genie -q \
		-p no:cacheprovider --deselect tests/test_install.py::test_the_distribution_is_not_pyats \
		$(COMPILED_TESTS)

clean:
	rm -rf $(VENV) $(COMPILED) build/pure $(COMPILED_ENV) .pytest_cache .mypy_cache .ruff_cache .coverage
