# The README's two commands. Each creates .venv if it is missing and installs wm into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.wm-installed

.PHONY: demo test install bench clean-venv h5dump

install: $(STAMP)

# Reinstall whenever setup.py (the dependency list) changes.
$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,ray,minari]"
	touch $(STAMP)

# A controller trained with CMA-ES in the dream of the shipped doom-takecover world model (artifacts/pretrained/:
# V and M of the README's learning result), evaluated, and scored beside the random process on the same real
# episodes; then the controller acting in its dream, a comparison GIF (real | VAE | one-step prediction | the dream
# of the same actions) of a fresh real episode, and last the summary again (the fidelity table and both scores).
DEMO := artifacts/doom-takecover-pretrained/demo
VAE := artifacts/pretrained/doom-takecover-vae.h5
MDNRNN := artifacts/pretrained/doom-takecover-mdnrnn.h5
demo: $(STAMP)
	$(BIN)/wm run doom-takecover-pretrained --preset demo --out $(DEMO)
	$(BIN)/wm dream --vae $(VAE) --mdnrnn $(MDNRNN) --controller $(DEMO)/controller.h5 --steps 1000 --scale 2 --out $(DEMO)/dream.gif --force
	$(BIN)/wm rollout --env doom-takecover --episodes 1 --seed 7 --out $(DEMO)/rollouts.h5 --force
	$(BIN)/wm dream --vae $(VAE) --mdnrnn $(MDNRNN) --compare $(DEMO)/rollouts.h5 --episode 0 --temperature 1.15 --out $(DEMO)/compare.gif --force
	$(BIN)/wm run doom-takecover-pretrained --preset demo --out $(DEMO)

# Two pytest workers: one worker kept the 2 cores only about half busy (TensorFlow start-up, environments, subprocesses).
# worksteal hands each worker a contiguous half of the tests, so a module's shared fixtures are mostly built once.
TEST_WORKERS ?= 2
test: $(STAMP) h5dump
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

# Debian's h5dump (hdf5-tools) for the test that artifacts are readable outside h5py; installed where apt-get can run
# as root, otherwise that test is skipped with a reason.
h5dump:
	@command -v h5dump >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		{ timeout 300 apt-get install -y -q hdf5-tools >/dev/null 2>&1 || \
		  { timeout 300 apt-get update -q >/dev/null 2>&1 && timeout 300 apt-get install -y -q hdf5-tools >/dev/null 2>&1; }; }; } || \
		echo "h5dump could not be installed: its test will be skipped."

bench: $(STAMP)
	$(BIN)/python bench/rollout.py
	$(BIN)/python bench/vision_memory.py
	$(BIN)/python bench/mdnrnn_speed.py
	$(BIN)/python bench/dream.py
	$(BIN)/python bench/dreamer.py
	$(BIN)/python bench/onednn.py

clean-venv:
	rm -rf $(VENV)
