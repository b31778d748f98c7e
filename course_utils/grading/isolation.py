"""Each student's code in a bubblewrap sandbox of its own, entered by processes forked warm.

Per student the worker starts a *holder*: `bwrap` with new user, mount, PID, IPC, UTS and (unless
`--network`) network namespaces, a read-only view of the system, the Python environment, the
course package and the MNIST data, a private /tmp, and one writable folder, the student's work
folder; nothing else exists there (no hand-ins, feedback, gradebook, solutions, --checks files or
home folder). Its command only waits. The student's kernel and each child that runs student
functions for the checks are forked from the warm worker, so they cannot be started by bwrap;
instead `join` moves such a process into the holder's namespaces (the same ones bwrap built),
drops every capability, forbids gaining new ones, and forks: the child is inside the sandbox's
PID namespace (it sees only the sandbox's processes and cannot signal the grader), the parent
stays outside only to pass on signals and the exit code. Every process the sandbox holds dies
with the holder (`--die-with-parent`, and the end of its PID namespace).
"""
from __future__ import annotations

import ctypes
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

NS_GET_PARENT = 0xB702                  # ioctl on a namespace file: its parent user namespace
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
NAMESPACES = ("mnt", "pid", "net", "ipc", "uts")
SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")
SECRETS = ("/etc/shadow", "/etc/gshadow", "/etc/ssh", "/etc/sudoers", "/etc/sudoers.d", "/etc/ssl/private")
ENABLE = """\
Student code runs in a bubblewrap sandbox by default (no classmates' work, feedback, gradebook or
network), which needs the `bwrap` command and user namespaces. Here: {why}. To enable it:
  sudo apt-get install bubblewrap            (Fedora/RHEL: dnf install bubblewrap)
  sudo sysctl -w kernel.unprivileged_userns_clone=1                 (Debian kernels before 6.x)
  sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0     (Ubuntu 23.10 and later)
  sudo sysctl -w user.max_user_namespaces=15000                     (RHEL, where it is 0)
or run the grader as root (bwrap then needs no user namespace; add --user nobody).
In a container, allow user namespaces (see docs/grading-sandbox.md). Only if every hand-in is
trusted: --no-sandbox grades without isolation (each student's code can read and change the
whole class's work), and the reports say so."""
_libc = ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        raise OSError(ctypes.get_errno(), f"{what}: {os.strerror(ctypes.get_errno())}")


def bwrap_args(work: Path, network: bool = False, user_namespace: bool = True, hide: list[str] = ()) -> list[str]:
    """bwrap's options for one student's sandbox: the read-only view, private /tmp, `work` writable."""
    args = ["--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    if user_namespace:
        args += ["--unshare-user"]
        if os.geteuid() == 0:                        # inside, root's processes are `nobody`, not root
            args += ["--uid", "65534", "--gid", "65534"]
    if not network:
        args += ["--unshare-net"]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for path in SYSTEM:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    bound = sorted({os.path.realpath(p) for p in _readable_folders()})
    bound = [p for p in bound if not any(p.startswith(b + os.sep) for b in bound)]   # inner ones come along
    if not user_namespace:      # as root for --user: that user must pass the folders bwrap makes above them
        above = {str(a) for p in [*bound, str(work)] for a in Path(p).parents
                 if str(a) != "/" and not any(str(a) == b or str(a).startswith(b + os.sep) for b in [*bound, *SYSTEM])}
        for folder in sorted(above):
            args += ["--perms", "0755", "--dir", folder]
    for path in bound:
        args += ["--ro-bind", path, path]
    args += ["--bind", str(work), str(work)]
    for path in {os.path.realpath(p) for p in (*SECRETS, *hide)}:   # never visible, even inside a bound folder
        if not any(path == b or path.startswith(b + os.sep) for b in [*bound, *SYSTEM]):
            continue
        if os.path.isdir(path):
            args += ["--tmpfs", path]
        elif os.path.exists(path):
            args += ["--ro-bind", "/dev/null", path]
    return args + ["--chdir", str(work)]


def _readable_folders() -> list[str]:
    """The Python installation, its packages, the course package and the MNIST data: all read-only."""
    import course_utils
    from course_utils.grading.kernel import isolated_path

    folders = [sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable)),
               str(Path(course_utils.__file__).resolve().parent)]
    folders += [p for p in isolated_path() if os.path.isdir(p)]
    root = Path(course_utils.__file__).resolve().parent.parent
    mnist = os.environ.get("MNIST_ROOT")
    folders += [d for d in (mnist, str(root / "data")) if d and os.path.isdir(d)]
    course = str(root)
    # never the course folder itself (it holds solutions/): only what lies below it and is named above
    return [f for f in folders if os.path.realpath(f) != course and not course.startswith(os.path.realpath(f) + os.sep)]


