"""The sandbox keeps learner code away from the grader, and the runner executes notebooks in it.

Every test uses small limits (1 GiB address space, 64 processes, short wall
limits), so nothing here loads the machine.  Each isolation property is
checked in every mode where it is supposed to hold; a mode that is not
available on this machine is skipped with the reason.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import sys
import tempfile
import threading
import time
import tracemalloc
from pathlib import Path

import nbformat
import pytest

from grader.isolation import sandbox
from grader.isolation.sandbox import Limits, SandboxError, SandboxUnavailable, run_in_sandbox

# The folders every sandbox replaces with a private tmpfs of its own.
PRIVATE_TMPFS = sandbox._PRIVATE_TMPFS_BIG + sandbox._PRIVATE_TMPFS_SMALL

pytestmark = pytest.mark.sandbox

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "grader" / "isolation" / "notebook_runner.py"
PY = sys.executable
ENV = {
    "PATH": f"{Path(PY).parent}:/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "OPENBLAS_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "MALLOC_ARENA_MAX": "2",
    "NBGRADER_EXECUTION": "autograde",
}
SMALL = Limits(wall_seconds=30, cpu_seconds=20, memory_bytes=2**30, max_processes=64,
               file_size_bytes=8 * 2**20, open_files=256, tmpfs_bytes=64 * 2**20)
SECRET = "the answer key: 42\n"


def _require(mode: str) -> str:
    reason = sandbox.mode_unavailable_reason(mode)
    if reason is not None:
        pytest.skip(f"{mode} mode is not available here: {reason}")
    return mode


@pytest.fixture(params=["root", "userns"])
def ns_mode(request):
    return _require(request.param)


@pytest.fixture(params=["root", "userns", "none"])
def any_mode(request):
    return _require(request.param)


@pytest.fixture(scope="module")
def outside():
    """A world-traversable directory outside /tmp (which every sandbox replaces)."""
    (ROOT / "build").mkdir(exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="sandbox-tests-", dir=ROOT / "build"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def job(outside, request):
    d = outside / f"job-{request.node.name}".replace("[", "-").replace("]", "")
    d.mkdir()
    return d


def run_py(code: str, workdir: Path, mode: str, limits: Limits = SMALL, env=None, **kw):
    return run_in_sandbox([PY, "-I", "-c", code], workdir, env=dict(env or ENV),
                          limits=limits, mode=mode, **kw)


def last_json(res) -> dict:
    lines = [ln for ln in res.stdout_tail.splitlines() if ln.startswith("{")]
    assert lines, f"no JSON on stdout; stderr: {res.stderr_tail[-3000:]}"
    return json.loads(lines[-1])


def processes_with(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    found.append(int(pid))
            except OSError:
                pass
    return found


def processes_of_uid(uid: int) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("Uid:") and int(line.split()[1]) == uid:
                        found.append(int(pid))
            except OSError:
                pass
    return found


# --------------------------------------------------------------------------
# Mode selection
# --------------------------------------------------------------------------

def test_detect_isolation_describes_the_best_mode():
    iso = sandbox.detect_isolation()
    assert iso.mode in ("root", "userns", "none")
    assert iso.guarantees and iso.missing
    if os.geteuid() == 0 and sandbox.mode_unavailable_reason("root") is None:
        assert iso.mode == "root"
    none = sandbox._describe("none")
    assert any("NO filesystem isolation" in line for line in none.missing)


def test_forcing_an_unavailable_or_unknown_mode_is_a_clear_error(job, monkeypatch):
    with pytest.raises(ValueError, match="unknown sandbox mode"):
        run_py("pass", job, mode="chroot")
    monkeypatch.setattr(sandbox.os, "geteuid", lambda: 1000)
    with pytest.raises(SandboxUnavailable, match="needs the grader to run as root"):
        run_py("pass", job, mode="root")


def test_a_missing_program_is_a_sandbox_error(job, any_mode):
    with pytest.raises(SandboxError, match="cannot execute"):
        run_in_sandbox(["/nonexistent/python"], job, env=ENV, limits=SMALL, mode=any_mode)


# --------------------------------------------------------------------------
# Isolation (root / userns)
# --------------------------------------------------------------------------

PROBE = r"""
import ctypes, json, os, resource, socket, sys
cfg = json.loads(os.environ["PROBE"])
r = {}
def attempt(key, fn):
    try:
        r[key] = ["ok", fn()]
    except Exception as e:
        r[key] = [type(e).__name__, str(e)[:200]]
