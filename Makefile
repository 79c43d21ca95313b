# The two commands:   make run   (the live system on the synthetic source)   and   make test
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: setup run test test-fast test-slow test-all bench lint clean

$(VENV)/.installed: pyproject.toml constraints.txt scripts/setup.sh
	bash scripts/setup.sh

setup: $(VENV)/.installed

run: setup
	$(BIN)/nowcast serve --port $(PORT)

# `make test` is what .ci/run calls: every test but the `network` ones - the fast suite and the
# `slow` tests behind README claims (DDP = one process, dask = in-process, --verify with a real
# ConvLSTM, end-to-end `nowcast serve`, every real file, the crash-point harness); `gpu` tests
# skip without CUDA. About 20 minutes on 2 loaded cores (README, Tests); CI allows 90, budget 30.
test: setup
	bash scripts/install-test-services.sh
	$(BIN)/pytest -q -m "not network"

# the fast suite alone (a few minutes): the edit-test loop
test-fast: setup
	bash scripts/install-test-services.sh
	$(BIN)/pytest -q

test-slow: setup
	bash scripts/install-test-services.sh
	$(BIN)/pytest -q -m slow

test-all: setup
	bash scripts/install-test-services.sh
	$(BIN)/pytest -q -m "slow or not slow"

bench: setup
	bash scripts/install-bench-tools.sh || echo "wrk not installed: the API benchmark uses its Python client"
	$(BIN)/nowcast bench

# ruff, then the layering contract (pyproject.toml [tool.importlinter]): cli -> service | training -> ingest -> nowcast
lint: setup
	$(BIN)/ruff check cli ingest nowcast service training tests benchmarks
	$(BIN)/lint-imports

clean:
	rm -rf var artifacts benchmarks/out .pytest_cache
