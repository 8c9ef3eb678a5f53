# Two commands on a fresh machine:
#   make run    set up .venv (if missing) and run the embedded default workflow (tiny model, CPU)
#               -> results/report/summary.html (the verdict first; also the first entry of results/report.html)
#   make test   set up .venv (if missing) and run the whole test suite (simulator and Slurm tests included)
# `make run` needs software rendering only; a local Slurm (slurm-wlm, munge) is needed by `make test` alone.
# SYSDEPS=skip skips the system-package check; PYTEST_ARGS passes options to pytest, e.g.
#   make test PYTEST_ARGS='-m "not slow"'     without the tests marked slow (workflow and Slurm runs)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
CORES ?= all
PYTEST_ARGS ?=
SYSDEPS ?= check
export SYSDEPS
export MUJOCO_GL ?= egl
export PYOPENGL_PLATFORM ?= egl

.PHONY: run test venv sysdeps sysdeps-run sysdeps-test report lint clean bench

# The venv is rebuilt when the dependency list or the pins change. constraints.txt pins every package;
# torch==2.13.0 resolves to the CPU wheel where no CUDA build is wanted (see README).
$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -c constraints.txt -e ".[sim,workflow,test]"
	@# robomimic (via hf-libero) pulls a torchvision that cannot load beside the CPU torch; nothing here uses it.
	$(PY) -m pip uninstall -y -q torchvision
	@touch $@

venv: $(VENV)/.installed

# System packages, installed only when missing (scripts/install_sysdeps.sh): software EGL/OSMesa rendering for the
# LIBERO simulator (run), plus a local Slurm for the Slurm tests (test).
sysdeps-run:
	@bash scripts/install_sysdeps.sh run

sysdeps-test sysdeps:
	@bash scripts/install_sysdeps.sh test

run: sysdeps-run venv
	$(VENV)/bin/snakemake --cores $(CORES) --configfile config/config.yaml
	$(VENV)/bin/snakemake --cores 1 --configfile config/config.yaml --report results/report.html
	@echo "open results/report/summary.html (success per run and horizon first; results/report.html has every figure)"

report: venv
	$(VENV)/bin/snakemake --cores 1 --configfile config/config.yaml --report results/report.html

test: sysdeps-test venv
	$(PY) -m pytest $(PYTEST_ARGS)

# ruff (rules and format in pyproject.toml) and Snakemake's workflow lint; tests/test_lint.py runs the two checks
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/snakemake --lint --configfile config/config.yaml

bench: venv
	$(PY) bench/inference.py
	$(PY) bench/dataloader.py
	$(PY) bench/train_step.py
	$(PY) bench/train_throughput.py
	$(PY) bench/evaluate.py

clean:
	rm -rf results .snakemake
