# Doorstep. `make run` and `make test` set up everything they need on a fresh machine that
# has python3 (>=3.11), java (>=17), mvn and go. Downloads and builds are cached outside
# the clone, in $(CACHE), keyed by the files that define them.

SHELL := /bin/bash
.DEFAULT_GOAL := help

CACHE ?= $(or $(DOORSTEP_CACHE),$(XDG_CACHE_HOME),$(HOME)/.cache)/doorstep
PYTHON ?= python3
# One virtualenv per distinct pyproject.toml: a dependency change gets a fresh one.
VENV := $(CACHE)/venv-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
PY := $(VENV)/bin/python
READY := $(VENV)/.installed

# The clone's code is imported from the clone (not installed into the shared venv), so two
# clones can share one cached venv.
export PYTHONPATH := $(CURDIR)
export DOORSTEP_CACHE := $(CACHE)
export PIP_CACHE_DIR := $(CACHE)/pip

.PHONY: help setup run token console-link ops-account seed bench app-figures soak cluster-soak test test-unit test-integration test-e2e test-faults lint format up down clean-data

help: ## Show the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(READY): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python >= 3.11 is required")'
	@echo "[setup] Python environment in $(VENV)"
	@$(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/pip install -q --upgrade pip
	@$(PY) -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
		print("\n".join(p["dependencies"] + p["optional-dependencies"]["dev"]))' > $(VENV)/requirements.txt
	@$(VENV)/bin/pip install -q -r $(VENV)/requirements.txt
	@touch $@

setup: $(READY) ## Install Python deps, fetch Kafka jars, build FerretDB (all cached)
	@$(PY) -m doorstep_cli setup

run: setup ## Run Kafka, FerretDB and the four services in the foreground
	@$(PY) -m doorstep_cli run

token: $(READY) ## Mint a dev token: make token ARGS='--role staff --community datong'
	@$(PY) -m doorstep_cli token $(ARGS)

console-link: $(READY) ## Print a one-time console sign-in link: make console-link ARGS='--community datong'
	@$(PY) -m doorstep_cli console-link $(ARGS)

ops-account: $(READY) ## Make a phone an ops account (the first one): make ops-account ARGS='--phone 139... --name "Li"'
	@$(PY) -m doorstep_cli ops-account $(ARGS)

seed: $(READY) ## Seed the Datong demo community into a running `make run`
	@$(PY) -m doorstep_cli seed $(ARGS)

test: $(READY) ## Run every test: unit, integration (real Kafka + FerretDB), end-to-end and the console in a real browser
	@$(PY) -m doorstep_cli setup --browser
	@$(PY) -m pytest tests/unit tests/integration tests/e2e --durations=15

test-unit: $(READY) ## Unit tests only (no I/O)
	@$(PY) -m pytest tests/unit

test-integration: setup ## Integration tests against the real broker and database
	@$(PY) -m pytest tests/integration

test-e2e: $(READY) ## End-to-end tests: the services as real processes, the console in a real browser
	@$(PY) -m doorstep_cli setup --browser
	@$(PY) -m pytest tests/e2e

test-faults: setup ## The fault tests alone, with their recovery times (kill -9, cuts, a zombie; the long outages 60 s and 90 s)
	@DOORSTEP_TEST_LONG_DB_CUT=60 DOORSTEP_TEST_LONG_BROKER_DOWN=90 $(PY) -m pytest tests/e2e/test_faults.py -s -q

bench: setup ## Open-loop load against the real stack: figures per step, then one `bench:` line
	@$(PY) -m doorstep_cli bench $(ARGS)

app-figures: $(READY) ## The phone app's figures: transfer size, slow-3G loads, offer → screen, accessibility audit
	@$(PY) -m doorstep_cli setup --browser
	@$(PY) -m pytest tests/e2e/test_field_figures.py -s -q

soak: setup ## Faults one after another under a steady flow of orders, then exactly-once checks: make soak ARGS='--minutes 10'
	@$(PY) -m tests.soak $(ARGS)

cluster-soak: setup ## Three brokers, three instances of each owner: a broker dies for good, another goes away, every instance restarts in turn; then exactly-once checks
	@$(PY) -m tests.cluster_soak $(ARGS)

lint: $(READY) ## ruff and mypy
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy shared services doorstep_cli

format: $(READY) ## Format the code
	@$(VENV)/bin/ruff format .
	@$(VENV)/bin/ruff check --fix .

up: ## Run the stack with Docker Compose (needs a Docker engine)
	docker compose -f deploy/docker-compose.yml up --build

down: ## Stop the Docker Compose stack
	docker compose -f deploy/docker-compose.yml down

clean-data: ## Forget the data of `make run` (Kafka log, FerretDB files)
	rm -rf .data
