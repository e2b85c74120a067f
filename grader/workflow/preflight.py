"""Preflight: prove, here and now, that grading works before anyone is graded.

A grader that cannot grade must say so instead of giving learners zeros
(shared/DESIGN.md section 6). Before ``course autograde`` grades a class, it
runs the chapter's own worked solution and its untouched released notebook
through exactly the autograde path the class will take (the course's
``nbgrader_config.py``: the same ``SandboxedExecute`` limits, isolation mode and
hidden paths, then ``ApplyVerdicts``). The solution must score every item and
the released notebook none, each of its items failing on a *recorded* answer
(its stub raising), not on nothing recorded. Otherwise nobody is graded and the
report names the cause: a kernel that could not start, a module the kernel could
not import, an exposed path the sandbox user cannot read.

A passing preflight is remembered in the course folder under a fingerprint of
everything it depends on (configuration, notebooks, grader and learner-side code,
the Python installation), so regrading the same class does not pay for it twice.
"""
from __future__ import annotations

import copy
import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import earlier_chapters
from ..isolation import sandbox
from ..judge.notebooks import graded_items, nb_meta

REPO = Path(__file__).resolve().parents[2]


@dataclass
class PreflightReport:
    chapter: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)     # {"solution": {item: passed}, "release": {...}}
    cached: bool = False

    def summary(self) -> str:
        if self.ok:
            return f"{self.chapter}: preflight passed" + (" (remembered from an earlier run)" if self.cached else "")
        return f"{self.chapter}: grading cannot be trusted here, so nobody was graded:\n" + \
            "\n".join(f"  - {p}" for p in self.problems)


def _config(root: Path):
    from traitlets.config.loader import PyFileConfigLoader

    path = Path(root) / "nbgrader_config.py"
    return PyFileConfigLoader(path.name, path=str(path.parent)).load_config()


def installation_fingerprint(chapter: str, *extra_paths, extra: bytes = b"") -> str:
    """A hash of everything a preflight's outcome depends on here: Python and its packages, the grader and
    learner-side code, the chapter's source folder, and ``extra`` (settings, the released notebook)."""
    from importlib import metadata

    h = hashlib.sha256()
    h.update(sys.version.encode())
    h.update(str(sorted(f"{d.metadata['Name']}=={d.version}" for d in metadata.distributions())).encode())
    paths = [REPO / "course_harness.py", *extra_paths, *sorted((REPO / "solutions" / chapter).glob("*")),
             *sorted((REPO / "grader").rglob("*.py")), *sorted((REPO / "dlcourse").rglob("*.py"))]
    for path in paths:
        if path.is_file():
            h.update(str(path).encode())
            h.update(path.read_bytes())
    h.update(extra)
    return h.hexdigest()


def _fingerprint(root: Path, chapter: str) -> str:
    return installation_fingerprint(chapter, Path(root) / "nbgrader_config.py",
                                    *sorted((Path(root) / "release" / chapter).glob("*")))


def _with_hidden_tests(released, source):
    """The released notebook as nbgrader grades it: hidden test cells put back from the source."""
    nb = copy.deepcopy(released)
    hidden = {nb_meta(c).get("grade_id"): c.source for c in source.cells if nb_meta(c).get("grade")}
    for cell in nb.cells:
        grade_id = nb_meta(cell).get("grade_id")
        if nb_meta(cell).get("grade") and grade_id in hidden:
            cell.source = hidden[grade_id]
    return nb


def _first_errors(executed, limit=2) -> list[str]:
    """'cell 2 raised ModuleNotFoundError: ...' for the first errors outside hidden test cells."""
    found = []
    for index, cell in enumerate(executed.cells):
        if cell.cell_type != "code" or nb_meta(cell).get("grade"):
            continue
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error" and out.get("ename") != "NotImplementedError":
                found.append(f"cell {index + 1} raised {out.get('ename')}: {str(out.get('evalue', ''))[:300]}")
                break
        if len(found) >= limit:
            break
    return found


def _grade(nb, chapter, folder: Path, config, who: str):
    """Run one notebook through SandboxedExecute + ApplyVerdicts as configured; (verdicts, run, errors)."""
    from .nbgrader_plugins import ApplyVerdicts, SandboxedExecute

    resources = {"nbgrader": {"assignment": chapter, "student": f"preflight-{who}", "notebook": chapter},
                 "metadata": {"path": str(folder)}}
    execute = SandboxedExecute(config=config)
    executed, resources = execute.preprocess(nb, resources)
    ApplyVerdicts(config=config).preprocess(executed, resources)
    state = resources["course"]
    items = state["report"]["items"]
    recorded = {name: state["results"].get(name) is not None for name in items}
    return items, recorded, state["status"], _first_errors(executed)


