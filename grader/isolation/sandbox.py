"""Isolation layer for running untrusted learner code (the autograder's sandbox).

The trusted grader prepares a job directory ("workdir"), then calls
:func:`run_in_sandbox` with the command to run inside it (normally
``python -I notebook_runner.py IN.ipynb OUT.ipynb ...``).  Three modes exist:

``root``
    The grader runs as root.  The command runs in new mount, network, PID,
    IPC and UTS namespaces (created with util-linux ``unshare``), in a new
    root that is an **allow-list**: an empty tmpfs into which only the
    system trees (/usr, /bin, /lib*, /etc), the Python installation, the
    ``expose`` paths (the learner-side packages) and the workdir are
    bind-mounted, all read-only but the workdir, with private size-limited
    /tmp, /var/tmp and /dev/shm and a minimal /dev; then ``pivot_root`` and
    the old root is detached, so nothing else of the host exists for the
    job.  The command runs as uid/gid ``SANDBOX_UID_BASE + slot`` with no
    supplementary groups, no capabilities and ``no_new_privs``.
``userns``
    The grader is not root but unprivileged user namespaces work: the same
    namespaces and the same allow-list root are created inside a new user
    namespace (``unshare --user --map-root-user``); there is no uid switch,
    capabilities are dropped instead.

Why not bubblewrap: it would do the same mounts, but as root it cannot drop to
a per-slot host uid without a user namespace (which loses RLIMIT_NPROC per job
and separation between slots), it is not installed on typical grading hosts,
and the launcher below (about 300 lines, one file) already needs its own PID-1
reaper, memfd configuration and rlimits.
``none``
    No isolation: a plain child in a new session with rlimits, the given
    environment and cwd.

How it works (root/userns): the grader starts a small launcher (the
``_LAUNCHER`` source below, run with ``python -I -S -c``).  Stage 0 sets
``PR_SET_PDEATHSIG`` (so the tree dies with the grader) and execs
``unshare ... --fork --kill-child --mount-proc -- python -I -S -c <launcher>``.
Stage 1 is PID 1 of the new PID namespace: it does the mounts with
``mount(2)`` (via ctypes), forks the learner process (rlimits, uid/capability
drop, ``no_new_privs``, ``execvpe``), reaps every orphan, and reports the
exit status over a pipe.  When PID 1 exits the kernel kills everything left
in the namespace, and killing ``unshare`` kills PID 1 (``--kill-child``), so
the wall timeout and the end of the main process never leave strays.  The
configuration travels in a memfd, so it never appears in a command line.

Memory: limited per process with ``RLIMIT_AS`` (default 4 GiB; a kernel that
imports numpy + matplotlib uses far less address space).  No cgroup is used:
on the reference machine cgroup v2 is mounted without controllers (hybrid
v1 layout), so a portable ``memory.max`` is not available.  Consequently
memory and CPU time are bounded per process, not per job; the private tmpfs
mounts are size-limited (``Limits.tmpfs_bytes``) because tmpfs pages are not
covered by ``RLIMIT_AS``.
"""

from __future__ import annotations

import functools
import json
import os
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

__all__ = [
    "SANDBOX_UID_BASE",
    "Isolation",
    "Limits",
    "SandboxError",
    "SandboxResult",
    "SandboxUnavailable",
    "detect_isolation",
    "run_in_sandbox",
]

#: learner code in root mode runs as uid/gid SANDBOX_UID_BASE + slot
SANDBOX_UID_BASE = 64000
#: slots are 0 .. MAX_SLOTS-1
MAX_SLOTS = 1000
#: how much of stdout / stderr is kept (the last bytes)
TAIL_BYTES = 20_000

MODES = ("root", "userns", "none")

# Directories that get a fresh private tmpfs (if they exist).  The first two
# are sized with Limits.tmpfs_bytes, the others get a small fixed size.
_PRIVATE_TMPFS_BIG = ("/tmp", "/dev/shm")
_PRIVATE_TMPFS_SMALL = ("/var/tmp",)
# The system part of the allow-list: programs, libraries and configuration, read-only.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
DEVICES = ("null", "zero", "full", "random", "urandom")
DEV_LINKS = (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
             ("stderr", "/proc/self/fd/2"))
