"""Grading a class on Dask (grader.workflow.distribute): faults survived, every learner recorded once, safe addresses.

A two-process LocalCluster on loopback stands in for a cluster of machines: the coordinator reaches
it only through its scheduler address, as it would reach a remote one.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from grader.workflow import course, distribute

from conftest import ROOT, answer_sources, learner_notebook, put_submission

pytestmark = pytest.mark.distributed
CHAPTER = "02_backprop"
WRONG_RELU = "def relu_forward(x):\n    return x, x\n"


@pytest.mark.parametrize("address", ["tcp://127.0.0.1:8786", "127.0.0.1:8786", "tcp://localhost:8786",
                                     "tcp://[::1]:8786", "tls://grader.example.org:8786"])
def test_loopback_and_tls_addresses_are_accepted(address):
    distribute.check_address(address)


@pytest.mark.parametrize("address", ["tcp://10.0.0.5:8786", "tcp://grader.example.org:8786", "192.168.1.2:8786",
                                     "ws://127.0.0.1:8786"])
def test_unauthenticated_remote_addresses_are_refused_with_the_tls_recipe(address):
    with pytest.raises(distribute.ClusterError) as refused:
        distribute.check_address(address)
    assert "tls://" in str(refused.value)


def _class(tmp_path, students):
    root = tmp_path / "course"
    course.init_course(root, cell_timeout=20, notebook_timeout=120)
    course.release_assignment(root, CHAPTER, None)
    released = root / "release" / CHAPTER / f"{CHAPTER}.ipynb"
    answers = answer_sources(CHAPTER)
    for student in students:
        if student.startswith("wrong"):
            nb = learner_notebook(released, answers, {"relu_forward_answer": WRONG_RELU})
        elif student.startswith("stub"):
            nb = learner_notebook(released)
        else:
            nb = learner_notebook(released, answers)
        put_submission(root, CHAPTER, student, nb)
    return root


def test_an_unreachable_scheduler_is_a_clear_error_and_nobody_is_recorded(tmp_path):
    root = _class(tmp_path, ["alice"])
    start = time.monotonic()
    with pytest.raises(distribute.ClusterError, match="cannot be reached"):
        course.autograde(root, CHAPTER, cluster="tcp://127.0.0.1:9")
    assert time.monotonic() - start < 60
    [row] = course.results(root, CHAPTER)
    assert row.status == "not graded" and row.score is None


def _kill_workers_grading(student):
    """A worker plugin: the worker process that starts a task whose key names ``student`` dies at once."""
    import cloudpickle
    from distributed import WorkerPlugin

    class KillWorkersGrading(WorkerPlugin):
        def transition(self, key, start, finish, **kwargs):
            if finish == "executing" and f"-{student}-" in str(key):
                os._exit(17)

    cloudpickle.register_pickle_by_value(sys.modules[__name__])     # the workers cannot import this test module
    return KillWorkersGrading()


@pytest.fixture
def cluster():
    from distributed import Client, LocalCluster

    local = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                         dashboard_address="127.0.0.1:0")
    client = Client(local)
    yield local, client
    client.close()
    local.close()


def _worker_pids(client):
    return client.run(os.getpid)


def test_a_worker_killed_mid_class_loses_nobody_and_grades_everyone_once(tmp_path, cluster):
    local, client = cluster
    students = ["perfect1", "perfect2", "wrong1", "stub1", "perfect3", "wrong2"]
    root = _class(tmp_path, students)
    outcome = {}
    thread = threading.Thread(target=lambda: outcome.update(
        runs=course.autograde(root, CHAPTER, cluster=local.scheduler_address)))
    thread.start()
    killed = None
    deadline = time.monotonic() + 300
    while killed is None and time.monotonic() < deadline and thread.is_alive():
        busy = [w for w, tasks in client.processing().items() if any("grade-" in str(k) for k in tasks)]
        if busy:
            killed = busy[0]
            os.kill(_worker_pids(client)[killed], signal.SIGKILL)
        time.sleep(0.5)
    thread.join(600)
    assert killed is not None, "no worker was ever busy grading"
    runs = {r.student: r for r in outcome["runs"]}
    assert sorted(runs) == sorted(students) and all(r.ok for r in runs.values()), runs
    rows = {r.student: r for r in course.results(root, CHAPTER)}
    full = rows["perfect1"].max_score
    relu_points = 1.0
    expected = {"perfect": full, "wrong": full - relu_points, "stub": 0.0}
    for student in students:
        row = rows[student]
        assert row.status == "graded", (student, row.status, row.messages)
        assert row.score == expected[student.rstrip("0123456789")], (student, row.items)
        log = (root / "reports" / CHAPTER / student / "recordings.log").read_text().splitlines()
        assert len(log) == 1, (student, log)


def test_a_submission_that_kills_its_workers_is_a_grading_problem_for_that_learner_only(tmp_path, cluster):
    local, client = cluster
    root = _class(tmp_path, ["killer", "perfect"])
    client.register_plugin(_kill_workers_grading("killer"), name="kill-killer")
    runs = {r.student: r for r in course.autograde(root, CHAPTER, cluster=local.scheduler_address)}
    assert runs["perfect"].ok and not runs["killer"].ok
    rows = {r.student: r for r in course.results(root, CHAPTER)}
    assert rows["perfect"].status == "graded" and rows["perfect"].score == rows["perfect"].max_score
    killer = rows["killer"]
    assert killer.status == "grading problem" and killer.score is None, (killer.status, killer.messages)
    assert any(f"stopped {distribute.ALLOWED_FAILURES + 1} grading workers" in m for m in killer.problems)


def test_a_restarted_run_resumes_without_regrading_unless_forced(tmp_path, cluster):
    local, _ = cluster
    root = _class(tmp_path, ["done", "stub1"])
    course.autograde(root, CHAPTER, ["done"], cluster=local.scheduler_address)
    again = course.autograde(root, CHAPTER, cluster=local.scheduler_address, force=False)
    assert [r.student for r in again] == ["stub1"]
    forced = course.autograde(root, CHAPTER, ["done"], cluster=local.scheduler_address, force=True)
    assert [r.student for r in forced] == ["done"]
    log = (root / "reports" / CHAPTER / "done" / "recordings.log").read_text().splitlines()
    assert len(log) == 2


def test_the_slurm_and_htcondor_job_scripts_start_one_single_threaded_worker():
    for kind, marker in (("slurm", "#SBATCH"), ("htcondor", "Executable")):
        proc = subprocess.run([sys.executable, str(ROOT / "deploy" / "cluster" / "jobqueue_scripts.py"), kind],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        print(proc.stdout)
        assert marker in proc.stdout and "dask_worker" in proc.stdout.replace("dask-worker", "dask_worker")
        assert "--nthreads 1" in proc.stdout
