# The task vocabulary: the targets people type are the ones CI and the workflows call.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
BIN := $(abspath $(VENV))/bin
PYTHON := $(BIN)/python
export PATH := $(BIN):$(PATH)
# No usage telemetry from the libraries (the package sets the same defaults for direct use).
export MLFLOW_DISABLE_TELEMETRY ?= true
export BENTOML_DO_NOT_TRACK ?= true
PORT ?= 3000
LOCK_FLAGS := --python-version 3.11 --generate-hashes --no-header --no-annotate --quiet

.PHONY: help setup repro test test-fast lint format typecheck bench bench-service serve bento \
	serve-bento soak mlflow-ui registry-up registry-down registry-status lock clean gate register \
	trace deploy promote rollback status stop bench-deploy manifests pr-report remote
.PHONY: test-slow lint-workflows
.PHONY: monitor fetch-log retrain-data bench-monitor
.PHONY: outcomes prune-predictions prometheus
.PHONY: act act-pr act-deploy act-monitor act-stop

help: ## Show this list
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: $(VENV)/.installed ## Create .venv from the pinned, hashed lock files

$(VENV)/.installed: requirements.lock requirements-bootstrap.lock pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --require-hashes --no-deps \
		-r requirements-bootstrap.lock
	$(BIN)/uv pip sync --quiet --python $(PYTHON) --require-hashes --compile-bytecode requirements.lock
	$(BIN)/uv pip install --quiet --python $(PYTHON) --no-deps --no-build-isolation -e .
	touch $@

repro: setup ## Run the whole pipeline (dvc repro) on params.yaml; PULL=true first takes what the remote has
	dvc repro $(if $(filter true 1,$(PULL)),--pull)

test: setup lint typecheck ## Lint, type-check and run every test, end-to-end ones included
	$(PYTHON) -m pytest

test-fast: setup ## Run the tests without the slow end-to-end ones
	$(PYTHON) -m pytest -m "not slow"

test-slow: setup ## Run only the slow end-to-end tests (they start PostgreSQL and nginx)
	$(PYTHON) -m pytest -m slow

lint: setup ## Check style and formatting with ruff
	ruff check src tests benchmarks .github/scripts $(ACT_PYTHON)
	ruff format --check src tests benchmarks .github/scripts $(ACT_PYTHON)

format: setup ## Fix what ruff can fix and format the code
	ruff check --fix src tests benchmarks .github/scripts $(ACT_PYTHON)
	ruff format src tests benchmarks .github/scripts $(ACT_PYTHON)

typecheck: setup ## Type-check the package with mypy
	mypy

lint-workflows: setup ## Lint and audit .github/ with actionlint and zizmor (offline without GH_TOKEN)
	actionlint
	zizmor --no-progress .github

bench: setup ## Time the pipeline: per stage, no-op, and on 10k/100k/1M synthetic rows
	$(PYTHON) benchmarks/pipeline.py

serve: setup ## Serve the pipeline's model on 127.0.0.1:3000 (PORT=...), after make repro
	tag=$$(python -m credit_risk.serving.model_store --from-pipeline) && \
		bentoml serve credit_risk.serving.service:CreditRiskService --arg model_tag=$$tag \
		--host 127.0.0.1 --port $(PORT)

bento: setup ## Build the bento: service + the pipeline's model + pinned packages (prints its tag)
	python -m credit_risk.serving.bento build

serve-bento: setup ## Serve a built bento: make serve-bento BENTO=credit-risk:<version>
	@test -n "$(BENTO)" || { echo "usage: make serve-bento BENTO=<tag printed by make bento>"; exit 2; }
	bentoml serve $(BENTO) --host 127.0.0.1 --port $(PORT)

gate: setup ## Judge the pipeline's model by params.yaml's gate: rules (exits 1 if one fails)
	python -m credit_risk.gate.check

# The prediction log that monitor and retrain-data read: FROM (kept elsewhere: s3://bucket/path
# or a folder; its window is fetched into MONITOR_FETCHED first), else LOG (a folder), else ENV
# (the local target's .deploy/<env>/predictions), else params.yaml's serve.prediction_log.
MONITOR_FETCHED ?= .monitor/log
WINDOW_ARGS = $(if $(SINCE),--since "$(SINCE)") $(if $(UNTIL),--until "$(UNTIL)")
LOG_ARGS = $(if $(FROM),--log "$(MONITOR_FETCHED)",$(if $(LOG),--log "$(LOG)") $(if $(ENV),--env "$(ENV)"))
FETCH_FIRST = $(if $(FROM),python -m credit_risk.monitoring.fetch "$(FROM)" "$(MONITOR_FETCHED)" $(WINDOW_ARGS) &&)

monitor: setup ## Logged predictions vs training rows: drift, live quality; exit 1 on an alarm [FROM=|LOG=|ENV= SINCE= UNTIL=]
	$(FETCH_FIRST) python -m credit_risk.monitoring.job $(LOG_ARGS) $(WINDOW_ARGS)

fetch-log: setup ## Copy the window of a log kept elsewhere here: make fetch-log FROM=s3://bucket/path [SINCE= UNTIL=]
	@test -n "$(FROM)" || { echo "usage: make fetch-log FROM=<s3://bucket/path or folder> [SINCE= UNTIL=] (into $(MONITOR_FETCHED))"; exit 2; }
	$(FETCH_FIRST) true

retrain-data: setup ## Rows learned from + outcomes received since the last retraining -> next training source [FROM=|LOG=|ENV= SINCE= UNTIL=]
	$(if $(FROM),python -m credit_risk.monitoring.fetch "$(FROM)" "$(MONITOR_FETCHED)" --outcome-horizon $(WINDOW_ARGS) &&) \
		python -m credit_risk.monitoring.retrain $(LOG_ARGS) $(WINDOW_ARGS)

bench-monitor: setup ## Time make monitor on 1M logged predictions, against 100k in the same run
	$(PYTHON) benchmarks/monitor.py

remote: setup ## Use the DVC remote in DVC_REMOTE_URL (s3://bucket/path, a folder...) instead of ../dvc-remote
	@if [[ -z "$${DVC_REMOTE_URL:-}" ]]; then \
		echo "DVC_REMOTE_URL is not set: DVC keeps its default remote, $$(dvc remote default)"; \
	else \
		dvc remote add --local --default --force team "$$DVC_REMOTE_URL" && \
		echo "DVC's remote is now $$DVC_REMOTE_URL (.dvc/config.local, not committed)"; \
	fi

pr-report: setup ## Write reports/pr-report.md: this branch against BASE (default main) and production
	python -m credit_risk.pr_report --base "$(or $(BASE),main)" $(if $(filter true 1,$(IMAGES)),--images)

register: setup ## Register the gated model with its lineage; alias candidate (after make gate)
	python -m credit_risk.registry.register

trace: setup ## The code, data and params behind a score: make trace VERSION=<model_version>
	@test -n "$(VERSION)" || { echo "usage: make trace VERSION=<a score's model_version>"; exit 2; }
	python -m credit_risk.registry.trace "$(VERSION)"

deploy: setup ## Deploy to an environment: make deploy ENV=staging [BENTO=<tag>]
	@test -n "$(ENV)" || { echo "usage: make deploy ENV=<environment> [BENTO=<bento tag>]"; exit 2; }
	python -m credit_risk.deploy deploy "$(ENV)" $(BENTO)

promote: setup ## Deploy staging's exact release (same bento) to production
	python -m credit_risk.deploy promote

rollback: setup ## Deploy an environment's previous release: make rollback ENV=production
	@test -n "$(ENV)" || { echo "usage: make rollback ENV=<environment>"; exit 2; }
	python -m credit_risk.deploy rollback "$(ENV)"

