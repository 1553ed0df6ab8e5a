# rrg-tutorial: every target first creates or updates ./.venv (idempotent; see tools/setup_env.sh).
SHELL := /bin/bash
PY := .venv/bin/python
VENV_BIN := $(CURDIR)/.venv/bin
export PATH := $(VENV_BIN):$(PATH)
# Triton kernels run on the CPU through its interpreter when no GPU is present (set to 0 on a GPU box).
export TRITON_INTERPRET ?= $(shell command -v nvidia-smi >/dev/null 2>&1 && echo 0 || echo 1)

.PHONY: env run test test-fast test-notriton lab docs export clean-nbs help
help:
	@echo "make run    execute every numbered notebook (CPU default profile) and print a summary table"
	@echo "make test   nbdev clean/export leave no diff, pytest tests/, every notebook under the CI profile,"
	@echo "            then the no-Triton check (make test-notriton)"
	@echo "make test-notriton  the Triton-free tests and Part I lessons (ci) with 'import triton' failing"
	@echo "make lab    JupyterLab with the project's kernel (LAB_ARGS=--no-browser on a remote box)"
	@echo "make docs   nbdev_docs where Quarto is installed, else a preview of the site in _preview/ (offline)"

env:
	@bash tools/setup_env.sh

# The main job: the course, CPU default parameters. PROFILE=gpu on a GPU box; NB=03 runs one lesson.
run: env
	$(PY) tools/run_notebooks.py --profile $(or $(PROFILE),cpu) --out _runs/$(or $(PROFILE),cpu) $(if $(NB),--only $(NB),)

# Each test of pytest gets at most PYTEST_TIMEOUT seconds (pytest-timeout): a hang fails with its stack, not silently.
# PHASES: a file to which each phase of `make test` appends '<unix time> <phase>' (.ci/run prints it as a summary).
PYTEST_TIMEOUT ?= 600
PHASES ?= /dev/null
test: env
	@echo "$$(date +%s) sync" >> $(PHASES)
	$(PY) tools/check_sync.py
	@echo "$$(date +%s) pytest" >> $(PHASES)
	$(PY) -m pytest -q --timeout=$(PYTEST_TIMEOUT) --durations=5 tests/
	@echo "$$(date +%s) notebooks" >> $(PHASES)
	$(PY) tools/run_notebooks.py --profile ci --out _runs/ci $(if $(NB),--only $(NB),)
	$(if $(NB),,@$(MAKE) --no-print-directory test-notriton)
	@echo "$$(date +%s) done" >> $(PHASES)

# As on macOS, Windows or PyTorch's CPU-only wheels, where Triton does not exist: tools/notriton/sitecustomize.py
# makes `import triton` fail. The tests (less the slow ones that never touch a scan; every file runs even if one
# fails to import) and the Part I lessons (ci profile) must pass, with what needs Triton skipped and named.
NOTRITON_SKIP_TESTS := test_metrics.py test_runner.py test_drr.py test_labeler.py test_reports.py test_tokenizer.py \
                       test_data.py test_notebooks.py test_preview_docs.py test_visual.py test_cma.py \
                       test_generator.py test_train.py test_evaluate.py test_llm.py test_datasets.py
NOTRITON_TESTS := $(filter-out $(addprefix tests/,$(NOTRITON_SKIP_TESTS)),$(sort $(wildcard tests/test_*.py)))
NOTRITON_NBS ?= 02 03 04 05
test-notriton: env
	@echo "$$(date +%s) notriton" >> $(PHASES)
	PYTHONPATH=$(CURDIR)/tools/notriton$(if $(PYTHONPATH),:$(PYTHONPATH),) $(PY) -m pytest -q -rs --timeout=$(PYTEST_TIMEOUT) \
	  --continue-on-collection-errors $(NOTRITON_TESTS)
	$(PY) tools/run_notebooks.py --no-triton --profile ci --out _runs/ci-notriton --only $(NOTRITON_NBS)

# pytest only (quick loop while developing)
test-fast: env
	$(PY) -m pytest -q --timeout=$(PYTEST_TIMEOUT) tests/

lab: env
	.venv/bin/jupyter lab --notebook-dir=nbs $(if $(filter 0,$(shell id -u)),--allow-root,) $(LAB_ARGS)

docs: env
	@if command -v quarto >/dev/null 2>&1; then \
	  .venv/bin/nbdev_docs; \
	else \
	  echo "Quarto is not installed (https://quarto.org/docs/get-started/): the real site is built by"; \
	  echo "'nbdev_docs' on a machine with Quarto, or by .github/workflows/deploy.yaml."; \
	  echo "Writing a preview of the site instead (nbdev's own docs processors, committed outputs, local math):"; \
	  $(PY) tools/preview_docs.py --out _preview $(PREVIEW_ARGS); \
	fi

export: env
	.venv/bin/nbdev_export

clean-nbs: env
	.venv/bin/nbdev_clean
