# The two commands:   make run   (the live system on the synthetic source)   and   make test
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8000

.PHONY: setup run test test-slow test-all bench lint clean

$(VENV)/.installed: pyproject.toml constraints.txt scripts/setup.sh
	bash scripts/setup.sh

setup: $(VENV)/.installed

run: setup
	$(BIN)/nowcast serve --port $(PORT)

test: setup
	bash scripts/install-test-services.sh
	$(BIN)/pytest -q

test-slow: setup
	bash scripts/install-test-services.sh
	$(BIN)/pytest -q -m slow

test-all: setup
	bash scripts/install-test-services.sh
	$(BIN)/pytest -q -m "slow or not slow"

bench: setup
	$(BIN)/nowcast bench

lint: setup
	$(BIN)/ruff check nowcast service training tests benchmarks

clean:
	rm -rf var artifacts benchmarks/out .pytest_cache
