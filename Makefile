# The two set-up commands of the README:
#   make lab    install everything (first time only), make or update workspace/ (your exercise
#               notebooks; never overwrites what you edited) and open it in JupyterLab
#   make test   install everything (first time only) and run the whole test suite
#   make solutions   open the course's own notebooks (every function written) in JupyterLab
# Both need only Python 3.11 (or newer) with pip; everything goes into .venv/ here.
#   make lab PYTHON=python3.11                  pick the interpreter
#   make lab TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu"
#                                               where PyPI's torch would be the multi-GB CUDA build

PYTHON ?= python3
TORCH_PIP_ARGS ?=
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: lab solutions test

# Jupyter refuses to start as root (containers, cloud notebooks) unless told it may.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: $(VENV)/.installed
	$(PY) -m tinyllm_lab.lab workspace
	$(VENV)/bin/jupyter lab $(ALLOW_ROOT) workspace/

# the course's notebooks, every function written: the solutions
solutions: $(VENV)/.installed
	$(VENV)/bin/jupyter lab $(ALLOW_ROOT) notebooks/

test: $(VENV)/.installed
	$(PY) -m pytest

# torch goes in first, alone, at the version pinned in requirements.txt; then the rest, which
# then finds torch already satisfied and never asks for another build of it.
$(VENV)/.installed: requirements.txt pyproject.toml
	@$(PYTHON) -c "import sys; sys.exit(0 if sys.version_info >= (3, 11) else 'tinyllm-lab needs Python 3.11 or newer, $(PYTHON) is ' + sys.version.split()[0] + ': run make PYTHON=python3.11 ...')"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install $(TORCH_PIP_ARGS) "$$(grep '^torch==' requirements.txt)"
	$(PY) -m pip install -r requirements.txt
	touch $@
