# The README's two commands: `make demo` and `make test`. Both create the venv when needed.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-postgres lint typecheck validate dev clean

$(STAMP): pyproject.toml setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $(STAMP)

## Run the main job once on the embedded default: sandbox, full_sync, a profile read.
demo: $(STAMP)
	$(BIN)/integration-pipelines demo

## Run the test suite. PostgreSQL tests skip unless PostgreSQL is reachable (see README).
test: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadfile $(PYTEST_ARGS)

## Start the machine's PostgreSQL and run the tests with PostgreSQL required (as CI does).
test-postgres: $(STAMP)
	scripts/start-test-postgres.sh
	REQUIRE_POSTGRES=1 $(BIN)/pytest -n 2 --dist loadfile $(PYTEST_ARGS)

## ruff: lint and formatting (CI runs it too).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## pyright (standard mode) over lib/, defs/ and api/; see [tool.pyright] in pyproject.toml. Not in CI yet.
typecheck: $(STAMP)
	$(BIN)/pyright

validate: $(STAMP)
	DAGSTER_HOME=$${DAGSTER_HOME:-$(CURDIR)/.data/dagster_home} $(BIN)/dagster definitions validate -w workspace.yaml

## The Dagster UI on the embedded default.
dev: $(STAMP)
	$(BIN)/integration-pipelines dagster-home >/dev/null
	DAGSTER_HOME=$${DAGSTER_HOME:-$(CURDIR)/.data/dagster_home} $(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf .data dbt_models/target dbt_models/logs
