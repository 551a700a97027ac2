# Hindsight: every target sets itself up (`setup` installs uv if missing and syncs the
# locked environment), so `make run` and `make test` work on a fresh clone.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON ?= python3.11

UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
RUN := $(UV) run --locked --all-packages --no-sync

.PHONY: setup run status down test test-unit lint fmt protos asyncapi check-generated soak bench clean

.tools/bin/uv:
	python3 -m venv .tools
	.tools/bin/python -m pip install --quiet uv

.venv/.synced: uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml) | $(UV)
	$(UV) sync --locked --all-packages
	@touch $@

setup: .venv/.synced  ## install uv if missing, sync the locked environment

run: setup  ## the dev stack: embedded NATS + PostgreSQL (unless configured) and every service
	$(RUN) hindsight up

status: setup  ## what the dev stack runs, where, and whether it answers
	$(RUN) hindsight status

down: setup  ## stop a running dev stack (from another shell)
	$(RUN) hindsight down

test: setup  ## the soak (reduced length, its table printed), then unit + integration tests (bench excluded)
	$(RUN) pytest -m soak -p no:cacheprovider tests/integration/test_soak.py -s
	$(RUN) pytest

test-unit: setup
	$(RUN) pytest -m unit

lint: setup  ## ruff + mypy strict on src
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy libs/common/src libs/ops/src libs/devstack/src $(wildcard services/*/src)

fmt: setup
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

protos: setup  ## regenerate libs/protogen from protos/ (never edit the output by hand)
	$(RUN) python scripts/gen_protos.py

asyncapi: setup  ## regenerate the event catalog docs/asyncapi.yaml from the event models
	$(RUN) python -m hindsight.common.catalog --output docs/asyncapi.yaml

check-generated: protos asyncapi  ## fail when generated files differ from what is committed
	git diff --exit-code -- libs/protogen docs/asyncapi.yaml

soak: setup  ## the Score path under load while each part is killed, alone, its table printed (HINDSIGHT_SOAK_RATE, _PHASE_S)
	$(RUN) pytest -m soak -p no:cacheprovider tests/integration/test_soak.py -s

bench: setup  ## benchmarks: print figures, never assert timings
	$(RUN) pytest -m bench -p no:cacheprovider bench -s

clean:
	rm -rf .venv .tools .pytest_cache .mypy_cache .ruff_cache
