"""Execute a learner notebook inside the sandbox (standalone script).

Usage::

    python -I notebook_runner.py IN.ipynb OUT.ipynb --cell-timeout S
        [--max-output-chars N] [--max-total-output-chars N]
        [--max-image-bytes N] [--kernel-env-json FILE]

Only the standard library, nbformat and nbclient (with its dependency
jupyter_client) are used: this file is copied into the job directory and
must not import anything from the course repository.

It always writes OUT (possibly partial) and ``run_status.json`` next to OUT::

    {"ok": bool, "kernel_died_at_cell": int | null, "timed_out_cells": [int],
     "error": str | null, "cells_executed": int, "workdir_damaged_at_cell": int | null,
     "dropped_messages": int}

* ``ok``: every code cell was executed (errors raised by learner code and
  interrupted cells do not count against it; kernel death, a kernel start
  failure or an unreadable notebook do).
* ``kernel_died_at_cell``: index (in ``nb.cells``) of the cell during which the
  kernel died or had to be killed because it ignored the timeout interrupt.
* ``timed_out_cells``: indices of the cells interrupted at the cell timeout.
* ``cells_executed``: code cells whose execution finished (with or without an
  error); the cell in which the kernel died is not counted.
* ``workdir_damaged_at_cell``: the first cell after which the hidden tests' files
  (``$COURSE_GRADING_DIR``) had been deleted or changed by the notebook; they are
  put back (see ``GradingFiles``), so later hidden tests still run.
* ``dropped_messages``: messages from the kernel that the runner could not use and
  dropped (a bad signature, or content it could not process). Only the learner's
  process can send them (it holds the kernel's session key), so they are named in
  the report and execution goes on; before they were dropped, one forged message
  stopped the runner.
* ``error`` begins with one of ``RUNNER_FAULTS`` when the runner itself failed, not
  the learner's code: the grader then records nobody's points for this notebook
  and says so (a grading problem), instead of charging the items that did not run.

Fail-closed outputs: all outputs of IN are discarded, and every code cell
starts with an ``error`` output (ename ``NotExecuted``) that is replaced when
the cell actually runs.  So cells that never ran (kernel death, runner killed
at the wall limit) can never look like passing cells.  OUT and the status are
rewritten atomically after every cell.

Exit status: 0 ok, 1 kernel death / kernel start failure / runner error,
2 unreadable or invalid IN (or bad arguments).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import traceback
from pathlib import Path

DEFAULT_MAX_OUTPUT_CHARS = 20_000
DEFAULT_MAX_TOTAL_OUTPUT_CHARS = 2_000_000
DEFAULT_MAX_IMAGE_BYTES = 1_000_000   # of base64 text, i.e. ~750 kB of image
_MARKER = "[autograder: {what} truncated: more than {limit} characters of output]"
# How ``error`` begins when the runner, not the learner's code, failed (see the module docstring).
RUNNER_FAULTS = ("the kernel failed to start", "runner error", "runner crashed")


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------

def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


class Status:
    def __init__(self, path: Path):
        self.path = path
        self.data = {
            "ok": False,
            "kernel_died_at_cell": None,
            "timed_out_cells": [],
            "error": "the notebook runner did not finish (killed?)",
            "cells_executed": 0,
            "workdir_damaged_at_cell": None,
            "dropped_messages": 0,
        }

    def write(self) -> None:
        _atomic_write_text(self.path, json.dumps(self.data, indent=1) + "\n")


# --------------------------------------------------------------------------
# Environment
# --------------------------------------------------------------------------

def _ensure_environment(workdir: Path) -> None:
    """Keep Jupyter/IPython/matplotlib writes inside the workdir."""
    base = workdir / ".runner"
    defaults = {
        "HOME": base / "home",
        "JUPYTER_RUNTIME_DIR": base / "rt",
        "JUPYTER_DATA_DIR": base / "data",
        "JUPYTER_CONFIG_DIR": base / "config",
        "IPYTHONDIR": base / "ipython",
        "MPLCONFIGDIR": base / "mpl",
        "XDG_CACHE_HOME": base / "cache",
        "XDG_CONFIG_HOME": base / "config",
        "XDG_DATA_HOME": base / "data",
    }
    for key, value in defaults.items():
        if not os.environ.get(key):
            os.environ[key] = str(value)
        Path(os.environ[key]).mkdir(parents=True, exist_ok=True, mode=0o700)
    os.environ.setdefault("JUPYTER_PLATFORM_DIRS", "1")
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    os.environ.setdefault("NBGRADER_EXECUTION", "autograde")
    # Never pick up kernelspecs or config from elsewhere in JUPYTER_PATH.
    os.environ["JUPYTER_PATH"] = ""
    os.environ["JUPYTER_CONFIG_PATH"] = ""


def _kernel_env(path: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if path:
        with open(path, encoding="utf-8") as f:
            extra = json.load(f)
        if not isinstance(extra, dict):
            raise ValueError("--kernel-env-json must contain a JSON object")
        for key, value in extra.items():
            if value is None:
                env.pop(key, None)
            elif isinstance(value, str):
                env[key] = value
            else:
                raise ValueError(f"kernel env value for {key!r} is not a string or null")
    return env


# --------------------------------------------------------------------------
# Output capping
# --------------------------------------------------------------------------

def _size(value) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(_size(v) for v in value)
    try:
        return len(json.dumps(value))
    except (TypeError, ValueError):
        return 1 << 30


def _truncate(text: str, limit: int, what: str) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + "\n" + _MARKER.format(what=what, limit=limit) + "\n"


class Dropped:
    """Messages from the kernel that the runner dropped (see ``dropped_messages``)."""
    count = 0


def _tolerant_kernel_client_class():
    """An AsyncKernelClient whose channels drop what they cannot verify instead of raising.

    A message with a bad signature (or one that cannot be parsed) becomes an empty message
    with no parent, which nbclient ignores like any message for another request."""
    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.channels import AsyncZMQSocketChannel
    from traitlets import Type

    class TolerantChannel(AsyncZMQSocketChannel):
        async def _recv(self, **kwargs):
            raw = await self.socket.recv_multipart(**kwargs)
            try:
                _, smsg = self.session.feed_identities(raw)
                return self.session.deserialize(smsg)
            except Exception:   # noqa: BLE001 - forged or malformed: drop it, count it
                Dropped.count += 1
                return {"header": {}, "parent_header": {}, "metadata": {}, "content": {},
                        "msg_id": None, "msg_type": "dropped", "buffers": []}

    class TolerantKernelClient(AsyncKernelClient):
        shell_channel_class = Type(TolerantChannel)
        iopub_channel_class = Type(TolerantChannel)
        stdin_channel_class = Type(TolerantChannel)
        control_channel_class = Type(TolerantChannel)

    return TolerantKernelClient


def _make_client_class():
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionComplete, DeadKernelError
    from nbclient.util import ensure_async

    class CappedClient(NotebookClient):
        """NotebookClient that caps outputs as they arrive and tracks timeouts."""

        def __init__(self, nb, *, max_output_chars: int, max_total_chars: int,
                     max_image_bytes: int, **kw):
            super().__init__(nb, **kw)
            self.max_output_chars = max_output_chars
            self.max_total_chars = max_total_chars
            self.max_image_bytes = max_image_bytes
            self.total_chars = 0
            self.cell_chars: dict[int, int] = {}
            self.cell_marked: set[int] = set()
            self.timed_out_cells: list[int] = []
            self.timeouts_in_cell = 0
            self.current_index: int | None = None
            self.kernel_unresponsive = False

        # -- capping ---------------------------------------------------------
        def _budget(self, cell_index: int) -> int:
            per_cell = self.max_output_chars - self.cell_chars.get(cell_index, 0)
            total = self.max_total_chars - self.total_chars
            return max(0, min(per_cell, total))

        def _charge(self, cell_index: int, n: int) -> None:
            self.cell_chars[cell_index] = self.cell_chars.get(cell_index, 0) + n
            self.total_chars += n

        def _cap_stream(self, msg: dict, cell_index: int) -> dict | None:
            content = dict(msg["content"])
            text = content.get("text", "")
            if not isinstance(text, str):
                text = str(text)
            budget = self._budget(cell_index)
            if len(text) <= budget:
                self._charge(cell_index, len(text))
                return msg
            if cell_index in self.cell_marked:
                return None   # drop: the marker is already in this cell's output
            self.cell_marked.add(cell_index)
            per_cell = self.max_output_chars - self.cell_chars.get(cell_index, 0)
            if per_cell <= self.max_total_chars - self.total_chars:
                what, limit = "cell output", self.max_output_chars
            else:
                what, limit = "notebook output", self.max_total_chars
            self._charge(cell_index, budget)
            content["text"] = text[:budget] + "\n" + _MARKER.format(what=what, limit=limit) + "\n"
            return {**msg, "content": content}

        def _cap_data(self, msg: dict, cell_index: int) -> dict:
            content = dict(msg["content"])
            data = dict(content.get("data") or {})
            notes = []
            for mime in list(data):
                value = data[mime]
                n = _size(value)
                if mime.startswith("image/"):
                    if n > self.max_image_bytes or n > self._budget_total():
                        del data[mime]
                        notes.append(f"[autograder: {mime} output of {n} bytes dropped "
                                     f"(limit {self.max_image_bytes} bytes)]")
                        continue
                    self.total_chars += n
                    continue
                budget = self._budget(cell_index)
                if n <= budget:
                    self._charge(cell_index, n)
                elif isinstance(value, str) and mime.startswith("text/plain"):
                    data[mime] = _truncate(value, budget, mime)
                    self._charge(cell_index, budget)
                else:
                    del data[mime]
                    notes.append(f"[autograder: {mime} output of {n} characters dropped "
                                 f"(output limit reached)]")
            if notes:
                plain = data.get("text/plain", "")
                if not isinstance(plain, str):
                    plain = ""
                data["text/plain"] = (plain + "\n" if plain else "") + "\n".join(notes)
            content["data"] = data
            return {**msg, "content": content}

        def _budget_total(self) -> int:
            return max(0, self.max_total_chars - self.total_chars)

        def _cap_error(self, msg: dict, cell_index: int) -> dict:
            content = dict(msg["content"])
            limit = max(self.max_output_chars, 2000)
            tb = [str(line) for line in content.get("traceback") or []]
            if _size(tb) > limit:
                kept, used = [], 0
                for line in reversed(tb):   # the end of a traceback matters most
                    if used + len(line) > limit:
                        break
                    kept.append(line)
                    used += len(line)
                tb = [_MARKER.format(what="traceback", limit=limit)] + kept[::-1]
            content["traceback"] = tb
            content["evalue"] = _truncate(str(content.get("evalue", "")), limit, "error value")
            content["ename"] = str(content.get("ename", ""))[:200]
            self.total_chars += min(_size(tb), limit)
            return {**msg, "content": content}

        def process_message(self, msg, cell, cell_index):
            try:
                msg_type = msg.get("msg_type")
                if msg_type == "stream":
                    msg = self._cap_stream(msg, cell_index)
                    if msg is None:
                        return None
                elif msg_type in ("display_data", "execute_result", "update_display_data"):
                    msg = self._cap_data(msg, cell_index)
                elif msg_type == "error":
                    msg = self._cap_error(msg, cell_index)
                return super().process_message(msg, cell, cell_index)
            except (CellExecutionComplete, DeadKernelError):
                raise
            except Exception:   # noqa: BLE001 - signed but malformed: only learner code sends such
                Dropped.count += 1
                return None

        # -- timeouts --------------------------------------------------------
        async def _async_handle_timeout(self, timeout, cell=None):
            index = self.current_index
            if index is not None and index not in self.timed_out_cells:
                self.timed_out_cells.append(index)
            self.timeouts_in_cell += 1
            if self.timeouts_in_cell > 1:
                # The interrupt did not end the cell within another timeout
                # period (e.g. KeyboardInterrupt is caught): kill the kernel.
                self.kernel_unresponsive = True
                try:
                    await ensure_async(self.km.shutdown_kernel(now=True))
                except Exception:
                    pass
                raise DeadKernelError("kernel did not respond to the interrupt after the cell timeout")
            return await super()._async_handle_timeout(timeout, cell)

    return CappedClient


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------

def _not_executed_output(reason: str):
    import nbformat
    return nbformat.v4.new_output(
        "error", ename="NotExecuted", evalue=reason,
        traceback=[f"NotExecuted: {reason}"],
    )


def _write_nb(nb, path: Path) -> None:
    import nbformat
    _atomic_write_text(path, nbformat.writes(nb, version=4))


def _parse_args(argv):
    p = argparse.ArgumentParser(description="Execute a notebook for autograding.")
    p.add_argument("input", type=Path)
    p.add_argument("output", type=Path)
    p.add_argument("--cell-timeout", type=float, required=True,
                   help="seconds per cell before the kernel is interrupted")
    p.add_argument("--max-output-chars", type=int, default=DEFAULT_MAX_OUTPUT_CHARS)
    p.add_argument("--max-total-output-chars", type=int, default=DEFAULT_MAX_TOTAL_OUTPUT_CHARS)
    p.add_argument("--max-image-bytes", type=int, default=DEFAULT_MAX_IMAGE_BYTES)
    p.add_argument("--kernel-env-json", default=None,
                   help="JSON object of environment variables for the kernel, applied "
                        "on top of the runner's environment (null removes a variable)")
    p.add_argument("--startup-timeout", type=float, default=60.0)
    args = p.parse_args(argv)
    if args.cell_timeout <= 0:
        p.error("--cell-timeout must be > 0")
    for name in ("max_output_chars", "max_total_output_chars", "max_image_bytes"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be > 0")
    return args


class GradingFiles:
    """Keeps the hidden tests' files (``$COURSE_GRADING_DIR``) intact while learner code runs.

    The cases are read once before the first cell. An item's recorded results are taken right after
    its own hidden test cell ran; from then on they are the item's results: a later cell that deletes
    or changes them gets them put back, and a results file that appears outside its own hidden test
    cell is removed. The first cell after which anything had to be put back or removed is reported.
    This adds no trust (learner code could always write numbers; the grader judges them by content):
    it keeps what each hidden test recorded from being replaced by what later code writes.
    """

    MAX_BYTES = 256 * 2**20

    def __init__(self):
        grading = os.environ.get("COURSE_GRADING_DIR")
        self.root = Path(grading) if grading else None
        self.cases = self._read("cases")
        self.results: dict[str, bytes] = {}

    def _read(self, sub, names=None) -> dict[str, bytes]:
        found, total = {}, 0
        folder = self.root / sub if self.root else None
        if folder is None or not folder.is_dir():
            return found
        for path in sorted(folder.iterdir()):
            if names is not None and path.name not in names:
                continue
            if path.is_file() and not path.is_symlink() and not path.name.startswith("."):
                total += path.stat().st_size
                if total > self.MAX_BYTES:
                    break
                found[path.name] = path.read_bytes()
        return found

    def _restore(self, sub, files) -> bool:
        folder = self.root / sub
        damaged = False
        for name, data in files.items():
            path = folder / name
            try:
                intact = path.is_file() and not path.is_symlink() and path.read_bytes() == data
            except OSError:
                intact = False
            if not intact:
                damaged = True
                try:
                    if path.is_symlink() or path.exists():
                        path.unlink()
                    folder.mkdir(parents=True, exist_ok=True)
                    _atomic_write_bytes(path, data)
                except OSError:
                    pass
        return damaged

    def _remove_strays(self) -> bool:
        """Results files that no hidden test cell recorded (written by other code) are removed."""
        folder = self.root / "results"
        removed = False
        for path in folder.iterdir() if folder.is_dir() else []:
            if path.name not in self.results and not path.name.startswith("."):
                removed = True
                try:
                    shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
                except OSError:
                    pass
        return removed

    def after_cell(self, item=None) -> bool:
        """Take ``item``'s results if the cell was its hidden test; put back what the cell removed or
        changed; True if anything had to be put back or removed."""
        if self.root is None:
            return False
        if item is not None:
            self.results.update(self._read("results", {f"{item}.json", f"{item}.npz"}))
        damaged = self._restore("cases", self.cases)
        damaged |= self._restore("results", self.results)
        damaged |= self._remove_strays()
        return damaged


def _hidden_test_item(cell):
    """The item whose hidden test ``cell`` is (nbgrader metadata grade_id "test_<item>"), else None."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    grade_id = str(meta.get("grade_id", ""))
    return grade_id[len("test_"):] if meta.get("grade") and grade_id.startswith("test_") else None


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _ipc_address(runtime_dir: Path) -> str:
    """Kernel channels use Unix sockets (the sandbox has no network at all)."""
    path = str(runtime_dir.resolve() / "k")
    if len(path) + len("-65535") < 100:
        return path
    # Too long for sun_path: use an abstract socket (per network namespace).
    return f"@autograde-kernel-{os.getpid()}-{os.urandom(6).hex()}"


