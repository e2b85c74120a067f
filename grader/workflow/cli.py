"""`course`: the instructor's one tool. A thin shell over ``grader.workflow.course``.

    course init       [--exchange DIR]           create the course folder and nbgrader config
    course release    CHAPTER|all                 learner notebooks -> release/, notebooks/ (and the exchange)
    course collect    CHAPTER [--zips DIR]        submissions from the exchange, or from LMS zip files
    course autograde  CHAPTER [--student S ...] [--workers N | --cluster ADDRESS] [--force]
    course feedback   CHAPTER                     HTML feedback per learner (returned via the exchange if any)
    course export     CHAPTER [--out FILE]        grades CSV: totals, points per function, reasons
    course status     CHAPTER                     summary table of the class
    course isolation                              what the sandbox guarantees on this machine
    course doctor     [CHAPTER ...]               isolation, then the preflight: can this machine grade?
    course serve      [--interval S] [--once]     grade each Submit and return feedback (see deploy/hub/)

Every command takes --course DIR (default: $COURSE_DIR or ./course).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import course
from .distribute import ClusterError


def _chapters(arg):
    return course.chapters() if arg == "all" else [arg]


def cmd_init(args):
    config = course.init_course(args.course, Path(args.exchange) if args.exchange else None, args.isolation or "")
    print(f"Course folder ready: {config.parent} (configuration in {config.name})")


def cmd_release(args):
    for chapter in _chapters(args.chapter):
        released = course.release_assignment(args.course, chapter,
                                             None if args.no_notebooks else course.NOTEBOOKS)
        print(f"{chapter}: released to {released}" + ("" if args.no_notebooks else " and notebooks/"))


def cmd_collect(args):
    if args.zips:
        report = course.collect_from_zips(args.course, args.chapter, Path(args.zips))
    else:
        report = course.collect_from_exchange(args.course, args.chapter)
    print(f"{args.chapter}: collected {len(report.collected)} submission(s)")
    for source, problem in report.problems.items():
        print(f"  ! {source}: {problem}")


def cmd_autograde(args):
    from tqdm import tqdm

    students = args.student or course.submitted_students(args.course, args.chapter)
    if not students:
        print(f"{args.chapter}: nothing to grade: no submissions in {Path(args.course) / 'submitted'}")
        return 1
    with tqdm(total=len(students), desc=f"autograde {args.chapter}", unit="learner") as bar:
        try:
            runs = course.autograde(args.course, args.chapter, students, args.workers,
                                    progress=lambda run: bar.update(1), cluster=args.cluster,
                                    force=args.force or bool(args.student))
        except ClusterError as exc:
            print(f"{args.chapter}: {exc}", file=sys.stderr)
            return 2
    refused = course.worker_report(args.course, args.chapter).get("refused") or {}
    for worker, problems in refused.items():
        print(f"  ! worker {worker} took no learners: {'; '.join(problems)}")
    failed = [r for r in runs if not r.ok]
    print(f"{args.chapter}: graded {len(runs) - len(failed)} of {len(runs)} submission(s)")
    for r in failed:
        print(f"  ! {r.student}: {r.error}")
    return print_status(args.course, args.chapter)


def print_status(root, chapter):
    rows = course.results(root, chapter)
    if not rows:
        print("no learners yet")
        return 0
    width = max(len(r.student) for r in rows)
    print(f"{'student':<{width}}  {'score':>9}  status")
    for r in rows:
        score = "-" if r.score is None else f"{r.score:g}/{r.max_score:g}"
        print(f"{r.student:<{width}}  {score:>9}  {r.status}")
        for message in r.messages[:6]:
            print(f"{'':<{width}}    - {message}")
    return 0


def cmd_status(args):
    return print_status(args.course, args.chapter)


def cmd_feedback(args):
    problems = {}
    folder = course.generate_feedback(args.course, args.chapter, problems)
    print(f"{args.chapter}: feedback written to {folder}")
    for student, problem in problems.items():
        print(f"  ! {student}: nbgrader could not make this feedback ({problem}); a page of verdicts was written")


def cmd_export(args):
    out = course.export_grades(args.course, args.chapter, Path(args.out or f"grades-{args.chapter}.csv"))
    print(f"{args.chapter}: grades written to {out}")


def cmd_isolation(args):
    from ..isolation import sandbox

    iso = sandbox.detect_isolation()
    print(f"isolation mode: {iso.mode}")
    for line in iso.guarantees:
        print(f"  + {line}")
    for line in iso.missing:
        print(f"  - {line}")
    print("`course doctor` checks that grading works here: each chapter's solution must score full marks "
          "and its released notebook zero.")


def cmd_doctor(args):
    """The isolation report, then the preflight of every (or the given) chapter, graded as a class would be."""
    import tempfile

    from .preflight import run_preflight

    cmd_isolation(args)
    chapters = args.chapter or course.chapters()
    failed = 0
    with tempfile.TemporaryDirectory(prefix="course-doctor-") as tmp:
        use_course = (Path(args.course) / "nbgrader_config.py").is_file()
        root = Path(args.course) if use_course else Path(tmp) / "course"
        if not use_course:
            course.init_course(root)
            print(f"\n(no course folder at {args.course}: checking with a fresh one and the default limits)")
        print()
        for chapter in chapters:
            course._check_chapter(chapter)
            if not (root / "release" / chapter).is_dir():
                course.release_assignment(root, chapter, None)
            report = run_preflight(root, chapter, use_cache=False)
            failed += not report.ok
            print(report.summary(), flush=True)
    print(f"\n{len(chapters) - failed} of {len(chapters)} chapter(s) can be graded here.")
    return 1 if failed else 0


def cmd_serve(args):
    """Grade what learners hand in through the exchange, and return their feedback (grader.workflow.serve)."""
    from .serve import main_serve

    return main_serve(args.course, once=args.once, show=args.status, min_interval=args.interval, poll=args.poll,
                      workers=args.workers, cluster=args.cluster)


def build_parser():
    parser = argparse.ArgumentParser(prog="course", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--course", type=Path, default=Path(os.environ.get("COURSE_DIR", "course")),
                        help="the course folder (default: $COURSE_DIR or ./course)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("init", help="create the course folder")
    p.add_argument("--exchange", help="nbgrader exchange folder (for JupyterHub submissions)")
    p.add_argument("--isolation", choices=["root", "userns", "none"], help="force a sandbox mode")
    p.set_defaults(func=cmd_init)
    p = sub.add_parser("release", help="make the learner version of a chapter")
    p.add_argument("chapter")
    p.add_argument("--no-notebooks", action="store_true", help="do not update the repo's notebooks/")
    p.set_defaults(func=cmd_release)
    p = sub.add_parser("collect", help="collect submissions")
    p.add_argument("chapter")
    p.add_argument("--zips", help="folder of LMS zip files named <student>.zip")
    p.set_defaults(func=cmd_collect)
    p = sub.add_parser("autograde", help="grade submissions in the sandbox")
    p.add_argument("chapter")
    p.add_argument("--student", action="append", help="only this learner (repeatable)")
    p.add_argument("--workers", type=int, default=None,
                   help="grading processes on this machine (default: number of cores; ignored with --cluster)")
    p.add_argument("--cluster", help="address of a running Dask scheduler (tcp:// on this machine, or tls://)")
    p.add_argument("--force", action="store_true",
                   help="regrade learners whose submission was already recorded (default: resume)")
    p.set_defaults(func=cmd_autograde)
    for name, func, text in (("feedback", cmd_feedback, "write feedback"), ("status", cmd_status, "class summary")):
        p = sub.add_parser(name, help=text)
        p.add_argument("chapter")
        p.set_defaults(func=func)
    p = sub.add_parser("export", help="grades CSV")
    p.add_argument("chapter")
    p.add_argument("--out", help="CSV path (default: grades-CHAPTER.csv)")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("isolation", help="what the sandbox guarantees here")
    p.set_defaults(func=cmd_isolation)
    p = sub.add_parser("doctor", help="prove that grading works here (solution full marks, release zero)")
    p.add_argument("chapter", nargs="*", help="chapters to check (default: all)")
    p.set_defaults(func=cmd_doctor)
    p = sub.add_parser("serve", help="grade each submission from the exchange and release its feedback")
    p.add_argument("--interval", type=float, default=None,
                   help="seconds between two graded submissions of one learner and chapter (default 600)")
    p.add_argument("--poll", type=float, default=None, help="seconds between two looks at the exchange (default 10)")
    p.add_argument("--workers", type=int, default=None, help="grading processes on this machine (default 1)")
    p.add_argument("--cluster", help="address of a running Dask scheduler instead of local workers")
    p.add_argument("--once", action="store_true", help="one look at the exchange, grade what is due, then stop")
    p.add_argument("--status", action="store_true", help="print the queue: every submission and what became of it")
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except course.CourseError as exc:
        print(f"course: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
