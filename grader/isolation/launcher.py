"""The sandbox's launcher: a small program run with ``python -I -S -c`` (never imported).

grader/isolation/sandbox.py reads this file's text and starts it in stages (its docstring says what each stage
does): it sets up namespaces, the allow-list root and the limits, then execs the learner's command. It
uses the standard library only, and nothing of the grader, because it runs where the grader is invisible.
"""
import ctypes, json, os, resource, signal, sys

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_REC, MS_PRIVATE, MS_RELATIME = 16384, 1 << 18, 1 << 21
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_CAPBSET_DROP = 1, 4, 24
PR_SET_SECUREBITS, PR_SET_NO_NEW_PRIVS, PR_CAP_AMBIENT = 28, 38, 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
# SECBIT_NOROOT | _NOROOT_LOCKED | _NO_SETUID_FIXUP_LOCKED | _KEEP_CAPS_LOCKED
SECUREBITS = 1 | 2 | 8 | 32

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                       ctypes.c_ulong, ctypes.c_char_p]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong,
                       ctypes.c_ulong, ctypes.c_ulong]
libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]

STATUS_FD = int(sys.argv[2])


def report(**event):
    data = (json.dumps(event) + "\n").encode()
    try:
        os.write(STATUS_FD, data)
    except OSError:
        pass


def fail(where, exc):
    report(event=where, message=str(exc))
    os._exit(125 if where == "setup_error" else 127)


def prctl(option, arg2=0, arg3=0):
    if libc.prctl(option, arg2, arg3, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "prctl(%d, %d): %s" % (option, arg2, os.strerror(err)))


def mount(source, target, fstype, flags, data=None):
    enc = lambda s: None if s is None else os.fsencode(s)
    if libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "mount(%r -> %r, %s): %s"
                      % (source, target, fstype, os.strerror(err)))


def kept_flags(path):
    # per-mount flags that must be repeated on a bind remount (they may be locked)
    f = os.statvfs(path).f_flag
    out = 0
    for st_bit, ms_bit in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV),
                           (os.ST_NOEXEC, MS_NOEXEC), (os.ST_NOATIME, MS_NOATIME),
                           (os.ST_NODIRATIME, MS_NODIRATIME),
                           (os.ST_RELATIME, MS_RELATIME)):
        if f & st_bit:
            out |= ms_bit
    return out


MNT_DETACH = 2
PIVOT_ROOT_NR = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

# Order of operations at the same depth: a tmpfs first, then what is mounted on or in it.
ORDER = {"tmpfs": 0, "ro": 1, "rw": 1, "dev": 1, "symlink": 2, "hide": 3}


def ensure_target(target, is_dir):
    if os.path.lexists(target):
        return
    os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
    if is_dir:
        os.mkdir(target, 0o755)
    else:
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o644))


def pivot_root():
    nr = PIVOT_ROOT_NR.get(os.uname().machine)
    if nr is None:
        raise OSError("pivot_root: unknown syscall number on %s" % os.uname().machine)
    if libc.syscall(nr, b".", b".") != 0:
        err = ctypes.get_errno()
        raise OSError(err, "pivot_root: " + os.strerror(err))
    if libc.umount2(b".", MNT_DETACH) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "umount2(old root): " + os.strerror(err))


