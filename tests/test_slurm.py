"""The Slurm recipe on a real one-node Slurm: the array and its dependent --merge equal one run.

The test starts its own cluster (munge if it is not running, then slurmctld and slurmd with a
small slurm.conf in a temporary folder, on free ports), submits
`course_utils/grading/deploy/grade-array.sbatch` for the hostile class of `test_grading_sandbox`
(seven hand-ins, ids with accents and spaces, four of them attackers) and a `--merge` job that
depends on it, and compares the merged gradebook with one run of the grader. It needs Debian's
`slurm-wlm` and `munge` and root (slurmd launches the jobs); without them it is skipped, unless
CNN_COURSE_REQUIRE_SLURM=1 (set by CI), where that is a failure.
"""
from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from test_grade import LIMITS, read_rows
from test_grading_sandbox import (ATTACKERS, HONEST, Listener, build_class, grade, no_process_left, outputs,
                                  results_by_student)

ROOT = Path(__file__).resolve().parent.parent
ARRAY = ROOT / "course_utils" / "grading" / "deploy" / "grade-array.sbatch"
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "sinfo")
KEYS = ("add", "square", "total", "max", "status")


def unavailable(why: str) -> None:
    """Skip with `why`, or fail where CI requires the Slurm test."""
    if os.environ.get("CNN_COURSE_REQUIRE_SLURM") == "1":
        pytest.fail(f"the Slurm test must run here (CNN_COURSE_REQUIRE_SLURM=1) but cannot: {why}")
    pytest.skip(why)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_munge() -> str:
    """'' once munge answers (starting munged as the munge user if needed), else why not."""
    if subprocess.run(["munge", "-n"], capture_output=True).returncode == 0:
        return ""
    Path("/run/munge").mkdir(parents=True, exist_ok=True)
    shutil.chown("/run/munge", "munge", "munge")
    done = subprocess.run(["runuser", "-u", "munge", "--", "munged"], capture_output=True, text=True)
    if subprocess.run(["munge", "-n"], capture_output=True).returncode != 0:
        return f"munged did not start: {done.stderr.strip()[-300:]}"
    return ""


