# Learners' nbgrader on the course hub (JUPYTER_CONFIG_PATH, set by deploy/hub/jupyterhub_config.py):
# the protected exchange (grader/workflow/exchange.py). Validate's settings stay those of
# jupyter/nbgrader_config.py, installed in the environment by `make env`.
import os

from grader.workflow.exchange import EXCHANGE_CONFIG

c = get_config()  # noqa: F821
c.Exchange.root = os.environ.get("COURSE_EXCHANGE", "/srv/nbgrader/exchange")
c.CourseDirectory.course_id = os.environ.get("COURSE_ID", "dl-course")
for _command, _cls in EXCHANGE_CONFIG.items():
    setattr(c.ExchangeFactory, _command, _cls)
