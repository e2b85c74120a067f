"""nbgrader preprocessors that make autograding trustworthy.

nbgrader's own autograde runs the learner's notebook in a kernel and gives a
test cell its points when the cell raises nothing, which learner code can
arrange (``np.allclose = lambda *a, **k: True``). Here instead:

Judging happens where the work is (a Dask worker, ``grader.workflow.distribute``): ``judge_notebook`` runs the
two steps below on a submission and returns the executed notebook with each hidden test cell's
verdict as its output. On the coordinator, ``ApplyJudgement`` (in place of nbgrader's ``Execute``)
puts that judgement into nbgrader's own pipeline, which scores and saves it in the gradebook.

1. ``SandboxedExecute`` (replaces nbgrader's ``Execute``) writes fresh random
   cases for every hidden test, runs the notebook inside the sandbox
   (``grader.isolation.sandbox``) where ``course_harness`` records what the learner's
   functions return, and collects those recordings;
2. ``ApplyVerdicts`` judges the recordings in this process against the trusted
   references and rewrites each hidden test cell's output to the verdict: a
   line of success, or an error carrying the learner-facing message. nbgrader's
   ``SaveAutoGrades`` then scores the cells as usual (an error output scores 0).

Feedback uses nbgrader's ``ClearHiddenTests`` so no hidden test source reaches
learners (see ``grader.workflow.course.nbgrader_config_text``).
"""
from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import nbformat
from nbformat.notebooknode import NotebookNode, from_dict
from traitlets import Float, Integer, List, Unicode

from nbgrader.preprocessors import NbGraderPreprocessor

from ..isolation import sandbox
from ..judge.cases import Streams
from ..judge.items import Verdict, chapter_items, judge
from ..judge.notebooks import TEST_PREFIX, graded_items, nb_meta
from ..judge.protocol import read_results, read_untrusted, write_cases
from ..judge.review import course_notebook, definition_sources, review_message, review_notebook

RUNNER = Path(__file__).resolve().parents[1] / "isolation" / "notebook_runner.py"
MAX_EXECUTED_NOTEBOOK_BYTES = 64 * 2**20
SLOT_ENV = "COURSE_SANDBOX_SLOT"
REPORT_SUFFIX = ".verdicts.json"


def kernel_environment(job: Path) -> dict:
    """The only environment variables learner code sees."""
    venv_bin = str(Path(sys.executable).parent)
    return {
        "PATH": f"{venv_bin}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(job),
        "LANG": "C.UTF-8",
        "NBGRADER_EXECUTION": "autograde",
        "COURSE_GRADING_DIR": str(job / ".grading"),
        "MPLBACKEND": "Agg",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "JUPYTER_PLATFORM_DIRS": "1",
        # Graded numbers are computed on the CPU in float64 (DESIGN.md section 6): no GPU in grading.
        "CUDA_VISIBLE_DEVICES": "",
    }


