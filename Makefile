# rrg-tutorial: every target first creates or updates ./.venv (idempotent; see tools/setup_env.sh).
SHELL := /bin/bash
PY := .venv/bin/python
VENV_BIN := $(CURDIR)/.venv/bin
export PATH := $(VENV_BIN):$(PATH)
# Triton kernels run on the CPU through its interpreter when no GPU is present (set to 0 on a GPU box).
export TRITON_INTERPRET ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 0 || echo 1)

.PHONY: env run test test-fast lab docs export clean-nbs help
help:
	@echo "make run    execute every numbered notebook (CPU default profile) and print a summary table"
	@echo "make test   nbdev clean/export leave no diff, pytest tests/, every notebook under the CI profile"
	@echo "make lab    JupyterLab with the project's kernel (LAB_ARGS=--no-browser on a remote box)"
	@echo "make docs   nbdev_docs where Quarto is installed, else an offline HTML preview in _preview/"

env:
	@bash tools/setup_env.sh

# The main job: the course, CPU default parameters. PROFILE=gpu on a GPU box; NB=03 runs one lesson.
run: env
	$(PY) tools/run_notebooks.py --profile $(or $(PROFILE),cpu) --out _runs/$(or $(PROFILE),cpu) $(if $(NB),--only $(NB),)

test: env
	$(PY) tools/check_sync.py
	$(PY) -m pytest -q tests/
	$(PY) tools/run_notebooks.py --profile ci --out _runs/ci $(if $(NB),--only $(NB),)

# pytest only (quick loop while developing)
test-fast: env
	$(PY) -m pytest -q tests/

lab: env
	.venv/bin/jupyter lab --notebook-dir=nbs $(if $(filter 0,$(shell id -u)),--allow-root,) $(LAB_ARGS)

docs: env
	@if command -v quarto >/dev/null 2>&1; then \
	  .venv/bin/nbdev_docs; \
	else \
	  echo "Quarto is not installed (https://quarto.org/docs/get-started/): the real site is built by"; \
	  echo "'nbdev_docs' on a machine with Quarto, or by .github/workflows/deploy.yaml."; \
	  echo "Writing an offline HTML preview of the notebooks (with their committed outputs) to _preview/ instead."; \
	  $(PY) tools/preview_docs.py --out _preview; \
	fi

export: env
	.venv/bin/nbdev_export

clean-nbs: env
	.venv/bin/nbdev_clean
