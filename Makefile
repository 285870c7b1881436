# Two commands matter: `make run` (embedded default, no services) and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
PORT ?= 8000
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed

# `make run` and `make superuser`: SQLite, in-process cache, tasks run in-process.
EMBEDDED := DJANGO_DEBUG=true
# `make test` uses its own instance of the services, apart from `make services-up`'s.
TEST_PORT_BASE ?= 26432
TEST_SERVICES := SERVICES_NAME=test SERVICES_PORT_BASE=$(TEST_PORT_BASE) SERVICES_ENV_FILE=.services.test.env
# `make serve`: production settings, on plain HTTP on loopback.
SERVE_ENV := DJANGO_DEBUG=false DJANGO_SECURE_SSL_REDIRECT=false DJANGO_SECURE_COOKIES=false

.PHONY: help run superuser test lint format serve services-up services-down clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

$(RUNTIME): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(DEV): $(RUNTIME) requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

run: $(RUNTIME) ## Serve the API and admin on http://127.0.0.1:$(PORT) (SQLite, no services)
	$(EMBEDDED) $(BIN)/python manage.py migrate --noinput
	$(EMBEDDED) $(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

superuser: $(RUNTIME) ## Create a staff login for `make run` (DJANGO_SUPERUSER_EMAIL/PASSWORD for --noinput)
	$(EMBEDDED) $(BIN)/python manage.py migrate --noinput
	$(EMBEDDED) $(BIN)/python manage.py createsuperuser $(if $(DJANGO_SUPERUSER_PASSWORD),--noinput)

test: $(DEV) ## Start disposable PostgreSQL primary + replica and Redis, run every test, stop them
	@trap '$(TEST_SERVICES) bash scripts/services.sh down' EXIT; \
	$(TEST_SERVICES) bash scripts/services.sh up >/dev/null && \
	set -a && . ./.services.test.env && set +a && \
	REQUIRE_SERVICES=1 $(BIN)/pytest $(PYTEST_ARGS)

lint: $(DEV) ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_DEBUG=true $(BIN)/mypy .

format: $(DEV) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

services-up: ## Start the development services; write their settings to .services.env
	@bash scripts/services.sh up

services-down: ## Stop the development services and delete their data
	@bash scripts/services.sh down

serve: $(RUNTIME) ## gunicorn with production settings against `make services-up` on 127.0.0.1:$(PORT)
	@test -f .services.env || { echo "Run 'make services-up' first." >&2; exit 1; }
	set -a && . ./.services.env && set +a && \
	export $(SERVE_ENV) DJANGO_SECRET_KEY=$${DJANGO_SECRET_KEY:-$$($(BIN)/python -c 'import secrets; print(secrets.token_urlsafe(50))')} && \
	$(BIN)/python manage.py migrate --noinput && \
	$(BIN)/python manage.py collectstatic --noinput -v0 && \
	PORT=$(PORT) $(BIN)/gunicorn -c config/gunicorn.py config.wsgi

clean: ## Remove the virtualenv, SQLite database and collected static files
	rm -rf $(VENV) db.sqlite3 staticfiles

# --- Benchmarks (issue #4); not part of `make test` ---------------------------------
.PHONY: bench-cache
bench-cache: $(DEV) ## Benchmark GET /users/{id}/ cold/warm vs a bare WSGI ceiling (wrk, own services)
	$(BIN)/python bench/run.py
