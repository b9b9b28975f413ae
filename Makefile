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

# The whole doom-takecover chain on its demo preset (rollout -> train-vae -> encode -> train-mdnrnn ->
# fidelity -> train-controller in the dream -> evaluate -> fidelity-controller), then the trained controller
# acting in the dream it was trained in and a comparison GIF (real | VAE | one-step prediction | the dream of
# the same actions), and last the summary again (every step up to date: the fidelity tables and the score).
DEMO := artifacts/doom-takecover/demo
demo: $(STAMP)
	$(BIN)/wm run doom-takecover --preset demo --out $(DEMO)
	$(BIN)/wm dream --vae $(DEMO)/vae.h5 --mdnrnn $(DEMO)/mdnrnn.h5 --controller $(DEMO)/controller.h5 --out $(DEMO)/dream.gif --force
	$(BIN)/wm dream --vae $(DEMO)/vae.h5 --mdnrnn $(DEMO)/mdnrnn.h5 --compare $(DEMO)/rollouts.h5 --temperature 1.15 --out $(DEMO)/compare.gif --force
	$(BIN)/wm run doom-takecover --preset demo --out $(DEMO)

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/rollout.py
	$(BIN)/python bench/vision_memory.py
	$(BIN)/python bench/mdnrnn_speed.py
	$(BIN)/python bench/dream.py
	$(BIN)/python bench/dreamer.py

clean-venv:
	rm -rf $(VENV)
