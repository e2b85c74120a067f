"""A protected nbgrader exchange: one folder per learner, guarded by Unix ownership, not by secret names.

nbgrader's default exchange puts every learner's submission in one shared ``inbound/`` folder, as a
folder of mode 0777 with files of mode 0644, "hidden" by a name with a timestamp and a random string;
its feedback lands in one shared ``feedback/`` folder as files named by a hash of a secret. Both
names sit in the learner's cache under their home folder (``~/.local/share/jupyter/nbgrader_cache``),
which is readable by everyone wherever homes are 0755 (useradd's default), and a learner may submit
as anyone (``--student=bob``). So one learner can read and change another's work (jupyter/nbgrader#1225).

Here the kernel's permission checks do the protecting, and nbgrader's learner interface (the
Assignments panel: fetch, submit, fetch feedback; ``nbgrader list``) keeps working unchanged::

    EXCHANGE/                          root      root      0755
      COURSE/                          owner     owner     0755
        outbound/                      owner     owner     0755  released chapters, read by everyone
        inbound/                       owner     owner     0711  nobody but the owner can list it
          LEARNER/                     owner     LEARNER   0770  only LEARNER (by their private group)
            LEARNER+CH+TIME+RANDOM/    LEARNER   LEARNER   0777  nbgrader's submission (safe inside 0770)
        feedback/                      owner     owner     0711  nobody but the owner can list it
          HASH.html                    owner     LEARNER   0640  only LEARNER reads it, nobody writes it

``owner`` is the instructor's account (the course owner). ``LEARNER`` is the learner's Unix account and
its user-private group (Debian's and Ubuntu's default): ``enroll`` refuses a learner whose primary group
has other members, since they could then read each other's work. A learner's folder is made by root
when they first log in to the hub (``deploy/hub/jupyterhub_config.py`` calls ``enroll`` before their
server starts). The learner's name comes from the folder it is in, which only that account can write:
nobody can hand in work under another name. Feedback files are given to the learner's group, which
only root can do, so feedback is released by ``course serve`` (run as root); ``release_feedback_file``
writes it.

Why not only nbgrader's settings or a group per course: any layout where learners share one writable
folder, or one group, lets them reach each other's entries; a folder per learner with the learner's
own group needs no ACLs and no trust in file names, and nbgrader's exchange interface lets the
learner-side commands use it with a few lines (the ``Exchange*`` classes at the end, chosen in
nbgrader's configuration: ``EXCHANGE_CONFIG``).
"""
from __future__ import annotations

import base64
import glob
import grp
import os
import pwd
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from nbgrader.exchange.default.collect import ExchangeCollect as _DefaultCollect
from nbgrader.exchange.default.fetch_assignment import ExchangeFetchAssignment as _DefaultFetchAssignment
from nbgrader.exchange.default.fetch_feedback import ExchangeFetchFeedback as _DefaultFetchFeedback
from nbgrader.exchange.default.list import ExchangeList as _DefaultList
from nbgrader.exchange.default.release_assignment import ExchangeReleaseAssignment as _DefaultReleaseAssignment
from nbgrader.exchange.default.release_feedback import ExchangeReleaseFeedback as _DefaultReleaseFeedback
from nbgrader.exchange.default.submit import ExchangeSubmit as _DefaultSubmit
from nbgrader.utils import check_directory, check_mode, notebook_hash, parse_utc

# nbgrader's ExchangeFactory settings that select this exchange (learners' and instructor's config).
EXCHANGE_CONFIG = {
    "fetch_assignment": "grader.workflow.exchange.ExchangeFetchAssignment",
    "fetch_feedback": "grader.workflow.exchange.ExchangeFetchFeedback",
    "submit": "grader.workflow.exchange.ExchangeSubmit",
    "list": "grader.workflow.exchange.ExchangeList",
    "collect": "grader.workflow.exchange.ExchangeCollect",
    "release_assignment": "grader.workflow.exchange.ExchangeReleaseAssignment",
    "release_feedback": "grader.workflow.exchange.ExchangeReleaseFeedback",
}
MAX_SUBMISSION_BYTES = 100 * 2**20
LEARNER_NAME = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")


class ExchangeSetupError(Exception):
    """The exchange cannot be made safe as asked (an unknown account, a shared group, not root)."""


