"""Grading a class on Dask: one task per learner, on one machine or many.

``course autograde CH`` always grades through a Dask client: an in-process ``LocalCluster`` of worker
processes on this machine by default, or the scheduler given with ``--cluster ADDRESS`` (one mechanism,
not two). Each learner's grading is one task, ``grade_task``: the submission travels in it as bytes,
the worker judges it in its own sandbox (``nbgrader_plugins.judge_notebook``) and sends back data (the
executed notebook with its verdicts, and the report). Workers share no filesystem with the coordinator;
only the coordinator writes nbgrader's gradebook and the reports (``grader.workflow.course``).

- **Workers prove themselves**: before anyone is graded, every worker grades the chapter's worked
  solution and its released notebook (``worker_preflight``) in its own sandbox mode; a worker that
  fails takes no tasks and is named with its reason. A worker that is not root grades in user-namespace
  mode or refuses (never with less isolation than ``course isolation`` promises).
- **Faults**: task keys are unique per learner and run (``pure=False``), so identical submissions are
  never merged and every learner is recorded once. A worker that dies mid-task has its task re-run on
  another; a submission whose grading kills ``ALLOWED_FAILURES + 1`` workers is a ``grading problem``
  for that learner. An unreachable scheduler is a clear error before anyone is recorded.
- **Safe by default**: Dask's TCP is unauthenticated and a grading worker runs as root, so the scheduler
  address must be on the loopback interface or ``tls://`` (``check_address``).
"""
from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import socket
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

ALLOWED_FAILURES = 2          # a task may lose this many workers; one more and the learner's grading is a problem
TLS_RECIPE = ("start the scheduler and workers with TLS (`dask scheduler --tls-ca-file ca.pem --tls-cert "
              "sched.pem --tls-key sched.key`, workers likewise) and pass --cluster tls://HOST:8786; "
              "see README 'Grading on many machines'")


class ClusterError(Exception):
    """The cluster cannot be used (address refused, scheduler unreachable, no worker can grade)."""


@dataclass
class Settings:
    """The sandbox limits a worker grades with (the course's ``nbgrader_config.py``, SandboxedExecute)."""

    cell_timeout: int = 30
    notebook_timeout: int = 240
    memory_mb: int = 3072
    max_processes: int = 128
    isolation: str = ""
    hidden_paths: list = field(default_factory=list)
    max_output_chars: int = 20_000

    @classmethod
    def from_course(cls, root: Path) -> "Settings":
        from traitlets.config.loader import PyFileConfigLoader

        path = Path(root) / "nbgrader_config.py"
        config = PyFileConfigLoader(path.name, path=str(path.parent)).load_config()
        section = config.get("SandboxedExecute", {})
        known = {k: section[k] for k in asdict(cls()) if k in section}
        return cls(**{k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in known.items()})

    def config(self):
        from traitlets.config import Config

        config = Config()
        for key, value in asdict(self).items():
            setattr(config.SandboxedExecute, key, value)
        return config


def check_address(address: str) -> None:
    """Refuse a scheduler address that would send learners' code and grades over unauthenticated TCP."""
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme == "tls":
        return
    if parts.scheme not in ("tcp", "inproc"):
        raise ClusterError(f"--cluster {address}: use tcp:// on this machine or tls://")
    host = parts.hostname or ""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ClusterError(f"--cluster {address}: Dask's tcp:// is unauthenticated and grading workers run as root, "
                           f"so only a scheduler on this machine (127.0.0.1, ::1, localhost) may use it; for other "
                           f"machines, {TLS_RECIPE}")


# --- on the worker ------------------------------------------------------------------------------------

_SLOT = {}


