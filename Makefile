# One-command setup: `make demo` runs the main job end to end, `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# torch goes in first and pinned: a bare `torch` would pull a multi-GB CUDA build on a CPU box.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast lint up bench timing clean redis-server browser

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	HF_HUB_OFFLINE=1 $(PY) -m app.demo

redis-server:
	@command -v redis-server >/dev/null 2>&1 || bash scripts/ensure-redis.sh

# The browser tests drive Debian's chromium (a test tool's own browser download cannot work offline).
browser:
	@[ -x /usr/bin/chromium ] || bash scripts/ensure-browser.sh

# ruff, then the layer contracts in pyproject.toml ([tool.importlinter]): app and worker never import each other.
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(VENV)/bin/lint-imports

# The inner loop: engine and API unit tests, no subprocess servers (those are marked `slow`).
FAST_TESTS := tests/engine tests/service/test_api.py tests/service/test_jobs.py \
	tests/service/test_store_contract.py tests/test_packaging.py
test-fast: install redis-server
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q -m "not slow" $(FAST_TESTS)

test: install redis-server browser lint
	HF_HUB_OFFLINE=1 $(PY) -m pytest -q

up: install redis-server
	bash scripts/up.sh

bench: install
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.quality --data ../shared/data/semeval-mixtral-fewshot --seeds 3 --ablation --out benchmarks/results/semeval-mixtral-fewshot.json
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.quality --data ../shared/data/trec-weak-vote --seeds 3 --out benchmarks/results/trec-weak-vote.json

timing: install
	HF_HUB_OFFLINE=1 $(PY) -m benchmarks.timing_checks

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