def _ensure_dir(path: Path, uid: int, gid: int, mode: int) -> None:
    """``path`` exists as a real folder (never a link) with exactly this owner, group and mode."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        raise ExchangeSetupError(f"{path} exists and is not a folder; remove it and try again")
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(path, uid, gid, follow_symlinks=False)
    os.chmod(path, mode)


def private_group(learner: str) -> int:
    """The learner's primary group, if it is theirs alone; otherwise ExchangeSetupError says why."""
    try:
        account = pwd.getpwnam(learner)
    except KeyError:
        raise ExchangeSetupError(f"{learner!r} has no Unix account on this machine") from None
    gid = account.pw_gid
    sharing = sorted({p.pw_name for p in pwd.getpwall() if p.pw_gid == gid and p.pw_name != learner}
                     | {m for m in _group_members(gid) if m != learner})
    if sharing:
        raise ExchangeSetupError(f"{learner}'s primary group (gid {gid}) is shared with {', '.join(sharing[:5])}: "
                                 f"their work would be readable by each other. Give each learner a private group "
                                 f"(useradd's default on Debian and Ubuntu: USERGROUPS_ENAB yes).")
    return gid


def _group_members(gid):
    try:
        return grp.getgrgid(gid).gr_mem
    except KeyError:
        return []


def course_path(root, course_id) -> Path:
    return Path(root) / course_id


def prepare_exchange(root, course_id: str, owner: str) -> Path:
    """Create (or repair) the exchange of one course as in the module's table. Needs root."""
    if os.geteuid() != 0:
        raise ExchangeSetupError("setting up the protected exchange needs root (it gives folders to other accounts)")
    account = pwd.getpwnam(owner)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    _ensure_dir(root, 0, 0, 0o755)
    course = course_path(root, course_id)
    _ensure_dir(course, account.pw_uid, account.pw_gid, 0o755)
    for name, mode in (("outbound", 0o755), ("inbound", 0o711), ("feedback", 0o711)):
        _ensure_dir(course / name, account.pw_uid, account.pw_gid, mode)
    return course


def enroll(root, course_id: str, learner: str, owner: str | None = None) -> Path:
    """Give a learner their own inbound folder (owner:LEARNER 0770). Idempotent; needs root."""
    if not LEARNER_NAME.match(learner):
        raise ExchangeSetupError(f"{learner!r} is not a Unix user name this exchange accepts")
    course = course_path(root, course_id)
    owner_uid = pwd.getpwnam(owner).pw_uid if owner else os.stat(course).st_uid
    folder = course / "inbound" / learner
    _ensure_dir(folder, owner_uid, private_group(learner), 0o770)
    return folder


def release_feedback_file(root, course_id: str, learner: str, secret: str, notebook_id: str,
                          html: bytes) -> Path:
    """Put one notebook's feedback where nbgrader's Fetch Feedback looks (``feedback/HASH.html``), readable
    by the learner alone: owned by the course owner, group the learner's private group, mode 0640.

    Written to a fresh file and renamed into place, so a learner holding the old file open, or a
    crash half-way, never sees a half-written page. Needs root (only root gives a file to another group).
    """
    folder = course_path(root, course_id) / "feedback"
    owner_uid = os.stat(folder).st_uid
    gid = private_group(learner)
    checksum = notebook_hash(secret=secret, notebook_id=notebook_id)
    target = folder / f"{checksum}.html"
    temporary = folder / f".{checksum}.{base64.urlsafe_b64encode(os.urandom(6)).decode()}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(html)
        os.chown(temporary, owner_uid, gid)
        os.chmod(temporary, 0o640)
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


# --- Submissions, as the grader sees them ---------------------------------------------------------------------

@dataclass(frozen=True)
class Submission:
    """One hand-in: ``inbound/LEARNER/LEARNER+CHAPTER+TIMESTAMP+RANDOM``."""

    key: str            # "LEARNER/FOLDER": unique, stable, what the grading queue remembers
    student: str
    chapter: str
    timestamp: str
    path: Path

    @property
    def complete(self) -> bool:
        """nbgrader writes submission_secret.txt after the notebooks: without it the copy is unfinished
        (still in progress, or stopped by a full quota)."""
        return (self.path / "submission_secret.txt").is_file() and (self.path / "timestamp.txt").is_file()

    def secret(self) -> str:
        return _read_small(self.path / "submission_secret.txt", 4096).decode()   # hashed as written, like nbgrader


