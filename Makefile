# iotpipe - local-first serverless IoT pipeline.  `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The Lambda runtime is python3.12: both environments use a CPython 3.12 (pyenv's, or the system's).
PY312 ?= $(shell for c in $$HOME/.pyenv/versions/3.12.*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12 python3.12; do \
  "$$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && { echo "$$c"; break; }; done)
VENV := .venv
EMU_VENV := .venv-emulator
PY := $(VENV)/bin/python
MINISTACK_VERSION := 1.5.33
# boto3 matching ministack's exact botocore pin: the Lambda runtime on AWS ships boto3, so the
# emulator's interpreter (which runs the functions) must too.
EMU_BOTO3 := 1.43.106
# ministack runs Athena queries on DuckDB when it can import it (ATHENA_ENGINE, services/athena.py);
# without it every query "succeeds" with mock rows. iotpipe/local/emulator.py sets ATHENA_ENGINE=duckdb.
EMU_DUCKDB := 1.5.6
# ministack's IoT Core needs it for its CA, the certificates CreateKeysAndCertificate signs and the
# mTLS MQTT listener (without it the listener stays off and /_ministack/iot/ca.pem answers 503).
EMU_CRYPTOGRAPHY := 51.0.1
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export PYTHON := $(CURDIR)/$(PY)

.PHONY: help venv emulator-env install up down status test test-unit test-integration test-localstack lint security bench bench-e2e bench-shards cost build deploy-dry-run clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-18s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -n "$(PY312)" || { echo "Python 3.12 not found (set PY312=/path/to/python3.12)"; exit 1; }
	@test -x $(PY) || $(PY312) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	@touch $@

$(EMU_VENV)/.installed: Makefile
	@test -n "$(PY312)" || { echo "Python 3.12 not found (set PY312=/path/to/python3.12)"; exit 1; }
	@test -x $(EMU_VENV)/bin/python || $(PY312) -m venv $(EMU_VENV)
	$(EMU_VENV)/bin/python -m pip install --quiet --disable-pip-version-check "ministack==$(MINISTACK_VERSION)" "boto3==$(EMU_BOTO3)" "duckdb==$(EMU_DUCKDB)" "cryptography==$(EMU_CRYPTOGRAPHY)"
	@touch $@

venv: $(VENV)/.installed ## create the development environment (.venv, Python 3.12)

emulator-env: $(EMU_VENV)/.installed ## create the embedded emulator's environment (.venv-emulator)

install: venv emulator-env ## both environments

up: install ## run the whole pipeline on the embedded emulator (Ctrl-C stops it)
	$(VENV)/bin/iotpipe up

down: ## stop what `make up` started
	$(VENV)/bin/iotpipe down

status: ## pipeline counts and stack outputs
	$(VENV)/bin/iotpipe status

build: venv ## build the function code packages (build/<function>.zip, dependencies inside)
	$(PY) scripts/build.py

lint: venv ## ruff, the layering contracts (.importlinter), mypy (shipped code and iotpipe/), cfn-lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(VENV)/bin/cfn-lint cloudformation/template.yaml

test-unit: venv ## unit tests (no network)
	$(VENV)/bin/pytest tests/unit -q

test-integration: install ## integration tests against the embedded emulator (or AWS_ENDPOINT_URL)
	$(VENV)/bin/pytest tests/integration -q

test-localstack: install ## the integration suite against LocalStack 4.14.0 (AWS_ENDPOINT_URL, Docker, or ../shared/localstack-host)
	scripts/test-localstack.sh

security: venv ## cfn-lint, checkov (own venv) and a dependency audit
	scripts/security-checks.sh

test: install ## every test: lint, layering contracts, types, security checks, unit, integration
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy
	$(PY) scripts/build.py  # the security checks audit the dependencies that ship in the packages
	scripts/security-checks.sh
	$(VENV)/bin/pytest -q

cost: venv ## monthly AWS cost at 1,000 devices x 1 Hz, the capacity plan, and 1k-1M devices (out/cost-vs-fleet.png)
	$(VENV)/bin/iotpipe cost --devices 1000 --rate 1 --sweep

bench-e2e: install ## end-to-end benchmark on the embedded emulator (a few minutes)
	@set -o pipefail; mkdir -p out; $(PY) bench/end_to_end.py | tee out/e2e.out

bench-shards: install ## one shard of 1k/10k/100k/1M-device fleets at its per-shard load, counted (~3 min)
	@set -o pipefail; mkdir -p out; $(PY) bench/shard_load.py --fleets 1000,10000,100000,1000000 | tee out/shard-load.out

bench: install ## every benchmark in bench/ (each ends with one JSON line)
	@set -o pipefail; mkdir -p out; for b in bench/*.py; do echo "== $$b"; $(PY) $$b | tee out/$$(basename $$b .py).out || exit 1; done

deploy-dry-run: ## print the AWS CLI calls a deploy to AWS would make
	TARGET=aws scripts/deploy.sh --dry-run --yes

clean: ## remove build output and emulator state
	rm -rf build .iotpipe
