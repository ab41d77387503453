# magtorch developer tasks.
#
# Every target creates $(VENV) when it is missing and installs what it needs. Installs are
# recorded by stamp files in $(VENV)/.stamps, remade when pyproject.toml or constraints.txt
# change (or TORCH_SPEC does), so a second `make test` installs nothing.
#
# torch is installed first, on its own, from TORCH_SPEC (here a CPU wheel that pip finds
# on local disk through its find-links); every later install names TORCH_SPEC again so that
# no extra can swap that torch for another build.

PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
PIP_FLAGS  ?= --quiet
PYTEST_ARGS ?=

VPY    := $(VENV)/bin/python
PIP    := $(VPY) -m pip
RUFF   := $(VENV)/bin/ruff
STAMPS := $(VENV)/.stamps
CONSTRAINTS := constraints.txt

# Figures are written to files; never open a window.
export MPLBACKEND ?= Agg

.DEFAULT_GOAL := help
.PHONY: help demo report test test-all bench lint format clean distclean

help:
	@echo "make demo      memorization experiment (potential ratio vs Feldman estimates) -> outputs/demo/report.md"
	@echo "make report    magnitude report on scikit-learn datasets -> outputs/magnitude_report/"
	@echo "make test      ruff check, ruff format --check, pytest (default suite, no slow tests)"
	@echo "make test-all  the same, slow tests included"
	@echo "make bench     speed and memory against peer libraries (benchmarks/run_all.py)"
	@echo "make lint      ruff check and ruff format --check"
	@echo "make format    ruff check --fix and ruff format"
	@echo "make clean     remove caches and build files (keeps $(VENV) and outputs/)"
	@echo "make distclean clean, and remove $(VENV)"

# ---------------------------------------------------------------- environment

$(VPY):
	$(PYTHON) -m venv $(VENV)

# Re-install torch when TORCH_SPEC differs from the one recorded in the stamp.
ifneq ($(shell cat $(STAMPS)/torch 2>/dev/null),$(TORCH_SPEC))
.PHONY: $(STAMPS)/torch
endif

$(STAMPS)/torch: | $(VPY)
	$(PIP) install $(PIP_FLAGS) -c $(CONSTRAINTS) "$(TORCH_SPEC)"
	@mkdir -p $(STAMPS)
	@echo '$(TORCH_SPEC)' > $@

# $(STAMPS)/extras-NAME installs the project (editable) with the extras in EXTRAS_NAME.
EXTRAS_dev      := dev
EXTRAS_examples := examples
EXTRAS_demo     := demo
EXTRAS_bench    := bench,examples

$(STAMPS)/extras-%: pyproject.toml $(CONSTRAINTS) $(STAMPS)/torch
	$(PIP) install $(PIP_FLAGS) -c $(CONSTRAINTS) "$(TORCH_SPEC)" -e ".[$(EXTRAS_$*)]"
	@touch $@

# ---------------------------------------------------------------- tasks

# The memorization experiment at demo size (under 5 minutes on 2 CPU cores).
demo: $(STAMPS)/extras-demo
	$(VPY) experiments/train.py experiment=memorization hydra.run.dir=outputs/demo
	@echo "report: outputs/demo/report.md"

report: $(STAMPS)/extras-examples
	$(VPY) -m experiments.magnitude_report

lint: $(STAMPS)/extras-dev
	$(RUFF) check .
	$(RUFF) format --check .

format: $(STAMPS)/extras-dev
	$(RUFF) check --fix .
	$(RUFF) format .

test: lint
	$(VPY) -m pytest -q $(PYTEST_ARGS)

# -m "" replaces the default -m "not slow" of pyproject.toml: every test runs.
test-all: lint
	$(VPY) -m pytest -q -m "" $(PYTEST_ARGS)

bench: $(STAMPS)/extras-bench
	$(VPY) -m benchmarks.run_all

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
