"""A correct answer always gets full marks: each chapter's worked solution graded on many fresh seeds.

    .venv/bin/python benchmarks/seed_sweep.py [--chapters 02_backprop 09_rnn_attention] [--seconds 240]
        [--first-seed 1000]

The hidden tests draw new shapes and values from every seed, so a test that is right on the seeds the
test suite uses can still fail a correct answer on a rare draw (a gradient that happens to be near 0, a
mask that makes two conventions agree). For each chapter, the worked solution's answers are graded
in-process by the judge (the same items, references and checks as ``course autograde``, without the
sandbox) on consecutive seeds from ``--first-seed`` for ``--seconds``, and every verdict that is not a pass
is printed with its seed (``grade_in_process(item, namespace, chapter, seed=SEED)`` reproduces it).

Prints, per chapter, the seeds tried and the false failures found. Asserts nothing: it is a search, and
the tests keep what it finds (a case built the way the failing seed drew it).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from chapter_proofs import grade_chapter  # noqa: E402
from conftest import solution_notebook  # noqa: E402
from grader.workflow.course import chapters  # noqa: E402
from grader.workflow.earlier_chapters import solution_namespace  # noqa: E402


def sweep(chapter: str, seconds: float, first_seed: int) -> tuple[int, int]:
    """(seeds tried, false failures) for one chapter; each failure is printed as it is found."""
    namespace = solution_namespace(solution_notebook(chapter))
    start, seed, failures = time.time(), first_seed, 0
    while time.time() - start < seconds:
        for name, verdict in grade_chapter(chapter, namespace, seed).items():
            if not verdict.passed:
                failures += 1
                print(f"  {chapter} seed {seed}, {name}: {verdict.message[:400]}", flush=True)
        seed += 1
    return seed - first_seed, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chapters", nargs="*", default=chapters())
    parser.add_argument("--seconds", type=float, default=240.0, help="time per chapter")
    parser.add_argument("--first-seed", type=int, default=1000)
    args = parser.parse_args()
    for chapter in args.chapters:
        start = time.time()
        tried, failures = sweep(chapter, args.seconds, args.first_seed)
        print(f"{chapter}: {tried} seeds in {time.time() - start:.0f} s, {failures} false failures", flush=True)


if __name__ == "__main__":
    main()