def learner_side_paths() -> list[Path]:
    """What learner code may import besides the Python installation: dlcourse, the kernel-side harness,
    and the package folders on this interpreter's import path (the virtual environment's site-packages,
    and any a .pth file adds)."""
    import importlib.util
    import site

    paths = [Path(importlib.util.find_spec("course_harness").origin).resolve()]
    paths += [Path(p).resolve() for p in importlib.util.find_spec("dlcourse").submodule_search_locations]
    packages = set(site.getsitepackages()) | {p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")}
    paths += sorted(Path(p).resolve() for p in packages if Path(p).is_dir())
    return paths


def paths_hidden_from_learners(extra=()) -> list[Path]:
    """What learner code must not see while it runs: trusted code, sources, other learners."""
    import grader

    repo = Path(grader.__file__).resolve().parents[1]
    # grader/ itself is hidden even where a non-editable install put it inside the exposed site-packages.
    hidden = [Path(grader.__file__).resolve().parent, repo / "solutions", repo / "tests", repo / ".git"]
    return hidden + [Path(p).resolve() for p in extra]


class SandboxedExecute(NbGraderPreprocessor):
    """Run the notebook in the sandbox with fresh hidden-test cases; keep the recordings in resources."""

    cell_timeout = Integer(30, help="Seconds one cell may run before it is interrupted.").tag(config=True)
    notebook_timeout = Integer(240, help="Seconds the whole notebook may run.").tag(config=True)
    memory_mb = Integer(3072, help="Memory limit of the learner's processes, in MiB.").tag(config=True)
    max_processes = Integer(128, help="Process limit of the learner's code.").tag(config=True)
    hidden_paths = List(Unicode(), help="Extra paths learner code must not see (course folder, exchange).").tag(
        config=True)
    isolation = Unicode("", help="Force 'root', 'userns' or 'none'; empty picks the strongest available.").tag(
        config=True)
    max_output_chars = Integer(20_000, help="Stream output kept per cell.").tag(config=True)
    scratch_root = Unicode("", help="Where job folders are made (default: the system temp folder).").tag(config=True)
    keep_jobs = Float(0, help="Keep job folders for debugging when > 0.").tag(config=True)

    def preprocess(self, nb, resources):
        chapter = resources["nbgrader"]["assignment"]
        items = chapter_items(chapter)
        wanted = graded_items(nb)
        unknown = [name for name in wanted if name not in items]
        if unknown:
            raise ValueError(f"hidden test cells name items the grader does not know: {unknown}")
        streams = Streams.from_seed()
        cases = {name: items[name].cases(streams) for name in wanted}
        # The submitted source is read here, in the grader, before any of it runs (grader.judge.review).
        review = review_notebook(chapter, nb, course_notebook(chapter), list(wanted))
        sources = definition_sources(nb)

        job = Path(tempfile.mkdtemp(prefix="course-job-", dir=self.scratch_root or None))
        try:
            for name, item_cases in cases.items():
                write_cases(job / ".grading" / "cases", name, item_cases)
            (job / ".grading" / "results").mkdir(parents=True)
            nbformat.write(nb, str(job / "submission.ipynb"))
            self._copy_assignment_files(resources, job)
            shutil.copy(RUNNER, job / "notebook_runner.py")
            limits = sandbox.Limits(wall_seconds=self.notebook_timeout, cpu_seconds=self.notebook_timeout * 2,
                                    memory_bytes=self.memory_mb * 2**20, max_processes=self.max_processes)
            argv = [sys.executable, "-I", "notebook_runner.py", "submission.ipynb", "executed.ipynb",
                    "--cell-timeout", str(self.cell_timeout), "--max-output-chars", str(self.max_output_chars)]
            run = sandbox.run_in_sandbox(argv, job, env=kernel_environment(job), limits=limits,
                                         hide=paths_hidden_from_learners(self.hidden_paths),
                                         expose=learner_side_paths(),
                                         slot=int(os.environ.get(SLOT_ENV, "0")), mode=self.isolation or None)
            executed, status = self._read_back(job, nb, run)
            results, unreadable = {}, {}
            for name in wanted:
                try:
                    results[name] = read_results(job / ".grading" / "results", name)
                except Exception as exc:  # noqa: BLE001 - a damaged recording is a grading problem for that item
                    self.log.warning("unreadable results for %s: %s", name, exc)
                    results[name] = None
                    unreadable[name] = str(exc)[:300]
            resources["course"] = {"cases": cases, "results": results, "status": status, "review": review,
                                   "sources": sources, "unreadable": unreadable, "isolation": run.isolation.mode}
            return executed, resources
        finally:
            if not self.keep_jobs:
                shutil.rmtree(job, ignore_errors=True)

    def _copy_assignment_files(self, resources, job):
        """Data files released with the chapter travel with the notebook (never other notebooks)."""
        folder = Path(resources.get("metadata", {}).get("path") or ".")
        for path in folder.iterdir() if folder.is_dir() else []:
            if path.is_file() and path.suffix != ".ipynb" and not path.name.startswith("."):
                shutil.copy(path, job / path.name)

    def _read_back(self, job, original, run):
        status = {"ok": False, "kernel_died_at_cell": None, "timed_out_cells": [], "error": None,
                  "cells_executed": 0, "workdir_damaged_at_cell": None, "dropped_messages": 0}
        try:
            raw = read_untrusted(job / "run_status.json", 2**20)
            if raw:
                status.update({k: v for k, v in json.loads(raw).items() if k in status})
        except (OSError, ValueError, AttributeError):
            pass
        if run.timed_out:
            status["error"] = f"the notebook ran longer than the {self.notebook_timeout} s limit and was stopped"
        elif run.signal:
            status["error"] = status.get("error") or f"the grading process was killed (signal {run.signal}); " \
                                                     "most often the memory limit"
        try:
            raw = read_untrusted(job / "executed.ipynb", MAX_EXECUTED_NOTEBOOK_BYTES)
            if raw is None:
                raise ValueError("no executed notebook")
            executed = nbformat.reads(raw.decode("utf-8"), as_version=4)
            # Metadata comes from the trusted copy: learner code may have rewritten the file.
            if len(executed.cells) != len(original.cells):
                raise ValueError("cell count changed")
            for mine, theirs in zip(original.cells, executed.cells):
                theirs.metadata = mine.metadata
                theirs.source = mine.source
                theirs.cell_type = mine.cell_type
            executed.metadata = original.metadata
        except Exception as exc:  # noqa: BLE001 - fall back to the unexecuted notebook
            self.log.warning("could not read the executed notebook: %s", exc)
            executed = original
            status["error"] = status.get("error") or "the notebook could not be executed"
        return executed, status


def verdict_output(verdict: Verdict) -> NotebookNode:
    if verdict.passed:
        return from_dict({"output_type": "stream", "name": "stdout", "text": "\u2713 " + verdict.message + "\n"})
    return from_dict({"output_type": "error", "ename": "HiddenTestFailed", "evalue": verdict.message,
                      "traceback": verdict.message.splitlines()})


def _not_recorded_reason(status, cell, index):
    """Why a hidden test cell recorded nothing, as far as the run tells: said to the learner, not guessed at."""
    died = status.get("kernel_died_at_cell")
    if died is not None and died <= index:
        return (f"The kernel died in cell {died + 1} before this test ran (os._exit, a crash, or the memory "
                f"limit in your code ends it).")
    if index in (status.get("timed_out_cells") or []):
        return ("This hidden test was stopped at the time limit for one cell: a function it called ran too long "
                "(an endless loop, or far more work than the task needs).")
    error = status.get("error") or ""
    outputs = cell.get("outputs", [])
    ran = cell.get("execution_count") is not None and not any(o.get("ename") == "NotExecuted" for o in outputs)
    if ran and "could not be executed" not in error:
        return ("This hidden test ran but recorded nothing: code in your notebook replaced or broke the grading "
                "harness (course_harness) or its files.")
    if error:
        return f"Grading stopped before this test ran: {error}."
    return "The notebook stopped before this hidden test ran."


def hold_for_review(verdict: Verdict, flags) -> Verdict:
    """A flagged item scores 0 until the instructor has looked; the numbers' verdict is kept for them."""
    numbers = "the hidden test's numbers were right" if verdict.passed else "the hidden test failed too"
    return Verdict(verdict.item, False, f"{review_message(verdict.item, flags)}\n({numbers}: "
                   f"{verdict.message.splitlines()[0]})", review=tuple(f.describe() for f in flags))


def overwrite_from_source(nb, source):
    """What nbgrader's OverwriteCells does, from the chapter's source notebook: every locked or graded cell
    gets the source's text, type and grading metadata back (hidden tests included); answer cells keep the
    learner's text. Returns ``nb``, changed in place."""
    import copy

    trusted = {nb_meta(c).get("grade_id"): c for c in source.cells if nb_meta(c).get("grade_id")}
    for cell in nb.cells:
        grade_id = nb_meta(cell).get("grade_id")
        original = trusted.get(grade_id)
        if original is None:
            continue
        meta = nb_meta(original)
        cell.metadata["nbgrader"] = copy.deepcopy(original.metadata["nbgrader"])
        if meta.get("locked") or meta.get("grade"):
            cell.source = original.source
            cell.cell_type = original.cell_type
            if cell.cell_type != "code":
                cell.pop("outputs", None)
                cell.pop("execution_count", None)
            elif "outputs" not in cell:
                cell.outputs, cell.execution_count = [], None
    return nb


def judge_notebook(chapter, nb, config, student="learner", notebook=None, folder=None):
    """(executed notebook with a verdict in every hidden test cell, report) for one notebook of ``chapter``.

    ``nb`` is the submission as the learner wrote it (locked cells are put back from the source here);
    ``config`` a traitlets Config carrying the SandboxedExecute limits. No course folder is needed: the
    chapter's source notebook and given code come from the grader's own copy.
    """
    from ..judge.notebooks import chapter_notebook, read

    source_path = chapter_notebook(chapter)
    nb = overwrite_from_source(nb, read(source_path))
    resources = {"nbgrader": {"assignment": chapter, "student": student, "notebook": notebook or chapter},
                 "metadata": {"path": str(folder or source_path.parent)}}
    executed, resources = SandboxedExecute(config=config).preprocess(nb, resources)
    executed, resources = ApplyVerdicts(config=config).preprocess(executed, resources)
    return executed, resources["course"]["report"]


class ApplyJudgement(NbGraderPreprocessor):
    """Put a judgement made elsewhere (``judge_notebook`` on a worker) into nbgrader's autograde pipeline.

    The judged notebook is read from ``judged_dir``/<chapter>/<student>/<notebook>.ipynb, its report beside
    it; every code cell of the notebook nbgrader is grading takes the judged cell's outputs. The two must
    have the same cells (both put the locked cells back from the same source); if not, grading of this
    learner fails with that message rather than scoring anything.
    """

    judged_dir = Unicode("", help="Where the coordinator keeps judged notebooks and their reports.").tag(config=True)
    report_dir = Unicode("", help="Folder for per-notebook verdict reports (read by `course status`).").tag(
        config=True)

    def preprocess(self, nb, resources):
        chapter = resources["nbgrader"]["assignment"]
        student, notebook = resources["nbgrader"]["student"], resources["nbgrader"]["notebook"]
        folder = Path(self.judged_dir) / chapter / student
        path = folder / f"{notebook}.ipynb"
        if not path.is_file():
            raise RuntimeError(f"{student}: {notebook} was not judged (no {path.name} from a grading worker)")
        judged = nbformat.read(str(path), as_version=4)
        ours = [(c.cell_type, nb_meta(c).get("grade_id")) for c in nb.cells]
        theirs = [(c.cell_type, nb_meta(c).get("grade_id")) for c in judged.cells]
        if ours != theirs:
            raise RuntimeError(f"{student}: the judged {notebook} does not have the cells nbgrader grades")
        for mine, done in zip(nb.cells, judged.cells):
            if mine.cell_type == "code":
                mine.outputs = done.get("outputs", [])
                mine.execution_count = done.get("execution_count")
        report = json.loads((folder / f"{notebook}{REPORT_SUFFIX}").read_text())
        resources["course"] = {"report": report}
        if self.report_dir:
            out = Path(self.report_dir) / chapter / student / f"{notebook}{REPORT_SUFFIX}"
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=1))
        return nb, resources


