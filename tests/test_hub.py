"""A course on JupyterHub: real Unix accounts, the protected exchange, grading after Submit (`course serve`).

The queue tests (any user) prove what `course serve` does when things go wrong in a class: two submits
in one second, a submission a full quota cut short, a restart mid-grade, a learner deleted mid-term.
The hub test (root only: it creates Unix accounts) runs deploy/hub/ for real: an instructor and three
learners, the hub on loopback, each learner logged in through the hub's HTTP API and working as their
own uid through their hub-spawned server (the Assignments panel's own endpoints), `course serve` grading
as root; then every learner tries to reach another's work, as their uid, and is refused.
"""
from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from grader.workflow import course, exchange, serve

from conftest import answer_sources, learner_notebook

pytestmark = pytest.mark.hub
REPO = Path(__file__).resolve().parents[1]
HUB = REPO / "deploy" / "hub"
CHAPTER = "01_mlp_xor"
CI = os.environ.get("CI") == "true"


# --- the queue: bad things at the scale of a class (no root needed) ---------------------------------------------

def _fake_submission(exchange_root, learner, stamp, suffix, secret=True, age=60.0):
    folder = exchange_root / course.COURSE_ID / "inbound" / learner / f"{learner}+{CHAPTER}+{stamp}+{suffix}"
    folder.mkdir(parents=True)
    (folder / f"{CHAPTER}.ipynb").write_text("{}")
    (folder / "timestamp.txt").write_text(stamp)
    if secret:
        (folder / "submission_secret.txt").write_text(secrets.token_hex(64))
    old = time.time() - age
    for path in [*folder.iterdir(), folder]:
        os.utime(path, (old, old))
    return folder


class Clock:
    def __init__(self):
        self.now = time.time()

    def __call__(self):
        return self.now


@pytest.fixture
def fake_class(tmp_path, monkeypatch):
    """A course folder and an exchange, with grading and feedback replaced by recorders (the queue is real)."""
    root, exchange_root = tmp_path / "course", tmp_path / "exchange"
    course.init_course(root, exchange_root)
    for name in ("outbound", "inbound", "feedback"):
        (exchange_root / course.COURSE_ID / name).mkdir(parents=True, exist_ok=True)
    graded, told, released = [], [], []

    def autograde(root_, chapter, students, workers=None, cluster=None, force=True, **_):
        graded.append((chapter, tuple(students), force))
        return [course.GradeRun(s, True, 0.1) for s in students]

    def release(root_, course_id, learner, secret, notebook_id, html):
        exchange.private_group(learner)            # the real check: an account that is gone raises
        released.append((learner, html))
        return Path("/nowhere")

    monkeypatch.setattr(course, "autograde", autograde)
    monkeypatch.setattr(course, "results", lambda root_, chapter: [])
    monkeypatch.setattr(course, "_nbgrader", lambda *a, **k: subprocess.CompletedProcess(a, 0, "", ""))
    monkeypatch.setattr(exchange, "release_feedback_file", release)
    monkeypatch.setattr(serve.Server, "_tell", lambda self, sub, title, text: told.append((sub.key, title, text)))
    clock = Clock()
    settings = serve.ServeSettings(exchange_root, min_interval=600, settle=2, incomplete_after=300,
                                   cluster="tcp://127.0.0.1:9")     # never reached: grading is recorded, not run
    return dict(root=root, exchange=exchange_root, graded=graded, told=told, released=released, clock=clock,
                make=lambda: serve.Server(root, settings, clock=clock))


def _states(root):
    return {row["key"].split("+")[-1]: row["state"] for row in serve.queue_summary(root)}


ME = pwd.getpwuid(os.getuid()).pw_name


