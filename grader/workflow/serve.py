"""`course serve`: grading after Submit, without the instructor.

A long-running loop (a systemd unit in ``deploy/hub/``) over the protected exchange
(``grader.workflow.exchange``):

1. **notice**: every submission in ``inbound/LEARNER/`` is entered once in a queue that lives in the
   course folder (``serve/queue.sqlite``), so a restart forgets nothing;
2. **choose**: per learner and chapter, the newest finished submission is graded (older waiting ones are
   *superseded*, kept in the exchange and named in the queue), at most one every ``min_interval``
   seconds (the rate limit; a submission that must wait gets a page saying until when, through
   *Fetch Feedback*);
3. **grade**: copy it to ``submitted/`` (regular files only), then ``course.autograde`` with the same
   rules as ``course autograde`` (preflight first, sandbox; a preflight that fails grades nobody and
   the queue waits);
4. **return**: nbgrader's feedback for that learner (or a page of verdicts and problems when nbgrader
   cannot make one) is released through the exchange, readable by that learner only.

A submission is marked *graded* only after its feedback is released. Grading that was cut short (a
restart, a crash) is picked up again: a submission whose very files were already recorded in the
gradebook is not graded again (``course.already_recorded``), only its feedback is made.
"""
from __future__ import annotations

import os
import signal
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from . import course, exchange

QUEUE = "serve/queue.sqlite"
# Queue states: waiting -> grading -> graded; or superseded (a newer one of the same learner and chapter was
# chosen), incomplete (never finished by nbgrader, e.g. a full quota), problem (cannot be graded: says why).
SCHEMA = """
create table if not exists submissions (
    key text primary key, student text not null, chapter text not null, timestamp text not null,
    seen_at real not null, state text not null default 'waiting', started_at real, finished_at real,
    noted text, message text not null default ''
)"""


@dataclass
class ServeSettings:
    exchange_root: Path
    course_id: str = course.COURSE_ID
    min_interval: float = 600.0       # seconds between two graded submissions of one learner and chapter
    poll: float = 10.0                # seconds between two looks at the exchange
    settle: float = 2.0               # a submission untouched this long is finished being written
    incomplete_after: float = 300.0   # an unfinished submission this old was abandoned (quota, crash)
    workers: int = 1
    cluster: str | None = None

    @classmethod
    def from_course(cls, root: Path, **overrides) -> "ServeSettings":
        from traitlets.config.loader import PyFileConfigLoader

        path = Path(root) / "nbgrader_config.py"
        config = PyFileConfigLoader(path.name, path=str(path.parent)).load_config()
        exchange_root = config.get("Exchange", {}).get("root")
        if not exchange_root:
            raise course.CourseError(f"{root} has no exchange: run `course init --exchange DIR` first")
        return cls(Path(exchange_root), **{k: v for k, v in overrides.items() if v is not None})


class Queue:
    """The persistent record of every submission seen and what became of it."""

    def __init__(self, root: Path):
        path = Path(root) / QUEUE
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute("pragma journal_mode=wal")
        self.db.execute(SCHEMA)

    def close(self):
        self.db.close()

    def add(self, sub: exchange.Submission, now: float) -> bool:
        cur = self.db.execute("insert or ignore into submissions (key, student, chapter, timestamp, seen_at) "
                              "values (?, ?, ?, ?, ?)", (sub.key, sub.student, sub.chapter, sub.timestamp, now))
        return cur.rowcount == 1

    def set(self, key: str, state: str, message: str | None = None, **times):
        fields = ["state = ?"] + (["message = ?"] if message is not None else []) + [f"{k} = ?" for k in times]
        values = [state] + ([message] if message is not None else []) + list(times.values())
        self.db.execute(f"update submissions set {', '.join(fields)} where key = ?", (*values, key))

    def note(self, key: str, text: str):
        self.db.execute("update submissions set noted = ? where key = ?", (text, key))

    def rows(self, state: str | None = None) -> list[sqlite3.Row]:
        if state:
            return list(self.db.execute("select * from submissions where state = ? order by key", (state,)))
        return list(self.db.execute("select * from submissions order by seen_at, key"))

    def last_graded_start(self, student: str, chapter: str) -> float | None:
        row = self.db.execute("select max(started_at) from submissions where student = ? and chapter = ? and "
                              "state in ('grading', 'graded')", (student, chapter)).fetchone()
        return row[0]

    def recover(self) -> list[str]:
        """Grading cut short by a restart goes back to waiting (graded again, or only its feedback made)."""
        keys = [r["key"] for r in self.rows("grading")]
        for key in keys:
            self.set(key, "waiting", "grading was interrupted (the service stopped); it is picked up again")
        return keys


def _log(message: str):
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", flush=True)


def _note_page(title: str, text: str) -> bytes:
    import html

    return (f"<html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>").encode()


