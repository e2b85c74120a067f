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
	@# The course runs offline: JupyterLab never asks to fetch news or check for updates.
	mkdir -p $(VENV)/share/jupyter/lab/settings
	printf '%s\n' '{"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": false}}' \
		> $(VENV)/share/jupyter/lab/settings/overrides.json
	@# Learners see nbgrader's Assignments panel and Validate button, not the instructor's tools.
	$(VENV)/bin/jupyter labextension disable --level=sys_prefix @jupyter/nbgrader:create-assignment \
		@jupyter/nbgrader:formgrader @jupyter/nbgrader:course-list > /dev/null 2>&1
	touch $(STAMP)

env: $(STAMP)

lab: $(STAMP)
	@$(PY) -m grader.earlier_chapters     # lets solutions/ run as they are, for those who compare
	$(VENV)/bin/jupyter lab notebooks/

test: $(STAMP)
	$(PY) -m pytest

# Instructors: regenerate notebooks/ from solutions/ (nbgrader generate_assignment).
release: $(STAMP)
	$(VENV)/bin/course --course build/release-course init
	$(VENV)/bin/course --course build/release-course release all

bench: $(STAMP)
	$(PY) benchmarks/autograde_time.py
	$(PY) benchmarks/conv_speed.py
