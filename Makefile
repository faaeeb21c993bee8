# Morpheus Platform: the entry points a newcomer needs. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help setup test test-no-drills test-times up down status loadtest loadtest-capacity lint unit app-test molecule molecule-all harness lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

setup: ## install everything the project needs (idempotent)
	@scripts/setup

test: ## every test: lint, unit, service, every Molecule scenario
	@$(BIN)/python scripts/test

test-no-drills: ## every test but the scenarios' drills (faults, alerts, rolling updates, load...)
	@$(BIN)/python scripts/test --no-drills

test-times: ## the 20 slowest Ansible tasks, tests and test commands of the last run
	@$(BIN)/python scripts/test --times

up: ## the whole platform locally: make up [LAYOUT=multihost]
	@python3 scripts/local up --layout $(or $(LAYOUT),single)

down: ## remove everything make up created (labelled org.morpheus.local=1)
	@python3 scripts/local down

status: ## the local containers and whether the edge answers
	@python3 scripts/local status

LOADTEST_ARGS = $(if $(LAYOUT),--layout $(LAYOUT)) $(if $(USERS),--users $(USERS)) $(if $(DURATION),--duration $(DURATION))

loadtest: ## load test the local platform: make loadtest [USERS=100] [DURATION=180] [LAYOUT=...]
	@$(BIN)/python scripts/loadtest $(LOADTEST_ARGS)

loadtest-capacity: ## the most users the local platform holds (API p95 <= 2 s, errors <= 1%)
	@$(BIN)/python scripts/loadtest --capacity $(if $(LAYOUT),--layout $(LAYOUT))

lint: ## yamllint, ansible-lint (production profile), ruff
	@$(BIN)/python scripts/test --only lint

unit: ## unit tests of the filter plugins and the repository's own code
	@$(BIN)/python scripts/test --only unit

app-test: ## the Morpheus service's tests (real PostgreSQL, Redis, Chromium)
	@$(BIN)/python scripts/test --only app

molecule: ## one Molecule scenario: make molecule S=common
	@test -n "$(S)" || { echo "usage: make molecule S=<scenario> (one of: $$(ls molecule | grep -v -e shared -e conftest | tr '\n' ' '))"; exit 2; }
	@$(BIN)/python scripts/test --only molecule --scenario $(S)

molecule-all: ## every Molecule scenario
	@$(BIN)/python scripts/test --only molecule

harness: ## start the Docker engine and (re)build the base images
	@python3 scripts/harness up

lock: ## refresh constraints.txt from the current virtualenv
	@$(BIN)/pip freeze --exclude-editable | grep -v -e '^-e ' -e '^morpheus' > constraints.txt
	@echo "constraints.txt: $$(wc -l < constraints.txt) pins"

clean: ## remove caches and the images the harness built (not the virtualenv)
	@rm -rf .cache .pytest_cache .ruff_cache
	@python3 scripts/harness clean