def find_submissions(root, course_id: str) -> tuple[list[Submission], list[str]]:
    """(every submission in the exchange, problems: entries that are not a learner's own submission)."""
    found, problems = [], []
    inbound = course_path(root, course_id) / "inbound"
    for folder in sorted(inbound.iterdir()) if inbound.is_dir() else []:
        if not folder.is_dir() or folder.is_symlink():
            problems.append(f"{folder}: not a learner's folder; left alone")
            continue
        learner = folder.name
        for entry in sorted(folder.iterdir()):
            parts = entry.name.split("+")
            if entry.is_symlink() or not entry.is_dir() or len(parts) not in (3, 4):
                problems.append(f"{entry}: not an nbgrader submission; left alone")
                continue
            if parts[0] != learner:
                problems.append(f"{entry}: handed in under the name {parts[0]!r} in {learner}'s folder; graded "
                                f"as {learner}")
            found.append(Submission(f"{learner}/{entry.name}", learner, parts[1], parts[2], entry))
    return found, problems


def _read_small(path: Path, limit: int) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"{path.name} is larger than {limit} bytes")
    return data


def copy_submission(submission: Submission, dest: Path, limit: int = MAX_SUBMISSION_BYTES) -> list[str]:
    """Copy a submission's regular files to ``dest`` (replaced); links and special files are left out and named.

    The learner controls what is in their folder, so nothing here follows a link: a link to another
    learner's work, or to a file of the grader's, is not copied.
    """
    import shutil

    problems, total = [], 0
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for dirpath, dirnames, filenames in os.walk(submission.path, followlinks=False):
        rel = Path(dirpath).relative_to(submission.path)
        for name in sorted(dirnames):
            if os.path.islink(os.path.join(dirpath, name)):
                problems.append(f"{rel / name} is a link; left out")
            else:
                (dest / rel / name).mkdir()
        for name in sorted(filenames):
            src = Path(dirpath) / name
            st = os.lstat(src)
            if not stat.S_ISREG(st.st_mode):
                problems.append(f"{rel / name} is a link or special file; left out")
                continue
            total += st.st_size
            if total > limit:
                problems.append(f"the submission is larger than {limit // 2**20} MiB; the rest was left out")
                return problems
            (dest / rel / name).write_bytes(_read_small(src, limit))
    return problems


# --- nbgrader's exchange interface: the learner's and instructor's commands on this layout ------------------

def _me() -> str:
    """The account this process really runs as (not $USER, which anyone can set)."""
    return pwd.getpwuid(os.getuid()).pw_name


class _ProtectedRoot:
    """nbgrader wants its exchange root writable by everyone (and its release makes it 0777); here it is
    root's, 0755, and only needs to be entered."""

    def ensure_root(self):
        if not check_directory(self.root, execute=True):
            self.fail(f"The course's exchange {self.root} is missing or closed to you; ask your instructor.")


class ExchangeFetchAssignment(_ProtectedRoot, _DefaultFetchAssignment):
    """nbgrader fetch_assignment, unchanged but for the exchange root's check."""


class ExchangeFetchFeedback(_ProtectedRoot, _DefaultFetchFeedback):
    """nbgrader fetch_feedback, unchanged: ``feedback/HASH.html`` is readable only by its learner."""


class ExchangeReleaseAssignment(_ProtectedRoot, _DefaultReleaseAssignment):
    """nbgrader release_assignment by the course owner into ``outbound/``, leaving the exchange root alone."""


class ExchangeSubmit(_ProtectedRoot, _DefaultSubmit):
    """nbgrader submit into ``inbound/<me>/``, always under the account's own name."""

    def init_dest(self):
        if self.coursedir.course_id == "":
            self.fail("No course id specified. Re-run with --course flag.")
        me = _me()
        if self.coursedir.student_id not in ("*", "", me):
            self.fail(f"You are {me}; you cannot hand in work as {self.coursedir.student_id}.")
        self.inbound_path = os.path.join(self.root, self.coursedir.course_id, "inbound", me)
        if not os.path.isdir(self.inbound_path) or not check_mode(self.inbound_path, write=True, execute=True):
            self.fail(f"Your hand-in folder {self.inbound_path} is missing or not writable for you: log out and in "
                      f"again on the hub (it is made when your server starts), or ask your instructor.")
        self.cache_path = os.path.join(self.cache, self.coursedir.course_id)
        random_str = base64.urlsafe_b64encode(os.urandom(9)).decode("ascii")
        self.assignment_filename = f"{me}+{self.coursedir.assignment_id}+{self.timestamp}+{random_str}"

    def copy_files(self):
        try:
            super().copy_files()
        except OSError as exc:
            # A full quota (EDQUOT) or disk: say so; the unfinished copy has no submission_secret.txt and is
            # never graded (``Submission.complete``).
            self.fail(f"Your work could not be handed in: {exc.strerror or exc}. Free some space (your quota may "
                      f"be full) and submit again; nothing was graded.")