def slurm_conf(folder: Path) -> str:
    """A one-node slurm.conf: this machine, all its CPUs and memory, state and logs in `folder`."""
    host = socket.gethostname()
    memory = next(int(line.split()[1]) // 1024 for line in open("/proc/meminfo") if line.startswith("MemTotal"))
    return "\n".join([
        "ClusterName=cnncourse", f"SlurmctldHost={host}", "SlurmUser=root", "SlurmdUser=root",
        "AuthType=auth/munge", "CredType=cred/munge", f"SlurmctldPort={free_port()}", f"SlurmdPort={free_port()}",
        f"StateSaveLocation={folder}/state", f"SlurmdSpoolDir={folder}/spool",
        f"SlurmctldPidFile={folder}/slurmctld.pid", f"SlurmdPidFile={folder}/slurmd.pid",
        f"SlurmctldLogFile={folder}/slurmctld.log", f"SlurmdLogFile={folder}/slurmd.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none", "JobCompType=jobcomp/none", "MpiDefault=none",
        "SchedulerType=sched/backfill", "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
        "ReturnToService=2",
        f"NodeName={host} CPUs={os.cpu_count()} RealMemory={memory} State=UNKNOWN",
        "PartitionName=grading Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4", ""])


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    """A running one-node Slurm cluster; yields the environment that points its commands at it."""
    missing = [d for d in DAEMONS if shutil.which(d) is None]
    if missing:
        unavailable(f"Slurm is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        unavailable("starting slurmd for the test needs root")
    if why := start_munge():
        unavailable(why)
    folder = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool"):
        (folder / sub).mkdir()
    conf = folder / "slurm.conf"
    conf.write_text(slurm_conf(folder))
    env = {**os.environ, "SLURM_CONF": str(conf)}
    daemons = [subprocess.run([d, "-f", str(conf)], env=env, capture_output=True, text=True)
               for d in ("slurmctld", "slurmd")]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout.strip()
        if state in ("idle", "mix", "alloc"):
            break
        time.sleep(1)
    else:
        logs = " | ".join(d.stderr.strip() for d in daemons)
        for name in ("slurmctld.log", "slurmd.log"):
            if (folder / name).is_file():
                logs += f" | {name}: " + (folder / name).read_text()[-500:]
        stop(folder)
        unavailable(f"the one-node Slurm did not come up (node state {state!r}): {logs[-1500:]}")
    yield env
    stop(folder)


def stop(folder: Path) -> None:
    """End the test's slurmctld and slurmd (by their pid files)."""
    for name in ("slurmd.pid", "slurmctld.pid"):
        try:
            os.kill(int((folder / name).read_text()), 15)
        except (OSError, ValueError):
            pass


def wait_for(env: dict, jobs: list[str], timeout: float) -> None:
    """Until none of `jobs` is queued or running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queued = subprocess.run(["squeue", "-h", "-j", ",".join(jobs)], env=env, capture_output=True, text=True)
        if not queued.stdout.strip():
            return
        time.sleep(2)
    raise TimeoutError(f"Slurm jobs {jobs} still queued after {timeout:g} s")


def test_array_and_merge_equal_one_run_and_the_sandbox_holds(slurm, tmp_path):
    listener, marker = Listener(), uuid.uuid4().hex
    paths = build_class(tmp_path / "class", listener.port, marker)
    one = paths["out"] / "one" / "grades.csv"
    run = grade(paths, one, marker, "--jobs", "2")
    assert run.returncode == 0, run.stderr[-3000:]

    course, out = paths["course"], tmp_path / "cluster"
    grader = [sys.executable, "-m", "course_utils.grade", "--exercises", str(course / "exercises"),
              "--solutions", str(course / "solutions"), "--checks", str(course / "tiny_checks.py"),
              "--protect", str(course), *LIMITS]
    env = {**slurm, "GRADE": shlex.join(grader), "OMP_NUM_THREADS": "1", "CNN_COURSE_TEST_MARK": marker}
    submit = ["sbatch", "--parsable", "--chdir", str(tmp_path), "--mem=1G", "--cpus-per-task=1"]
    array = subprocess.run([*submit, str(ARRAY), "00_tiny", str(paths["subs"]), str(out)],
                           env=env, capture_output=True, text=True, check=True).stdout.strip()
    books = [out / f"book-{k}.csv" for k in (1, 2, 3)]
    merge_cmd = shlex.join([sys.executable, "-m", "course_utils.grade", "--merge", *map(str, books),
                            "--out", str(out / "book.csv")])
    merge = subprocess.run([*submit, f"--dependency=afterok:{array}", "--output", "merge-%j.log",
                            "--wrap", merge_cmd], env=env, capture_output=True, text=True, check=True).stdout.strip()
    wait_for(slurm, [array, merge], timeout=900)
    logs = "\n".join(p.read_text(errors="replace")[-1500:] for p in sorted(tmp_path.glob("*.log")))
    assert (out / "book.csv").is_file(), logs

    merged, single = read_rows(out / "book.csv"), read_rows(one)
    assert set(merged) == {*HONEST, *ATTACKERS}
    assert {s: [r[k] for k in KEYS] for s, r in merged.items()} == {s: [r[k] for k in KEYS] for s, r in single.items()}
    feedback = (out / "book").resolve()
    results = results_by_student(feedback)
    for name in HONEST:
        assert (merged[name]["total"], merged[name]["status"]) == ("3", "ok") and results[name]["total"] == 3
    for path in [*feedback.rglob("result.json"), *feedback.rglob("feedback.md"), *out.glob("*.csv")]:
        assert "PWNED" not in path.read_text(encoding="utf-8"), path
    assert not [s for s in paths["secrets"].values() if s in outputs(feedback, "x_reader")]
    assert "WROTE []" in outputs(feedback, "x_writer")
    assert listener.peers == []
    assert no_process_left(marker) == []
