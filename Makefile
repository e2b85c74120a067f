# Two commands matter: `make lab` opens the course, `make test` runs the test suite.
# Both create the virtual environment first (pinned versions, see pyproject.toml
# and requirements.lock), so they work on a fresh machine with Python 3.11.

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed

.PHONY: lab test env release bench clean-course

$(STAMP): pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip==25.3"
	$(PY) -m pip install --quiet -c requirements.lock -e ".[test]"
	touch $(STAMP)

env: $(STAMP)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

test: $(STAMP)
	$(PY) -m pytest

# Instructors: regenerate notebooks/ from solutions/ (nbgrader generate_assignment).
release: $(STAMP)
	$(VENV)/bin/course --course build/release-course init
	$(VENV)/bin/course --course build/release-course release all

bench: $(STAMP)
	$(PY) benchmarks/autograde_time.py