hd, hf = cfg["hidden_dir"], cfg["hidden_file"]
attempt("hidden_list", lambda: os.listdir(hd))
attempt("hidden_read", lambda: open(os.path.join(hd, "secret.txt")).read())
attempt("hidden_write", lambda: open(os.path.join(hd, "secret.txt"), "w").write("pwned"))
attempt("hidden_create", lambda: open(os.path.join(hd, "new.txt"), "w").write("x"))
attempt("hidden_file_read", lambda: open(hf).read())
attempt("hidden_file_write", lambda: open(hf, "w").write("pwned"))
attempt("grader_pkg", lambda: os.listdir(cfg["grader_pkg"]))
r["root_listing"] = sorted(os.listdir("/"))
libc = ctypes.CDLL(None, use_errno=True)
r["umount_hidden"] = libc.umount2(hd.encode(), 2)   # MNT_DETACH
r["mount_tmpfs"] = libc.mount(b"tmpfs", cfg["outside"].encode(), b"tmpfs", 0, None)
if cfg["try_system"]:   # only where it must fail: userns mode as root could write there
    attempt("write_outside", lambda: open(os.path.join(cfg["outside"], "escaped.txt"), "w").write("x"))
    attempt("write_repo", lambda: open(os.path.join(cfg["repo"], "escaped.txt"), "w").write("x"))
    attempt("write_etc", lambda: open("/etc/sandbox-escaped.txt", "w").write("x"))
attempt("host_tmp_marker", lambda: os.path.exists(cfg["host_tmp_marker"]))
attempt("tmp_listing", lambda: sorted(os.listdir("/tmp")))
def write_host_tmp():
    os.makedirs(cfg["host_tmp_dir"], exist_ok=True)
    open(os.path.join(cfg["host_tmp_dir"], "escaped.txt"), "w").write("x")
    return True
attempt("write_host_tmp_dir", write_host_tmp)
attempt("write_tmp", lambda: open("/tmp/from-sandbox.txt", "w").write("x"))
attempt("write_shm", lambda: open("/dev/shm/from-sandbox.txt", "w").write("x"))
def connect():
    s = socket.socket()
    s.settimeout(3)
    s.connect(("127.0.0.1", cfg["port"]))
    return "connected"
