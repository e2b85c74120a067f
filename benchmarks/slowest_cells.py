"""The slowest cells of each chapter's worked solution: as a learner waits for them, and under the autograder.

    .venv/bin/python benchmarks/slowest_cells.py [--chapters 07_pytorch 09_rnn_attention] [--threads 1]
        [--mode learner|autograde|both] [--top 5] [--busy 0] [--keep DIR]

Every chapter's solution notebook is executed with nbclient outside the sandbox, in a copy of its
folder, in one of two settings:

- ``learner`` (the default): the full-size cells a learner runs in JupyterLab, on the CPU
  (``COURSE_DEVICE=cpu``) with ``--threads`` BLAS/OpenMP threads (default 1: a hub runs many learners
  on one machine, and the torch chapters' set-up cells choose one torch thread). The course's budget
  (issue 20): every cell under ``LEARNER_LIMIT_S`` on a 2-core laptop with one thread, or it says up
  front how long it takes, shows a progress bar and offers a smaller setting; the table marks the cells
  over the limit.
- ``autograde``: the autograder's kernel environment (``NBGRADER_EXECUTION=autograde``, so that
  ``dlcourse.runtime.budget`` picks the autograde sizes, one BLAS thread), against its per-cell limit.

Chapters that ask for functions written as plain loops (chapter 06's naive convolution and max pooling)
are run a second time under the autograder with textbook loop implementations of those functions in place
of the solution's: a correct learner writes them that way, and every cell that calls them must stay far
below the autograder's per-cell limit on a loaded 2-core machine.
``--busy N`` runs N CPU-burning processes meanwhile, to measure on a loaded machine; ``--keep DIR`` writes
the executed notebooks there (to read what their cells printed).

Prints, per chapter and variant, the notebook's total time and its slowest cells. Asserts nothing
(timings belong in benchmarks, not in tests).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from grader.workflow import earlier_chapters  # noqa: E402
from grader.workflow.course import chapters  # noqa: E402
from grader.workflow.nbgrader_plugins import kernel_environment  # noqa: E402
from grader.judge.notebooks import nb_meta  # noqa: E402

CELL_LIMIT_S = 30          # the autograder's per-cell limit (grader/workflow/nbgrader_plugins.py, cell_timeout)
LEARNER_LIMIT_S = 60       # a learner's wait for one cell without warning (issue 20)
AUTOGRADE_ENV = ("NBGRADER_EXECUTION", "MPLBACKEND", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                 "CUDA_VISIBLE_DEVICES")
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")

# Textbook loop implementations: one Python loop per index, a NumPy operation only on one window.
LOOPS = {
    "06_cnn": {
        "conv_forward_naive": '''
def conv_forward_naive(x, w, b, conv_param):
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    H_out = (H + 2 * pad - HH) // stride + 1
    W_out = (W + 2 * pad - WW) // stride + 1
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((N, F, H_out, W_out))
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    window = x_pad[n, :, i * stride:i * stride + HH, j * stride:j * stride + WW]
                    out[n, f, i, j] = np.sum(window * w[f]) + b[f]
    return out, (x, w, b, conv_param)
''',
        "conv_backward_naive": '''
def conv_backward_naive(dout, cache):
    x, w, b, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    _, _, H_out, W_out = dout.shape
    x_pad = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dx_pad = np.zeros_like(x_pad)
    dw = np.zeros_like(w)
    db = np.zeros_like(b)
    for n in range(N):
        for f in range(F):
            for i in range(H_out):
                for j in range(W_out):
                    rows = slice(i * stride, i * stride + HH)
                    cols = slice(j * stride, j * stride + WW)
                    dx_pad[n, :, rows, cols] += w[f] * dout[n, f, i, j]
                    dw[f] += x_pad[n, :, rows, cols] * dout[n, f, i, j]
                    db[f] += dout[n, f, i, j]
    dx = dx_pad[:, :, pad:pad + H, pad:pad + W]
    return dx, dw, db
''',
        "max_pool_forward_naive": '''
def max_pool_forward_naive(x, pool_param):
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, H, W = x.shape
    H_out = (H - ph) // stride + 1
    W_out = (W - pw) // stride + 1
    out = np.zeros((N, C, H_out, W_out))
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    out[n, c, i, j] = np.max(x[n, c, i * stride:i * stride + ph, j * stride:j * stride + pw])
    return out, (x, pool_param)
''',
        "max_pool_backward_naive": '''
def max_pool_backward_naive(dout, cache):
    x, pool_param = cache
    ph, pw, stride = pool_param["pool_height"], pool_param["pool_width"], pool_param["stride"]
    N, C, H_out, W_out = dout.shape
    dx = np.zeros_like(x)
    for n in range(N):
        for c in range(C):
            for i in range(H_out):
                for j in range(W_out):
                    window = x[n, c, i * stride:i * stride + ph, j * stride:j * stride + pw]
                    k, l = np.unravel_index(np.argmax(window), window.shape)
                    dx[n, c, i * stride + k, j * stride + l] += dout[n, c, i, j]
    return dx
''',
    },
}


def _burn(stop_at):
    while time.time() < stop_at:
        sum(i * i for i in range(10_000))


def notebook_for(chapter, variant, solutions):
    source = solutions / chapter / f"{chapter}.ipynb"
    nb = nbformat.read(str(source), as_version=4)
    if variant == "loops":
        for cell in nb.cells:
            grade_id = str(nb_meta(cell).get("grade_id", ""))
            name = grade_id[: -len("_answer")] if grade_id.endswith("_answer") else None
            if name in LOOPS.get(chapter, {}):
                cell.source = LOOPS[chapter][name].strip() + "\n"
    return nb


def _seconds(cell):
    timing = cell.get("metadata", {}).get("execution", {})
    start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
    if not (start and end):
        return None
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def environment(variant, work, threads):
    """The kernel's environment variables for a variant: the autograder's, or a learner's on ``threads`` threads."""
    if variant == "learner":
        env = {name: str(threads) for name in THREAD_ENV}
        env.update(COURSE_DEVICE="cpu", NBGRADER_EXECUTION="", COURSE_QUICK="")
        return env
    # The autograder's kernel environment, except COURSE_GRADING_DIR (hidden-test cells just say they run later).
    return {k: v for k, v in kernel_environment(work).items() if k in AUTOGRADE_ENV}


