# Two commands for a newcomer (see README):
#   make chat   set up, then open the chat in the browser
#   make test   set up everything the suites need, then lint and run the whole test suite
# Other targets are the steps they are made of.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: chat test setup setup-dev system-chat system-test sandbox-image lint format bench

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

setup: $(VENV)/.installed
setup-dev: $(VENV)/.installed-dev

system-chat:
	scripts/ensure_system.sh chat

system-test:
	scripts/ensure_system.sh test

# Builds the Docker sandbox image (offline when no registry answers); a no-op when it is up to date.
sandbox-image: setup
	$(PY) -m interpreter image build

chat: setup system-chat
	$(PY) -m app $(ARGS)

lint: setup-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: setup-dev system-test sandbox-image lint
	HF_HUB_OFFLINE=1 $(PY) -m pytest $(ARGS)

bench: setup-dev system-test sandbox-image
	$(PY) -m benchmarks.interpreter_roundtrip
	$(PY) -m benchmarks.loop_overhead
	$(PY) -m benchmarks.execution_latency
	$(PY) -m benchmarks.evaluation_speed
	$(PY) -m benchmarks.soak
	$(PY) -m benchmarks.pipeline_throughput
	$(PY) -m benchmarks.training_throughput
	$(PY) -m benchmarks.evaluation_concurrency
	$(PY) -m benchmarks.decontamination_speed
	$(PY) -m benchmarks.aiev_overhead
	$(PY) -m benchmarks.file_transfer
	$(PY) -m benchmarks.sandbox_latency
	$(PY) -m benchmarks.canonical_time_limits
	$(PY) -m benchmarks.chat_tasks
