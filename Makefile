# Two commands do all set-up: `make demo` (main job) and `make test` (the test suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/kit: pyproject.toml
	$(PY) -m venv $(VENV)
	# torch/torchvision first, pinned to the builds on local disk: timm imports torchvision,
	# and an unpinned resolve would pull a multi-GB CUDA build.
	$(BIN)/pip install --no-cache-dir -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --no-cache-dir -q -e '.[test]'
	touch $(BIN)/kit

setup: $(BIN)/kit

demo: $(BIN)/kit
	$(BIN)/kit demo --out-dir demo

test: $(BIN)/kit
	$(BIN)/python -m pytest -W error::UserWarning:albumentations

.PHONY: setup demo test