class ApplyVerdicts(NbGraderPreprocessor):
    """Judge the recordings against trusted references; each hidden test cell shows its verdict."""

    def preprocess(self, nb, resources):
        state = resources.get("course")
        if state is None:
            raise RuntimeError("ApplyVerdicts needs SandboxedExecute earlier in the pipeline")
        chapter = resources["nbgrader"]["assignment"]
        items = chapter_items(chapter)
        verdicts, recorded = {}, {}
        for index, cell in enumerate(nb.cells):
            grade_id = str(nb_meta(cell).get("grade_id", ""))
            if not (nb_meta(cell).get("grade") and grade_id.startswith(TEST_PREFIX)):
                continue
            name = grade_id[len(TEST_PREFIX):]
            verdict = judge(items[name], state["cases"][name], state["results"].get(name),
                            state.get("sources", {}).get(name, ""))
            recorded[name] = state["results"].get(name) is not None
            if name in state.get("unreadable", {}):
                verdict.message += (f" The recorded answers could not be read safely ({state['unreadable'][name]}): "
                                    f"code in your notebook wrote or changed the grading files.")
            elif not recorded[name]:
                verdict.message += " " + _not_recorded_reason(state["status"], cell, index)
            flags = state.get("review", {}).get(name)
            if flags:
                verdict = hold_for_review(verdict, flags)
            verdicts[name] = verdict
            cell.outputs = [verdict_output(verdict)]
        report = {"student": resources["nbgrader"]["student"], "assignment": chapter,
                  "notebook": resources["nbgrader"]["notebook"], "isolation": state["isolation"],
                  "run": state["status"],
                  "items": {n: {"passed": v.passed, "message": v.message, "recorded": recorded[n],
                                "review": list(v.review)} for n, v in verdicts.items()}}
        resources["course"]["report"] = report
        return nb, resources
