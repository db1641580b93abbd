# vitcourse: two commands on a fresh machine.
#   make demo   set up .venv, then run the main job offline on the embedded digits data
#   make test   set up .venv, then run the test-suite
#   make test-floor  the same suite in .venv-floor, built with the oldest supported versions (constraints-floor.txt)
#   make test-attacks  whole classes of hostile submissions through real nbgrader (CI runs it)
#   make test-colab  the release notebooks run as students run them, in a replica of Colab (Python 3.13, Colab's versions)
#   make test-hub    every fresh release notebook, Run All, in a JupyterHub student's environment (Python 3.12)
#   make gpu-check   the prepared GPU measurements (on a machine with a GPU): rows into docs/benchmarks.md
PYTHON ?= python3
# pyproject.toml's requires-python: the oldest Python the pinned set (constraints.txt) installs on.
MIN_PYTHON := 3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

FLOOR  := .venv-floor
FLOOR_STAMP := $(FLOOR)/.installed

# Colab's runtime, replicated from Google's published package list (tests/colab/pip-freeze.gpu.txt).
COLAB  := .venv-colab
COLAB_STAMP := $(COLAB)/.installed
COLAB_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3.13) $(shell command -v python3.13 2>/dev/null))
# A student's environment on a JupyterHub with Python 3.12 and the pinned versions (tests/hub/requirements.txt).
HUB    := .venv-hub
HUB_STAMP := $(HUB)/.installed
HUB_PYTHON ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.12 2>/dev/null))

.PHONY: demo test test-e2e test-attacks test-floor test-colab test-hub test-shared-server gpu-check stubs stubs-check release bench clean

# A second environment shares the large files that are the same bytes as .venv's through hard links, when
# util-linux's hardlink is there (mode and owner must match; mtimes may not): torch's CUDA wheels for any Python,
# torch itself for the same Python. The CUDA wheels are linked in before pip runs (.ci/seed_cuda_wheels.py), where
# the pins are .venv's, because an install's peak is what fills a disk (CI's filled at .venv and the floor's).
define share_with_venv
@if command -v hardlink >/dev/null 2>&1 && [ -d $(VENV) ]; then hardlink -q -t -s 1M $(VENV) $(1) || true; fi
endef
define seed_cuda_from_venv
@if [ -x $(PY) ]; then $(PY) .ci/seed_cuda_wheels.py $(1) || true; fi
endef

# One line, before anything is installed, when the Python that would build the venv is too old.
define check_python
@$(1) -c 'import sys; sys.exit(sys.version_info < tuple(map(int, "$(MIN_PYTHON)".split("."))))' 2>/dev/null || { \
  echo "vitcourse needs Python >= $(MIN_PYTHON), and '$(1)' is $$($(1) -c 'import platform; print(platform.python_version())' 2>/dev/null || echo 'not found'): run e.g. PYTHON=python$(MIN_PYTHON) make $(MAKECMDGOALS)"; exit 1; }
endef

# The venv is rebuilt only when the dependency files change.
$(STAMP): pyproject.toml constraints.txt
	$(call check_python,$(PYTHON))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/vitcourse demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not attack and not e2e"

# Whole grading runs through real nbgrader beyond test_lifecycle's term (killed and re-run autogrades, late
# Canvas zips, tampered cells, the a6 and a7 classes): about 4 minutes, so apart from `make test`; CI runs it.
test-e2e: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile -m "e2e and not attack"

# Whole classes of hostile submissions through real nbgrader (loops, exits, kills, bombs, patched graders): minutes.
test-attacks: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile -m attack

# The floor environment: every declared dependency at the oldest version pyproject.toml accepts.
$(FLOOR_STAMP): pyproject.toml constraints-floor.txt
	$(call check_python,$(PYTHON))
	test -x $(FLOOR)/bin/python || $(PYTHON) -m venv $(FLOOR)
	$(FLOOR)/bin/python -m pip install --quiet --upgrade pip
	$(FLOOR)/bin/python -m pip install --quiet -c constraints-floor.txt -e ".[dev]"
	$(call share_with_venv,$(FLOOR))
	touch $(FLOOR_STAMP)

test-floor: $(FLOOR_STAMP)
	$(FLOOR)/bin/python -m pytest -q -n 2 --dist loadfile -m "not attack"