def claim_slot(max_slots: int = 64) -> int:
    """A sandbox slot no other grading process on this machine holds (a lock held for the process's life)."""
    if "slot" in _SLOT:
        return _SLOT["slot"]
    folder = Path(tempfile.gettempdir()) / "dl-course-slots"
    folder.mkdir(exist_ok=True)
    for slot in range(max_slots):
        handle = open(folder / f"{slot}.lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        _SLOT.update(slot=slot, handle=handle)
        return slot
    raise RuntimeError(f"all {max_slots} sandbox slots of this machine are taken")


def grade_task(chapter: str, notebooks: dict, settings: dict, student: str) -> dict:
    """The Dask task: judge one learner's notebooks ({name: bytes}) here; returns data only.

    {name: {"executed": notebook JSON, "report": {...}} or {"error": message}}.
    """
    import nbformat

    from . import earlier_chapters
    from .nbgrader_plugins import SLOT_ENV, judge_notebook

    os.environ[SLOT_ENV] = str(claim_slot())
    earlier_chapters.write_given_code(chapter)
    config = Settings(**settings).config()
    judged = {}
    for name, raw in notebooks.items():
        try:
            nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
        except Exception as exc:  # noqa: BLE001 - staging read it already; a damaged transfer is reported
            judged[name] = {"error": f"{name} could not be read on the worker ({type(exc).__name__})"}
            continue
        executed, report = judge_notebook(chapter, nb, config, student, name[:-len(".ipynb")])
        judged[name] = {"executed": nbformat.writes(executed), "report": report}
    return judged


def worker_preflight(chapter: str, released: bytes, settings: dict, require_root: bool = False) -> dict:
    """Run on every worker before it grades: the chapter's solution must score full marks and its released
    notebook zero, here, in this worker's own sandbox. {"ok": bool, "problems": [...], "isolation": mode}."""
    import nbformat

    from ..isolation import sandbox
    from .preflight import check_notebooks

    from .preflight import installation_fingerprint

    mode = sandbox.detect_isolation().mode
    key = installation_fingerprint(chapter, extra=released + json.dumps([settings, mode, require_root],
                                                                        sort_keys=True).encode())
    # A passing preflight is remembered on this machine for the same installation, settings and notebook.
    remembered = Path(tempfile.gettempdir()) / "dl-course-preflight" / f"{key}.json"
    if remembered.is_file():
        return dict(json.loads(remembered.read_text()), host=socket.gethostname())
    wanted = settings.get("isolation") or ""
    if wanted and wanted != mode and not (wanted == "userns" and mode == "root"):
        result = {"ok": False, "isolation": mode,
                  "problems": [f"the course asks for {wanted} isolation and this worker offers {mode}"]}
    elif mode == "none" or (require_root and mode != "root"):
        result = {"ok": False, "isolation": mode,
                  "problems": [f"this worker can only grade with {mode} isolation: run it as root or where "
                               f"user namespaces are allowed"]}
    else:
        os.environ.setdefault("COURSE_SANDBOX_SLOT", str(claim_slot()))
        problems = check_notebooks(chapter, nbformat.reads(released.decode("utf-8"), as_version=4),
                                   Settings(**settings).config())
        result = {"ok": not problems, "problems": problems, "isolation": mode}
    result["host"] = socket.gethostname()
    if result["ok"]:
        remembered.parent.mkdir(parents=True, exist_ok=True)
        remembered.write_text(json.dumps(result))
    return result


# --- on the coordinator --------------------------------------------------------------------------------

class Cluster:
    """A Dask client: to the scheduler at ``address``, or to a LocalCluster of ``workers`` processes here."""

    def __init__(self, address: str | None = None, workers: int | None = None):
        import dask
        from distributed import Client, LocalCluster

        self.local = None
        dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES})
        if address:
            check_address(address)
            try:
                self.client = Client(address, timeout="10s")
            except (OSError, TimeoutError, ValueError) as exc:
                raise ClusterError(f"the Dask scheduler at {address} cannot be reached ({exc}); nobody was "
                                   f"graded") from None
        else:
            self.local = LocalCluster(n_workers=max(1, workers or os.cpu_count() or 1), threads_per_worker=1,
                                      processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0")
            self.client = Client(self.local)

    def close(self):
        self.client.close()
        if self.local is not None:
            self.local.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def workers(self) -> list[str]:
        return sorted(self.client.scheduler_info()["workers"])

    def prove_workers(self, chapter: str, released: bytes, settings: dict) -> tuple[list[str], dict]:
        """(addresses of the workers that passed the preflight, {address: problems} of those that did not)."""
        outcome = self.client.run(worker_preflight, chapter, released, settings)
        good = [w for w, r in outcome.items() if r.get("ok")]
        bad = {w: r.get("problems", []) for w, r in outcome.items() if not r.get("ok")}
        if bad:
            self.client.retire_workers(list(bad), close_workers=False)
        return good, bad

    def submit(self, chapter: str, student: str, notebooks: dict, settings: dict, workers=None):
        key = f"grade-{chapter}-{student}-{uuid.uuid4().hex[:12]}"
        return self.client.submit(grade_task, chapter, notebooks, settings, student, key=key, pure=False,
                                  workers=workers, allow_other_workers=False)
