# Every target makes or refreshes .venv by itself: a fresh clone needs only
# `make run` or `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# One stamp per set of extras: `make run` installs what running needs
# (the package, its dependencies, uvloop); test, lint and bench add the
# dev tools (pytest, hypothesis, selenium, ruff, mypy...).
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
RUN_EXTRAS := speed
DEV_EXTRAS := dev,speed

.PHONY: run test bench reliability lint venv venv-dev debian-deps clean

define install
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[$(1)]'
endef

$(RUN_STAMP): pyproject.toml
	$(call install,$(RUN_EXTRAS))
	touch $(RUN_STAMP)

# The dev set holds the run set: it counts as installed too.
$(DEV_STAMP): pyproject.toml
	$(call install,$(DEV_EXTRAS))
	touch $(DEV_STAMP) $(RUN_STAMP)

venv: $(RUN_STAMP)

venv-dev: $(DEV_STAMP)

# The interop tests talk to a real Kamailio presence server and SIPp; as
# root this installs them from Debian's packages when they are missing.
debian-deps:
	bash scripts/install-debian-deps.sh

run: venv
	bash scripts/run.sh $(ARGS)

test: venv-dev debian-deps
	$(PY) -m pytest

bench: venv-dev debian-deps
	$(PY) -m benchmarks.run --output docs/benchmarks.md

# The long fault campaigns, not part of `make test` (which runs a short
# version of each): kill -9 under load, overload, a lossy, duplicating,
# reordering network between pua and the presence server, and the long run
# of a large population (reliability/; the long run plots into docs/), then coverage-guided
# fuzzing of every reader of outside bytes (fuzz/), each target for
# FUZZ_RUNS executions; the figures go to docs/reliability.md.
# FUZZ_JOBS=2 runs two targets at once.
FUZZ_RUNS ?= 1000000
FUZZ_JOBS ?= 1

reliability: venv-dev debian-deps
	$(PY) -m reliability.kill 100 docs/reliability-kill.json
	$(PY) -m reliability.overload 60 docs/reliability-overload.json --report docs/reliability.md
	$(PY) -m reliability.network --output docs/reliability-network.json --report docs/reliability.md
	$(PY) -m reliability.longrun --json docs/reliability-longrun.json --png docs/reliability-longrun.png
	$(PY) -m fuzz.run --runs $(FUZZ_RUNS) --jobs $(FUZZ_JOBS) --report docs/reliability.md

lint: venv-dev
	$(VENV)/bin/ruff check src tests benchmarks docs reliability fuzz
	$(VENV)/bin/ruff format --check src
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
