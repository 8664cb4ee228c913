# Set-up and entry points. On a fresh machine these two commands do everything:
#   make run PROMPT="city at night"    # create .venv, install, download default weights, generate
#   make test                          # create .venv, install test dependencies, run the tests
#
# torch goes in first, on its own, pinned to the tested build; override with
#   make TORCH_SPEC="torch torchvision" ...   (for example to take another CUDA build)

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
PROMPT ?= city at night
ARGS ?=
PYTEST_ARGS ?=
# Tests never reach the network: no analytics, no hub lookups, no telemetry.
TEST_ENV := GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1

.PHONY: install install-dev run app test lint bench clean-venv

$(VENV)/.torch-installed:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install $(TORCH_SPEC)
	touch $@

$(VENV)/.runtime-installed: $(VENV)/.torch-installed requirements.txt
	$(BIN)/python -m pip install -r requirements.txt
	touch $@

$(VENV)/.dev-installed: $(VENV)/.runtime-installed requirements-dev.txt requirements-ray.txt
	$(BIN)/python -m pip install -r requirements-dev.txt -r requirements-ray.txt
	touch $@

install: $(VENV)/.runtime-installed

install-dev: $(VENV)/.dev-installed

run: install
	$(BIN)/python -m generator "$(PROMPT)" $(ARGS)

app: install
	$(BIN)/python app.py $(ARGS)

# Lint first (ruff: style, import sorting, likely bugs), then the suite.
test: install-dev
	$(BIN)/python -m ruff check .
	$(TEST_ENV) $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install-dev
	$(BIN)/python -m ruff check .

bench: install
	$(BIN)/python bench/clip_loop.py $(ARGS)

clean-venv:
	rm -rf $(VENV)