# Where the new root is assembled inside the job's mount namespace before pivot_root.
_STAGING = "/tmp"
_SMALL_TMPFS_BYTES = 16 * 2**20

_UNSHARE_FLAGS = (
    "--mount", "--net", "--pid", "--ipc", "--uts",
    "--fork", "--kill-child", "--mount-proc", "--propagation", "private",
)
_SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_LAUNCHER_ENV = {"PATH": _SYSTEM_PATH, "LC_ALL": "C"}


class SandboxError(RuntimeError):
    """The sandbox could not be set up or the command could not be started.

    This is a problem of the grader (configuration), not a result of the
    learner's code; learner failures come back as a :class:`SandboxResult`.
    """


class SandboxUnavailable(SandboxError):
    """The requested isolation mode is not available on this machine."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one job.

    The rlimits are applied in the final child; a value above the grader's
    own hard limit is lowered to it (a hard limit cannot be raised).
    """

    wall_seconds: float = 300.0        # whole job; on expiry the whole process tree is killed
    cpu_seconds: int = 300             # RLIMIT_CPU (per process; SIGXCPU, then SIGKILL 1 s later)
    memory_bytes: int = 4 * 2**30      # RLIMIT_AS, per process
    max_processes: int = 128           # RLIMIT_NPROC (per uid; see Isolation.missing)
    file_size_bytes: int = 64 * 2**20  # RLIMIT_FSIZE
    open_files: int = 256              # RLIMIT_NOFILE
    tmpfs_bytes: int = 256 * 2**20     # size of the private /tmp and /dev/shm (root/userns)

    def __post_init__(self) -> None:
        if not self.wall_seconds > 0:
            raise ValueError("wall_seconds must be > 0")
        for name in ("cpu_seconds", "memory_bytes", "max_processes",
                     "file_size_bytes", "open_files", "tmpfs_bytes"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive int, got {value!r}")


@dataclass(frozen=True)
class Isolation:
    mode: str                      # "root" | "userns" | "none"
    guarantees: tuple[str, ...]    # what holds in this mode
    missing: tuple[str, ...]       # what does NOT hold in this mode


@dataclass
class SandboxResult:
    returncode: int | None   # exit status; None when killed by a signal or timed out
    timed_out: bool          # wall limit hit (the tree was killed with SIGKILL)
    signal: int | None       # signal that killed the main process (SIGKILL on timeout)
    stdout_tail: str         # last ~20 kB
    stderr_tail: str
    wall_seconds: float
    isolation: Isolation


# --------------------------------------------------------------------------
# Isolation descriptions
# --------------------------------------------------------------------------

_COMMON_MISSING = (
    "Memory (RLIMIT_AS) and CPU time (RLIMIT_CPU) are limited per process, not per "
    "job: several processes may each use the full amount (no cgroup is used); the "
    "wall limit bounds the job as a whole.",
    "Disk use in the workdir is bounded only per file (RLIMIT_FSIZE), not in total.",
    "Files the job writes into the workdir (OUT notebook, run_status.json, ...) are "
    "produced under the learner's identity and may be forged or be symlinks: treat "
    "them as untrusted data (open without following symlinks, bound their size).",
    "No seccomp filter: the whole kernel syscall surface is reachable, including "
    "creating nested user namespaces (mounts made by the sandbox stay locked there).",
)


def _describe(mode: str) -> Isolation:
    euid = os.geteuid()
    ns_guarantees = (
        "Separate mount, network, PID, IPC and UTS namespaces.",
        "No network: the network namespace has only a loopback interface and it is "
        "down, so no TCP/UDP connection to anything (not even the host's 127.0.0.1) "
        "is possible; abstract Unix sockets of the host are unreachable.",
        "Allow-list filesystem: learner code runs in a new, otherwise empty root (pivot_root) "
        "holding only the system's programs, libraries and configuration (/usr, /bin, /lib*, "
        "/etc), the Python installation and virtual environment, the learner-side packages, "
        "/proc of its own PID namespace, a minimal /dev (null, zero, full, random, urandom) and "
        "the job's workdir. All of it is read-only except the workdir; nothing else of the host "
        "exists there, wherever it lives (other clones, home directories, course folders, /srv, "
        "/opt, /mnt, /sys, the host's root): the old root is detached. Paths in `hide` that lie "
        "inside an exposed tree are covered by an empty read-only tmpfs.",
        "Private, size-limited tmpfs on /tmp and /dev/shm (Limits.tmpfs_bytes) and on "
        "/var/tmp; discarded after the job.",
        "No GPU device node is exposed: graded code runs on the CPU.",
        "Only the job's own processes are visible in /proc.",
        "The whole process tree is killed when the wall limit expires, when the main "
        "process exits, and when the grader dies (PID namespace init + "
        "PR_SET_PDEATHSIG).",
        "rlimits in the job: RLIMIT_AS, RLIMIT_CPU, RLIMIT_NPROC, RLIMIT_FSIZE, "
        "RLIMIT_NOFILE, RLIMIT_CORE=0; no_new_privs is set.",
        "stdout/stderr are captured as bounded tails; the grader's environment is "
        "not inherited (exactly `env` is passed).",
    )
    if mode == "root":
        guarantees = ns_guarantees + (
            f"Learner code runs as uid/gid {SANDBOX_UID_BASE}+slot with no "
            "supplementary groups and no capabilities (bounding set emptied).",
            "Nothing on the host filesystem is writable except the workdir.",
            "The workdir is chowned to the slot's uid with mode 0700, so jobs in other "
            "slots cannot enter it; afterwards it is chowned back to the grader and "
            "setuid/setgid bits are stripped, so a later job in the same slot cannot "
            "read it either.",
            "The exposed paths are reachable wherever they lie (under /tmp, under a 0700 home "
            "directory, in a path with spaces): the directories leading to them are recreated in "
            "the new root; the exposed trees themselves must be world-readable (`course doctor` "
            "checks).",
            "RLIMIT_NPROC counts the processes of the slot's uid, i.e. it bounds the "
            "job's process count (fork bombs).",
        )
        missing = (
            "World-readable files inside the exposed system trees stay readable (/etc, /usr, "
            "the Python installation): keep course secrets out of them.",
            "Two jobs must never run concurrently in the same slot (they would share "
            "a uid).",
        ) + _COMMON_MISSING
    elif mode == "userns":
        who = "root (uid 0)" if euid == 0 else f"uid {euid}"
        guarantees = ns_guarantees + (
            "Learner code runs as root of its own user namespace without any "
            "capabilities (bounding set emptied, SECBIT_NOROOT locked), so it cannot "
            "unmount or remount anything.",
            "The workdir is set to mode 0700 and handed back readable by the grader "
            "user after the run.",
        )
        missing = (
            f"No uid switch: learner code acts as the grading user, {who}, inside the "
            "allow-listed root; files of the exposed trees that user can read stay readable "
            "(they are mounted read-only, so nothing outside the workdir is writable).",
            "Jobs are not separated by uid; other jobs' workdirs are simply not in the root.",
            "RLIMIT_NPROC counts the processes of the namespace's uid inside this user "
            "namespace (per job on Linux >= 5.14); it is not enforced at all when "
            "the grading user is root (uid 0 is exempt), so fork bombs are then "
            "bounded only by the wall limit.",
        ) + _COMMON_MISSING
        if euid == 0:
            missing = (
                "The grader runs as root: in this mode learner code reads the exposed trees "
                "as root (e.g. /etc/shadow). Use root mode.",
            ) + missing
    elif mode == "none":
        guarantees = (
            "rlimits: RLIMIT_AS, RLIMIT_CPU, RLIMIT_NPROC, RLIMIT_FSIZE, RLIMIT_NOFILE, "
            "RLIMIT_CORE=0; no_new_privs is set.",
            "The command runs in the workdir with exactly the given environment, in a "
            "new session/process group that is killed at the wall limit and when the "
            "main process exits.",
            "stdout/stderr are captured as bounded tails.",
            "The workdir is set to mode 0700.",
        )
        missing = (
            "NO filesystem isolation: learner code can read and write anything the "
            "grader user can (gradebook, solutions, the grader package and its "
            "reference code, other learners' submissions); `hide` has no effect.",
            "NO network isolation.",
            "Shared /tmp and /dev/shm with the host and other jobs.",
            "Processes that leave the process group (setsid) survive the wall-limit "
            "kill and the end of the job.",
            "RLIMIT_NPROC counts every process of the grader user on the host and is "
            "not enforced at all for root: fork bombs are not reliably contained.",
            "Other processes of the grader user are visible and can be signalled.",
        ) + _COMMON_MISSING
    else:  # pragma: no cover - guarded by callers
        raise ValueError(mode)
    return Isolation(mode=mode, guarantees=guarantees, missing=missing)


# --------------------------------------------------------------------------
# The launcher (runs as `python -I -S -c _LAUNCHER CFG_FD STATUS_FD STAGE`)
# --------------------------------------------------------------------------

_LAUNCHER = Path(__file__).with_name("launcher.py").read_text()     # its own file: grader/isolation/launcher.py


# --------------------------------------------------------------------------
# Mode detection
# --------------------------------------------------------------------------

def _unshare_path() -> str | None:
    return shutil.which("unshare", path=_SYSTEM_PATH)


@functools.lru_cache(maxsize=None)
def _probe(mode: str, euid: int) -> str | None:
    """Return None if `mode` works here, else a reason why not."""
    if mode == "none":
        return None
    if mode == "root" and euid != 0:
        return "root mode needs the grader to run as root (euid 0)"
    if _unshare_path() is None:
        return "util-linux `unshare` was not found"
    iso = _describe(mode)
    workdir = Path(tempfile.mkdtemp(prefix="sandbox-probe-"))
    try:
        res = _run(
            [sys.executable, "-I", "-S", "-c", "pass"], workdir,
            env={"PATH": _SYSTEM_PATH},
            limits=Limits(wall_seconds=30, memory_bytes=1 << 30),
            hide=(), slot=0, iso=iso, expose=(),
        )
    except SandboxError as exc:
        return f"{mode} sandbox failed to start: {exc}"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if res.returncode != 0:
        return (f"{mode} probe command failed (returncode={res.returncode}, "
                f"signal={res.signal}): {res.stderr_tail[-2000:]}")
    return None


def mode_unavailable_reason(mode: str) -> str | None:
    """None if `mode` can be used here, else a human-readable reason."""
    if mode not in MODES:
        raise ValueError(f"unknown sandbox mode {mode!r}; expected one of {MODES}")
    return _probe(mode, os.geteuid())


def detect_isolation() -> Isolation:
    """Best mode available here: root, else userns, else none."""
    for mode in ("root", "userns"):
        if mode_unavailable_reason(mode) is None:
            return _describe(mode)
    return _describe("none")


def _resolve_isolation(mode: str | None) -> Isolation:
    if mode is None:
        return detect_isolation()
    reason = mode_unavailable_reason(mode)
    if reason is not None:
        raise SandboxUnavailable(f"sandbox mode {mode!r} is not available here: {reason}")
    return _describe(mode)


# --------------------------------------------------------------------------
# Filesystem helpers (trusted side)
# --------------------------------------------------------------------------

_WALK_MAX_DEPTH = 128


def _walk_fix(top: str, fix) -> None:
    """Apply fix(name, dir_fd, st) to `top` (dir_fd None) and everything below.

    Symlinks are never followed; directories are fixed before they are
    entered (so a 000 directory can be made readable first).  Errors below
    `top` are ignored, and the walk stops at depth _WALK_MAX_DEPTH: what
    matters for security is `top` itself (mode 0700, owned by the grader
    afterwards), which makes everything below unreachable for later jobs.
    """
    fix(top, None, os.lstat(top))

    def walk(dir_fd: int, depth: int) -> None:
        try:
            names = os.listdir(dir_fd)
        except OSError:
            return
        for name in names:
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                fix(name, dir_fd, st)
            except OSError:
                continue
            if stat.S_ISDIR(st.st_mode) and depth < _WALK_MAX_DEPTH:
                try:
                    sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                                  dir_fd=dir_fd)
                except OSError:
                    continue
                try:
                    walk(sub, depth + 1)
                finally:
                    os.close(sub)

    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        walk(fd, 1)
    finally:
        os.close(fd)


