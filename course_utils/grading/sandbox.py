"""Run student code (a kernel, the checker) under the grader's limits.

    python -m course_utils.grading.sandbox LIMITS.json MODULE [ARGS...]   # the kernel
    enter(limits, inside=False)                                          # the forked checker

In order: resource limits (data memory, file size, no core dumps, lowered priority); an audit
hook, the second line of defence, that records what the code tried: Python-level reads of the
`hidden` folders and writes into the `protected` ones, commands that name them, signals to
processes it did not start, and (without network) connections; then the student's bubblewrap
sandbox (`isolation`; the process named in `sandbox_file`), as `user` if given. Without a
sandbox (`--no-sandbox`): with `no_network`, a fresh network namespace where nothing is
reachable (the kernel talks to the grader over Unix sockets, which still work), and with `user`,
that account (needs root). Finally MODULE runs as `__main__`. The limits are inherited by every
process it starts.
"""
from __future__ import annotations

import ctypes
import json
import os
import pwd
import resource
import runpy
import signal
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import isolation

CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_WRITE_EVENTS = {"os.remove", "os.rename", "os.rmdir", "os.truncate", "os.chmod", "os.utime",
                 "os.mkdir", "os.symlink", "os.link", "shutil.rmtree", "shutil.move"}
_LIST_EVENTS = {"os.listdir", "os.scandir", "glob.glob"}
_RUN_EVENTS = {"subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn"}


@dataclass
class Limits:
    """What student code may use: memory (MiB), file size (MiB), user, network, watched folders."""

    memory_mb: int = 4096
    file_mb: int = 256
    user: str | None = None
    no_network: bool = False
    audit_log: str | None = None
    hidden: list[str] = field(default_factory=list)
    protected: list[str] = field(default_factory=list)
    sandbox_file: str | None = None          # holds the pid of the student's sandbox to join
    network: bool = True                     # whether connections are allowed (else audited)

    def save(self, path: Path) -> None:
        """Write these limits as JSON for the sandbox command line."""
        path.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, path: str) -> Limits:
        """Read limits written by `save`."""
        return cls(**json.loads(Path(path).read_text()))


def command(limits_file: Path, module: str, *args: str) -> list[str]:
    """The argv that runs `python -m module args` inside the sandbox (isolated mode: cwd not on sys.path)."""
    return [sys.executable, "-I", "-m", "course_utils.grading.sandbox", str(limits_file), module, *args]


