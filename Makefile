# The README's two commands are `make demo` and `make test`; both do all set-up first.
SHELL := /bin/bash
VENV ?= $(HOME)/.cache/cgan-lab/venv
PY := $(VENV)/bin/python
export VENV
# Nothing reaches for the network: Hugging Face loads local files only; W&B is offline
# unless the user logged in (common/tracking.py decides).
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup setup-test demo test lint bench help

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' Makefile | sed 's/:.*##/\t/'

# Debian packages: the built-in speakers of SynthVoices (festival + espeak-ng voices).
VOICES := festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts espeak-ng

setup:  ## virtualenv with pinned requirements + the Debian voices (idempotent)
	@bash scripts/setup.sh --apt $(VOICES)

setup-test:  ## setup + what the tests need (headless Chromium for the dashboard test)
	@bash scripts/setup.sh --apt $(VOICES) chromium

demo: setup  ## quick pass over the headline experiments, ends with a dashboard path
	$(PY) -m scripts.demo

test: setup-test  ## the test suite
	$(PY) -m pytest -q

lint: setup  ## ruff
	$(PY) -m ruff check .

bench: setup  ## benchmarks -> reports/bench.json
	$(PY) -m scripts.bench
