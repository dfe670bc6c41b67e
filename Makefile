# `make train` and `make test` work on a fresh machine: both create .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= mnist5k_dcgan.yaml
ARGS ?= --overwrite
# pytest-xdist workers for `make test`: one per core of a 2-core machine (one test module per
# worker at a time, so a module's trained fixtures are trained once)
TEST_WORKERS ?= 2

.PHONY: train test notebooks lint clean

$(VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[test]"
	touch $@

train: $(VENV)/.installed
	$(PY) -m tfgen.train --config $(CONFIG) $(ARGS)

# --no-loadscope-reorder: the modules go out in tests/conftest.py's order (slowest first), not
# pytest-xdist's default of most tests first, which left the two slowest modules for last;
# --durations: the 25 slowest tests listed at the end, so every CI log says where the time goes
test: $(VENV)/.installed
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=25 --ignore=tests/test_notebooks.py

# the three notebooks in notebooks/, executed top to bottom with small settings (CI runs it
# after `make test`; tests/test_notebooks.py)
notebooks: $(VENV)/.installed
	$(PY) -m pytest -q -n $(TEST_WORKERS) tests/test_notebooks.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) runs *.egg-info
