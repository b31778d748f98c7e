"""Student kernels forked from the warm worker instead of started as a fresh interpreter.

A fresh `python -m ipykernel_launcher` pays seconds of CPU before the student's notebook does
any work (the interpreter, IPython, then the notebook's `import torch` and the torchvision that
reads MNIST): forking instead took sheet 03's grading from 6.0 to 3.7 CPU s per student. The
worker was forked from the grader's fork server, which has imported all of these (`warmup`), so
before it imports any `--checks` module it forks a *spare*: a child that closes every file
descriptor but its request pipe and waits. When papermill starts the kernel, `ForkedProvisioner`
hands the spare the launch (connection file, environment, working directory) and the spare
becomes the kernel: a new session, default signals, the isolated
interpreter's `sys.path`, then the same `sandbox.run_module` a fresh kernel runs (which moves it
into the student's bubblewrap sandbox, `isolation`), its memory limit counted on top of the warm
start. It is the worker's child, so the worker's clean-up finds it as
before. Without a spare (a rerun after a cell hung or killed the kernel, or any kernel not started
by the grader) the provisioner is jupyter_client's `LocalProvisioner` unchanged: a fresh process.
"""
from __future__ import annotations

import asyncio
import functools
import gc
import json
import os
import signal
import subprocess
import sys
import traceback
from dataclasses import replace
from importlib.metadata import entry_points
from typing import Any

from jupyter_client.provisioning import LocalProvisioner

from . import isolation, sandbox

PROVISIONER = "cnn-course-forked"
NOT_REGISTERED = ("the course's kernel provisioner is not registered (the course was installed before "
                  "course_utils/grading/kernel.py existed): run `pip install -e .` in the course folder again. "
                  "Until then every student's kernel starts fresh, a few seconds slower each.")
_spare: Spare | None = None


@functools.cache
def registered() -> bool:
    """Whether jupyter_client finds `ForkedProvisioner` (installing the course registers it)."""
    return any(ep.name == PROVISIONER for ep in entry_points(group="jupyter_client.kernel_provisioners"))


def kernel_spec(argv: list[str]) -> dict:
    """The grader's kernel.json: `argv`, launched through the spare when the provisioner is registered."""
    spec = {"argv": argv, "display_name": "grader", "language": "python"}
    if registered():
        spec["metadata"] = {"kernel_provisioner": {"provisioner_name": PROVISIONER, "config": {}}}
    return spec


@functools.cache
def isolated_path() -> list[str]:
    """`sys.path` as `python -I` has it (no working directory, no user site, no PYTHONPATH)."""
    out = subprocess.run([sys.executable, "-I", "-c", "import json, sys; print(json.dumps(sys.path))"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


class ForkedKernel:
    """The parts of `subprocess.Popen` that jupyter_client uses, for a kernel the worker forked."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid, self.returncode = pid, None

    def _reap(self, flags: int) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, flags)
            except ChildProcessError:          # already collected by the worker's clean-up
                pid, status = self.pid, 9
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def poll(self) -> int | None:
        """The exit code, or None while the kernel runs."""
        return self._reap(os.WNOHANG)

    def wait(self, timeout: float | None = None) -> int:
        """Block until the kernel has ended (jupyter_client calls it once poll() says so); return its exit code."""
        return self._reap(0)

    def send_signal(self, signum: int) -> None:
        """Send `signum` to the kernel, if it still runs."""
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        """SIGTERM, as Popen.terminate."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL, as Popen.kill."""
        self.send_signal(signal.SIGKILL)


class Spare:
    """A forked child of the worker waiting to become the next kernel."""

    def __init__(self) -> None:
        read, self._write = os.pipe()
        worker = os.getpid()
        self.pid = os.fork()
        if self.pid == 0:
            os.close(self._write)
            isolation.die_with_parent(worker)
            _wait_and_become_kernel(read)
        os.close(read)

    def launch(self, cmd: list[str], env: dict[str, str], cwd: str) -> ForkedKernel:
        """Hand the spare its kernel command; return it as a Popen-like process."""
        with os.fdopen(self._write, "w") as pipe:
            json.dump({"cmd": cmd, "env": env, "cwd": cwd}, pipe)
        return ForkedKernel(self.pid)

    def discard(self) -> None:
        """End a spare that was never launched."""
        os.close(self._write)                  # the spare reads EOF and exits
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass


def _wait_and_become_kernel(read: int) -> None:
    """In the spare: drop the worker's descriptors, wait for the launch, run the kernel; never return."""
    code = 1
    try:
        gc.freeze()                            # no finaliser of the worker's objects runs here
        asyncio.set_event_loop_policy(None)    # papermill's event loop stays the worker's
        sandbox.close_fds_except({read})
        with os.fdopen(read) as pipe:
            request = pipe.read()
        if request:
            code = _run_kernel(**json.loads(request))
        else:
            code = 0
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else int(err.code is not None)
    except BaseException:
        traceback.print_exc()
    finally:
        os._exit(code)


def _run_kernel(cmd: list[str], env: dict[str, str], cwd: str) -> int:
    """Become the kernel `cmd` (`python -I -m course_utils.grading.sandbox LIMITS MODULE ...`)."""
    os.setsid()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(signum, signal.SIG_DFL)
    signal.set_wakeup_fd(-1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    sys.path[:] = isolated_path()
    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and threads.isdigit() and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))
    args = cmd[cmd.index(sandbox.__name__) + 1:]
    limits = sandbox.Limits.load(args[0])
    # the memory limit is for the student's code: the warm start's own memory is added to it
    sandbox.run_module(replace(limits, memory_mb=limits.memory_mb + data_mb()), args[1:])
    return 0


def data_mb() -> int:
    """This process's data memory (VmData in /proc/self/status, which RLIMIT_DATA caps) in MiB."""
    with open("/proc/self/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmData:"))
    return kib // 1024 + 1


def prepare_spare() -> None:
    """Fork the spare for the next kernel this worker starts (ending an unused earlier one); none
    where the provisioner is not registered, since nothing would take it."""
    global _spare
    discard_spare()
    if registered():
        _spare = Spare()


def discard_spare() -> None:
    """End the spare if no kernel took it."""
    global _spare
    if _spare is not None:
        _spare.discard()
        _spare = None


class ForkedProvisioner(LocalProvisioner):
    """jupyter_client's local provisioner, launching a sandboxed kernel through the waiting spare."""

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        """Launch through the spare when there is one and `cmd` is the sandbox's; else as usual."""
        global _spare
        spare, _spare = _spare, None
        if spare is None or sandbox.__name__ not in cmd:
            if spare is not None:
                spare.discard()
            return await super().launch_kernel(cmd, **kwargs)
        env = {**(kwargs.get("env") or os.environ), "JPY_PARENT_PID": str(os.getpid())}
        self.cwd = str(kwargs.get("cwd") or os.getcwd())
        self.process = spare.launch(cmd, env, self.cwd)
        self.pid = self.pgid = self.process.pid
        return self.connection_info
