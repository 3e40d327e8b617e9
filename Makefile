# Every target makes or refreshes .venv by itself: a fresh clone needs only
# `make run` or `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: run test bench lint venv debian-deps clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,speed]'
	touch $(STAMP)

venv: $(STAMP)

# The interop tests talk to a real Kamailio presence server and SIPp; as
# root this installs them from Debian's packages when they are missing.
debian-deps:
	bash scripts/install-debian-deps.sh

run: venv
	bash scripts/run.sh $(ARGS)

test: venv debian-deps
	$(PY) -m pytest

bench: venv debian-deps
	$(PY) -m benchmarks.run --output docs/benchmarks.md

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks docs
	$(VENV)/bin/ruff format --check src
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
