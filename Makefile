# One virtual environment, pinned by constraints.txt; every target installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install data quickstart test lint
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

data:
	scripts/get_data.sh

# The shared ImageNet MobileNetV2 weights when this checkout has them beside it (real transfer
# learning); otherwise the config's own fallback, random init, which metrics.json records.
WEIGHTS ?= $(wildcard ../shared/weights/mobilenet_v2_imagenet_no_top.weights.h5)

quickstart: install data
	$(BIN)/fmnist train configs/quickstart.yaml $(if $(WEIGHTS),--set model.weights=$(abspath $(WEIGHTS)))

test: install data
	$(BIN)/ruff check src tests scripts
	$(BIN)/pytest -q

lint: install
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
