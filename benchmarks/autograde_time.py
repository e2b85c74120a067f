"""Wall time of autograding: one submission per chapter, and a fake class with 1 and 2 workers.

    .venv/bin/python benchmarks/autograde_time.py [--class-size 8] [--chapter 02_backprop] [--chapters 07_pytorch]
    .venv/bin/python benchmarks/autograde_time.py --class-only        # Dask throughput and scaling alone

The class is graded through Dask (grader/workflow/distribute.py) on a LocalCluster of 1, then 2 worker
processes; the workers' preflight is timed apart (it is remembered on the machine after a pass).

Budget (shared/DESIGN.md section 9): under 30 s per chapter submission on a
2-core CPU. Prints figures; asserts nothing (timings belong here, not in tests).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from conftest import answer_sources, learner_notebook, put_submission  # noqa: E402
from grader.isolation import sandbox  # noqa: E402
from grader.workflow import course  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--class-size", type=int, default=8)
    parser.add_argument("--class-only", action="store_true", help="only the fake class (throughput, scaling)")
    parser.add_argument("--chapter", default="02_backprop", help="chapter graded for the fake class")
    parser.add_argument("--chapters", nargs="*", default=None, help="chapters timed one submission each (default: all)")
    args = parser.parse_args()
    from grader.workflow.preflight import run_preflight
    print(f"machine: {os.cpu_count()} cores; sandbox isolation: {sandbox.detect_isolation().mode}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "course"
        course.init_course(root)
        timed = [] if args.class_only else (args.chapters or course.chapters())
        for chapter in sorted(set(timed) | {args.chapter}):
            course.release_assignment(root, chapter, None)

        if timed:
            print("\none submission per chapter (solution filled into the released notebook), 1 worker;")
            print("the preflight (solution + release, once per chapter and configuration) is timed apart:")
        for chapter in timed:
            start = time.perf_counter()
            check = run_preflight(root, chapter, use_cache=False)
            preflight_s = time.perf_counter() - start
            released = root / "release" / chapter / f"{chapter}.ipynb"
            put_submission(root, chapter, "bench", learner_notebook(released, answer_sources(chapter)))
            start = time.perf_counter()
            [run] = course.autograde(root, chapter, ["bench"], workers=1, preflight=False)
            row = next(r for r in course.results(root, chapter) if r.student == "bench")
            print(f"  {chapter:<26} {time.perf_counter() - start:6.1f} s   score {row.score:g}/{row.max_score:g}"
                  f"   {'ok' if run.ok else run.error}   (preflight {preflight_s:.1f} s, "
                  f"{'passed' if check.ok else 'FAILED'})")

        chapter = args.chapter
        released = root / "release" / chapter / f"{chapter}.ipynb"
        answers = answer_sources(chapter)
        students = [f"learner{i:03d}" for i in range(args.class_size)]
        for i, student in enumerate(students):
            # Every third learner leaves the chapter untouched: a realistic mix of fast and full runs.
            nb = learner_notebook(released, answers if i % 3 else {})
            put_submission(root, chapter, student, nb)
        print(f"\nfake class: {len(students)} submissions of {chapter}, on Dask (a LocalCluster on loopback)")
        start = time.perf_counter()
        course.autograde(root, chapter, students[:1], workers=1)
        print(f"  first run with the workers' preflight: {time.perf_counter() - start:6.1f} s (remembered afterwards)")
        rates = {}
        for workers in (1, 2):
            start = time.perf_counter()
            runs = course.autograde(root, chapter, students, workers=workers)
            elapsed = time.perf_counter() - start
            failed = sum(not r.ok for r in runs)
            rates[workers] = len(students) / elapsed * 60
            print(f"  {workers} worker(s): {elapsed:6.1f} s total, {elapsed / len(students):5.2f} s per submission, "
                  f"{rates[workers]:5.1f} submissions/min, {failed} failed")
        print(f"  scaling from 1 to 2 workers: {rates[2] / rates[1]:.2f}x")


if __name__ == "__main__":
    main()
