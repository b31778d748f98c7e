"""The grader's student kernel, forked from the warm worker (course_utils.grading.kernel).

A real ipykernel is started through `ForkedProvisioner`, exactly as the worker starts one, and
code run in it reports what the kernel can see: descriptors, session, working directory,
environment, path and memory limit.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from jupyter_client import KernelManager

from course_utils.grading import kernel
from course_utils.grading.sandbox import Limits, command

PROBE = """
import json, os, resource, sys
fds = {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
       if os.path.exists(f"/proc/self/fd/{fd}")}
print(json.dumps({"fds": fds, "pid": os.getpid(), "sid": os.getsid(0), "ppid": os.getppid(),
                  "cwd": os.getcwd(), "env": os.environ.get("PROBE_VALUE"), "path": sys.path,
                  "data_limit": resource.getrlimit(resource.RLIMIT_DATA)[0]}))
"""


@pytest.fixture
def grader_kernel(tmp_path, monkeypatch):
    """A factory of started KernelManagers for the grader's sandboxed kernel spec (shut down afterwards)."""
    limits = Limits(memory_mb=2048)
    limits.save(tmp_path / "limits.json")
    spec = tmp_path / "kernels" / "probe"
    spec.mkdir(parents=True)
    argv = command(tmp_path / "limits.json", "ipykernel_launcher", "-f", "{connection_file}")
    (spec / "kernel.json").write_text(json.dumps(kernel.kernel_spec(argv)))     # the grader's own spec
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.setenv("PROBE_VALUE", "from the worker")
    work = tmp_path / "work"
    work.mkdir()
    started = []

    def start() -> KernelManager:
        km = KernelManager(kernel_name="probe")
        km.start_kernel(cwd=str(work))
        started.append(km)
        return km

    yield start, work
    for km in started:
        km.shutdown_kernel(now=True)
    kernel.discard_spare()


def report(km: KernelManager) -> dict:
    """Run PROBE in the kernel and return what it printed."""
    client = km.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        printed = []
        client.execute_interactive(PROBE, timeout=60, output_hook=lambda msg: printed.append(
            msg["content"].get("text", "")) if msg["msg_type"] == "stream" else None)
    finally:
        client.stop_channels()
    return json.loads("".join(printed))


def test_the_spare_becomes_a_sandboxed_kernel_without_the_workers_descriptors(grader_kernel):
    start, work = grader_kernel
    secret_read, secret_write = os.pipe()             # stands for the pipe that carries the result
    secret = f"pipe:[{os.fstat(secret_read).st_ino}]"
    kernel.prepare_spare()
    km = start()
    assert isinstance(km.provisioner.process, kernel.ForkedKernel)
    seen = report(km)
    assert secret not in seen["fds"].values()
    assert seen["ppid"] == os.getpid() and seen["sid"] == seen["pid"] == km.provisioner.pid
    assert seen["cwd"] == str(work) and seen["env"] == "from the worker"
    assert [p for p in seen["path"] if p] == [p for p in kernel.isolated_path() if p]
    assert seen["data_limit"] > 2048 * 2**20                # the student's 2 GiB on top of the warm start
    os.close(secret_read), os.close(secret_write)


def test_a_second_spare_after_a_kernel_ran_starts_too(grader_kernel):
    start, _ = grader_kernel
    for _ in range(2):                                   # the second fork inherits the first run's event loop
        kernel.prepare_spare()
        km = start()
        assert report(km)["pid"] == km.provisioner.pid
        km.shutdown_kernel(now=True)
        assert km.provisioner is None or km.provisioner.process is None


def test_without_a_spare_the_kernel_is_started_as_a_fresh_process(grader_kernel):
    start, _ = grader_kernel
    km = start()
    assert isinstance(km.provisioner.process, subprocess.Popen)
    assert report(km)["ppid"] == os.getpid()


def test_an_unused_spare_is_ended_and_collected():
    kernel.prepare_spare()
    pid = kernel._spare.pid
    kernel.discard_spare()
    assert not Path(f"/proc/{pid}").exists()


def test_a_forked_kernel_reports_its_exit_code_like_popen(tmp_path):
    Limits().save(tmp_path / "limits.json")
    cmd = command(tmp_path / "limits.json", "json.tool", str(tmp_path / "missing.json"))
    process = kernel.Spare().launch(cmd, dict(os.environ), str(tmp_path))
    assert process.wait() == 2 and process.poll() == 2        # json.tool: "can't open ... missing.json"
    process.kill()                                            # already ended: nothing to signal, no error


def test_an_install_without_the_provisioner_grades_with_fresh_kernels_and_says_how_to_fix_it(monkeypatch, tmp_path,
                                                                                            capsys):
    from course_utils import grade

    assert kernel.registered()                           # this install has it
    assert kernel.kernel_spec(["python"])["metadata"]["kernel_provisioner"]["provisioner_name"] == kernel.PROVISIONER
    monkeypatch.setattr(kernel, "registered", lambda: False)
    assert "metadata" not in kernel.kernel_spec(["python"])       # jupyter_client's own provisioner
    kernel.prepare_spare()
    assert kernel._spare is None
    assert grade.main([str(tmp_path / "no-such-folder"), "--assignment", "01_convolution_kernels",
                       "--out", str(tmp_path / "book.csv")]) == 2
    assert "run `pip install -e .`" in capsys.readouterr().err
