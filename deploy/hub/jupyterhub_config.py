# The course's JupyterHub (see README.md beside this file). Settings come from the environment, which
# install.sh writes to /etc/dl-course/hub.env and the systemd unit reads; the defaults are the recipe's.
#
#   COURSE_AUTHENTICATOR   pam (default: the machine's Unix accounts and passwords) or dummy (trials only:
#                          anyone who types COURSE_DUMMY_PASSWORD, and whose Unix account exists, gets in)
#   COURSE_EXCHANGE        the protected nbgrader exchange (default /srv/nbgrader/exchange)
#   COURSE_DIR             the instructor's course folder (default /srv/dl-course/course)
#   COURSE_LEARNERS        Unix group of the learners (default dl-learners)
#   COURSE_INSTRUCTORS     Unix group of the instructors (default dl-instructors)
#   HUB_BIND_URL           where the hub listens (default http://:8000; put TLS in front, see README)
#   HUB_API_PORT, HUB_PROXY_API_PORT   internal ports on loopback (default 8081, 8001)
#   COURSE_PYTHON          the Python of the course environment for the servers (default: the hub's)
#   HUB_STATE              folder for the hub's database, cookie secret and proxy token (default /var/lib/dl-course-hub)
import grp
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))          # grader.workflow.exchange, for the pre-spawn hook
from grader.workflow import exchange   # noqa: E402
from grader.workflow.course import COURSE_ID   # noqa: E402

c = get_config()  # noqa: F821

ENV = os.environ.get
EXCHANGE = ENV("COURSE_EXCHANGE", "/srv/nbgrader/exchange")
COURSE_DIR = ENV("COURSE_DIR", "/srv/dl-course/course")
LEARNERS = ENV("COURSE_LEARNERS", "dl-learners")
INSTRUCTORS = ENV("COURSE_INSTRUCTORS", "dl-instructors")
STATE = Path(ENV("HUB_STATE", "/var/lib/dl-course-hub"))
STATE.mkdir(parents=True, exist_ok=True, mode=0o700)

c.JupyterHub.bind_url = ENV("HUB_BIND_URL", "http://:8000")
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(ENV("HUB_API_PORT", "8081"))
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{ENV('HUB_PROXY_API_PORT', '8001')}"
c.ConfigurableHTTPProxy.command = [str(HERE / "node_modules" / ".bin" / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = str(STATE / "proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")

# Who may log in: members of the learners' and instructors' groups; instructors are the hub's admins.
if ENV("COURSE_AUTHENTICATOR", "pam") == "dummy":
    # Trials only: any existing Unix account with this one password (LocalProcessSpawner needs the account).
    c.JupyterHub.authenticator_class = "dummy"
    c.DummyAuthenticator.password = ENV("COURSE_DUMMY_PASSWORD")
    c.Authenticator.allow_all = True
else:
    c.JupyterHub.authenticator_class = "pam"
    c.PAMAuthenticator.allowed_groups = {LEARNERS, INSTRUCTORS}
    c.PAMAuthenticator.admin_groups = {INSTRUCTORS}
    # A server is a process of the learner, not a login session: no PAM session (containers often lack one).
    c.PAMAuthenticator.open_sessions = False


def _members(group):
    try:
        return set(grp.getgrnam(group).gr_mem)
    except KeyError:
        return set()


# Each person's server runs as their own Unix account, in the course's one pinned environment.
c.JupyterHub.spawner_class = "localprocess"
# COURSE_PYTHON: the environment's Python as learners run it (default: the hub's own; the tests set it where
# the hub's Python lives in a folder learners cannot enter).
c.Spawner.cmd = [ENV("COURSE_PYTHON", sys.executable), "-m", "jupyterhub.singleuser"]
c.Spawner.default_url = "/lab"
c.Spawner.notebook_dir = "~"
c.Spawner.start_timeout = 120
c.Spawner.http_timeout = 120


def _is_instructor(spawner):
    return spawner.user.name in _members(INSTRUCTORS)


def _config_path(spawner):
    # Learners get the Assignments panel and Validate; instructors also nbgrader's formgrader and
    # assignment tools (labconfig/page_config.json in each folder); both use the protected exchange.
    return str(HERE / ("jupyter-instructor" if _is_instructor(spawner) else "jupyter-learner"))


c.Spawner.environment = {
    "JUPYTER_CONFIG_PATH": _config_path,
    "COURSE_EXCHANGE": EXCHANGE,
    "COURSE_DIR": COURSE_DIR,
    "COURSE_ID": COURSE_ID,
    "OMP_NUM_THREADS": "1",
}


def _enroll(spawner):
    """Before a learner's server starts: their own hand-in folder in the exchange (root does this)."""
    if not _is_instructor(spawner):
        exchange.enroll(EXCHANGE, COURSE_ID, spawner.user.name)


c.Spawner.pre_spawn_hook = _enroll
