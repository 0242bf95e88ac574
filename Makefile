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

.PHONY: run test setup lint typecheck bench clean

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
	$(VENV)/bin/lint-imports
	$(VENV)/bin/python -m mypy
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

bench: setup
	$(VENV)/bin/python -m bench

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