def apply_rlimits(limits: Limits) -> None:
    """Cap data memory and file size, disable core dumps, lower the scheduling priority."""
    memory, files = limits.memory_mb * 2**20, limits.file_mb * 2**20
    resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
    resource.setrlimit(resource.RLIMIT_FSIZE, (files, files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.nice(5)


def unshare_network() -> None:
    """Move this process into a new network namespace (no route to anything outside it)."""
    libc = ctypes.CDLL(None, use_errno=True)
    flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWUSER | CLONE_NEWNET
    if libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise SystemExit(f"--no-network: unshare failed ({os.strerror(err)}); run as root or enable "
                         "unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1).")


def switch_user(name: str) -> None:
    """Become user `name` (groups, gid, uid), with HOME set to the working directory."""
    entry = pwd.getpwnam(name)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ.update(HOME=os.getcwd(), USER=name, LOGNAME=name)


def _inside(path: object, roots: list[str]) -> str | None:
    """The absolute path if `path` (str, bytes or PathLike) lies in one of `roots`, else None."""
    if isinstance(path, int) or path is None:
        return None
    try:
        full = os.path.abspath(os.fsdecode(path))
    except (TypeError, ValueError):
        return None
    return full if any(full == r or full.startswith(r + os.sep) for r in roots) else None


def install_audit_hook(limits: Limits) -> None:
    """Append 'read PATH' / 'write PATH' lines to `audit_log` for accesses to watched folders."""
    if not limits.audit_log or not (limits.hidden or limits.protected):
        return
    log = os.open(limits.audit_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    hidden = [os.path.abspath(p) for p in limits.hidden]
    protected = [os.path.abspath(p) for p in limits.protected]

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            writing = any(c in (mode or "") for c in "wax+") or bool((flags or 0) & _WRITE_FLAGS)
            hit = _inside(path, protected) if writing else _inside(path, hidden)
            kind = "write" if writing else "read"
        elif event in _WRITE_EVENTS:
            hit, kind = next((h for a in args[:2] if (h := _inside(a, protected))), None), "write"
        elif event in _LIST_EVENTS:
            hit, kind = (_inside(args[0], hidden) if args else None), "read"
        elif event in _RUN_EVENTS:
            text = _command_text(args)
            hit, kind = next((r for r in hidden + protected if r in text), None), "run a command on"
        elif event in ("os.kill", "os.killpg"):
            hit, kind = _foreign_target(event, *args[:2]), "signal"
        elif event == "socket.connect" and not limits.network:
            address = args[1]
            hit, kind = (f"{address[0]} port {address[1]}" if isinstance(address, tuple) else None), "connect"
        else:
            return
        if hit:
            os.write(log, f"{kind} {hit}\n".encode())

    sys.addaudithook(hook)


def _command_text(args: tuple) -> str:
    """A command's program and arguments as one string (for the audit hook)."""
    parts = []
    for arg in args[:2]:
        items = arg if isinstance(arg, (list, tuple)) else [arg]
        parts += [os.fsdecode(a) for a in items if isinstance(a, (str, bytes, os.PathLike))]
    return " ".join(parts)


def _foreign_target(event: str, pid: int, signum: int) -> str | None:
    """'SIGNAME to process PID' when a signal goes to anything but this process and its descendants."""
    if signum == 0 or (pid > 0 and _descends(pid)):           # its own process, child, or their group
        return None
    name = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else str(signum)
    return f"{name} to {'group ' if event == 'os.killpg' else ''}process {pid}"


def _descends(pid: int) -> bool:
    """Whether `pid` is this process or one of its descendants (by /proc's parent links)."""
    me = os.getpid()
    for _ in range(64):
        if pid == me:
            return True
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            return False
        pid = int(stat[stat.rindex(b")") + 2:].split()[1])
        if pid <= 1:
            return False
    return False


def sandbox_pid(limits: Limits) -> int:
    """The pid of the student's sandbox to join (0 when grading without one)."""
    if not limits.sandbox_file:
        return 0
    try:
        return int(Path(limits.sandbox_file).read_text())
    except (OSError, ValueError):
        raise SystemExit("the student's sandbox is not running: refusing to run student code outside it")


def enter(limits: Limits, inside: bool = True) -> None:
    """Put this process under `limits`: rlimits, audit hook, then (`inside`) the student's sandbox,
    or without one the network namespace and user. It dies with its parent (the grader's worker)."""
    isolation.die_with_parent(os.getppid())
    apply_rlimits(limits)
    install_audit_hook(limits)
    if limits.sandbox_file:
        if inside:
            isolation.join(sandbox_pid(limits), os.getcwd(), limits.user)
    else:
        if limits.no_network:
            unshare_network()
        if limits.user:
            switch_user(limits.user)
    sys.dont_write_bytecode = True


def close_fds_except(keep: set[int]) -> None:
    """Close every file descriptor of this process except 0, 1, 2 and `keep`."""
    last = 2
    for fd in sorted(keep | {2}):
        os.closerange(last + 1, fd)
        last = fd
    os.closerange(last + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


def main(argv: list[str] | None = None) -> None:
    """Apply the limits in argv[0] (a JSON file), then run module argv[1] with the rest as its argv."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 2:
        raise SystemExit(__doc__)
    run_module(Limits.load(argv[0]), argv[1:])


def run_module(limits: Limits, argv: list[str]) -> None:
    """Under `limits`, run module argv[0] as `__main__` with argv[1:] as its arguments."""
    if limits.user and "-f" in argv:                 # the kernel's connection file, written by the worker
        entry = pwd.getpwnam(limits.user)
        os.chown(argv[argv.index("-f") + 1], entry.pw_uid, entry.pw_gid)
    enter(limits)
    sys.argv = list(argv)
    runpy.run_module(argv[0], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