def _chown_tree(top: str, uid: int, gid: int, strip_setid: bool) -> None:
    def fix(name, dir_fd, st):
        if st.st_uid != uid or st.st_gid != gid:
            os.chown(name, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
        if strip_setid and stat.S_ISREG(st.st_mode) and st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            os.chmod(name, stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID),
                     dir_fd=dir_fd)
    _walk_fix(top, fix)


def _make_owner_accessible(top: str) -> None:
    """userns mode: files belong to the grader; make them owner-readable again."""
    def fix(name, dir_fd, st):
        if stat.S_ISLNK(st.st_mode) or st.st_uid != os.geteuid():
            return
        want = stat.S_IRWXU if stat.S_ISDIR(st.st_mode) else stat.S_IRUSR | stat.S_IWUSR
        mode = stat.S_IMODE(st.st_mode)
        if mode & want != want or mode & (stat.S_ISUID | stat.S_ISGID):
            os.chmod(name, (mode | want) & ~(stat.S_ISUID | stat.S_ISGID), dir_fd=dir_fd)
    _walk_fix(top, fix)


def _default_expose() -> list[str]:
    paths = {sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix}
    return sorted({os.path.realpath(p) for p in paths})


def _is_under(path: str, top: str) -> bool:
    return path == top or top == "/" or path.startswith(top.rstrip("/") + "/")


