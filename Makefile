# One command per job. Targets that need servers start them with `socialrec infra up` and
# always stop them again (even on failure or Ctrl-C): a make target never leaves servers running.
#
#   make setup   system tools (as root), the .venv, Java/Maven checks; safe to repeat
#   make test    ruff, mypy and pytest against a real Kafka broker and Redis
#   make unit    the pure and in-memory tests only (no servers, no whole-stream replays)
#   make demo    the live demo
#   make bench   the benchmark (figures go to docs/benchmarks.json)
#   make chaos   100,000 events while a seeded schedule breaks the servers (docs/reliability.md)
#   make lint    ruff and mypy only (no servers)
#
# Pass pytest options with `make test PYTEST_ARGS="-k topics -x"`.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
SOCIALREC := $(BIN)/socialrec
# Debian packages whose binary has the same name: Redis for state, kcat for poking at topics,
# Prometheus (server + promtool) for the metrics and dashboard tests, Chromium (headless) for
# the hosts' live page test, openssl for the local Redis's TLS key (PEM, from keytool's keystore).
APT_TOOLS := redis-server kcat prometheus chromium openssl
PYTEST_ARGS ?=
CHAOS_ARGS ?=
# Stop the servers however the recipe ends; `exit` in the signal traps runs the EXIT trap.
WITH_INFRA_CLEANUP := trap '$(SOCIALREC) infra down' EXIT; trap 'exit 130' INT; trap 'exit 143' TERM;

.PHONY: setup tools venv jdk test unit demo bench chaos lint

setup: tools jdk venv

tools:
	@missing=""; \
	for tool in $(APT_TOOLS); do command -v $$tool >/dev/null 2>&1 || missing="$$missing $$tool"; done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "setup: installing$$missing with apt-get" >&2; \
		apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else \
		echo "setup: warning: missing$$missing; install them (Debian/Ubuntu: sudo apt-get install$$missing)" >&2; \
	fi

jdk:
	@command -v java >/dev/null 2>&1 || { echo "setup: java not found: Kafka needs a Java 17+ runtime (Debian/Ubuntu: apt-get install -y openjdk-17-jre-headless)" >&2; exit 1; }
	@command -v mvn >/dev/null 2>&1 || { echo "setup: mvn not found: Maven resolves Kafka's jars (Debian/Ubuntu: apt-get install -y maven)" >&2; exit 1; }

venv:
	@if [ ! -x $(BIN)/python ]; then \
		command -v $(PYTHON) >/dev/null 2>&1 || { echo "setup: $(PYTHON) not found: socialrec needs Python 3.11 (set PYTHON=/path/to/python3.11)" >&2; exit 1; }; \
		echo "setup: creating $(VENV) with $(PYTHON)" >&2; \
		$(PYTHON) -m venv $(VENV); \
	fi
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'

test: setup
	@scripts/test.sh $(PYTEST_ARGS)

# Everything that needs no server: tests/unit and the doctests in models/ and streams/, less
# the tests marked slow (whole-stream replays, which `make test` still runs).
unit: venv
	$(BIN)/pytest -m "not integration and not slow" tests/unit models streams $(PYTEST_ARGS)

demo: setup
	@$(WITH_INFRA_CLEANUP) $(SOCIALREC) demo

bench: setup
	@$(WITH_INFRA_CLEANUP) $(SOCIALREC) infra up && $(SOCIALREC) bench

chaos: setup
	@$(WITH_INFRA_CLEANUP) $(SOCIALREC) infra up && $(SOCIALREC) chaos $(CHAOS_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