def test_two_submits_in_the_same_second_are_graded_once_the_newest(fake_class):
    stamp = "2026-12-04 10:00:00.000000 UTC"
    _fake_submission(fake_class["exchange"], ME, stamp, "first")
    _fake_submission(fake_class["exchange"], ME, stamp.replace(".000000", ".500000"), "second")
    server = fake_class["make"]()
    server.step()
    server.step()
    assert fake_class["graded"] == [(CHAPTER, (ME,), False)], fake_class["graded"]
    assert _states(fake_class["root"]) == {"first": "superseded", "second": "graded"}
    assert any(key.endswith("first") and "newer submission" in title for key, title, _ in fake_class["told"])


def test_a_second_submission_within_the_interval_waits_and_the_learner_is_told_until_when(fake_class):
    _fake_submission(fake_class["exchange"], ME, "2026-12-04 10:00:00.000000 UTC", "early")
    server = fake_class["make"]()
    server.step()
    _fake_submission(fake_class["exchange"], ME, "2026-12-04 10:01:00.000000 UTC", "again")
    fake_class["clock"].now += 60
    server.step()
    assert len(fake_class["graded"]) == 1 and _states(fake_class["root"])["again"] == "waiting"
    [(key, title, text)] = [t for t in fake_class["told"] if t[0].endswith("again")]
    assert title == "Queued for grading" and "at most once every 10 minutes" in text, text
    server.step()
    assert len([t for t in fake_class["told"] if t[0].endswith("again")]) == 1, "told the learner twice"
    fake_class["clock"].now += 600
    server.step()
    assert len(fake_class["graded"]) == 2 and _states(fake_class["root"])["again"] == "graded"


def test_a_submission_cut_short_by_a_full_quota_is_never_graded_and_says_why(fake_class):
    _fake_submission(fake_class["exchange"], ME, "2026-12-04 10:00:00.000000 UTC", "cut", secret=False, age=10)
    server = fake_class["make"]()
    server.step()
    assert _states(fake_class["root"]) == {"cut": "waiting"}, "an unfinished submission must wait, not be graded"
    fake_class["clock"].now += 600
    server.step()
    [row] = serve.queue_summary(fake_class["root"])
    assert row["state"] == "incomplete" and "full quota" in row["message"], row
    assert fake_class["graded"] == []


def test_a_restart_mid_grade_grades_again_without_a_second_recording(fake_class, monkeypatch):
    _fake_submission(fake_class["exchange"], ME, "2026-12-04 10:00:00.000000 UTC", "once")
    server = fake_class["make"]()

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt("the service was stopped")

    monkeypatch.setattr(serve.Server, "_return_feedback", stopped)
    with pytest.raises(KeyboardInterrupt):
        server.step()
    assert _states(fake_class["root"]) == {"once": "grading"}
    server.close()
    monkeypatch.undo()
    monkeypatch.setattr(course, "results", lambda root_, chapter: [])
    monkeypatch.setattr(course, "_nbgrader", lambda *a, **k: subprocess.CompletedProcess(a, 0, "", ""))
    monkeypatch.setattr(course, "autograde", lambda *a, force=True, **k: fake_class["graded"].append(force) or [])
    monkeypatch.setattr(exchange, "release_feedback_file", lambda *a: Path("/nowhere"))
    restarted = fake_class["make"]()
    restarted.step()
    restarted.step()
    assert _states(fake_class["root"]) == {"once": "graded"}
    # Regraded with force=False: course.autograde skips a submission whose very files were already recorded.
    assert fake_class["graded"][1:] == [False], fake_class["graded"]


def test_a_learner_deleted_mid_term_is_graded_and_the_instructor_told_where_the_feedback_is(fake_class):
    _fake_submission(fake_class["exchange"], "ghost-learner-x", "2026-12-04 10:00:00.000000 UTC", "gone")
    server = fake_class["make"]()
    server.step()
    [row] = serve.queue_summary(fake_class["root"])
    assert row["state"] == "graded" and fake_class["graded"], row
    assert "feedback not released" in row["message"] and "no Unix account" in row["message"], row["message"]
    assert (fake_class["root"] / "feedback" / "ghost-learner-x" / CHAPTER / f"{CHAPTER}.html").is_file()


