# The front door. `make demo` and `make test` set everything up on a fresh machine.
VENV    ?= .venv
PYTHON  ?= python3
PY      := $(VENV)/bin/python
BNBENCH := $(VENV)/bin/bnbench
FASHION_MNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz

PROFILE ?= confirmatory
CLAIMS  := faster-convergence higher-lr init-robustness regularization covariate-shift \
           gradient-flow small-batch test-time-stats placement dropout-interplay

.PHONY: install data demo test test-fast lint format clean claims claims-quick \
        $(addprefix claim-,$(CLAIMS)) bench bench-parallel

install: $(VENV)/.installed  ## venv with bnbench (editable) and the dev tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[dev]'
	touch $@

data: $(FASHION_MNIST)  ## Fashion-MNIST from Debian's dataset-fashion-mnist package

$(FASHION_MNIST):
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	else \
		echo "Fashion-MNIST missing: run 'sudo apt-get install dataset-fashion-mnist'," \
		     "or pass dataset.data_dir=DIR holding the four IDX files"; exit 1; \
	fi

# The demo trains one seed per arm: its last lines say what that can and cannot show.
demo: install data  ## BN vs no-BN on Fashion-MNIST, the comparison, its report and figures
	$(BNBENCH) run
	$(BNBENCH) report results/default

# One test file per worker, every core busy; the SLURM tests after, alone: they time a job
# against its time limit on the same cores.
test: install data  ## every test, the slow ones on real Fashion-MNIST included
	$(PY) -m pytest -q -n auto --dist loadfile -m "not slurm"
	$(PY) -m pytest -q -m slurm

test-fast: install
	$(PY) -m pytest -q -n auto --dist loadfile -m "not slow"

# One claim, or all: the sweeps through one pool of workers (finished runs are skipped, so
# this resumes), then each sweep's report and each claim's verdict.
# PROFILE=confirmatory (default): the pre-registered protocols on their locked seeds (as
# results/reference/); full: the same on the development seeds 0-9; quick: 3 seeds on a
# small subset. Each seed is its own data draw.
$(addprefix claim-,$(CLAIMS)): claim-%: install data
	$(BNBENCH) claims run $* --profile $(PROFILE)

claims: install data  ## all ten, PROFILE=confirmatory unless given
	$(BNBENCH) claims run --all --profile $(PROFILE)

claims-quick:  ## all ten with the quick profile
	$(MAKE) claims PROFILE=quick

bench: install data  ## training throughput vs a plain PyTorch loop
	$(BNBENCH) bench

bench-parallel: install data  ## 8 runs: sequential vs joblib workers
	$(PY) -m bnbench.bench.parallel

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:  ## outputs and caches; keeps results/reference, results/development and the venv
	find results -mindepth 1 -maxdepth 1 ! -name reference ! -name development -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache outputs multirun