def _diagnose_startup(config) -> str:
    """Why nothing ran: start a bare Python with the kernel's imports in the same sandbox, then with room to spare."""
    import tempfile

    from .nbgrader_plugins import SandboxedExecute, kernel_environment, learner_side_paths, paths_hidden_from_learners

    execute = SandboxedExecute(config=config)
    probe = [sys.executable, "-I", "-c", "import numpy, nbclient, ipykernel, matplotlib, dlcourse, course_harness"]

    def attempt(memory_mb):
        with tempfile.TemporaryDirectory(prefix="course-preflight-") as job:
            limits = sandbox.Limits(wall_seconds=120, cpu_seconds=120, memory_bytes=memory_mb * 2**20,
                                    max_processes=execute.max_processes)
            return sandbox.run_in_sandbox(probe, Path(job), env=kernel_environment(Path(job)), limits=limits,
                                          hide=paths_hidden_from_learners(execute.hidden_paths),
                                          expose=learner_side_paths(), mode=execute.isolation or None)

    try:
        first = attempt(execute.memory_mb)
        if first.returncode == 0:
            return ""
        last = (first.stderr_tail.strip().splitlines() or ["no message"])[-1][:300]
        if attempt(max(4096, 4 * execute.memory_mb)).returncode == 0:
            return (f"the sandbox's memory limit ({execute.memory_mb} MiB, `memory_mb` in nbgrader_config.py) "
                    f"is too small to start Python with the kernel's packages ({last})")
        return f"inside the sandbox, Python cannot import the kernel's packages: {last}"
    except sandbox.SandboxError as exc:
        return f"the sandbox cannot start: {exc}"


def run_preflight(root: Path, chapter: str, *, use_cache: bool = True) -> PreflightReport:
    """Grade the worked solution and the released notebook of ``chapter`` as the class will be graded."""
    root = Path(root)
    cache = root / "reports" / chapter / "preflight.json"
    key = _fingerprint(root, chapter)
    if use_cache and cache.is_file():
        try:
            if json.loads(cache.read_text()).get("passed") == key:
                return PreflightReport(chapter, True, cached=True)
        except ValueError:
            pass
    problems = []
    iso = sandbox.detect_isolation()
    if iso.mode == "root":
        from .nbgrader_plugins import learner_side_paths

        unreadable = sandbox.unreadable_exposed_paths(learner_side_paths())
        if unreadable:
            problems.append("the sandbox's unprivileged user cannot read " + ", ".join(unreadable)
                            + ": make them world-readable (chmod -R o+rX) or install the course elsewhere")
    released_path = root / "release" / chapter / f"{chapter}.ipynb"
    if not released_path.is_file():
        return PreflightReport(chapter, False, [f"{chapter} has not been released in {root}: run "
                                                f"`course release {chapter}` first"])
    earlier_chapters.write_given_code(chapter)
    details = {}
    problems += check_notebooks(chapter, nbformat.read(str(released_path), as_version=4), _config(root), details)
    report = PreflightReport(chapter, not problems, problems, details)
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"passed": key if report.ok else None, "problems": problems}, indent=1))
    return report


def check_notebooks(chapter: str, released, config, details: dict | None = None) -> list[str]:
    """Problems found grading the worked solution (must score every item) and the untouched ``released``
    notebook (must score none, each item on a recorded answer) with ``config``, here; [] when grading works.

    Needs no course folder: a Dask worker runs it before it grades anyone (grader.workflow.distribute)."""
    details = {} if details is None else details
    problems = []
    source_path = REPO / "solutions" / chapter / f"{chapter}.ipynb"
    source = nbformat.read(str(source_path), as_version=4)
    expected = graded_items(source)
    for who, nb in (("solution", source), ("release", _with_hidden_tests(released, source))):
        try:
            items, recorded, status, errors = _grade(nb, chapter, source_path.parent, config, who)
        except sandbox.SandboxError as exc:
            problems.append(f"the sandbox could not run the {who} notebook: {exc}")
            break
        details[who] = {n: v["passed"] for n, v in items.items()}
        cause = "; ".join(errors + ([f"run status: {status['error']}"] if status.get("error") else []))
        missing = sorted(set(expected) - set(items))
        if missing:
            problems.append(f"the {who} notebook has no hidden test cells for {missing}")
        if who == "solution":
            failed = {n: v["message"].splitlines()[0] for n, v in items.items() if not v["passed"]}
            if failed and not status.get("cells_executed"):
                diagnosis = _diagnose_startup(config)
                cause = "; ".join(([diagnosis] if diagnosis else []) + ([cause] if cause else []))
            if failed:
                problems.append(f"the worked solution scores {len(items) - len(failed)}/{len(items)} items here; "
                                f"failing: {', '.join(failed)}" + (f". Cause: {cause}" if cause else "")
                                + f". First message: {next(iter(failed.values()))}")
        else:
            passed = [n for n, v in items.items() if v["passed"]]
            unrecorded = [n for n, ok in recorded.items() if not ok]
            if passed:
                problems.append(f"the untouched released notebook scores on {passed}: its stubs must score 0")
            if unrecorded:
                problems.append(f"the untouched released notebook recorded no answers for {unrecorded} (its stubs "
                                f"should raise NotImplementedError and be recorded)" + (f". Cause: {cause}" if cause else ""))
    return problems