def build_root(cfg):
    """Allow-list: a fresh empty root holding only the planned paths, then pivot_root into it."""
    os.umask(0o022)
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    plan = cfg["plan"]          # [path, kind, argument]
    # Open every bind source before anything is mounted over it (the workdir may lie under /tmp).
    fds = {}
    for path, kind, _ in plan:
        if kind in ("ro", "rw", "dev"):
            try:
                fds[path] = os.open(path, os.O_PATH)
            except FileNotFoundError:
                if path == cfg["workdir"]:
                    raise
    root = cfg["staging"]
    mount("tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=4m,nr_inodes=4096")
    ops = sorted(plan, key=lambda op: (op[0].rstrip("/").count("/"), ORDER[op[1]], op[0]))
    to_seal = []
    for path, kind, arg in ops:
        target = root + path
        if kind == "tmpfs":
            ensure_target(target, True)
            mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, arg)
        elif kind == "symlink":
            if not os.path.lexists(target):
                os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
                os.symlink(arg, target)
        elif kind in ("ro", "rw", "dev"):
            fd = fds.get(path)
            if fd is None:
                continue
            ensure_target(target, os.path.isdir("/proc/self/fd/%d" % fd))
            mount("/proc/self/fd/%d" % fd, target, None, MS_BIND | MS_REC)
            if kind != "rw":
                mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | kept_flags(target))
        elif kind == "hide":
            # a hidden path that an exposed tree would otherwise show
            if not os.path.lexists(target):
                continue
            if os.path.isdir(target) and not os.path.islink(target):
                mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, arg)
                to_seal.append(target)
            else:
                mount("/dev/null", target, None, MS_BIND)
                mount(None, target, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NODEV
                      | MS_NOSUID | MS_NOEXEC | kept_flags(target))
    for target in reversed(to_seal):
        mount(None, target, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for fd in fds.values():
        os.close(fd)
    os.chdir(root)
    pivot_root()
    os.chdir("/")
    # the skeleton itself (directories leading to the exposed paths) is read-only
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def drop_capabilities():
    with open("/proc/sys/kernel/cap_last_cap") as f:
        last = int(f.read())
    for cap in range(last + 1):
        prctl(PR_CAPBSET_DROP, cap)
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    prctl(PR_SET_SECUREBITS, SECUREBITS)


def clear_capability_sets():
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                    ("inheritable", ctypes.c_uint32)]
    hdr = Header(0x20080522, 0)
    data = (Data * 2)()
    if libc.capset(ctypes.byref(hdr), data) != 0:
        err = ctypes.get_errno()
        raise OSError(err, "capset: " + os.strerror(err))


def exec_target(cfg, new_session):
    try:
        for sig in (signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM,
                    signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        if new_session:
            os.setsid()
        for name, soft, hard in cfg["rlimits"]:
            res = getattr(resource, name)
            cur_hard = resource.getrlimit(res)[1]
            if cur_hard != resource.RLIM_INFINITY:   # never try to raise a hard limit
                soft, hard = min(soft, cur_hard), min(hard, cur_hard)
            resource.setrlimit(res, (soft, hard))
        if cfg["mode"] != "none":
            drop_capabilities()
        if cfg["mode"] == "root":
            os.setgroups([])
            os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
            os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
        if cfg["mode"] != "none":
            clear_capability_sets()
        prctl(PR_SET_NO_NEW_PRIVS, 1)
        os.chdir(cfg["workdir"])
        argv = cfg["argv"]
        os.execvpe(argv[0], argv, cfg["env"])
    except BaseException as exc:
        fail("exec_error", "cannot execute %r: %s" % (cfg["argv"][0], exc))


def read_config(fd):
    size = os.fstat(fd).st_size
    data = b""
    while len(data) < size:
        chunk = os.pread(fd, size - len(data), len(data))
        if not chunk:
            break
        data += chunk
    os.close(fd)
    return json.loads(data)


def stage0(cfg):
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != cfg["grader_pid"]:
        os._exit(125)
    if cfg["mode"] == "none":
        os.set_inheritable(STATUS_FD, False)
        exec_target(cfg, new_session=False)   # Popen already made a new session
    cfg_fd = os.memfd_create("sandbox-config", 0)
    os.set_inheritable(cfg_fd, True)
    os.write(cfg_fd, json.dumps(cfg).encode())
    argv = list(cfg["unshare_argv"]) + [str(cfg_fd), str(STATUS_FD), "stage1"]
    try:
        os.execve(argv[0], argv, cfg["launcher_env"])
    except OSError as exc:
        fail("setup_error", "cannot execute %s: %s" % (argv[0], exc))


def stage1(cfg):
    # PID 1 of the new PID namespace.
    os.set_inheritable(STATUS_FD, False)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                signal.SIGPIPE, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)
    try:
        build_root(cfg)
        name = b"sandbox"
        if libc.sethostname(name, len(name)) != 0:
            raise OSError(ctypes.get_errno(), "sethostname failed")
    except BaseException as exc:
        fail("setup_error", exc)
    report(event="started")
    pid = os.fork()
    if pid == 0:
        exec_target(cfg, new_session=True)
    prctl(PR_SET_DUMPABLE, 0)
    while True:
        try:
            wpid, status = os.wait()
        except ChildProcessError:
            report(event="lost")
            os._exit(126)
        if wpid == pid:
            break
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        report(event="exit", returncode=None, signal=-code)
    else:
        report(event="exit", returncode=code, signal=None)
    os._exit(0)


def main():
    try:
        cfg = read_config(int(sys.argv[1]))
    except BaseException as exc:
        fail("setup_error", "cannot read sandbox configuration: %s" % exc)
    if sys.argv[3] == "stage0":
        stage0(cfg)
    else:
        stage1(cfg)


main()