def _root_plan(workdir: str, limits: Limits, hide: Sequence[Path], expose: Sequence[Path]) -> list[list]:
    """What the sandbox's otherwise empty root holds: [path, kind, argument] in host paths.

    kinds: "ro"/"rw" bind a host path at the same place, "dev" binds a device node,
    "tmpfs" mounts a private size-limited tmpfs, "symlink" recreates a host symlink
    (/bin -> usr/bin), "hide" covers a hidden path that an exposed tree would show.
    """
    plan: list[list] = []
    exposed: list[str] = []
    for p in SYSTEM_PATHS:
        if os.path.islink(p):
            plan.append([p, "symlink", os.readlink(p)])
        elif os.path.isdir(p):
            exposed.append(p)
    for p in sorted({os.path.realpath(p) for p in (*_default_expose(), *expose)}):
        if os.path.exists(p) and not any(_is_under(p, top) for top in exposed):
            exposed.append(p)
    plan += [[p, "ro", None] for p in exposed]
    plan.append(["/proc", "rw", None])   # the job's own PID namespace (mounted by unshare)
    plan.append(["/dev", "tmpfs", "mode=0755,size=64k,nr_inodes=64"])
    plan += [[f"/dev/{d}", "dev", None] for d in DEVICES if os.path.exists(f"/dev/{d}")]
    plan += [[f"/dev/{name}", "symlink", target] for name, target in DEV_LINKS]
    for p in _PRIVATE_TMPFS_BIG:
        plan.append([p, "tmpfs", f"mode=1777,size={limits.tmpfs_bytes},nr_inodes=65536"])
    for p in _PRIVATE_TMPFS_SMALL:
        plan.append([p, "tmpfs", f"mode=1777,size={_SMALL_TMPFS_BYTES},nr_inodes=4096"])
    plan.append([workdir, "rw", None])
    for p in hide:
        rp = os.path.realpath(p)
        if rp != workdir and any(_is_under(rp, top) for top in exposed) and os.path.lexists(rp):
            plan.append([rp, "hide", "mode=0755,size=1m,nr_inodes=1024"])
    return plan