status: setup ## Each environment: what git, the registry and the target say (flags drift)
	python -m credit_risk.deploy status

stop: setup ## Stop what serves an environment: make stop ENV=staging (its file keeps the release)
	@test -n "$(ENV)" || { echo "usage: make stop ENV=<environment>"; exit 2; }
	python -m credit_risk.deploy stop "$(ENV)"

bench-service: setup ## Service latency and throughput vs in-process and mlflow models serve
	$(PYTHON) benchmarks/service.py

bench-deploy: setup ## Deploy, switch, failed deploy and rollback under load vs a naive restart
	$(PYTHON) benchmarks/deploy.py

soak: setup ## Slowest /score requests over 60 s, with and without the request-timeout fix
	$(PYTHON) benchmarks/soak.py

# The prediction log and monitoring (README: Prediction log; Metrics and alerts).
outcomes: setup ## Store outcomes of logged scores from a file: make outcomes FILE=x.csv|x.jsonl
	@test -n "$(FILE)" || { echo "usage: make outcomes FILE=<csv or jsonl: request_id, outcome[, row]>"; exit 2; }
	python -m credit_risk.monitoring.outcomes "$(FILE)"

prune-predictions: setup ## Delete prediction-log days older than serve.prediction_log.retention_days
	python -m credit_risk.monitoring.outcomes --prune

prometheus: ## Run Prometheus on 127.0.0.1:9090, scraping the local environments (deploy/prometheus)
	prometheus --config.file=deploy/prometheus/prometheus.yml --storage.tsdb.path=.prometheus \
		--web.listen-address=127.0.0.1:9090

mlflow-ui: setup ## Browse the local MLflow runs at http://127.0.0.1:5000
	mlflow ui --backend-store-uri sqlite:///mlruns/mlflow.db --host 127.0.0.1 --port 5000

registry-up: setup ## Start the shared registry stack on loopback ports: mlflow server, PostgreSQL, S3 (moto)
	python -m credit_risk.registry.stack up

registry-down: setup ## Stop the registry stack by its recorded pids (runs, models and artifacts stay)
	python -m credit_risk.registry.stack down

registry-status: setup ## Show whether each part of the registry stack runs and answers
	python -m credit_risk.registry.stack status

manifests: setup ## Render the Kubernetes manifests and Argo CD applications from deploy/*.yaml
	python -m credit_risk.deploy.kubernetes render

lock: ## Re-resolve requirements*.lock after editing dependencies in pyproject.toml
	uv pip compile pyproject.toml --extra pipeline --extra dev $(LOCK_FLAGS) -o requirements.lock
	uv pip compile pyproject.toml -c requirements.lock $(LOCK_FLAGS) -o requirements-serve.lock
	grep -E '^uv==' requirements.lock | cut -d' ' -f1 | uv pip compile - $(LOCK_FLAGS) \
		-o requirements-bootstrap.lock

clean: ## Remove caches and the virtual environment (data, models and runs stay)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis

# Running the workflows here with act (.github/act/: the runner, event fixtures, stand-ins).
ACT_PYTHON := .github/act .github/act/standins/bin/gh .github/act/standins/setup-cml/bin/cml
ACT_ARGS ?=

act: setup registry-up ## Run the workflows here with act: a pull request, then its merge (see .github/act)
	python .github/act/run.py all $(ACT_ARGS)

act-pr: setup registry-up ## With act: checks and train-report for a pull request changing a param
	python .github/act/run.py pr $(ACT_ARGS)

act-deploy: setup registry-up ## With act: the deploy workflow for the merge of make act-pr's pull request
	python .github/act/run.py deploy $(ACT_ARGS)

act-monitor: setup registry-up ## With act, after make act: the monitor's alarm, its retraining pull request, train-report on it
	python .github/act/run.py monitor $(ACT_ARGS)

act-stop: setup ## Stop what make act left serving (staging on the port it printed)
	python .github/act/run.py stop $(ACT_ARGS)
