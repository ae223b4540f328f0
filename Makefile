# tunefleet: `make run` runs the service here, `make test` runs the tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# uv installs what requirements.lock pins (the project's dependencies with its dev
# extra), from its cache after the first time: seconds, where pip took minutes.
UV_VERSION := 0.13.9
UV := $(BIN)/uv
# Where torch's CPU build comes from: this machine's copy of the wheel where it has one,
# else PyTorch's own page of CPU wheels (never PyPI's torch, a multi-GB CUDA build).
TORCH_WHEELS ?= $(firstword $(wildcard /opt/wheels) https://download.pytorch.org/whl/cpu/torch/)

SOURCES := shared services cluster tests bench docs

.PHONY: run test test-fast test-random cov lint format typecheck docs docs-serve bench lock clean

$(BIN)/.installed: requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) pip sync --quiet --python $(BIN)/python --find-links $(TORCH_WHEELS) requirements.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $@

# requirements.lock anew from pyproject.toml's ranges (after changing them), torch's
# CPU build pinned.
lock: $(BIN)/.installed
	printf 'torch==2.13.0+cpu\n' > $(VENV)/torch-cpu.txt
	$(UV) pip compile pyproject.toml --extra dev --python-version 3.11 --quiet \
		--find-links $(TORCH_WHEELS) --override $(VENV)/torch-cpu.txt -o requirements.lock
	$(UV) pip compile tests/mlflow/mlflow-env.in --python-version 3.11 --quiet \
		-o tests/mlflow/mlflow-env.lock

run: $(BIN)/.installed
	$(BIN)/tunefleet up

# Line coverage of the code the tests run in their own process (the stack's processes
# are not measured), held to floors a little under what was measured when they were set:
# the whole suite 82 %, the fast tier 70 %.
COVERAGE := --cov=shared --cov=services --cov=cluster --cov-report=

test: $(BIN)/.installed
	$(BIN)/python -m pytest $(COVERAGE) --cov-fail-under=80

# No Ray, no stack: the API through FastAPI's test client on a real redis-server, the
# spec, the queue, datasets, features, plots.
test-fast: $(BIN)/.installed
	TUNEFLEET_TEST_TIER=fast $(BIN)/python -m pytest -m "not e2e and not slow and not ray and not venv"

# The fast tier in a shuffled order, a new seed each run (printed; rerun one with
# --random-order-seed=N): no test leans on what another left behind.
test-random: $(BIN)/.installed
	TUNEFLEET_TEST_TIER=fast $(BIN)/python -m pytest -m "not e2e and not slow and not ray and not venv" \
		-p random_order --random-order

# The fast tier with coverage, file by file (htmlcov/index.html), held to its own floor.
cov: $(BIN)/.installed
	TUNEFLEET_TEST_TIER=fast $(BIN)/python -m pytest -m "not e2e and not slow and not ray and not venv" \
		$(COVERAGE) --cov-fail-under=68 --cov-report=term:skip-covered --cov-report=html

lint: $(BIN)/.installed
	$(BIN)/ruff check $(SOURCES)
	$(BIN)/ruff format --check $(SOURCES)
	$(BIN)/mypy

format: $(BIN)/.installed
	$(BIN)/ruff check --fix --quiet $(SOURCES)
	$(BIN)/ruff format --quiet $(SOURCES)

# mypy over shared, services and cluster; strict for shared/ and the SDK (pyproject.toml).
typecheck: $(BIN)/.installed
	$(BIN)/mypy

# The documentation site (docs/, mkdocs.yml) into site/; strict: a broken link, a missing
# page or reference fails it. The reference pages are generated from the code as it builds.
DOCS_ENV := NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true
docs: $(BIN)/.installed
	$(DOCS_ENV) $(BIN)/mkdocs build --strict --quiet

docs-serve: $(BIN)/.installed
	$(DOCS_ENV) $(BIN)/mkdocs serve --dev-addr 127.0.0.1:8001

# Benchmarks print JSON lines; see docs/benchmarks.md for what each measures.
bench: $(BIN)/.installed
	$(BIN)/python -m bench.epoch_speed
	$(BIN)/python -m bench.packed_speed
	$(BIN)/python -m bench.trial_overhead
	$(BIN)/python -m bench.time_to_best
	$(BIN)/python -m bench.queue_latency
	$(BIN)/python -m bench.seed_grid small
	$(BIN)/python -m bench.predict_speed
	$(BIN)/python -m bench.results_speed
	$(BIN)/python -m bench.control_plane

clean:
	rm -rf $(VENV) .tunefleet site