def unreadable_exposed_paths(expose: Sequence[Path] = ()) -> list[str]:
    """Exposed paths the sandbox's unprivileged uid (root mode) cannot read: learner code could not import them."""
    bad = []
    for p in sorted({os.path.realpath(p) for p in (*_default_expose(), *expose)}):
        try:
            st = os.stat(p)
        except OSError:
            continue
        want = (stat.S_IROTH | stat.S_IXOTH) if stat.S_ISDIR(st.st_mode) else stat.S_IROTH
        if st.st_mode & want != want:
            bad.append(f"{p} (mode {stat.S_IMODE(st.st_mode):04o})")
    return bad


# --------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------

class _Tail:
    def __init__(self, cap: int = TAIL_BYTES):
        self.cap = cap
        self.buf = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        self.buf += data
        if len(self.buf) > 2 * self.cap:
            del self.buf[: len(self.buf) - self.cap]

    def text(self) -> str:
        return bytes(self.buf[-self.cap:]).decode("utf-8", errors="replace")


def _rlimits(limits: Limits) -> list[tuple[str, int, int]]:
    return [
        ("RLIMIT_CORE", 0, 0),
        ("RLIMIT_CPU", limits.cpu_seconds, limits.cpu_seconds + 1),
        ("RLIMIT_AS", limits.memory_bytes, limits.memory_bytes),
        ("RLIMIT_NPROC", limits.max_processes, limits.max_processes),
        ("RLIMIT_FSIZE", limits.file_size_bytes, limits.file_size_bytes),
        ("RLIMIT_NOFILE", limits.open_files, limits.open_files),
    ]


