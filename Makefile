# The two commands of the quickstart: `make up` and `make test`.
SHELL := /bin/bash
SYI := .venv/bin/syi

.PHONY: setup up down status test test-long test-fast lock images

setup: ## create .venv, install the locked dependencies, fetch Kafka
	@bash scripts/setup.sh

up: setup ## start the whole system on embedded defaults, in the background (BROKERS=3: a three-broker Kafka)
	@$(SYI) stack up $(if $(LIVE),--live,) $(if $(BROKERS),--brokers $(BROKERS),)

down: ## stop everything `make up` started
	@$(SYI) stack down

status:
	@$(SYI) stack status

test: ## everything the tests need, then the whole suite
	@bash scripts/setup.sh --test-tools
	@.venv/bin/pytest

test-long: ## the fault suite's longer runs (the whole system, a far-future tick then a dead feed, an 80 s broker outage, the kill campaign on a 4 h tape with 10 kills each)
	@bash scripts/setup.sh --test-tools
	@SYI_FAULTS_LONG=1 .venv/bin/pytest -m faults tests/faults
	@SYI_CONTAINERS_LONG=1 .venv/bin/pytest tests/containers/test_compose_run.py  # compose/compose.host.yaml from the images

test-fast: setup ## unit tests only (no broker, no database)
	@.venv/bin/pytest -m "not integration and not e2e"

images: ## build every service image with podman, tagged stableyield/<service>:dev (a local Debian base when no registry answers)
	@bash scripts/setup.sh --containers
	@bash ops/images/build.sh

lock: ## re-resolve uv.lock after changing a pyproject.toml
	@uv lock
