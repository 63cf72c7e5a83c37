# The commands a developer needs. `make up` and `make test` are the two in the README.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install up down status run test lint bench contracts lock clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

up:  ## the whole stack with least-privilege credentials, then the plan's scenario and its report
	$(PYTHON) deploy/local/stack.py up

down:  ## stop every process `make up` started (`make down PURGE=1` also drops its data)
	$(PYTHON) deploy/local/stack.py down $(if $(PURGE),--purge)

status:
	$(PYTHON) deploy/local/stack.py status

run: $(STAMP)  ## the four services against PostgreSQL and Redis on localhost, for development
	PARTY_ENV=development $(BIN)/party serve all

test: $(STAMP)  ## the whole test suite (needs PostgreSQL and Redis on localhost)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .
	$(BIN)/lint-imports

bench: $(STAMP)  ## the targets beside the peer library and the machine's limits (`ARGS=--quick`)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,bench]"
	$(BIN)/python -m tests.bench.targets $(ARGS)

contracts: $(STAMP)  ## regenerate JSON Schema, AsyncAPI and OpenAPI documents
	$(BIN)/party contracts

lock: $(STAMP)  ## re-pin every installed package after changing pyproject.toml
	{ head -n 2 constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -v '^-e'; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