def run(args) -> int:
    out_path: Path = args.output
    status = Status(out_path.parent / "run_status.json")
    status.write()
    workdir = Path.cwd()
    _ensure_environment(workdir)

    import nbformat

    # ---- read and validate the input notebook
    try:
        with open(args.input, encoding="utf-8") as f:
            nb = nbformat.read(f, as_version=4)
        nbformat.validate(nb)
        for cell in nb.cells:
            _ = cell.cell_type, cell.source
    except Exception as exc:   # anything at all: the input is unusable
        msg = f"cannot read notebook {str(args.input)!r}: {type(exc).__name__}: {exc}"
        status.data["error"] = msg[:4000]
        empty = nbformat.v4.new_notebook()
        empty.metadata["autograder"] = {"error": status.data["error"]}
        _write_nb(empty, out_path)
        status.write()
        print(status.data["error"], file=sys.stderr)
        return 2

    # ---- fail closed: discard learner-supplied outputs
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.execution_count = None
            cell.outputs = [_not_executed_output("this cell was not executed")] \
                if cell.source.strip() else []
    _write_nb(nb, out_path)

    from traitlets.config import Config
    from nbclient.exceptions import DeadKernelError

    kernel_env = _kernel_env(args.kernel_env_json)
    runtime_dir = Path(os.environ["JUPYTER_RUNTIME_DIR"])
    config = Config()
    config.KernelManager.transport = "ipc"
    config.KernelManager.ip = _ipc_address(runtime_dir)
    config.KernelManager.client_factory = _tolerant_kernel_client_class()
    client_cls = _make_client_class()
    client = client_cls(
        nb,
        max_output_chars=args.max_output_chars,
        max_total_chars=args.max_total_output_chars,
        max_image_bytes=args.max_image_bytes,
        config=config,
        kernel_name="python3",
        timeout=args.cell_timeout,
        startup_timeout=args.startup_timeout,
        allow_errors=True,
        interrupt_on_timeout=True,
        shutdown_kernel="immediate",
        resources={"metadata": {"path": str(Path(args.input).resolve().parent)}},
        extra_arguments=["--HistoryManager.enabled=False"],
    )

    executed = 0
    died_at = None
    grading_files = GradingFiles()
    try:
        with client.setup_kernel(env=kernel_env):
            try:
                info = client.wait_for_reply(client.kc.kernel_info())
                if info and "language_info" in info.get("content", {}):
                    nb.metadata["language_info"] = info["content"]["language_info"]
            except Exception:
                pass
            for index, cell in enumerate(nb.cells):
                if cell.cell_type != "code" or not cell.source.strip():
                    continue
                client.current_index = index
                client.timeouts_in_cell = 0
                try:
                    client.execute_cell(cell, index, execution_count=executed + 1)
                except DeadKernelError:
                    died_at = index
                    break
                executed += 1
                if grading_files.after_cell(_hidden_test_item(cell)) and \
                        status.data["workdir_damaged_at_cell"] is None:
                    status.data["workdir_damaged_at_cell"] = index
                status.data.update(cells_executed=executed, dropped_messages=Dropped.count,
                                   timed_out_cells=list(client.timed_out_cells))
                _write_nb(nb, out_path)
                status.write()
            client.set_widgets_metadata()
    except Exception as exc:
        if died_at is None and executed == 0 and client.kc is None:
            error = f"the kernel failed to start: {type(exc).__name__}: {exc}"
        else:
            error = f"runner error: {type(exc).__name__}: {exc}"
        status.data.update(error=error[:4000], cells_executed=executed, dropped_messages=Dropped.count,
                           timed_out_cells=list(client.timed_out_cells),
                           kernel_died_at_cell=died_at)
        traceback.print_exc()
        _write_nb(nb, out_path)
        status.write()
        return 1

    status.data.update(cells_executed=executed, timed_out_cells=list(client.timed_out_cells),
                       kernel_died_at_cell=died_at, dropped_messages=Dropped.count)
    if died_at is not None:
        reason = ("the kernel did not respond to the interrupt after the cell timeout "
                  "and was killed" if client.kernel_unresponsive else "the kernel died")
        cell = nb.cells[died_at]
        cell.outputs = [o for o in cell.outputs
                        if not (o.get("output_type") == "error" and o.get("ename") == "NotExecuted")]
        cell.outputs.append(nbformat.v4.new_output(
            "error", ename="DeadKernelError",
            evalue=f"{reason} while executing this cell",
            traceback=[f"DeadKernelError: {reason} while executing this cell"]))
        for later in nb.cells[died_at + 1:]:
            if later.cell_type == "code" and later.source.strip():
                later.outputs = [_not_executed_output(
                    f"not executed: {reason} in cell {died_at}")]
        status.data.update(ok=False, error=f"{reason} in cell {died_at}")
    else:
        status.data.update(ok=True, error=None)
    _write_nb(nb, out_path)
    status.write()
    return 0 if status.data["ok"] else 1


def main(argv=None) -> int:
    args = _parse_args(argv)
    try:
        return run(args)
    except Exception as exc:   # last resort: keep the status file meaningful
        traceback.print_exc()
        try:
            st = Status(args.output.parent / "run_status.json")
            st.data["error"] = f"runner crashed: {type(exc).__name__}: {exc}"[:4000]
            st.write()
        except Exception:
            pass
        return 1


if __name__ == "__main__":
    sys.exit(main())