def test_a_full_quota_at_submit_says_so_and_what_to_do(tmp_path, monkeypatch):
    import errno

    from nbgrader.coursedir import CourseDirectory
    from nbgrader.exchange import ExchangeError
    from nbgrader.exchange.default.submit import ExchangeSubmit as NbgraderSubmit

    def full(self):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(NbgraderSubmit, "copy_files", full)
    submit = exchange.ExchangeSubmit(coursedir=CourseDirectory())
    with pytest.raises(ExchangeError) as denied:
        submit.copy_files()
    assert "Disk quota exceeded" in str(denied.value) and "submit again" in str(denied.value), denied.value


def test_links_in_a_submission_are_never_followed(tmp_path):
    folder = _fake_submission(tmp_path, ME, "2026-12-04 10:00:00.000000 UTC", "links")
    (folder / "stolen.ipynb").symlink_to("/etc/passwd")
    sub = exchange.Submission("k", ME, CHAPTER, "t", folder)
    problems = exchange.copy_submission(sub, tmp_path / "copy")
    assert not (tmp_path / "copy" / "stolen.ipynb").exists()
    assert any("stolen.ipynb is a link" in p for p in problems), problems


# --- the hub, for real (root) ---------------------------------------------------------------------------------

def _need(condition, reason):
    if not condition:
        if CI:
            pytest.fail(reason)
        pytest.skip(reason)


def _run(*cmd, check=True, **kwargs):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return proc


def _as(user, *cmd, **kwargs):
    return _run("runuser", "-u", user, "--", *cmd, check=False, **kwargs)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _learner_python(base: Path, user: str) -> str:
    """The course environment's Python as a learner can run it.

    Where the environment's Python lives in a folder other accounts cannot enter (pyenv under /root),
    a venv of the system's Python of the same version reads the course environment's packages.
    """
    if _as(user, sys.executable, "-c", "import grader.workflow.exchange, jupyterhub").returncode == 0:
        return sys.executable
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    system = next((p for p in (f"/usr/bin/python{version}", f"/usr/local/bin/python{version}") if os.path.exists(p)),
                  None)
    ok = system and _run(system, "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')",
                         check=False).stdout.strip() == version
    _need(ok, f"the course environment's Python ({sys.executable}) is not usable by other accounts and there "
              f"is no system python{version}")
    venv = base / "learner-python"
    _run(system, "-m", "venv", "--without-pip", venv)
    site_dir = next((Path(sys.prefix) / "lib").glob("python3*/site-packages"))
    pth = next((venv / "lib").glob("python3*/site-packages")) / "course-environment.pth"
    pth.write_text(f"import site; site.addsitedir({str(site_dir)!r})\n")
    for shared in ("etc", "share"):    # Jupyter's configuration and extensions of the environment (sys.prefix)
        (venv / shared).symlink_to(Path(sys.prefix) / shared)
    python = str(venv / "bin" / "python")
    # nbgrader runs alembic by name from the environment's bin folder; the environment's own script starts
    # the closed Python, so this one starts the open one.
    (venv / "bin" / "alembic").write_text(f'#!/bin/sh\nexec {python} -m alembic "$@"\n')
    os.chmod(venv / "bin" / "alembic", 0o755)
    check = _as(user, python, "-c", "import grader.workflow.exchange, jupyterhub, nbgrader")
    if check.returncode != 0:   # a checkout in a folder closed to other accounts: not this recipe's situation
        pytest.skip(f"learner accounts cannot read the checkout at {REPO} (put it where other accounts can "
                    f"enter, as deploy/hub/install.sh does): {check.stderr[-300:]}")
    return python


