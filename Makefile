# One virtual environment, pinned by constraints.txt; every target installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install data quickstart test lint
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 14))' 2>/dev/null \
	  || { echo "error: $(PYTHON) is not Python 3.11-3.13; install one, or make PYTHON=python3.11" >&2; exit 3; }
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null \
	  || { echo "error: $(PYTHON) cannot make a virtual environment; install python3-venv (Debian/Ubuntu: sudo apt-get install python3-venv)" >&2; exit 3; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

# DATA_DIR: a folder with the data (IDX or CSV), passed on as data.dir; else get_data.sh finds
# or installs it, or leaves it to Keras's download on the first run.
DATA_DIR ?=
data:
	DATA_DIR=$(DATA_DIR) scripts/get_data.sh

# configs/quickstart.yaml asks for Keras's ImageNet weights (downloaded and cached by Keras);
# with the shared stand-in beside this checkout, that file instead. Without either, the config
# says to go on from random weights, and metrics.json records it (README, first screen).
WEIGHTS ?= $(wildcard ../shared/weights/mobilenet_v2_imagenet_no_top.weights.h5)

quickstart: install data
	$(BIN)/fmnist train configs/quickstart.yaml $(if $(WEIGHTS),--set model.weights=$(abspath $(WEIGHTS))) $(if $(DATA_DIR),--set data.dir=$(abspath $(DATA_DIR)))

# Test files run in TEST_WORKERS processes (pytest-xdist), a whole file to a process so its
# module fixtures are built once; TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2

test: install data
	$(BIN)/ruff check src tests scripts
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: install
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts
