# The two set-up commands of the README:
#   make lab    install everything (first time only) and open the course in JupyterLab
#   make test   install everything (first time only) and run the whole test suite
# Both need only Python 3.11 and pip; everything goes into .venv/ here.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: lab test

lab: $(VENV)/.installed
	$(VENV)/bin/jupyter lab notebooks/

test: $(VENV)/.installed
	$(PY) -m pytest

# torch goes in first, alone, at the version pinned in requirements.txt (the CPU build
# on the course machines); then the rest, which then finds torch already satisfied.
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install "$$(grep '^torch==' requirements.txt)"
	$(PY) -m pip install -r requirements.txt
	touch $@
