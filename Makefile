# vitcourse: two commands on a fresh machine.
#   make demo   set up .venv, then run the main job offline on the embedded digits data
#   make test   set up .venv, then run the test-suite
#   make test-floor  the same suite in .venv-floor, built with the oldest supported versions (constraints-floor.txt)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

FLOOR  := .venv-floor
FLOOR_STAMP := $(FLOOR)/.installed

.PHONY: demo test test-floor stubs stubs-check release bench clean

# The venv is rebuilt only when the dependency files change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/vitcourse demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist loadfile

# The floor environment: every declared dependency at the oldest version pyproject.toml accepts.
$(FLOOR_STAMP): pyproject.toml constraints-floor.txt
	test -x $(FLOOR)/bin/python || $(PYTHON) -m venv $(FLOOR)
	$(FLOOR)/bin/python -m pip install --quiet --upgrade pip
	$(FLOOR)/bin/python -m pip install --quiet -c constraints-floor.txt -e ".[dev]"
	touch $(FLOOR_STAMP)

test-floor: $(FLOOR_STAMP)
	$(FLOOR)/bin/python -m pytest -q -n 2 --dist loadfile

stubs: $(STAMP)
	$(VENV)/bin/vitcourse stubs

stubs-check: $(STAMP)
	$(VENV)/bin/vitcourse stubs --check

release: $(STAMP)
	$(VENV)/bin/vitcourse release

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) $(FLOOR) build *.egg-info .pytest_cache
