# The README's two commands. Each creates .venv if it is missing and installs wm into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.wm-installed

.PHONY: demo test install bench clean-venv

install: $(STAMP)

# Reinstall whenever setup.py (the dependency list) changes.
$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,ray,minari]"
	touch $(STAMP)

# A few doom-takecover and carracing episodes, inspected.
demo: $(STAMP)
	$(BIN)/wm rollout --env doom-takecover --episodes 8 --workers 2 --seed 0 --out artifacts/demo/doom-takecover-rollouts.h5
	$(BIN)/wm rollout --env carracing --episodes 4 --workers 2 --seed 0 --out artifacts/demo/carracing-rollouts.h5
	$(BIN)/wm inspect artifacts/demo/doom-takecover-rollouts.h5
	$(BIN)/wm inspect artifacts/demo/carracing-rollouts.h5

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/rollout.py

clean-venv:
	rm -rf $(VENV)
