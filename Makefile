# Quick start: `make run` and `make test` each set up everything they need on a fresh
# Debian 12 machine (system packages, a venv, the project) and are quick the second time.
SHELL := /bin/bash
# Debian's interpreter, not a pyenv build under /root (mode 0700): sandboxed roles running
# as their own uid must be able to reach the interpreter the venv points at.
PYTHON ?= /usr/bin/python3
VENV := .venv
# procps: `kill` for the systemd tests; util-linux: setpriv, unshare, nsenter, losetup;
# e2fsprogs (mkfs.ext4, e2fsck, resize2fs) and mount: the disk budgets' loop-mounted images.
APT_PACKAGES := libcap-dev libseccomp2 python3-venv python3-dev gcc systemd iproute2 \
	util-linux procps e2fsprogs mount
CONFIG ?= multiprocess.toml
PYTEST_ARGS ?=
# Each set-up step prints one line; its output goes to $(LOG), shown only if it fails.
# `make VERBOSE=1 ...` shows everything as it happens.
LOG := build/make.log
ifdef VERBOSE
step = echo "==> $(1)"; $(2)
else
step = mkdir -p build; echo "==> $(1)"; { $(2); } >>$(LOG) 2>&1 || { rc=$$?; \
	tail -n 60 $(LOG); echo "make: $(1) failed (exit $$rc); full log: $(LOG)"; exit $$rc; }
endif

.PHONY: run test setup bench chaos fuzz fresh-check clean

setup: $(VENV)/.installed

$(VENV)/.apt:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $(call step,installing system packages: $$(echo $$missing),$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing); \
	fi
	@[ -x $(VENV)/bin/python ] || { $(call step,creating $(VENV),$(PYTHON) -m venv $(VENV)); }
	@touch $@

$(VENV)/.installed: $(VENV)/.apt pyproject.toml
	@$(call step,installing the project and its test tools into $(VENV),$(VENV)/bin/python -m pip install -q --upgrade pip setuptools wheel && $(VENV)/bin/python -m pip install -q -e '.[test]')
	@touch $@

run: setup
	$(VENV)/bin/bitcoin-supervisor start --config $(CONFIG)

test: setup
	@$(call step,ruff,$(VENV)/bin/python -m ruff check -q .)
	@# Layer contracts are checked on a real (non-editable) install: the editable finder
	@# that maps the top-level folders is invisible to import-linter's module walk.
	@$(call step,import-linter (layer contracts),rm -rf build/lint-site && $(VENV)/bin/python -m pip install -q --no-deps --no-build-isolation --target build/lint-site . && cp pyproject.toml build/lint-site/ && cd build/lint-site && PYTHONPATH=. ../../$(VENV)/bin/lint-imports --no-cache)
	@$(call step,mypy --strict,cd build/lint-site && ../../$(VENV)/bin/python -m mypy -p bitcoin_supervisor)
	@# Some tests run as an unprivileged user: a checkout below a 0700 directory (root's
	@# home) is shown to them in a private mount namespace (tests/open_checkout.py).
	$(VENV)/bin/python tests/open_checkout.py $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# JSON, Markdown tables and a PNG plot under bench/results/ (matplotlib: the bench extra).
bench: setup
	@$(call step,installing matplotlib (the bench extra),$(VENV)/bin/python -m pip install -q -e '.[bench]')
	$(VENV)/bin/python -m bench

# The long chaos run (issue 9): 1,000 kill -9s under RPC load, then every check.
CHAOS_KILLS ?= 1000
chaos: setup
	$(VENV)/bin/python -m tests.chaos --kills $(CHAOS_KILLS)

# Coverage-guided fuzzing (issue 10) of the config loader, the policy loader, the control
# decoder and the IPC link (random bytes at one end of a socketpair, to the supervisor's
# capnp client and to a serving Init), FUZZ_SECONDS each; the corpus grows in
# build/fuzz-corpus/ across runs.
# make test runs the same targets briefly through hypothesis (tests/fuzz).
FUZZ_SECONDS ?= 300
fuzz: setup
	@$(call step,installing atheris,$(VENV)/bin/python -m pip install -q -e '.[fuzz]')
	@for target in config policy control link; do \
	  echo "==> fuzzing $$target for $(FUZZ_SECONDS) s (corpus build/fuzz-corpus/$$target)"; \
	  $(VENV)/bin/python -m tests.fuzz $$target -max_total_time=$(FUZZ_SECONDS) \
	    -rss_limit_mb=1024 -timeout=10 2>build/fuzz-$$target.log \
	    || { tail -n 40 build/fuzz-$$target.log; exit 1; }; \
	  tail -n 1 build/fuzz-$$target.log; \
	done

# Issue 12's "first hour" on a freshly debootstrapped Debian 12 (as root, network to the
# package registries; ~1 h on a busy machine): the README word for word, `make test`
# FRESH_RUNS times in a row, every README example from a new shell. Tests HEAD.
FRESH_RUNS ?= 3
fresh-check:
	tests/fresh_check.sh --runs $(FRESH_RUNS)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
