"""Shared fixtures: a throw-away course folder with every chapter released, and fake learners."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grader.workflow import course
from grader.judge.notebooks import nb_meta

ROOT = Path(__file__).resolve().parents[1]
SOLUTION_REGION = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION\n?", re.S)


def solution_notebook(chapter):
    return ROOT / "solutions" / chapter / f"{chapter}.ipynb"


def answer_sources(chapter) -> dict:
    """{grade_id: source} of the answer cells of a chapter's solution notebook."""
    nb = nbformat.read(str(solution_notebook(chapter)), as_version=4)
    return {nb_meta(c)["grade_id"]: c.source for c in nb.cells if nb_meta(c).get("solution")}


def learner_notebook(released: Path, answers: dict | None = None, replace: dict | None = None):
    """A released notebook filled in like a learner would.

    answers: {grade_id: source} for answer cells (solution cells keep their
    markers, which is harmless: learners may leave them). replace: {grade_id:
    source} overriding single answers, e.g. with a wrong implementation.
    """
    nb = nbformat.read(str(released), as_version=4)
    answers = dict(answers or {}, **(replace or {}))
    for cell in nb.cells:
        grade_id = nb_meta(cell).get("grade_id")
        if nb_meta(cell).get("solution") and grade_id in answers:
            cell.source = answers[grade_id]
    return nb


def put_submission(root: Path, chapter: str, student: str, nb=None, raw: str | None = None, name=None):
    """Write a submission straight into submitted/<student>/<chapter>/ (as collect would)."""
    folder = Path(root) / "submitted" / student / chapter
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    path = folder / (name or f"{chapter}.ipynb")
    if raw is not None:
        path.write_text(raw)
    elif nb is not None:
        nbformat.write(nb, str(path))
    (folder / "timestamp.txt").write_text("2026-11-20 12:00:00 UTC")
    return path


def nbgrader_as_learner(workdir: Path, exchange: Path, *args):
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args, f"--course={course.COURSE_ID}",
                           f"--Exchange.root={exchange}"], cwd=workdir, capture_output=True, text=True,
                          env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


@pytest.fixture(scope="session")
def released_course(tmp_path_factory):
    """A course folder (with an exchange) where every chapter is released; notebooks go to a temp copy."""
    base = tmp_path_factory.mktemp("course")
    root, exchange, notebooks = base / "course", base / "exchange", base / "notebooks"
    course.init_course(root, exchange)
    for chapter in course.chapters():
        course.release_assignment(root, chapter, notebooks)
    return {"root": root, "exchange": exchange, "notebooks": notebooks, "base": base}


@pytest.fixture(scope="session")
def grading_cluster():
    """The address of one Dask LocalCluster (two grading processes on loopback) that the workflow tests share,
    as a course shares its grading machines; ``course autograde`` without ``--cluster`` starts its own."""
    from distributed import LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                           dashboard_address="127.0.0.1:0")
    yield cluster.scheduler_address
    cluster.close()
