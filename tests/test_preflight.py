"""No silent zeros: the grader proves it can grade before it grades anyone, wherever the course is cloned.

``course autograde`` first grades the chapter's worked solution and its untouched released notebook in
the class's own configuration (grader/workflow/preflight.py). A broken environment stops grading with a message
that names the cause; a working one grades from any folder: under /tmp, under a 0700 home directory.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grader.workflow import course
from grader.judge.notebooks import graded_items, read
from grader.workflow.preflight import run_preflight

from conftest import ROOT, answer_sources, learner_notebook, put_submission

pytestmark = pytest.mark.workflow
CHAPTER = "01_mlp_xor"
FULL = sum(graded_items(read(ROOT / "solutions" / CHAPTER / f"{CHAPTER}.ipynb")).values())


@pytest.fixture(scope="module")
def good_course(tmp_path_factory):
    root = tmp_path_factory.mktemp("preflight") / "course"
    course.init_course(root)
    course.release_assignment(root, CHAPTER, None)
    return root


def test_preflight_passes_here_and_is_remembered(good_course):
    report = run_preflight(good_course, CHAPTER, use_cache=False)
    assert report.ok, report.summary()
    assert all(report.details["solution"].values()) and not any(report.details["release"].values())
    again = run_preflight(good_course, CHAPTER)
    assert again.ok and again.cached


def test_autograde_in_a_broken_environment_grades_nobody_and_says_why(tmp_path):
    root = tmp_path / "course"
    course.init_course(root, memory_mb=40)          # too little address space for a Python kernel to start
    course.release_assignment(root, CHAPTER, None)
    released = root / "release" / CHAPTER / f"{CHAPTER}.ipynb"
    put_submission(root, CHAPTER, "alice", learner_notebook(released, answer_sources(CHAPTER)))
    with pytest.raises(course.GradingUnavailable) as failure:
        course.autograde(root, CHAPTER, workers=1)
    message = str(failure.value)
    assert "nobody was graded" in message and "worked solution scores 0/" in message, message
    assert "the sandbox's memory limit (40 MiB, `memory_mb` in nbgrader_config.py) is too small" in message, message
    assert not (root / "autograded").exists()
    [row] = course.results(root, CHAPTER)
    assert row.student == "alice" and row.score is None and row.status == "not graded"


def test_the_cli_refuses_with_the_message(tmp_path):
    root = tmp_path / "course"
    course.init_course(root, memory_mb=40)
    course.release_assignment(root, CHAPTER, None)
    released = root / "release" / CHAPTER / f"{CHAPTER}.ipynb"
    put_submission(root, CHAPTER, "bob", learner_notebook(released))
    proc = subprocess.run([sys.executable, "-m", "grader.workflow.cli", "--course", str(root), "autograde", CHAPTER],
                          capture_output=True, text=True)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "grading cannot be trusted here, so nobody was graded" in proc.stderr


def _clone(target: Path) -> Path:
    """A copy of the project at ``target`` with a virtual environment of its own.

    The environment reuses this one's installed packages through a .pth file (no downloads), but imports
    the project's code from the copy, as a fresh clone's editable install would.
    """
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in files:
        if (ROOT / rel).is_file():
            (target / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, target / rel)
    for dirpath, dirnames, filenames in os.walk(target):
        os.chmod(dirpath, 0o755)
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", "--without-pip", str(target / ".venv")], check=True)
    [site_packages] = (target / ".venv" / "lib").glob("python*/site-packages")
    ours = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
    (site_packages / "course-clone.pth").write_text(f"{target}\n{ours}\n")
    return target


@pytest.mark.parametrize("where", ["tmp", "private-home"])
def test_a_clone_grades_to_full_marks_from_tmp_and_from_a_0700_home(tmp_path, where):
    base = tmp_path / "home" if where == "private-home" else tmp_path
    base.mkdir(exist_ok=True)
    if where == "private-home":
        base.chmod(0o700)
    clone = _clone(base / "my course clone")       # a space in the path, too
    python = str(clone / ".venv" / "bin" / "python")
    root = base / "course"

    # nbgrader runs alembic by name: the borrowed packages' scripts stay on PATH
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")

    def cli(*args):
        return subprocess.run([python, "-m", "grader.workflow.cli", "--course", str(root), *args], cwd=clone,
                              capture_output=True, text=True, env=env)

    assert cli("init").returncode == 0
    assert cli("release", CHAPTER, "--no-notebooks").returncode == 0
    code = ("import sys; sys.path.insert(0, 'tests')\n"
            "from pathlib import Path\n"
            "from conftest import answer_sources, learner_notebook, put_submission\n"
            f"root = Path({str(root)!r}); released = root / 'release' / {CHAPTER!r} / {CHAPTER + '.ipynb'!r}\n"
            f"put_submission(root, {CHAPTER!r}, 'ada', learner_notebook(released, answer_sources({CHAPTER!r})))\n"
            "import grader; print(grader.__file__)\n")
    made = subprocess.run([python, "-c", code], cwd=clone, capture_output=True, text=True, env=env)
    assert made.returncode == 0 and str(clone) in made.stdout, made.stderr
    graded = cli("autograde", CHAPTER, "--workers", "1")
    assert graded.returncode == 0, graded.stdout + graded.stderr
    assert "preflight" not in graded.stderr
    line = next(ln for ln in graded.stdout.splitlines() if ln.startswith("ada"))
    assert f"{FULL:g}/{FULL:g}" in line and "graded" in line, graded.stdout
