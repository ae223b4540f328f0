# tunefleet: `make run` runs the service here, `make test` runs the tests.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test test-fast test-random lint bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/tunefleet up

test: $(BIN)/.installed
	$(BIN)/python -m pytest

# No Ray, no stack: the API through FastAPI's test client on a real redis-server, the
# spec, the queue, datasets, features, plots.
test-fast: $(BIN)/.installed
	TUNEFLEET_TEST_TIER=fast $(BIN)/python -m pytest -m "not e2e and not slow and not ray"

# The fast tier in a shuffled order, a new seed each run (printed; rerun one with
# --random-order-seed=N): no test leans on what another left behind.
test-random: $(BIN)/.installed
	TUNEFLEET_TEST_TIER=fast $(BIN)/python -m pytest -m "not e2e and not slow and not ray" \
		-p random_order --random-order

lint: $(BIN)/.installed
	$(BIN)/ruff check shared services cluster tests bench
	$(BIN)/ruff format --check shared services cluster tests bench
	$(BIN)/mypy

# Benchmarks print JSON lines; see README.md for what each measures.
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
	rm -rf $(VENV) .tunefleet