class ExchangeCollect(_ProtectedRoot, _DefaultCollect):
    """nbgrader collect from ``inbound/*/``; the learner is the folder's, never what a name claims."""

    def _path_to_record(self, path):
        learner = os.path.basename(os.path.dirname(path))
        name = os.path.basename(path)
        parts = name.rsplit("+", 3)
        if len(parts) < 3:
            self.fail(f"Invalid filename: {name}")
        return {"username": learner, "filename": os.path.join(learner, name), "timestamp": parse_utc(parts[2])}

    def init_src(self):
        if self.coursedir.course_id == "":
            self.fail("No course id specified. Re-run with --course flag.")
        self.course_path = os.path.join(self.root, self.coursedir.course_id)
        self.inbound_path = os.path.join(self.course_path, "inbound")
        if not os.path.isdir(self.inbound_path):
            self.fail(f"Course not found: {self.inbound_path}")
        student = self.coursedir.student_id or "*"
        pattern = os.path.join(self.inbound_path, student, f"*+{self.coursedir.assignment_id}+*")
        records = [self._path_to_record(p) for p in glob.glob(pattern) if not os.path.islink(p)]
        newest = {}
        for record in records:
            if record["username"] not in newest or record["timestamp"] > newest[record["username"]]["timestamp"]:
                newest[record["username"]] = record
        self.src_records = list(newest.values())


class ExchangeList(_ProtectedRoot, _DefaultList):
    """``nbgrader list --inbound`` (the instructor) reads ``inbound/*/``; the learner's own lists are nbgrader's."""

    def init_dest(self):
        super().init_dest()
        if self.inbound:
            course_id = self.coursedir.course_id or "*"
            student = self.coursedir.student_id or "*"
            assignment = self.coursedir.assignment_id or "*"
            self.assignments = sorted(glob.glob(os.path.join(self.root, course_id, "inbound", student,
                                                             f"{student}+{assignment}+*")))

    def parse_assignment(self, assignment):
        if self.inbound:
            return super().parse_assignment(os.path.join(os.path.dirname(os.path.dirname(assignment)),
                                                         os.path.basename(assignment)))
        return super().parse_assignment(assignment)


class ExchangeReleaseFeedback(_ProtectedRoot, _DefaultReleaseFeedback):
    """nbgrader release_feedback, each page readable by its learner alone (see ``release_feedback_file``)."""

    def init_dest(self):
        if os.geteuid() != 0:
            self.fail("On the protected exchange feedback is released by root: `course serve` does it after "
                      "grading, or run `sudo course feedback CHAPTER`.")
        self.dest_path = os.path.join(self.root, self.coursedir.course_id, "feedback")

    def copy_files(self):
        pattern = self.coursedir.format_path(self.coursedir.feedback_directory,
                                             self.coursedir.student_id or "*", self.coursedir.assignment_id)
        for html in sorted(glob.glob(os.path.join(pattern, "*.html"))):
            folder = os.path.dirname(html)
            student = os.path.basename(os.path.dirname(folder))
            secret_path = os.path.join(folder, "submission_secret.txt")
            if not os.path.isfile(secret_path):
                self.log.warning("No submission secret for %s: not handed in through the exchange", html)
                continue
            with open(secret_path) as fh:
                secret = fh.read()
            with open(html, "rb") as fh:
                page = fh.read()
            try:
                target = release_feedback_file(self.root, self.coursedir.course_id, student, secret,
                                               os.path.splitext(os.path.basename(html))[0], page)
            except ExchangeSetupError as exc:
                self.log.error("Feedback for %s not released: %s", student, exc)
                continue
            self.log.info("Feedback released to: %s", target)
