"""The second half of run.sh: the two systemd units started as systemd would, then the README's steps.

    flow.py TRIAL WORK      (TRIAL: the checkout install.sh ran from; WORK: a folder for the logs)

Asserts that the hub answers, the instructor releases chapter 01 from a login shell, two learners log in
with their passwords, fetch, hand in (the worked answers; the chapter untouched), that `course serve`
grades both (11/11 and 0/11) and that each reads their own feedback and not the other's.
"""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

TRIAL, WORK = Path(sys.argv[1]), Path(sys.argv[2])
sys.path[:0] = [str(TRIAL / "tests"), str(TRIAL)]
os.chdir(TRIAL)

import nbformat  # noqa: E402
import requests  # noqa: E402
from conftest import answer_sources, learner_notebook  # noqa: E402
from test_hub import Learner, _as, _denied, _run, _wait  # noqa: E402

CH = "01_mlp_xor"
SETTINGS = dict(line.split("=", 1) for line in Path("/etc/dl-course/hub.env").read_text().splitlines() if "=" in line)
COURSE, EXCHANGE = SETTINGS["COURSE_DIR"], SETTINGS["COURSE_EXCHANGE"]
URL = SETTINGS["HUB_BIND_URL"]
ACTIVATE = f". {TRIAL}/.venv/bin/activate"


def start_unit(name):
    """What systemd does for the unit install.sh wrote: its environment file, folder and ExecStart."""
    text = Path(f"/etc/systemd/system/{name}").read_text()
    command = re.search(r"^ExecStart=(.*)$", text, re.M).group(1)
    folder = re.search(r"^WorkingDirectory=(.*)$", text, re.M).group(1)
    os.makedirs(folder, exist_ok=True)
    env = dict(PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", LANG="C.UTF-8", **SETTINGS)
    return subprocess.Popen(command, shell=True, cwd=folder, env=env, start_new_session=True,
                            stdout=open(WORK / f"{name}.log", "w"), stderr=subprocess.STDOUT)


units = []
try:
    units = [start_unit("dl-course-hub.service"), start_unit("dl-course-serve.service")]

    def hub_up():
        assert units[0].poll() is None, (WORK / "dl-course-hub.service.log").read_text()[-3000:]
        try:
            return requests.get(f"{URL}/hub/api/", timeout=2).ok
        except requests.RequestException:
            return False

    _wait(hub_up, 90, "the hub")
    for user in ("tralice", "trbob"):
        _run("chpasswd", input=f"{user}:trial-{user}-password\n")
    release = _as("trteacher", "bash", "-lc", f"{ACTIVATE} && cd && course --course {COURSE} release {CH} --no-notebooks")
    assert release.returncode == 0, release.stderr[-2000:]
    print(f"the instructor released {CH}")

    alice = Learner(URL, "tralice", "trial-tralice-password")
    bob = Learner(URL, "trbob", "trial-trbob-password")
    for learner in (alice, bob):
        learner.start_server()
    for learner in (alice, bob):
        learner.wait_for_server()
    released = Path(COURSE) / "release" / CH / f"{CH}.ipynb"
    first_submit = time.time()
    for learner in (alice, bob):
        assert any(a["assignment_id"] == CH for a in learner.assignments("fetch"))
        if learner is alice:
            nb = learner_notebook(released, answer_sources(CH), None)
            learner.put(f"{CH}/{CH}.ipynb", {"type": "notebook", "format": "json",
                                              "content": json.loads(nbformat.writes(nb))})
        learner.assignments("submit")

    def both_graded():
        status = _as("trteacher", "bash", "-lc", f"{ACTIVATE} && course --course {COURSE} serve --status").stdout
        return status if status.count("feedback released") == 2 else None

    print(_wait(both_graded, 600, "course serve to grade both", every=3).rstrip())
    print(f"both graded and their feedback released {time.time() - first_submit:.0f} s after the first Submit "
          f"(the workers' preflight included)")
    scores = {}
    for learner in (alice, bob):
        learner.assignments("fetch_feedback")
        [stamp] = [e["name"] for e in learner.get(f"{CH}/feedback")["content"]]
        page = learner.get(f"{CH}/feedback/{stamp}/{CH}.html")["content"]
        scores[learner.name] = re.search(r"\(Score: ([^)]*)\)", page).group(1)
    print("feedback fetched:", scores)
    assert scores == {"tralice": "11.0 / 11.0", "trbob": "0.0 / 11.0"}, scores
    for reader, owner in (("trbob", "tralice"), ("tralice", "trbob")):
        pages = [p for p in Path(EXCHANGE).glob("*/feedback/*.html") if p.group() == owner]
        assert pages and all(_denied(_as(reader, "cat", p)) for p in pages), f"{reader} reads {owner}'s feedback"
        assert _denied(_as(reader, "ls", *Path(EXCHANGE).glob(f"*/inbound/{owner}")))
    print("each learner is refused the other's feedback and hand-in folder")
    print(_run("bash", "-c", f"ls -l {EXCHANGE}/*/inbound {EXCHANGE}/*/feedback").stdout)
finally:
    for unit in units:
        try:
            os.killpg(unit.pid, 15)
        except ProcessLookupError:
            pass
    time.sleep(3)