def run_in_sandbox(
    argv: list[str],
    workdir: Path,
    *,
    env: dict[str, str],
    limits: Limits = Limits(),
    hide: Sequence[Path] = (),
    slot: int = 0,
    mode: str | None = None,
    expose: Sequence[Path] = (),
) -> SandboxResult:
    """Run `argv` in `workdir` inside the best (or the given) sandbox mode.

    `env` is the complete environment of the command.  `hide`: paths made
    invisible (root/userns).  `slot`: selects the uid in root mode; concurrent
    jobs must use different slots.  `mode`: force "root", "userns" or "none"
    (SandboxUnavailable if it does not work here).  `expose`: extra paths kept
    reachable read-only even under hidden or non-traversable directories (the
    running Python installation is always exposed).

    Raises SandboxError if the sandbox cannot be set up or argv[0] cannot be
    executed; everything the command itself does ends up in the result.
    """
    iso = _resolve_isolation(mode)
    return _run(list(argv), Path(workdir), env=env, limits=limits, hide=hide,
                slot=slot, iso=iso, expose=expose)


def _validate(argv, workdir: Path, env, slot) -> None:
    if not argv or not all(isinstance(a, str) and "\0" not in a for a in argv):
        raise ValueError("argv must be a non-empty list of strings without NUL")
    if not isinstance(env, dict):
        raise TypeError("env must be a dict[str, str]")
    for k, v in env.items():
        if not (isinstance(k, str) and isinstance(v, str)) or not k or "=" in k \
                or "\0" in k or "\0" in v:
            raise ValueError(f"invalid environment entry {k!r}")
    if not isinstance(slot, int) or not 0 <= slot < MAX_SLOTS:
        raise ValueError(f"slot must be an int in [0, {MAX_SLOTS})")
    if not workdir.is_dir():
        raise SandboxError(f"workdir {workdir} is not a directory")


