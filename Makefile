# Two commands do all set-up on a fresh clone:
#   make study   - the main job: the study on real photos (--data auto), writing its report
#   make test    - the test suite (unit tests, then the claims on the shared ImageNet photos)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.xai-checks-installed
BASELINE ?= fixtures/baselines/imagenet-samples-300.json
# the exact versions CI and make use (pyproject.toml declares ranges)
CONSTRAINTS ?= constraints.txt
# pytest-xdist workers for `make test` (the claims study is computed once under a file lock)
JOBS ?= 2
# intra-op threads per worker: JOBS workers fill as many cores; more threads than cores make
# OpenMP's spin-waits cost more than the extra threads gain
THREADS ?= 1
# CI fails, instead of skipping, a claim that lacks the photos it expects
STRICT ?= data

.PHONY: install study test claims lint type bench clean

# INSTALLER=uv installs the same pinned set with uv, put in the venv by pip; it unpacks and
# byte-compiles in parallel (CI uses it). uv reads its own settings (UV_DEFAULT_INDEX,
# UV_INDEX, UV_FIND_LINKS), not pip's configuration: .ci/uv_sources.py hands it pip's.
INSTALLER ?= pip

# PYTHONWARNINGS: setuptools notes on every editable install of a flat layout that a folder
# named like the package may shadow it on import; here that folder is the package itself
$(STAMP): pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
ifeq ($(INSTALLER),uv)
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode \
		-c $(CONSTRAINTS) -e '.[dev]'
else
	PYTHONWARNINGS="ignore:Editable installation" \
		$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e '.[dev]'
endif
	touch $(STAMP)

install: $(STAMP)

study: $(STAMP)
	$(BIN)/xai-checks study $(ARGS)

# --durations=15: the slowest tests, so a slow one is seen when it lands
test: $(STAMP)
	OMP_NUM_THREADS=$(THREADS) $(BIN)/python -m pytest -n $(JOBS) --durations=15 --xai-baseline $(BASELINE) --xai-strict=$(STRICT) $(ARGS)

claims: $(STAMP)
	$(BIN)/python -m pytest tests/claims --xai-baseline $(BASELINE) --xai-strict=$(STRICT) $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check xai_checks tests benchmarks
	$(BIN)/ruff format --check xai_checks tests benchmarks

type: $(STAMP)
	$(BIN)/mypy xai_checks

bench: $(STAMP)
	$(BIN)/tox -e bench

clean:
	rm -rf $(VENV) .tox .pytest_cache .mypy_cache .ruff_cache .xai-checks