# The replica: Colab's Python and Colab's versions of what the notebooks import, nothing Colab lacks (no grad-cam,
# no nbgrader, not the course). torch's CUDA libraries are left to pip: Colab's come from PyTorch's cu128 index,
# the registry's from CUDA 13; on a CPU neither is loaded.
$(COLAB_STAMP): tests/colab/pip-freeze.gpu.txt tests/colab/requirements.txt
	@test -n "$(COLAB_PYTHON)" || { echo "make test-colab needs Colab's Python, 3.13: install it (pyenv install 3.13) or set COLAB_PYTHON=/path/to/python3.13"; exit 1; }
	test -x $(COLAB)/bin/python || $(COLAB_PYTHON) -m venv $(COLAB)
	grep -E '^[A-Za-z0-9_.-]+==' tests/colab/pip-freeze.gpu.txt | sed -E 's/\+[A-Za-z0-9.]+$$//' | grep -vE '^(nvidia|cuda)-' > $(COLAB)/constraints.txt
	$(COLAB)/bin/python -m pip install --quiet -c $(COLAB)/constraints.txt -r tests/colab/requirements.txt
	$(call share_with_venv,$(COLAB))
	touch $(COLAB_STAMP)

$(HUB_STAMP): constraints.txt tests/hub/requirements.txt
	@test -n "$(HUB_PYTHON)" || { echo "make test-hub needs Python 3.12 for the JupyterHub environment: install it (pyenv install 3.12) or set HUB_PYTHON=/path/to/python3.12"; exit 1; }
	test -x $(HUB)/bin/python || $(HUB_PYTHON) -m venv $(HUB)
	$(call seed_cuda_from_venv,$(HUB)/bin/python)
	$(HUB)/bin/python -m pip install --quiet -c constraints.txt -r tests/hub/requirements.txt
	$(call share_with_venv,$(HUB))
	touch $(HUB_STAMP)

# The students' runtimes, each a target of its own so that CI holds one of them beside .venv at a time: Colab's (the
# replica) and a JupyterHub's on Python 3.12 (Run All of every fresh release).
test-colab: $(STAMP) $(COLAB_STAMP)
	VITCOURSE_COLAB_PYTHON=$(COLAB)/bin/python $(PY) -m pytest -q -n 2 tests/test_colab_replica.py

test-hub: $(STAMP) $(HUB_STAMP)
	VITCOURSE_STUDENT_PYTHON=$(HUB)/bin/python $(PY) -m pytest -q -n 2 tests/test_run_all.py

# A course on a shared server with real Unix users (root only): the students' environment outside any private
# home, from the system's Python, as README's "shared server" section sets it up; then the end-to-end test.
SHARED_ENV ?= /opt/vitcourse-test-env
SHARED_PYTHON ?= /usr/bin/python3
$(SHARED_ENV)/.installed: pyproject.toml constraints.txt
	@test "$$(id -u)" = 0 || { echo "make test-shared-server makes Unix users: run it as root"; exit 1; }
	$(call check_python,$(SHARED_PYTHON))
	test -x $(SHARED_ENV)/bin/python || $(SHARED_PYTHON) -m venv $(SHARED_ENV)
	$(call seed_cuda_from_venv,$(SHARED_ENV)/bin/python)
	$(SHARED_ENV)/bin/python -m pip install --quiet -c constraints.txt ".[course,transfer]"
	rm -rf build
	$(call share_with_venv,$(SHARED_ENV))
	touch $@

test-shared-server: $(STAMP)
	@if [ "$$(id -u)" != 0 ]; then echo "make test-shared-server: skipped, it makes Unix users and needs root"; else \
	  $(MAKE) --no-print-directory $(SHARED_ENV)/.installed && \
	  $(SHARED_ENV)/bin/python -m pip install --quiet --no-deps --force-reinstall . && rm -rf build && \
	  VITCOURSE_SHARED_ENV=$(SHARED_ENV) $(PY) -m pytest -q -p no:cacheprovider tests/test_shared_server_users.py; fi

gpu-check: $(STAMP)
	$(PY) benchmarks/gpu_check.py

stubs: $(STAMP)
	$(VENV)/bin/vitcourse stubs

stubs-check: $(STAMP)
	$(VENV)/bin/vitcourse stubs --check

release: $(STAMP)
	$(VENV)/bin/vitcourse release

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(FLOOR) $(COLAB) $(HUB) build *.egg-info .pytest_cache