def _run(argv, workdir: Path, *, env, limits: Limits, hide, slot, iso: Isolation,
         expose) -> SandboxResult:
    _validate(argv, workdir, env, slot)
    wd = os.path.realpath(workdir)
    uid = gid = SANDBOX_UID_BASE + slot
    cfg: dict = {
        "mode": iso.mode,
        "argv": argv,
        "env": dict(env),
        "workdir": wd,
        "rlimits": _rlimits(limits),
        "grader_pid": os.getpid(),
        "launcher_env": _LAUNCHER_ENV,
    }
    if iso.mode != "none":
        unshare = _unshare_path()
        if unshare is None:
            raise SandboxUnavailable("util-linux `unshare` was not found")
        flags = (["--user", "--map-root-user"] if iso.mode == "userns" else []) + list(_UNSHARE_FLAGS)
        cfg["unshare_argv"] = [unshare, *flags, "--", sys.executable, "-I", "-S", "-c", _LAUNCHER]
        cfg["plan"] = _root_plan(wd, limits, hide, expose)
        cfg["staging"] = _STAGING
        if iso.mode == "root":
            cfg["uid"], cfg["gid"] = uid, gid

    # Prepare the workdir.
    if iso.mode == "root":
        _chown_tree(wd, uid, gid, strip_setid=True)
    os.chmod(wd, 0o700)

    cfg_fd = os.memfd_create("sandbox-config", os.MFD_CLOEXEC)
    status_r, status_w = os.pipe()
    proc = None
    try:
        os.write(cfg_fd, json.dumps(cfg).encode())
        start = time.monotonic()
        proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(cfg_fd), str(status_w), "stage0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=(cfg_fd, status_w), env=_LAUNCHER_ENV, cwd="/",
            start_new_session=True, close_fds=True,
        )
    except BaseException:
        os.close(status_r)
        raise
    finally:
        os.close(cfg_fd)
        os.close(status_w)

    try:
        timed_out, events, out, err = _supervise(proc, status_r, start + limits.wall_seconds)
    finally:
        _kill_tree(proc)
        proc.wait()
        os.close(status_r)
    wall = time.monotonic() - start

    if iso.mode == "root":
        _chown_tree(wd, os.geteuid(), os.getegid(), strip_setid=True)
    elif iso.mode == "userns":
        _make_owner_accessible(wd)

    by_kind = {e.get("event"): e for e in events}
    for kind in ("setup_error", "exec_error"):
        if kind in by_kind:
            raise SandboxError(f"{iso.mode} sandbox: {by_kind[kind].get('message')}")
    returncode: int | None
    sig: int | None
    if timed_out:
        returncode, sig = None, signal.SIGKILL
    elif iso.mode == "none":
        rc = proc.returncode
        returncode, sig = (None, -rc) if rc < 0 else (rc, None)
    elif "exit" in by_kind:
        returncode, sig = by_kind["exit"]["returncode"], by_kind["exit"]["signal"]
    elif "started" not in by_kind:
        raise SandboxError(
            f"{iso.mode} sandbox failed to start (launcher exit status {proc.returncode}): "
            f"{err.text()[-3000:]}")
    else:
        # started, but PID 1 vanished without a report (killed from outside)
        rc = proc.returncode
        returncode, sig = (None, -rc) if rc < 0 else (None, signal.SIGKILL)
    return SandboxResult(
        returncode=returncode, timed_out=timed_out, signal=int(sig) if sig is not None else None,
        stdout_tail=out.text(), stderr_tail=err.text(), wall_seconds=wall, isolation=iso,
    )


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL the launcher (or the command, in none mode) and its process group.

    In root/userns mode the launcher is `unshare`; its death kills PID 1 of
    the namespace (--kill-child) and with it every process in there.
    """
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.kill()
    except ProcessLookupError:
        pass


def _exited(pid: int) -> bool:
    try:
        info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return True
    return info is not None


def _supervise(proc: subprocess.Popen, status_r: int, deadline: float):
    """Pump the pipes until the job is over; kill it at the deadline."""
    out, err, status = _Tail(), _Tail(), _Tail(cap=1 << 16)
    sel = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None
    streams = {proc.stdout.fileno(): out, proc.stderr.fileno(): err, status_r: status}
    for fd in streams:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    try:
        pidfd: int | None = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None   # fall back to polling every 0.1 s
    if pidfd is not None:
        sel.register(pidfd, selectors.EVENT_READ)
    timed_out = False
    grace_end: float | None = None   # after exit/kill: drain the pipes for a short while
    try:
        while True:
            now = time.monotonic()
            if grace_end is None:
                if _exited(proc.pid):
                    # Main process gone: anything left in its group is a straggler
                    # (in namespaced modes the namespace is already empty).
                    _kill_tree(proc)
                    grace_end = now + 2.0
                elif now >= deadline:
                    timed_out = True
                    _kill_tree(proc)
                    grace_end = now + 5.0
            if grace_end is not None:
                if now >= grace_end or not any(fd in streams for fd in sel.get_map()):
                    break
            limit = (grace_end if grace_end is not None else deadline) - now
            wait = max(0.0, min(limit, 0.1 if pidfd is None else 1.0))
            for key, _ in sel.select(timeout=wait):
                fd = key.fd
                if fd == pidfd:
                    sel.unregister(fd)   # exited; noticed at the top of the loop
                    continue
                try:
                    data = os.read(fd, 1 << 16)
                except BlockingIOError:
                    continue
                except OSError:
                    data = b""
                if data:
                    streams[fd].add(data)
                else:
                    sel.unregister(fd)
            if not sel.get_map() and grace_end is None and pidfd is None:
                time.sleep(wait)   # every pipe closed, but the process still runs
    finally:
        sel.close()
        if pidfd is not None:
            os.close(pidfd)
    events = []
    for line in bytes(status.buf).decode("utf-8", "replace").splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            pass
    return timed_out, events, out, err