def _wait(predicate, timeout, what, every=0.5):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@pytest.fixture(scope="module")
def hub():
    """The deploy/hub/ recipe on loopback: accounts, exchange, course folder, the hub and `course serve`."""
    _need(os.geteuid() == 0, "the hub test creates Unix accounts: run it as root (CI does)")
    _need(shutil.which("useradd") and shutil.which("runuser"), "useradd and runuser are needed")
    try:
        import jupyterhub  # noqa: F401
        import requests  # noqa: F401
    except ImportError as exc:
        _need(False, f"the hub extra is not installed ({exc}): pip install -c requirements.lock -e '.[hub]'")
    proxy = HUB / "node_modules" / ".bin" / "configurable-http-proxy"
    if not proxy.exists() and shutil.which("npm"):
        _run("npm", "ci", "--prefix", HUB, "--no-audit", "--no-fund", check=False)
    _need(proxy.exists(), f"configurable-http-proxy is not installed: npm ci --prefix {HUB}")

    tag = secrets.token_hex(3)
    users = {"instructor": f"dlh{tag}i", "perfect": f"dlh{tag}p", "partial": f"dlh{tag}w", "broken": f"dlh{tag}b",
             "browser": f"dlh{tag}v"}
    groups = {"learners": f"dlh{tag}l", "instructors": f"dlh{tag}t"}
    passwords = {name: secrets.token_urlsafe(12) for name in users.values()}
    base = Path(tempfile.mkdtemp(prefix="dl-hub-test-", dir="/tmp"))
    os.chmod(base, 0o755)
    procs, state = [], {}
    try:
        for group in groups.values():
            _run("groupadd", group)
        for role, name in users.items():
            group = groups["instructors" if role == "instructor" else "learners"]
            _run("useradd", "--create-home", "--user-group", "--groups", group, "--shell", "/bin/bash", name)
            _run("chpasswd", input=f"{name}:{passwords[name]}\n")
        python = _learner_python(base, users["perfect"])

        root, exchange_root = base / "course", base / "exchange"
        course.init_course(root, exchange_root)
        exchange.prepare_exchange(exchange_root, course.COURSE_ID, users["instructor"])
        instructor = pwd.getpwnam(users["instructor"])
        _run("chown", "-R", f"{instructor.pw_uid}:{instructor.pw_gid}", root)
        # The instructor releases the chapter from their own account, as deploy/hub/README.md tells them.
        release = _as(users["instructor"], python, "-m", "grader.workflow.cli", "--course", root, "release", CHAPTER,
                      "--no-notebooks", cwd=root,
                      env=dict(os.environ, HOME=instructor.pw_dir, JUPYTER_CONFIG_PATH=str(HUB / "jupyter-instructor"),
                               COURSE_EXCHANGE=str(exchange_root), COURSE_DIR=str(root), COURSE_ID=course.COURSE_ID))
        assert release.returncode == 0, f"the instructor could not release {CHAPTER}: {release.stderr[-2000:]}"
        assert (exchange_root / course.COURSE_ID / "outbound" / CHAPTER / f"{CHAPTER}.ipynb").is_file()
        assert os.stat(exchange_root).st_mode & 0o777 == 0o755, "releasing opened the exchange root"

        ports = {"hub": _free_port(), "api": _free_port(), "proxy": _free_port()}
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   HUB_BIND_URL=f"http://127.0.0.1:{ports['hub']}", HUB_API_PORT=str(ports["api"]),
                   HUB_PROXY_API_PORT=str(ports["proxy"]), HUB_STATE=str(base / "hub-state"),
                   COURSE_EXCHANGE=str(exchange_root), COURSE_DIR=str(root), COURSE_PYTHON=python,
                   COURSE_LEARNERS=groups["learners"], COURSE_INSTRUCTORS=groups["instructors"])
        hub_log, serve_log = open(base / "hub.log", "w"), open(base / "serve.log", "w")
        procs.append(subprocess.Popen([sys.executable, "-m", "jupyterhub", "-f", str(HUB / "jupyterhub_config.py")],
                                      cwd=base, env=env, stdout=hub_log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
        procs.append(subprocess.Popen([sys.executable, "-m", "grader.workflow.cli", "--course", str(root), "serve",
                                       "--poll", "1", "--interval", "600", "--workers", "1"],
                                      cwd=REPO, env=env, stdout=serve_log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
        url = f"http://127.0.0.1:{ports['hub']}"
        import requests

        def up():
            if procs[0].poll() is not None:
                raise AssertionError(f"the hub stopped:\n{(base / 'hub.log').read_text()[-3000:]}")
            try:
                return requests.get(f"{url}/hub/api/", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        _wait(up, 60, "the hub to answer")
        state.update(url=url, users=users, passwords=passwords, root=root, exchange=exchange_root, base=base,
                     python=python, groups=groups)
        yield state
    finally:
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        for name in users.values():
            try:
                uid = pwd.getpwnam(name).pw_uid
            except KeyError:
                continue
            for pid in _run("pgrep", "-u", str(uid), check=False).stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
        time.sleep(0.5)
        for name in users.values():
            _run("userdel", "--remove", name, check=False)
        for group in groups.values():
            _run("groupdel", group, check=False)
        if not os.environ.get("KEEP_HUB_TEST"):
            shutil.rmtree(base, ignore_errors=True)


class Learner:
    """One person at the hub: logs in with their password, then works through their own server's API."""

    def __init__(self, url, name, password):
        import requests

        self.url, self.name = url, name
        self.session = requests.Session()
        self.session.get(f"{url}/hub/login", timeout=30)
        response = self.session.post(f"{url}/hub/login", allow_redirects=False, timeout=60,
                                     data={"username": name, "password": password,
                                           "_xsrf": self.session.cookies.get("_xsrf")})
        assert response.status_code == 302, f"{name} could not log in: {response.status_code} {response.text[:300]}"
        response = self.session.post(f"{url}/hub/api/users/{name}/tokens", json={"note": "test_hub"}, timeout=30,
                                     headers={"X-XSRFToken": self.session.cookies.get("_xsrf")})
        assert response.status_code == 201, f"{name}: no API token: {response.status_code} {response.text[:300]}"
        self.headers = {"Authorization": f"token {response.json()['token']}"}

    def hub_api(self, method, path, **kwargs):
        return self.session.request(method, f"{self.url}/hub/api{path}", headers=self.headers, timeout=60, **kwargs)

    def start_server(self):
        response = self.hub_api("POST", f"/users/{self.name}/server")
        assert response.status_code in (201, 202), f"{self.name}: {response.status_code} {response.text[:300]}"

    def wait_for_server(self):
        _wait(lambda: self.hub_api("GET", f"/users/{self.name}").json()["servers"].get("", {}).get("ready"),
              120, f"{self.name}'s server")

    def server(self, method, path, **kwargs):
        response = self.session.request(method, f"{self.url}/user/{self.name}{path}", headers=self.headers,
                                        timeout=120, **kwargs)
        assert response.status_code < 300, f"{self.name} {method} {path}: {response.status_code} {response.text[:500]}"
        return response

    def assignments(self, action):
        """What the Assignments panel does on its buttons: fetch, submit, fetch_feedback."""
        data = self.server("POST", f"/assignments/{action}",
                           data={"course_id": course.COURSE_ID, "assignment_id": CHAPTER}).json()
        assert isinstance(data, dict) and data.get("success") is True, f"{self.name} {action}: {data}"
        return data["value"]

    def put(self, path, model):
        return self.server("PUT", f"/api/contents/{path}", json=model)

    def get(self, path):
        return self.server("GET", f"/api/contents/{path}", params={"content": 1}).json()


PARTLY_WRONG = {"confusion_matrix_answer": (
    "def confusion_matrix(y_true, y_pred, num_classes):\n"
    "    counts = np.zeros((num_classes, num_classes), dtype=int)\n"
    "    for t, p in zip(y_true, y_pred):\n"
    "        counts[p, t] += 1\n"
    "    return counts\n")}


def _denied(proc):
    return proc.returncode != 0 and ("Permission denied" in proc.stderr or "cannot hand in" in proc.stderr
                                     + proc.stdout)


def test_three_learners_submit_on_the_hub_and_course_serve_grades_and_returns_feedback(hub):
    users, root, exchange_root = hub["users"], hub["root"], hub["exchange"]
    learners = {role: Learner(hub["url"], users[role], hub["passwords"][users[role]])
                for role in ("perfect", "partial", "broken")}
    for learner in learners.values():
        learner.start_server()
    for learner in learners.values():
        learner.wait_for_server()
    answers = answer_sources(CHAPTER)
    released = root / "release" / CHAPTER / f"{CHAPTER}.ipynb"
    submitted_at = {}
    for role, learner in learners.items():
        listed = learner.assignments("fetch")
        assert any(a["assignment_id"] == CHAPTER and a["status"] == "fetched" for a in listed), listed
        path = f"{CHAPTER}/{CHAPTER}.ipynb"
        assert learner.get(path)["type"] == "notebook"
        if role == "broken":
            learner.put(path, {"type": "file", "format": "text", "content": '{"cells": [ this is not json'})
        else:
            nb = learner_notebook(released, answers, PARTLY_WRONG if role == "partial" else None)
            learner.put(path, {"type": "notebook", "format": "json", "content": json.loads(nbformat.writes(nb))})
        learner.assignments("submit")
        submitted_at[role] = time.time()

    def all_graded():
        rows = [r for r in serve.queue_summary(root) if r["state"] not in ("waiting", "grading")
                and r["student"] in {learner.name for learner in learners.values()}]
        return rows if len(rows) == 3 else None

    rows = {r["student"]: r for r in _wait(all_graded, 600, "course serve to grade three submissions", every=2)}
    for role in learners:
        row = rows[users[role]]
        assert row["state"] == "graded" and "feedback released" in row["message"], row
        print(f"{role}: Submit -> feedback released in {row['finished_at'] - submitted_at[role]:.1f} s "
              f"({row['message']})")

    results = {r.student: r for r in course.results(root, CHAPTER)}
    perfect, partial, broken = (results[users[role]] for role in ("perfect", "partial", "broken"))
    assert perfect.score == perfect.max_score > 0 and perfect.status == "graded", perfect.messages
    assert partial.items["confusion_matrix"] == 0 and partial.score == partial.max_score - 1, partial.items
    assert broken.status == "problems" and any("not a readable notebook" in m for m in broken.problems), \
        broken.problems

    pages = {}
    for role, learner in learners.items():
        learner.assignments("fetch_feedback")
        [stamp] = [entry["name"] for entry in learner.get(f"{CHAPTER}/feedback")["content"]]
        pages[role] = learner.get(f"{CHAPTER}/feedback/{stamp}/{CHAPTER}.html")["content"]
    full = f"{perfect.max_score:.1f}"
    assert f"{CHAPTER} (Score: {full} / {full})" in pages["perfect"], pages["perfect"][:2000]
    assert f"(Score: {perfect.max_score - 1:.1f} / {full})" in pages["partial"] and "confusion_matrix" in pages["partial"]
    assert "not a readable notebook" in pages["broken"], pages["broken"][:2000]
    for page in pages.values():
        assert "run_hidden_test" not in page and "BEGIN HIDDEN TESTS" not in page

    # Each learner, as their own uid, tries to reach another's submission and feedback: refused.
    course_dir = exchange_root / course.COURSE_ID
    found, _ = exchange.find_submissions(exchange_root, course.COURSE_ID)
    submission = {s.student: s for s in found}
    feedback = {s.student: course_dir / "feedback" / f"{_feedback_name(s)}.html" for s in found}
    env = dict(os.environ, JUPYTER_CONFIG_PATH=str(HUB / "jupyter-learner"),
               COURSE_EXCHANGE=str(exchange_root), COURSE_ID=course.COURSE_ID)
    roles = list(learners)
    for i, role in enumerate(roles):
        me, other = users[role], users[roles[(i + 1) % 3]]
        theirs = submission[other].path
        attempts = {
            "list the hand-in folders": ("ls", course_dir / "inbound"),
            "list another's hand-in folder": ("ls", course_dir / "inbound" / other),
            "read another's submission": ("cat", theirs / f"{CHAPTER}.ipynb"),
            "change another's submission": ("touch", theirs / f"{CHAPTER}.ipynb"),
            "add to another's submission": ("touch", theirs / "planted.txt"),
            "delete another's submission": ("rm", "-rf", theirs),
            "list the feedback": ("ls", course_dir / "feedback"),
            "read another's feedback": ("cat", feedback[other]),
            "change another's feedback": ("touch", feedback[other]),
            "write feedback": ("touch", course_dir / "feedback" / "forged.html"),
            "change the released chapter": ("touch", course_dir / "outbound" / CHAPTER / f"{CHAPTER}.ipynb"),
        }
        for what, cmd in attempts.items():
            proc = _as(me, *cmd)
            assert _denied(proc), f"{me} could {what}: rc={proc.returncode} {proc.stdout[:200]} {proc.stderr[:200]}"
        home = pwd.getpwnam(me).pw_dir
        proc = _as(me, hub["python"], "-m", "nbgrader", "submit", CHAPTER, f"--student={other}",
                   f"--course={course.COURSE_ID}", cwd=home, env=dict(env, HOME=home))
        assert _denied(proc), f"{me} could hand in as {other}: {proc.stdout[-300:]} {proc.stderr[-300:]}"
        assert _as(me, "cat", feedback[me]).returncode == 0, f"{me} cannot read their own feedback"
        assert submission[other].path.is_dir() and not (theirs / "planted.txt").exists()
    # The instructor collects with nbgrader (the protected exchange's collect): everyone, under their own name.
    instructor = users["instructor"]
    proc = _as(instructor, hub["python"], "-m", "nbgrader", "collect", CHAPTER, f"--course={course.COURSE_ID}",
               "--CourseDirectory.submitted_directory=collected", cwd=root,
               env=dict(os.environ, JUPYTER_CONFIG_PATH=str(HUB / "jupyter-instructor"), HOME=pwd.getpwnam(instructor).pw_dir,
                        COURSE_EXCHANGE=str(exchange_root), COURSE_DIR=str(root), COURSE_ID=course.COURSE_ID))
    assert proc.returncode == 0, proc.stderr[-2000:]
    for role in roles:
        assert (root / "collected" / users[role] / CHAPTER / "timestamp.txt").is_file(), (role, proc.stderr[-1500:])

    first = users[roles[0]]
    listing = "\n".join(_run(*cmd).stdout for cmd in (
        ("ls", "-la", course_dir, course_dir / "inbound", course_dir / "feedback"),
        ("namei", "-l", submission[first].path / f"{CHAPTER}.ipynb"),
        ("namei", "-l", feedback[first])))
    print(listing)


def _feedback_name(sub: exchange.Submission) -> str:
    from nbgrader.utils import notebook_hash

    return notebook_hash(secret=sub.secret(), notebook_id=CHAPTER)


# --- a learner in Chromium, through the hub ------------------------------------------------------------------

@pytest.mark.browser
def test_a_learner_logs_in_validates_submits_and_sees_the_score_in_chromium(hub):
    """Log in at the hub, fetch chapter 01 in the Assignments panel, Validate, Submit, Fetch Feedback, read it."""
    from test_browser import CHROMIUM, CHROMIUM_ARGS, SCREENSHOTS, validate, wait_for_kernel

    _need(os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    name, url = hub["users"]["browser"], hub["url"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.set_default_timeout(120_000)
            page.goto(f"{url}/hub/login")
            page.fill("#username_input", name)
            page.fill("#password_input", hub["passwords"][name])
            page.click("#login_submit")
            page.wait_for_url(f"**/user/{name}/lab**", timeout=180_000)
            page.wait_for_selector("#jp-main-dock-panel")

            def open_assignments():
                page.get_by_text("Nbgrader", exact=True).click()
                page.locator(".lm-Menu").last.get_by_text("Assignment List").click()
                page.wait_for_selector("#nbgrader-assignment-list")

            open_assignments()
            released = page.locator("#released_assignments_list")
            released.get_by_text(CHAPTER).wait_for()
            released.get_by_role("button", name="Fetch").click()
            page.locator("#fetched_assignments_list").get_by_text(CHAPTER).first.wait_for()
            page.screenshot(path=str(SCREENSHOTS / "hub-01-fetched.png"))

            # The answers go in through the server's API (typing them is test_browser.py's business).
            learner = Learner(url, name, hub["passwords"][name])
            released_nb = hub["root"] / "release" / CHAPTER / f"{CHAPTER}.ipynb"
            nb = learner_notebook(released_nb, answer_sources(CHAPTER))
            learner.put(f"{CHAPTER}/{CHAPTER}.ipynb",
                        {"type": "notebook", "format": "json", "content": json.loads(nbformat.writes(nb))})
            page.goto(f"{url}/user/{name}/lab/tree/{CHAPTER}/{CHAPTER}.ipynb")
            page.wait_for_selector(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell")
            wait_for_kernel(page)
            text = validate(page)
            page.screenshot(path=str(SCREENSHOTS / "hub-02-validated.png"))
            assert "Success" in text and "failed" not in text, text
            page.locator(".jp-Dialog .jp-mod-accept, .jp-Dialog button").first.click()

            open_assignments()
            fetched = page.locator("#fetched_assignments_list")
            fetched.get_by_role("button", name="Submit").first.click()
            submitted = page.locator("#submitted_assignments_list")
            submitted.get_by_text(CHAPTER).first.wait_for()
            submit_time = time.time()
            page.screenshot(path=str(SCREENSHOTS / "hub-03-submitted.png"))

            def graded():
                rows = [r for r in serve.queue_summary(hub["root"]) if r["student"] == name]
                return rows and rows[-1]["state"] == "graded" and rows[-1]
            row = _wait(graded, 600, "course serve to grade the browser learner's submission", every=2)
            print(f"browser learner: Submit -> feedback released in {row['finished_at'] - submit_time:.1f} s")

            page.locator("#refresh_assignments_list").click()
            submitted.get_by_role("button", name="Fetch Feedback").first.click()
            submitted.get_by_text("(view feedback)").first.wait_for()
            page.screenshot(path=str(SCREENSHOTS / "hub-04-feedback-fetched.png"))
            [stamp] = [entry["name"] for entry in learner.get(f"{CHAPTER}/feedback")["content"]]
            page.goto(f"{url}/user/{name}/files/{CHAPTER}/feedback/{stamp}/{CHAPTER}.html")
            body = page.text_content("body")
            page.screenshot(path=str(SCREENSHOTS / "hub-05-feedback.png"), full_page=False)
            max_score = sum(course_items().values())
            assert f"{CHAPTER} (Score: {max_score:.1f} / {max_score:.1f})" in body, body[:2000]
        finally:
            browser.close()


def course_items():
    from grader.judge.notebooks import graded_items

    return graded_items(nbformat.read(str(REPO / "solutions" / CHAPTER / f"{CHAPTER}.ipynb"), as_version=4))
