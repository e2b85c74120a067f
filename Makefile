# Two commands matter: `make lab` opens the course, `make test` runs the test suite.
# Both create the virtual environment first (pinned versions, see pyproject.toml
# and requirements.lock), so they work on a fresh machine with Python 3.11 (Debian 12's
# 3.11.2 too), 3.12 or 3.13, as root or as a normal user, from any folder.

# The first of python3, python3.13, python3.12, python3.11 on PATH that is 3.11 to 3.13 (as pyproject.toml says)
# (`make lab PYTHON=/path/to/python3` picks one yourself).
SUPPORTED = import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 14))
ifeq ($(origin PYTHON),undefined)
PYTHON := $(or $(firstword $(foreach p,python3 python3.13 python3.12 python3.11,\
	$(shell command -v $(p) >/dev/null 2>&1 && $(p) -c '$(SUPPORTED)' 2>/dev/null && command -v $(p)))),python3)
endif
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
LEARNER_CONFIG = $(VENV)/etc/jupyter/nbgrader_config.py
# nbgrader's exchange (its default Exchange.root): the Assignments panel is shown only if it exists.
EXCHANGE ?= /usr/local/share/nbgrader/exchange
SERVER_CONFIG = $(VENV)/etc/jupyter/jupyter_server_config.py
# JupyterLab refuses to start as root unless told; containers and fresh machines are often root.
ALLOW_ROOT = $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: lab test env release bench clean-course

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c '$(SUPPORTED)' || { echo "$(PYTHON) is Python `$(PYTHON) -c 'import platform; print(platform.python_version())'`;" \
		"the course needs 3.11 to 3.13: run make with PYTHON=/path/to/python3.12 (or 3.11, 3.13)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --upgrade "pip==25.3"
	$(PY) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore -c requirements.lock -e ".[test]"
	@# The course runs offline: JupyterLab never asks to fetch news or check for updates.
	mkdir -p $(VENV)/share/jupyter/lab/settings
	printf '%s\n' '{"@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": false}}' \
		> $(VENV)/share/jupyter/lab/settings/overrides.json
	@# Learners see nbgrader's Validate button, not the instructor's tools.
	$(VENV)/bin/jupyter labextension disable --level=sys_prefix @jupyter/nbgrader:create-assignment \
		@jupyter/nbgrader:formgrader @jupyter/nbgrader:course-list > /dev/null 2>&1
	touch $(STAMP)

# Learners' nbgrader settings: Validate (the button and `nbgrader validate`) names what is
# unwritten or failing its check (see the file).
$(LEARNER_CONFIG): jupyter/nbgrader_config.py $(STAMP)
	mkdir -p $(VENV)/etc/jupyter
	cp jupyter/nbgrader_config.py $@

# Learners' Jupyter server settings: saving leaves out widget views a reopened notebook cannot show.
$(SERVER_CONFIG): jupyter/jupyter_server_config.py $(STAMP)
	mkdir -p $(VENV)/etc/jupyter
	cp jupyter/jupyter_server_config.py $@

env: $(STAMP) $(LEARNER_CONFIG) $(SERVER_CONFIG)
	@# The given code of earlier chapters beside each worked solution, so that solutions/ runs as checked out.
	@$(PY) -m grader.workflow.earlier_chapters
	@# The Assignments panel only where an nbgrader exchange exists (a course's JupyterHub); a
	@# self-learner has none, and the panel would only show "exchange directory does not exist".
	@if [ -d "$(EXCHANGE)" ]; then action=enable; else action=disable; fi; \
		$(VENV)/bin/jupyter labextension $$action --level=sys_prefix @jupyter/nbgrader:assignment-list > /dev/null 2>&1

lab: env
	$(VENV)/bin/jupyter lab $(ALLOW_ROOT) notebooks/

# Two pytest workers (pytest-xdist), one test file each at a time: the suite is mostly single-threaded
# (kernels, nbgrader, sandboxes), so a 2-core machine runs it in about half the time. TEST_WORKERS=0 runs it
# in one process. The 25 slowest tests are listed at the end.
TEST_WORKERS ?= 2
test: env
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=25

# Instructors: regenerate notebooks/ from solutions/ (nbgrader generate_assignment).
release: $(STAMP)
	$(VENV)/bin/course --course build/release-course init
	$(VENV)/bin/course --course build/release-course release all

bench: $(STAMP)
	$(PY) benchmarks/autograde_time.py
	$(PY) benchmarks/conv_speed.py
