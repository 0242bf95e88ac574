# Quick start: `make run` and `make test` each set up everything they need on a fresh
# Debian 12 machine (system packages, a venv, the project) and are quick the second time.
SHELL := /bin/bash
# Debian's interpreter, not a pyenv build under /root (mode 0700): sandboxed roles running
# as their own uid must be able to reach the interpreter the venv points at.
PYTHON ?= /usr/bin/python3
VENV := .venv
APT_PACKAGES := libcap-dev libseccomp2 python3-venv python3-dev gcc systemd iproute2 util-linux
CONFIG ?= multiprocess.toml
PYTEST_ARGS ?=

.PHONY: run test setup bench chaos clean

setup: $(VENV)/.installed

$(VENV)/.apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages: $$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	@touch $@

$(VENV)/.installed: $(VENV)/.apt pyproject.toml
	$(VENV)/bin/python -m pip install -q --upgrade pip setuptools wheel
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	@touch $@

run: setup
	$(VENV)/bin/bitcoin-supervisor start --config $(CONFIG)

test: setup
	$(VENV)/bin/python -m ruff check .
	@# Layer contracts are checked on a real (non-editable) install: the editable finder
	@# that maps the top-level folders is invisible to import-linter's module walk.
	@rm -rf build/lint-site
	@$(VENV)/bin/python -m pip install -q --no-deps --no-build-isolation --target build/lint-site . 2>/dev/null
	cd build/lint-site && PYTHONPATH=. ../../$(VENV)/bin/lint-imports --config ../../pyproject.toml --no-cache
	cd build/lint-site && ../../$(VENV)/bin/python -m mypy --config-file ../../pyproject.toml -p bitcoin_supervisor
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/python -m bench

# The long chaos run (issue 9): 1,000 kill -9s under RPC load, then every check.
CHAOS_KILLS ?= 1000
chaos: setup
	$(VENV)/bin/python -m tests.chaos --kills $(CHAOS_KILLS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