def run(chapter, variant, cell_timeout, solutions=ROOT / "solutions", threads=1, keep=None):
    """[(seconds, cell index, first line)] of every code cell, and the notebook's total wall time."""
    nb = notebook_for(chapter, variant, solutions)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / chapter
        shutil.copytree(solutions / chapter, work)
        given = earlier_chapters.generate(chapter)
        if given:
            (work / earlier_chapters.FILENAME).write_text(given)
        grading_env = environment(variant, work, threads)
        before = {k: os.environ.get(k) for k in grading_env}
        os.environ.update(grading_env)
        try:
            start = time.perf_counter()
            NotebookClient(nb, timeout=cell_timeout, kernel_name="python3", allow_errors=False,
                           resources={"metadata": {"path": str(work)}}).execute()
            total = time.perf_counter() - start
        finally:
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                nbformat.write(nb, str(keep / f"{chapter}-{variant}.ipynb"))
            for k, v in before.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    rows = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            seconds = _seconds(cell)
            first = next((line for line in cell.source.splitlines() if line.strip()), "")[:60]
            rows.append((seconds or 0.0, index, first))
    return sorted(rows, reverse=True), total


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chapters", nargs="*", default=None, help="default: every chapter in solutions/")
    parser.add_argument("--mode", choices=("learner", "autograde", "both"), default="learner",
                        help="the full cells a learner runs (default), the autograder's, or both")
    parser.add_argument("--threads", type=int, default=1, help="BLAS/OpenMP threads in learner mode (default 1)")
    parser.add_argument("--top", type=int, default=5, help="slowest cells shown per notebook")
    parser.add_argument("--busy", type=int, default=0, help="CPU-burning processes running meanwhile")
    parser.add_argument("--cell-timeout", type=int, default=1800, help="nbclient's limit per cell (s)")
    parser.add_argument("--keep", type=Path, default=None, help="write the executed notebooks into this folder")
    parser.add_argument("--solutions", type=Path, default=ROOT / "solutions",
                        help="another solutions folder, e.g. an older commit's (git archive), to compare with")
    args = parser.parse_args()
    wanted = args.chapters or [c for c in chapters() if (args.solutions / c).is_dir()]
    burners = []
    if args.busy:
        stop_at = time.time() + 3600
        burners = [multiprocessing.Process(target=_burn, args=(stop_at,), daemon=True) for _ in range(args.busy)]
        for p in burners:
            p.start()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {os.cpu_count()} cores, load average {load:.1f} at the start, {args.busy} extra CPU-burning "
          f"processes. learner: full-size cells on the CPU with {args.threads} thread(s), limit {LEARNER_LIMIT_S} s "
          f"per cell unless announced; autograde: the autograder's kernel environment, limit {CELL_LIMIT_S} s")
    try:
        for chapter in wanted:
            variants = ["learner", "solution"] if args.mode == "both" else \
                ["learner"] if args.mode == "learner" else ["solution"]
            if args.mode != "learner" and chapter in LOOPS:
                variants.append("loops")
            for variant in variants:
                rows, total = run(chapter, variant, args.cell_timeout, args.solutions, args.threads, args.keep)
                label = {"learner": f"learner, {args.threads} thread(s)", "solution": "autograde"}.get(
                    variant, "autograde, loops: " + ", ".join(LOOPS.get(chapter, {})))
                limit = LEARNER_LIMIT_S if variant == "learner" else CELL_LIMIT_S
                over = sum(1 for seconds, _, _ in rows if seconds > limit)
                print(f"\n{chapter}  [{label}]  whole notebook {total:.1f} s; {over} cell(s) over {limit} s; "
                      "slowest cells:", flush=True)
                for seconds, index, first in rows[: args.top]:
                    flag = "  OVER" if seconds > limit else ""
                    print(f"  {seconds:7.2f} s  cell {index:>3}  {first}{flag}", flush=True)
    finally:
        for p in burners:
            p.terminate()


if __name__ == "__main__":
    main()