class Holder:
    """One running sandbox: bwrap and a command that waits; `pid` is the process whose namespaces to join."""

    def __init__(self, work: Path, network: bool = False, user_namespace: bool = True, hide: list[str] = (),
                 pid_file: Path | None = None):
        self.spec = (work, network, user_namespace, list(hide))
        self.pid_file = pid_file
        self.process: subprocess.Popen | None = None
        self.pid = 0

    def start(self) -> int:
        """Start the sandbox and wait until it is ready; return the pid to join."""
        read, write = os.pipe()
        cmd = ["bwrap", *bwrap_args(*self.spec), "--info-fd", str(write), "--", "sh", "-c", "echo; exec cat"]
        self.process = subprocess.Popen(cmd, pass_fds=(write,), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, preexec_fn=_die_with_parent)
        os.close(write)
        ready = self.process.stdout.readline()
        with os.fdopen(read) as f:
            info = f.read(4096)
        if not ready:
            self.process.wait()
            raise OSError(f"the sandbox did not start: {self.process.stderr.read().decode(errors='replace').strip()}")
        self.pid = json.loads(info[: info.index("}") + 1])["child-pid"]
        return self.pid

    def alive(self) -> bool:
        """Whether the sandbox still runs (a student may have ended it)."""
        return self.process is not None and self.process.poll() is None

    def current(self) -> int:
        """The pid to join, starting the sandbox again if it ended."""
        if not self.alive():
            self.stop()
            self.start()
        return self.pid

    def stop(self) -> None:
        """End the sandbox and everything in it."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
                stream.close()
            self.process, self.pid = None, 0


_holder: Holder | None = None


def open_sandbox(work: Path, pid_file: Path, network: bool, user_namespace: bool, hide: list[str]) -> None:
    """Start this student's sandbox; `ensure()` keeps `pid_file` naming a running one."""
    global _holder
    close_sandbox()
    _holder = Holder(work, network, user_namespace, hide, pid_file)
    ensure()


def ensure() -> None:
    """Start the student's sandbox again if it ended (its code may end it); write the pid to join."""
    if _holder is not None:
        before = _holder.pid
        if _holder.current() != before:
            _holder.pid_file.write_text(str(_holder.pid))


def close_sandbox() -> None:
    """End the student's sandbox and everything in it."""
    global _holder
    if _holder is not None:
        _holder.stop()
        _holder = None


def _die_with_parent() -> None:
    """In a child: SIGKILL when the process that started it ends."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent ends (at once if `parent` already has)."""
    _die_with_parent()
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


def _user_namespaces(pid: int) -> list[int]:
    """Descriptors of `pid`'s user namespace and its parents below ours, outermost first ([] if it shares ours)."""
    own = os.stat("/proc/self/ns/user").st_ino
    chain = [os.open(f"/proc/{pid}/ns/user", os.O_RDONLY)]
    while os.fstat(chain[-1]).st_ino != own:
        try:
            chain.append(fcntl.ioctl(chain[-1], NS_GET_PARENT))
        except OSError:
            break
    if os.fstat(chain[-1]).st_ino == own:
        os.close(chain.pop())
    return chain[::-1]


def _drop_capabilities() -> None:
    """No capability, and none gained later (no set-uid or file capabilities)."""
    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    _check(_libc.capset(ctypes.byref(Header(_LINUX_CAPABILITY_VERSION_3, 0)), (Data * 2)()), "capset")
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def join(pid: int, cwd: str, user: str | None = None) -> None:
    """Enter the sandbox whose holder is `pid` (this process must be single-threaded) and return in
    a child inside its PID namespace, in `cwd`; this process stays only to relay signals and the
    exit code. With `user` (as root, in a sandbox without user namespace) become that user."""
    users = _user_namespaces(pid)
    others = [os.open(f"/proc/{pid}/ns/{ns}", os.O_RDONLY) for ns in NAMESPACES]
    for fd in [*users[:1], *others, *users[1:]]:        # the outer user namespace owns the others
        _check(_libc.setns(fd, 0), "setns")
        os.close(fd)
    if user:
        from .sandbox import switch_user
        os.chdir(cwd)
        switch_user(user)
    _drop_capabilities()
    os.chdir(cwd)
    os.environ["HOME"] = cwd
    parent = os.getpid()
    child = os.fork()
    if child == 0:
        _die_with_parent()
        return
    _relay(child, parent)


def _relay(child: int, me: int) -> None:
    """Outside the sandbox: pass on signals to `child`, then exit as it did."""
    from .sandbox import close_fds_except
    close_fds_except(set())

    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(child, signum)
        except OSError:
            pass

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, forward)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:
            os._exit(1)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        signal.signal(-code, signal.SIG_DFL)
        os.kill(me, -code)
    os._exit(code & 0xFF)


def problem(user_namespace: bool = True) -> str:
    """Why the sandbox cannot start here ('' if it can): bwrap missing or user namespaces refused."""
    if shutil.which("bwrap") is None:
        return "the `bwrap` command (package bubblewrap) is not installed"
    args = ["bwrap", "--unshare-pid", "--unshare-net", "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev",
            "--tmpfs", "/tmp", "true"]
    if user_namespace:
        args.insert(1, "--unshare-user")
    done = subprocess.run(args, capture_output=True, text=True)
    return "" if done.returncode == 0 else f"bwrap could not create its namespaces ({done.stderr.strip()})"