class Server:
    """One course's grading service: ``step()`` is one look at the exchange; ``run()`` loops until stopped."""

    def __init__(self, root: Path, settings: ServeSettings, clock=time.time):
        self.root = Path(root)
        course._require_course(self.root)
        self.settings = settings
        self.clock = clock
        self.queue = Queue(self.root)
        self.stopping = False
        self._local = None
        for key in self.queue.recover():
            _log(f"{key}: grading was interrupted; picked up again")

    # --- one look ---------------------------------------------------------------------------------------
    def scan(self) -> dict[str, exchange.Submission]:
        found, problems = exchange.find_submissions(self.settings.exchange_root, self.settings.course_id)
        for problem in problems:
            _log(f"exchange: {problem}")
        now = self.clock()
        chapters = set(course.chapters())
        for sub in found:
            if self.queue.add(sub, now):
                _log(f"{sub.key}: noticed")
                if sub.chapter not in chapters:
                    self.queue.set(sub.key, "problem", f"{sub.chapter!r} is not a chapter of this course")
        return {sub.key: sub for sub in found}

    def _ready(self, sub: exchange.Submission | None, row, now: float) -> bool | None:
        """True: finished and settled; False: still being written; None: abandoned or gone."""
        if sub is None or not sub.path.is_dir():
            return None
        if not sub.complete:
            try:
                age = now - os.lstat(sub.path).st_mtime
            except OSError:
                return None
            return None if age > self.settings.incomplete_after else False
        return now - os.lstat(sub.path / "submission_secret.txt").st_mtime >= self.settings.settle

    def choose(self, found: dict) -> list[exchange.Submission]:
        """The submissions to grade now: per learner and chapter the newest ready one, if the rate limit allows."""
        now = self.clock()
        groups: dict[tuple, list] = {}
        for row in self.queue.rows("waiting"):
            groups.setdefault((row["student"], row["chapter"]), []).append(row)
        chosen = []
        for (student, chapter), rows in sorted(groups.items()):
            rows.sort(key=lambda r: (r["timestamp"], r["key"]), reverse=True)
            ready = []
            for row in rows:
                state = self._ready(found.get(row["key"]), row, now)
                if state is None:
                    gone = found.get(row["key"]) is None
                    self.queue.set(row["key"], "incomplete",
                                   "the submission disappeared from the exchange before grading" if gone else
                                   "nbgrader never finished writing this submission (a full quota or an "
                                   "interrupted Submit); submit again", finished_at=now)
                    _log(f"{row['key']}: {'gone' if gone else 'incomplete'}; not graded")
                elif state:
                    ready.append(row)
            if not ready:
                continue
            newest, older = ready[0], ready[1:]
            for row in older:
                self.queue.set(row["key"], "superseded", f"a newer submission ({newest['timestamp']}) was graded "
                                                         f"instead", finished_at=now)
                self._tell(found[row["key"]], "Not graded: a newer submission replaced this one",
                           f"You submitted again at {newest['timestamp']}; that newer submission is graded.")
            last = self.queue.last_graded_start(student, chapter)
            if last is not None and now < last + self.settings.min_interval:
                when = time.strftime("%H:%M:%S", time.localtime(last + self.settings.min_interval))
                text = (f"Submissions are graded at most once every {self.settings.min_interval / 60:g} minutes per "
                        f"chapter. This one is queued and will be graded at about {when}; if you submit again "
                        f"before then, only the newest is graded.")
                if newest["noted"] != text:
                    self._tell(found[newest["key"]], "Queued for grading", text)
                    self.queue.note(newest["key"], text)
                continue
            chosen.append(found[newest["key"]])
        return chosen

    def _tell(self, sub: exchange.Submission, title: str, text: str):
        """A page through Fetch Feedback for a submission that is not (yet) graded."""
        try:
            for notebook in course.expected_notebooks(sub.chapter):
                exchange.release_feedback_file(self.settings.exchange_root, self.settings.course_id, sub.student,
                                               sub.secret(), notebook[:-len(".ipynb")],
                                               _note_page(f"{sub.chapter}: {title}", text))
        except (OSError, ValueError, exchange.ExchangeSetupError) as exc:
            _log(f"{sub.key}: could not tell the learner ({exc})")

    def grade(self, subs: list[exchange.Submission]) -> None:
        by_chapter: dict[str, list] = {}
        for sub in subs:
            by_chapter.setdefault(sub.chapter, []).append(sub)
        for chapter, group in sorted(by_chapter.items()):
            now = self.clock()
            students = []
            for sub in group:
                self.queue.set(sub.key, "grading", "", started_at=now)
                try:
                    problems = exchange.copy_submission(sub, self.root / "submitted" / sub.student / chapter)
                except OSError as exc:     # the course's disk is full, or similar: keep it waiting
                    self.queue.set(sub.key, "waiting", f"could not be copied for grading ({exc}); tried again "
                                                       f"later", started_at=None)
                    _log(f"{sub.key}: could not be copied ({exc}); waiting")
                    continue
                if problems:
                    course._write_problems(self.root, chapter, sub.student, problems, "collect")
                students.append(sub)
            if not students:
                continue
            # One learner at a time on the service's own workers: each gets feedback as soon as it is graded.
            for sub in students:
                _log(f"{sub.key}: grading")
                try:
                    runs = course.autograde(self.root, chapter, [sub.student], workers=self.settings.workers,
                                            cluster=self.cluster_address(), force=False)
                except course.CourseError as exc:   # GradingUnavailable too: nobody is graded, everyone waits
                    for waiting in students[students.index(sub):]:
                        self.queue.set(waiting.key, "waiting", f"grading unavailable: {str(exc)[:500]}",
                                       started_at=None)
                        self._tell(waiting, "Waiting: grading is unavailable right now",
                                   "The grader could not prove that it grades correctly on this machine, so it "
                                   "graded nobody. Your instructor is told; your submission is kept and graded "
                                   "as soon as that is fixed.")
                    _log(f"{chapter}: grading unavailable, nobody graded: {exc}")
                    break
                for run in runs or []:
                    if not run.ok:
                        _log(f"{sub.key}: {run.error}")
                self._return_feedback(sub)
        self._give_course_back()

    def cluster_address(self) -> str:
        """The grading workers: the given Dask scheduler, or a local cluster this service keeps while it runs
        (started once, so each submission pays neither the start nor the workers' imports)."""
        if self.settings.cluster:
            return self.settings.cluster
        if self._local is None:
            import dask
            from distributed import LocalCluster

            from .distribute import ALLOWED_FAILURES

            dask.config.set({"distributed.scheduler.allowed-failures": ALLOWED_FAILURES})
            self._local = LocalCluster(n_workers=max(1, self.settings.workers), threads_per_worker=1,
                                       processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0")
        return self._local.scheduler_address

    def close(self):
        if self._local is not None:
            self._local.close()
            self._local = None
        self.queue.close()

    def _return_feedback(self, sub: exchange.Submission) -> None:
        chapter, student = sub.chapter, sub.student
        [row] = [r for r in course.results(self.root, chapter) if r.student == student] or [None]
        summary = "not graded" if row is None else (
            f"{row.status}, {'-' if row.score is None else f'{row.score:g}/{row.max_score:g}'}")
        folder = self.root / "feedback" / student / chapter
        proc = course._nbgrader(self.root, "generate_feedback", chapter, "--student", student, "--force",
                                check=False)
        if proc.returncode != 0 or not list(folder.glob("*.html")):
            reason = "; ".join(row.messages[:5]) if row is not None and row.messages else \
                course._autograde_error(proc.stderr)
            course._plain_feedback(self.root, chapter, student, reason)
        try:
            for page in sorted(folder.glob("*.html")):
                exchange.release_feedback_file(self.settings.exchange_root, self.settings.course_id, student,
                                               sub.secret(), page.stem, page.read_bytes())
            message = f"graded ({summary}); feedback released"
        except exchange.ExchangeSetupError as exc:
            # e.g. the learner's account was deleted mid-term: the grade and feedback stay in the course folder.
            message = f"graded ({summary}); feedback not released: {exc}; it is in {folder}"
        except (OSError, ValueError) as exc:
            message = f"graded ({summary}); feedback not released ({exc}); it is in {folder}"
        self.queue.set(sub.key, "graded", message, finished_at=self.clock())
        _log(f"{sub.key}: {message}")

    def _give_course_back(self):
        """Root writes in the course folder; its owner (the instructor) must still be able to use it."""
        if os.geteuid() != 0:
            return
        st = os.stat(self.root)
        if st.st_uid == 0:
            return
        for dirpath, dirnames, filenames in os.walk(self.root):
            for name in [*dirnames, *filenames, "."]:
                path = os.path.join(dirpath, name)
                try:
                    if os.lstat(path).st_uid == 0:
                        os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)
                except OSError:
                    pass

    def step(self) -> None:
        found = self.scan()
        chosen = self.choose(found)
        if chosen:
            self.grade(chosen)

    def run(self) -> None:
        _log(f"course serve: {self.root}, exchange {self.settings.exchange_root}/{self.settings.course_id}, "
             f"one graded submission per learner and chapter every {self.settings.min_interval:g} s")

        def stop(signum, frame):
            self.stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        while not self.stopping:
            started = self.clock()
            try:
                self.step()
            except Exception as exc:  # noqa: BLE001 - the service keeps running; the queue keeps every submission
                _log(f"error in this round (every submission stays queued): {type(exc).__name__}: {exc}")
            while not self.stopping and self.clock() - started < self.settings.poll:
                time.sleep(min(0.5, self.settings.poll))
        self.close()
        _log("course serve: stopped")


def queue_summary(root: Path) -> list[dict]:
    """The queue as plain rows (for `course serve --status` and the tests)."""
    queue = Queue(root)
    try:
        return [dict(r) for r in queue.rows()]
    finally:
        queue.close()


def main_serve(root: Path, once: bool = False, show: bool = False, **overrides) -> int:
    if show:
        for row in queue_summary(root):
            print(f"{row['key']}  {row['state']}  {row['message']}")
        return 0
    server = Server(root, ServeSettings.from_course(root, **overrides))
    if once:
        try:
            server.step()
        finally:
            server.close()
        return 0
    server.run()
    return 0