attempt("connect", connect)
attempt("write_workdir", lambda: open("result.txt", "w").write("written in the sandbox"))
r["uid"], r["gid"], r["groups"] = os.getuid(), os.getgid(), os.getgroups()
r["pid"] = os.getpid()
r["procs"] = len([p for p in os.listdir("/proc") if p.isdigit()])
r["hostname"] = os.uname().nodename
r["cwd"] = os.getcwd()
r["env"] = dict(os.environ)
status = dict(l.split(":", 1) for l in open("/proc/self/status").read().splitlines() if ":" in l)
r["nnp"] = status["NoNewPrivs"].strip()
r["capeff"] = status["CapEff"].strip()
r["capbnd"] = status["CapBnd"].strip()
r["rlimits"] = {n: resource.getrlimit(getattr(resource, n))[1] for n in
                ("RLIMIT_AS", "RLIMIT_NPROC", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE")}
print(json.dumps(r))
"""


def _probe_setup(outside: Path, host_tmp: Path):
    hidden = outside / "gradebook"
    hidden.mkdir(exist_ok=True)
    (hidden / "secret.txt").write_text(SECRET)
    hidden_file = outside / "solutions.txt"
    hidden_file.write_text(SECRET)
    marker = host_tmp / "host-marker.txt"
    marker.write_text("visible on the host only")
    return hidden, hidden_file, marker


def test_isolation_in_namespaced_modes(ns_mode, outside, job, tmp_path):
    hidden, hidden_file, marker = _probe_setup(outside, tmp_path)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.setblocking(False)
    host_tmp_dir = tmp_path / "outside-dir"
    cfg = dict(hidden_dir=str(hidden), hidden_file=str(hidden_file), grader_pkg=str(ROOT / "grader"),
               outside=str(outside), repo=str(ROOT), host_tmp_marker=str(marker),
               host_tmp_dir=str(host_tmp_dir), port=listener.getsockname()[1],
               try_system=ns_mode == "root")
    env = dict(ENV, PROBE=json.dumps(cfg))
    slot = 3
    try:
        res = run_py(PROBE, job, ns_mode, env=env, slot=slot,
                     hide=[hidden, hidden_file, ROOT / "grader", outside / "does-not-exist"])
        assert res.returncode == 0, res.stderr_tail
        r = last_json(res)
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()

    # hidden paths (here: everything not on the allow-list) do not exist; secrets intact
    for key in ("hidden_list", "hidden_read", "hidden_file_read", "grader_pkg"):
        assert r[key][0] == "FileNotFoundError", (key, r[key])
    for key, path in (("hidden_write", hidden), ("hidden_create", hidden), ("hidden_file_write", hidden_file)):
        if r[key][0] == "ok":
            # A checkout under /tmp: the sandbox's private /tmp holds the parent folders of its mount points,
            # and in userns mode the learner owns that tmpfs, so a write there succeeds - into the job's own
            # tmpfs, thrown away with it. The checks below prove that the host's files are untouched.
            assert any(Path(path).is_relative_to(t) for t in PRIVATE_TMPFS), \
                f"{key}: writing {path} succeeded, and {path} is not under the sandbox's private tmpfs"
        else:
            assert r[key][0] in ("FileNotFoundError", "PermissionError", "OSError"), (key, r[key])
    assert r["umount_hidden"] == -1 and r["mount_tmpfs"] == -1
    assert (hidden / "secret.txt").read_text() == SECRET
    assert hidden_file.read_text() == SECRET
    assert sorted(p.name for p in hidden.iterdir()) == ["secret.txt"]
    assert (ROOT / "grader" / "isolation" / "sandbox.py").exists()
    # the root holds the allow-list only
    assert set(r["root_listing"]) <= {"bin", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "sbin",
                                      "tmp", "usr", "var", *Path(ROOT).parts[1:2], *Path(PY).parts[1:2],
                                      *Path(sys.base_prefix).resolve().parts[1:2]}, \
        r["root_listing"]
    assert "sys" not in r["root_listing"] and "srv" not in r["root_listing"]

    # private /tmp and /dev/shm: nothing of the host's, nothing leaks back
    assert r["host_tmp_marker"] == ["ok", False]
    assert r["write_host_tmp_dir"] == ["ok", True]
    assert r["write_tmp"][0] == "ok" and r["write_shm"][0] == "ok"
    assert not (host_tmp_dir / "escaped.txt").exists()
    assert not Path("/tmp/from-sandbox.txt").exists()
    assert not Path("/dev/shm/from-sandbox.txt").exists()

    # no network, even to a listener on the host's loopback
    assert r["connect"][0] != "ok", r["connect"]

    # namespaces, identity, environment, limits
    assert r["pid"] < 10 and r["procs"] < 10
    assert r["hostname"] == "sandbox"
    assert r["cwd"] == str(job)
    assert r["env"] == env
    assert r["nnp"] == "1" and int(r["capeff"], 16) == 0 and int(r["capbnd"], 16) == 0
    assert r["rlimits"] == {"RLIMIT_AS": SMALL.memory_bytes, "RLIMIT_NPROC": 64,
                            "RLIMIT_FSIZE": SMALL.file_size_bytes, "RLIMIT_NOFILE": 256,
                            "RLIMIT_CORE": 0}

    # the workdir is writable and its files come back readable
    assert r["write_workdir"][0] == "ok"
    assert (job / "result.txt").read_text() == "written in the sandbox"
    assert stat.S_IMODE(job.stat().st_mode) == 0o700

    if ns_mode == "root":
        uid = sandbox.SANDBOX_UID_BASE + slot
        assert (r["uid"], r["gid"], r["groups"]) == (uid, uid, [])
        # nothing outside the workdir is writable for the sandbox uid
        for key in ("write_outside", "write_repo", "write_etc"):
            assert r[key][0] in ("PermissionError", "OSError", "FileNotFoundError"), (key, r[key])
        assert not (outside / "escaped.txt").exists() and not (ROOT / "escaped.txt").exists()
        # handed back to the grader, so the next job in this slot cannot read it
        assert (job / "result.txt").stat().st_uid == os.geteuid()
        assert job.stat().st_uid == os.geteuid()
    else:
        assert r["uid"] == 0   # root of its own user namespace, without capabilities


def test_workdir_under_tmp_stays_reachable(ns_mode, tmp_path):
    work = tmp_path / "deep" / "job"
    work.mkdir(parents=True)
    (work / "input.txt").write_text("input data")
    res = run_py("print(open('input.txt').read()); open('out.txt', 'w').write('done')",
                 work, ns_mode)
    assert res.returncode == 0, res.stderr_tail
    assert res.stdout_tail.strip() == "input data"
    assert (work / "out.txt").read_text() == "done"


def test_hiding_the_whole_repository_keeps_workdir_and_python(ns_mode, job):
    """Hide the course repo (which holds the venv and, here, the job dir): both stay usable."""
    (job / "data.txt").write_text("input")
    code = ("import json, os, numpy\n"
            "print(json.dumps({'repo': sorted(os.listdir(%r)), 'data': open('data.txt').read(),\n"
            "  'solutions': os.path.exists(%r), 'numpy': int(numpy.arange(4).sum())}))\n"
            ) % (str(ROOT), str(ROOT / "solutions"))
    res = run_in_sandbox([PY, "-c", code], job, env=ENV, limits=SMALL, mode=ns_mode, hide=[ROOT])
    assert res.returncode == 0, res.stderr_tail
    r = last_json(res)
    # only the skeleton leading to the two restored paths is left of the repository
    assert r == {"repo": [".venv", "build"], "data": "input", "solutions": False, "numpy": 6}


def test_the_sandbox_dies_with_the_grader(ns_mode, job):
    marker = f"orphan-marker-{os.getpid()}-{ns_mode}"
    grader = (
        "import sys\nsys.path.insert(0, %r)\n"
        "from pathlib import Path\nfrom grader.isolation.sandbox import run_in_sandbox, Limits\n"
        "run_in_sandbox([sys.executable, '-c', 'import time; time.sleep(60)', %r], Path(%r),\n"
        "               env={'PATH': '/usr/bin:/bin'}, limits=Limits(wall_seconds=60), mode=%r)\n"
    ) % (str(ROOT), marker, str(job), ns_mode)
    import subprocess
    proc = subprocess.Popen([PY, "-c", grader])
    try:
        deadline = time.monotonic() + 15
        while not processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert processes_with(marker), "the sandboxed command did not start"
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 5
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(marker) == []


def test_none_mode_is_a_plain_child_with_limits(job, outside):
    _require("none")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    code = (
        "import json, os, resource, socket\n"
        "s = socket.create_connection(('127.0.0.1', %d), timeout=3)\n"
        "st = dict(l.split(':', 1) for l in open('/proc/self/status').read().splitlines() if ':' in l)\n"
        "print(json.dumps({'cwd': os.getcwd(), 'env': dict(os.environ),\n"
        "  'as': resource.getrlimit(resource.RLIMIT_AS)[1], 'nnp': st['NoNewPrivs'].strip(),\n"
        "  'hidden': os.listdir(%r), 'sid': os.getsid(0) == os.getpid()}))\n"
    ) % (listener.getsockname()[1], str(outside))
    try:
        res = run_py(code, job, "none", hide=[outside])
    finally:
        listener.close()
    assert res.returncode == 0, res.stderr_tail
    r = last_json(res)
    assert r["cwd"] == str(job) and r["env"] == ENV
    assert r["as"] == SMALL.memory_bytes and r["nnp"] == "1" and r["sid"]
    # documented: `hide` and the network are not isolated in this mode
    assert r["hidden"]
    assert "NO network isolation." in res.isolation.missing


# --------------------------------------------------------------------------
# Limits (every mode)
# --------------------------------------------------------------------------

def test_wall_limit_kills_the_whole_tree(any_mode, job):
    marker = f"wall-marker-{os.getpid()}-{any_mode}"
    code = (
        "import subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)', {marker!r}])\n"
        "print('started', flush=True)\n"
        "time.sleep(120)\n"
    )
    t0 = time.monotonic()
    res = run_py(code, job, any_mode, limits=Limits(wall_seconds=2, memory_bytes=2**30,
                                                    max_processes=64))
    assert res.timed_out and res.signal == signal.SIGKILL and res.returncode is None
    assert res.stdout_tail.strip() == "started"
    assert time.monotonic() - t0 < 10
    time.sleep(0.2)
    assert processes_with(marker) == []


def test_cpu_limit_ends_a_busy_loop(any_mode, job):
    res = run_py("while True: pass", job, any_mode,
                 limits=Limits(wall_seconds=20, cpu_seconds=1, memory_bytes=2**30, max_processes=64))
    assert not res.timed_out
    assert res.signal in (signal.SIGXCPU, signal.SIGKILL)
    assert res.wall_seconds < 10


def test_memory_bomb_fails_instead_of_hanging(any_mode, job):
    code = "chunks = []\nwhile True:\n    chunks.append(bytearray(64 * 2**20))\n"
    res = run_py(code, job, any_mode,
                 limits=Limits(wall_seconds=20, memory_bytes=512 * 2**20, max_processes=64))
    assert not res.timed_out
    assert res.returncode != 0
    assert "MemoryError" in res.stderr_tail or res.signal is not None


def test_file_size_limit(any_mode, job):
    code = ("import os\ntry:\n    open('big.bin', 'wb').write(b'x' * (16 * 2**20))\n"
            "except OSError as e:\n    print('refused', e.errno)\n")
    res = run_py(code, job, any_mode)
    assert res.returncode == 0, res.stderr_tail
    assert res.stdout_tail.startswith("refused")
    assert (job / "big.bin").stat().st_size <= SMALL.file_size_bytes


def test_fork_loop_is_bounded_by_the_process_limit(any_mode, job):
    if os.geteuid() == 0 and any_mode != "root":
        pytest.skip(f"RLIMIT_NPROC is not enforced for uid 0, which {any_mode} mode keeps "
                    "when the grader runs as root (documented in Isolation.missing)")
    marker = f"fork-marker-{os.getpid()}-{any_mode}"
    # Linear, self-capped at 300: even if the limit failed, this stays harmless.
    code = (
        f"import os, sys, time\nMARK = {marker!r}\nn = 0\n"
        "for _ in range(300):\n"
        "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
        "    if pid == 0:\n        time.sleep(60)\n        os._exit(0)\n"
        "    n += 1\n"
        "print(n, flush=True)\n"
    )
    res = run_in_sandbox([PY, "-I", "-c", code, marker], job, env=ENV, mode=any_mode,
                         limits=Limits(wall_seconds=20, memory_bytes=2**30, max_processes=64))
    assert res.returncode == 0, res.stderr_tail
    assert int(res.stdout_tail.split()[0]) < 64
    time.sleep(0.2)
    assert processes_with(marker) == []   # the sleeping children were killed


def test_real_fork_bomb_is_contained_in_root_mode(job):
    _require("root")
    slot = 7
    code = ("import os, time\n"
            "while True:\n"
            "    try:\n        os.fork()\n"
            "    except OSError:\n        time.sleep(0.05)\n")
    res = run_py(code, job, "root", slot=slot,
                 limits=Limits(wall_seconds=3, memory_bytes=2**30, max_processes=32))
    assert res.timed_out
    time.sleep(0.2)
    assert processes_of_uid(sandbox.SANDBOX_UID_BASE + slot) == []


def test_huge_stdout_keeps_only_a_tail(any_mode, job):
    code = ("import sys\nb = b'y' * 65535 + b'\\n'\n"
            "for _ in range(3000):\n    sys.stdout.buffer.write(b)\n"   # ~200 MB
            "sys.stdout.buffer.write(b'THE END\\n')\n")
    tracemalloc.start()
    try:
        res = run_py(code, job, any_mode)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert res.returncode == 0, res.stderr_tail
    assert res.stdout_tail.endswith("THE END\n")
    assert len(res.stdout_tail) <= sandbox.TAIL_BYTES
    assert peak < 16 * 2**20, f"the grader buffered {peak} bytes"


def test_userns_mode_for_a_non_root_grader(job):
    """Run a grader as an unprivileged uid (inside root mode) and let it use userns mode.

    This is the situation userns mode is made for; as root the kernel exempts
    uid 0 from RLIMIT_NPROC, so only here can the per-namespace count be seen.
    """
    _require("root")
    inner = (
        "import json, os, sys\nsys.path.insert(0, %r)\n"
        "from pathlib import Path\nfrom grader.isolation import sandbox\n"
        "work = Path('inner'); work.mkdir()\n"
        "code = ('import os, time\\nn = 0\\nfor _ in range(100):\\n    try:\\n        pid = os.fork()\\n'\n"
        "        '    except OSError:\\n        break\\n    if pid == 0:\\n        time.sleep(30)\\n'\n"
        "        '        os._exit(0)\\n    n += 1\\nprint(n)\\n'\n"
        "        'os.mkdir(\"d\"); open(\"d/f\", \"w\").write(\"kept\"); os.chmod(\"d/f\", 0); os.chmod(\"d\", 0)\\n')\n"
        "res = sandbox.run_in_sandbox([sys.executable, '-I', '-c', code], work,\n"
        "    env={'PATH': '/usr/bin:/bin'}, limits=sandbox.Limits(wall_seconds=20, max_processes=16,\n"
        "    memory_bytes=2**30))\n"
        "print(json.dumps({'mode': res.isolation.mode, 'rc': res.returncode, 'forks': res.stdout_tail,\n"
        "    'err': res.stderr_tail[-500:], 'kept': (work / 'd' / 'f').read_text(),\n"
        "    'uid': os.getuid()}))\n"
    ) % str(ROOT)
    res = run_in_sandbox([PY, "-c", inner], job, env=ENV, limits=SMALL, mode="root", expose=[ROOT / "grader"])
    assert res.returncode == 0, res.stderr_tail
    r = last_json(res)
    assert r["uid"] == sandbox.SANDBOX_UID_BASE and r["mode"] == "userns", r
    assert r["rc"] == 0, r["err"]
    assert int(r["forks"]) < 16            # RLIMIT_NPROC counted inside the user namespace
    assert r["kept"] == "kept"             # chmod 000 undone for the grader user


# --------------------------------------------------------------------------
# Parallel jobs (root mode)
# --------------------------------------------------------------------------

def test_parallel_slots_cannot_read_each_others_workdir(outside):
    _require("root")
    dirs = {1: outside / "slot1", 2: outside / "slot2"}
    for d in dirs.values():
        d.mkdir()
        (d / "submission.ipynb").write_text(SECRET)
    code = (
        "import json, os, sys, time\n"
        "other = sys.argv[1]\n"
        "open('mine.txt', 'w').write('mine')\n"
        "time.sleep(1.0)\n"   # both jobs are running now
        "r = {}\n"
        "for what, fn in [('list', lambda: os.listdir(other)),\n"
        "                 ('read', lambda: open(os.path.join(other, 'submission.ipynb')).read()),\n"
        "                 ('write', lambda: open(os.path.join(other, 'x'), 'w').write('x'))]:\n"
        "    try:\n        fn(); r[what] = 'ok'\n"
        "    except Exception as e:\n        r[what] = type(e).__name__\n"
        "print(json.dumps(r))\n"
    )
    results = {}

    def run_job(slot, other):
        results[slot] = run_in_sandbox([PY, "-I", "-c", code, str(dirs[other])], dirs[slot],
                                       env=ENV, limits=SMALL, slot=slot, mode="root")

    threads = [threading.Thread(target=run_job, args=(1, 2)),
               threading.Thread(target=run_job, args=(2, 1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for slot in (1, 2):
        r = last_json(results[slot])
        # the other slot's workdir is not even in this job's root
        assert r == {"list": "FileNotFoundError", "read": "FileNotFoundError",
                     "write": "FileNotFoundError"}, r
        assert (dirs[slot] / "mine.txt").read_text() == "mine"
    # a later job in slot 1 cannot read what the previous slot-1 job left behind either
    later = outside / "slot1-later"
    later.mkdir()
    res = run_in_sandbox([PY, "-I", "-c", code, str(dirs[1])], later, env=ENV, limits=SMALL,
                         slot=1, mode="root")
    assert last_json(res)["read"] in ("PermissionError", "FileNotFoundError")


# --------------------------------------------------------------------------
# The notebook runner, inside the sandbox
# --------------------------------------------------------------------------

def _runner_job(work: Path, cells: list[str] | None, *, raw: str | None = None,
                cell_timeout=10, mode=None, limits=SMALL, extra=(), env=ENV):
    work.mkdir(parents=True, exist_ok=True)
    shutil.copy(RUNNER, work / "notebook_runner.py")
    if raw is not None:
        (work / "in.ipynb").write_text(raw)
    else:
        nb = nbformat.v4.new_notebook()
        nb.cells = [c if isinstance(c, dict) else nbformat.v4.new_code_cell(c) for c in cells]
        nbformat.write(nb, str(work / "in.ipynb"))
    argv = [PY, "-I", "notebook_runner.py", "in.ipynb", "out.ipynb",
            "--cell-timeout", str(cell_timeout), *extra]
    mode = mode or sandbox.detect_isolation().mode
    res = run_in_sandbox(argv, work, env=env, limits=limits, mode=mode,
                         hide=[ROOT / "grader", ROOT / "solutions"])
    status = json.loads((work / "run_status.json").read_text())
    out = nbformat.read(str(work / "out.ipynb"), as_version=4) \
        if (work / "out.ipynb").exists() else None
    return res, status, out


def _text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


@pytest.mark.parametrize("mode", ["best", "userns"])
def test_runner_executes_a_tiny_notebook(tmp_path, mode):
    mode = None if mode == "best" else _require(mode)
    res, status, out = _runner_job(tmp_path / "job", [
        "print(1+1)",
        "import os\nprint(os.environ['NBGRADER_EXECUTION'], os.environ['HOME'].startswith(os.getcwd()))",
    ], mode=mode)
    assert res.returncode == 0, res.stderr_tail
    assert status == {"ok": True, "kernel_died_at_cell": None, "timed_out_cells": [],
                      "error": None, "cells_executed": 2, "workdir_damaged_at_cell": None,
                      "dropped_messages": 0}
    assert _text(out.cells[0]) == "2\n"
    assert _text(out.cells[1]) == "autograde True\n"
    assert (tmp_path / "job" / ".runner" / "ipython").is_dir()


def test_runner_timeouts_caps_and_kernel_death(tmp_path):
    res, status, out = _runner_job(tmp_path / "job", [
        "print(1+1)",
        "while True: pass",
        "import sys\nfor _ in range(10_000):\n    sys.stdout.write('z' * 999 + '\\n')",  # 10 MB
        "import numpy, matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "print('after', numpy.arange(3).sum())",
        "import os; os._exit(1)",
        "print('never')",
    ], cell_timeout=3, limits=Limits(wall_seconds=60, memory_bytes=2**30, max_processes=64))
    assert res.returncode == 1
    assert status["ok"] is False
    assert status["kernel_died_at_cell"] == 4
    assert status["timed_out_cells"] == [1]
    assert status["cells_executed"] == 4
    assert "died" in status["error"]
    cells = out.cells
    assert _text(cells[0]) == "2\n"                                   # earlier outputs kept
    assert [o.ename for o in cells[1].outputs if o.output_type == "error"] == ["KeyboardInterrupt"]
    capped = _text(cells[2])
    assert len(capped) < 21_000 and "truncated" in capped              # 10 MB capped to 20 000
    assert _text(cells[3]) == "after 3\n"                              # ran after the timeout
    assert cells[4].outputs[-1].ename == "DeadKernelError"
    assert cells[5].outputs[0].ename == "NotExecuted"                  # fail closed


FORGED_MESSAGES = """
from jupyter_client.session import Session
kernel = get_ipython().kernel
forger = Session(key=b"not-the-kernel-key", username="learner")
for _ in range(3):
    forger.send(kernel.iopub_socket, "stream", {"name": "stdout", "text": "forged"},
                parent=kernel.get_parent("shell"))
kernel.session.send(kernel.iopub_socket, "display_data", {"data": 7, "metadata": None},
                    parent=kernel.get_parent("shell"))
print("sent")
"""


def test_runner_drops_forged_and_malformed_kernel_messages(tmp_path):
    """The learner's process holds the kernel's session key: a message with a bad signature, or a signed
    one the runner cannot process, is dropped and counted, and the notebook runs on (once, one such
    message stopped the runner and the grader charged every later item)."""
    res, status, out = _runner_job(tmp_path / "job", ["print(1)", FORGED_MESSAGES, "print(2)"])
    assert res.returncode == 0, res.stderr_tail
    assert status["ok"] is True and status["error"] is None, status
    assert status["cells_executed"] == 3
    assert status["dropped_messages"] == 4, status
    assert [_text(c) for c in out.cells] == ["1\n", "sent\n", "2\n"]


def test_a_runner_fault_is_a_grading_problem_not_a_zero():
    from grader.workflow.course import runner_fault

    def judged(error):
        return {"ch.ipynb": {"report": {"run": {"error": error}}, "executed": "{}"}}

    assert runner_fault(judged(None)) is None
    assert runner_fault(judged("the kernel died in cell 4")) is None          # the learner's code did it
    assert runner_fault(judged("cannot read notebook 'x'")) is None
    for fault in ("runner error: ValueError: Invalid Signature", "the kernel failed to start: TimeoutError",
                  "runner crashed: KeyError: 'x'"):
        message = runner_fault(judged(fault))
        assert message and "ch.ipynb" in message and "nothing was recorded" in message, fault


def test_runner_kills_a_kernel_that_ignores_the_interrupt(tmp_path):
    res, status, out = _runner_job(tmp_path / "job", [
        "print('first')",
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass",
        "print('never')",
    ], cell_timeout=2, limits=Limits(wall_seconds=60, memory_bytes=2**30, max_processes=64))
    assert status["kernel_died_at_cell"] == 1 and status["timed_out_cells"] == [1]
    assert "interrupt" in status["error"]
    assert _text(out.cells[0]) == "first\n"
    assert out.cells[2].outputs[0].ename == "NotExecuted"


def test_runner_killed_at_the_wall_limit_leaves_completed_cells(tmp_path):
    # The wall limit is generous for starting a kernel and printing a line even on a loaded machine;
    # the second cell waits far longer, so the kill always lands there, whatever the machine's speed.
    res, status, out = _runner_job(tmp_path / "job", [
        "print('done before the wall')",
        "import time; time.sleep(3600)",
    ], cell_timeout=3600, limits=Limits(wall_seconds=30, memory_bytes=2**30, max_processes=64))
    assert res.timed_out
    assert status["ok"] is False and "did not finish" in status["error"]
    assert status["cells_executed"] == 1
    assert _text(out.cells[0]) == "done before the wall\n"
    assert out.cells[1].outputs[0].ename == "NotExecuted"


def _hidden_test_cell(item, source):
    cell = nbformat.v4.new_code_cell(source)
    cell.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "points": 1,
                                 "grade_id": f"test_{item}", "schema_version": 3}
    return cell


RECORD_RELU = ("import os\nos.makedirs('.grading/results', exist_ok=True)\n"
               "open('.grading/results/relu.json', 'w').write('recorded')")


def test_runner_puts_back_grading_files_the_notebook_removed(tmp_path):
    work = tmp_path / "job"
    (work / ".grading" / "cases").mkdir(parents=True)
    (work / ".grading" / "cases" / "relu.json").write_text('{"the": "cases"}')
    res, status, out = _runner_job(work, [
        _hidden_test_cell("relu", RECORD_RELU),
        "import shutil\nshutil.rmtree('.grading')",
        "print(open('.grading/cases/relu.json').read(), open('.grading/results/relu.json').read())",
    ], env=dict(ENV, COURSE_GRADING_DIR=str(work / ".grading")))
    assert res.returncode == 0, res.stderr_tail
    assert status["workdir_damaged_at_cell"] == 1, status
    assert _text(out.cells[2]) == '{"the": "cases"} recorded\n'


def test_runner_keeps_a_recording_as_its_hidden_test_left_it(tmp_path):
    """Changed after its hidden test: put back; written by any other cell: removed."""
    work = tmp_path / "job"
    (work / ".grading" / "cases").mkdir(parents=True)
    res, status, out = _runner_job(work, [
        _hidden_test_cell("relu", RECORD_RELU),
        "open('.grading/results/relu.json', 'w').write('forged')\n"
        "open('.grading/results/softmax.json', 'w').write('forged before its test')",
        "import os\nprint(open('.grading/results/relu.json').read(), sorted(os.listdir('.grading/results')))",
    ], env=dict(ENV, COURSE_GRADING_DIR=str(work / ".grading")))
    assert res.returncode == 0, res.stderr_tail
    assert status["workdir_damaged_at_cell"] == 1, status
    assert _text(out.cells[2]) == "recorded ['relu.json']\n"


@pytest.mark.parametrize("raw", ["this is not json {", '{"cells": 5, "nbformat": 4}'])
def test_runner_reports_a_malformed_notebook(tmp_path, raw):
    res, status, out = _runner_job(tmp_path / "job", None, raw=raw)
    assert res.returncode == 2
    assert status["ok"] is False and status["cells_executed"] == 0
    assert status["error"].startswith("cannot read notebook")
    assert out is not None and out.cells == []


# --------------------------------------------------------------------------
# Allow-list: copies of the course elsewhere on the host are invisible
# --------------------------------------------------------------------------

HUNT = r"""
import json, os, sys
plan = json.load(open(sys.argv[1]))   # a file: the command line and environment are in /proc
token = plan["token"]
found, seen = [], 0
for top, dirs, files in os.walk("/", onerror=lambda e: None):
    if top == "/proc" or top.startswith("/proc/"):
        dirs[:] = []
        continue
    for name in dirs + files:
        seen += 1
        path = os.path.join(top, name)
        if token in path:
            found.append(path)
proc_text = ""
for name in ("mountinfo", "mounts", "environ", "cmdline", "maps"):
    try:
        proc_text += open("/proc/self/" + name, errors="replace").read()
    except OSError:
        pass
readable = []
for path in plan["files"]:
    try:
        open(path).read(10)
        readable.append(path)
    except OSError:
        pass
print(json.dumps({"found": found, "seen": seen, "in_proc": token in proc_text, "readable": readable,
                  "sys": os.path.exists("/sys"), "root": sorted(os.listdir("/"))}))
"""


@pytest.fixture
def planted_copies():
    """Copies of worked solutions and references where hosts keep things: /srv, /opt, /mnt, a readable home."""
    token = f"plantedcourse{os.getpid()}"
    tops = [Path("/srv") / token, Path("/opt") / token, Path("/mnt") / token, Path("/home") / token]
    files = []
    for top in tops:
        for rel in ("solutions/01_mlp_xor/01_mlp_xor.ipynb", "grader/judge/references/ch01_mlp_xor.py",
                    "grader/judge/items/ch01_mlp_xor.py"):
            path = top / "clone" / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(SECRET)
            files.append(str(path))
        for d in [top, *top.rglob("*")]:
            d.chmod(0o755 if d.is_dir() else 0o644)
    yield token, files
    for top in tops:
        shutil.rmtree(top, ignore_errors=True)


def test_planted_copies_of_solutions_and_references_are_invisible(ns_mode, job, planted_copies):
    token, files = planted_copies
    (job / "planted.json").write_text(json.dumps({"token": token, "files": files}))
    res = run_in_sandbox([PY, "-I", "-c", HUNT, "planted.json"], job, env=ENV,
                         limits=Limits(wall_seconds=120, cpu_seconds=100, memory_bytes=2**30, max_processes=64),
                         mode=ns_mode)
    assert res.returncode == 0, res.stderr_tail
    r = last_json(res)
    assert r["seen"] > 1000, r["seen"]          # the walk did cover the system trees
    assert r["found"] == [] and r["readable"] == [], r
    assert r["in_proc"] is False                 # /proc names no host path of the copies
    assert r["sys"] is False and "srv" not in r["root"] and "opt" not in r["root"] and "home" not in r["root"]
    # the same hunt as the grading user on the host finds them: the test is able to fail
    host = json.loads(__import__("subprocess").run([PY, "-I", "-c", HUNT.replace('"/"', '"/srv"'),
                                                    str(job / "planted.json")],
                                                   env=ENV, capture_output=True, text=True).stdout)
    assert host["found"] and len(host["readable"]) == len(files)
