"""Hostile hand-ins graded beside honest classmates: the sandbox keeps the class's work out of their reach.

Four attackers each add one cell to a correct notebook: one reads every notebook it can find
(through /proc, upward globs, paths it learned, and `cat` in a subprocess), one writes into every
result.json and feedback.md it can find, one sends SIGKILL to the grader's processes (its
ancestors, and the worker named in its environment), one connects to a port a test process
listens on over loopback. Each honest classmate's notebook holds a secret line. The class is
graded in one run (--jobs 1 and 2) and in two shards; each run must finish with every honest
classmate at full marks with intact files, the attackers having read and written nothing
outside their folder, no process left, and each attacker's feedback naming what was blocked.
Without the sandbox (--no-sandbox) the reader does read classmates' secrets: the checks bite.
"""
from __future__ import annotations

import json
import os
import pwd
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import nbformat
import pytest

from course_utils.exercises import make_exercise
from course_utils.grading import isolation
from test_grade import ASSIGNMENT, CHECKS, LIMITS, SQUARE, read_rows, solution, with_cells

needs_sandbox = pytest.mark.skipif(bool(isolation.problem()), reason=f"no sandbox here: {isolation.problem()}")

HONEST = ("ana", "björn", "chloé dupont")
ATTACKERS = ("x_reader", "x_writer", "x_killer", "x_connector")

READER = '''\
import glob, os, subprocess
from pathlib import Path
seen, found = set(), set()
def take(path):
    try:
        text = open(path, errors="replace").read()
    except OSError:
        return
    seen.add(path)
    found.update(w for w in text.replace('"', " ").split() if w.startswith("SECRET-"))
roots = {{str(p) for p in Path.cwd().parents}} | {{{known!r}, {feedback!r}}}
for pid in os.listdir("/proc"):
    if pid.isdigit():
        try:
            words = open(f"/proc/{{pid}}/cmdline").read().split("\\0")
        except OSError:
            continue
        roots.update(str(Path(w).parent) for w in words if w.startswith("/"))
for root in sorted(r for r in roots if r.startswith({top!r})):   # (only the test's folder: safe without a sandbox)
    for path in glob.glob(root + "/**/*.ipynb", recursive=True)[:2000]:
        take(path)
        cat = subprocess.run(["cat", path], capture_output=True, text=True, errors="replace")
        found.update(w for w in cat.stdout.replace('"', " ").split() if w.startswith("SECRET-"))
for name in os.listdir({known!r}) if os.path.isdir({known!r}) else []:
    take(os.path.join({known!r}, name))
cat = subprocess.run(["sh", "-c", "cat {known}/*.ipynb"], capture_output=True, text=True, errors="replace")
found.update(w for w in cat.stdout.replace('"', " ").split() if w.startswith("SECRET-"))
print("FOUND", sorted(found), "READ", len(seen))
'''
WRITER = '''\
import glob, os
from pathlib import Path
wrote = []
roots = {{str(p) for p in Path.cwd().parents}} | set({feedbacks!r})
for root in sorted(r for r in roots if r.startswith({top!r})):   # (only the test's folder: safe without a sandbox)
    for pattern in ("/**/result.json", "/**/feedback.md", "/**/*.csv"):
        for path in glob.glob(root + pattern, recursive=True)[:2000]:
            try:
                with open(path, "w") as f:
                    f.write("PWNED")
                wrote.append(path)
            except OSError:
                pass
for folder in {feedbacks!r}:
    os.system(f"sh -c 'for f in {{folder}}/*/result.json; do echo PWNED > \\"$f\\"; done' 2>/dev/null")
print("WROTE", wrote)
'''
KILLER = '''\
import os, signal, subprocess, sys
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "leftover-{marker}"], start_new_session=True)
targets = [int(os.environ["JPY_PARENT_PID"])]
pid = os.getppid()
while pid > 1:
    try:
        words = open(f"/proc/{{pid}}/cmdline").read()
        pid_parent = int(open(f"/proc/{{pid}}/stat").read().rsplit(")", 1)[1].split()[1])
    except OSError:
        break
    if "course_utils" in words or "multiprocessing" in words:
        targets.append(pid)
    pid = pid_parent
for target in targets:
    try:
        os.kill(target, signal.SIGKILL)
        print("KILLED", target)
    except OSError as err:
        print("NOT KILLED", target, err)
'''
CONNECTOR = '''\
import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=5).sendall(b"hello from a hand-in")
    print("CONNECTED")
except OSError as err:
    print("NOT CONNECTED", err)
'''


class Listener:
    """A loopback TCP port that records whoever connects."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port, self.peers = self.sock.getsockname()[1], []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.peers.append(conn.recv(100))
            conn.close()


def build_class(root: Path, port: int, marker: str) -> dict:
    """The course (tiny assignment) and the hand-ins: honest ones with a secret each, then the attackers."""
    course, subs, out = root / "course", root / "hand-ins", root / "out"
    for d in (course / "exercises", course / "solutions", subs):
        d.mkdir(parents=True)
    sol = solution()
    nbformat.write(sol, course / "solutions" / f"{ASSIGNMENT}.ipynb")
    nbformat.write(make_exercise(sol), course / "exercises" / f"{ASSIGNMENT}.ipynb")
    (course / "tiny_checks.py").write_text(CHECKS)
    secrets = {}
    for name in HONEST:
        secrets[name] = f"SECRET-{uuid.uuid4().hex[:12]}"
        nb = with_cells(sol, {})
        nb.cells.insert(1, nbformat.v4.new_markdown_cell(f"My notes: {secrets[name]}"))
        nbformat.write(nb, subs / f"{name}.ipynb")
    feedback = str(out / "grades")
    top = str(root)
    cells = {"x_reader": READER.format(known=str(subs), feedback=feedback, top=top),
             "x_writer": WRITER.format(feedbacks=[feedback, f"{feedback}-1", f"{feedback}-2"], top=top),
             "x_killer": KILLER.format(marker=marker), "x_connector": CONNECTOR.format(port=port)}
    for name, cell in cells.items():
        nbformat.write(with_cells(sol, {}, insert={SQUARE: cell}), subs / f"{name}.ipynb")
    (root / "work").mkdir()
    return {"course": course, "subs": subs, "out": out, "secrets": secrets, "work": root / "work"}


def grade(paths: dict, book: Path, marker: str, *extra: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the grader on the class, with `marker` in its environment (every process it starts inherits it)."""
    course = paths["course"]
    cmd = [sys.executable, "-m", "course_utils.grade", str(paths["subs"]), "--assignment", ASSIGNMENT,
           "--out", str(book), "--exercises", str(course / "exercises"), "--solutions", str(course / "solutions"),
           "--checks", str(course / "tiny_checks.py"), "--quiet", "--protect", str(course), "--work", str(paths["work"]), *LIMITS, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CNN_COURSE_TEST_MARK": marker}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def marked(marker: str) -> list[str]:
    """Command lines of the processes that carry `marker` in their environment or arguments."""
    found = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                environ = Path(f"/proc/{entry.name}/environ").read_bytes()
                cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
                state = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z" and (marker.encode() in environ or marker.encode() in cmdline):
                found.append(cmdline.replace(b"\0", b" ").decode(errors="replace"))
    return found


def no_process_left(marker: str, wait: float = 10) -> list[str]:
    """The marked processes still there after up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while (left := marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def outputs(feedback: Path, student: str) -> str:
    """Everything the (ASCII-named) student's executed notebook printed."""
    nb = nbformat.read(feedback / student / f"{student}.ipynb", as_version=4)      # ASCII ids: folder = id
    return "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))


def results_by_student(feedback: Path) -> dict[str, dict]:
    return {r["student"]: r for r in (json.loads(p.read_text(encoding="utf-8")) for p in feedback.glob("*/result.json"))}


@pytest.fixture(scope="module", params=["jobs1", "jobs2", "shards"])
def graded(request, tmp_path_factory) -> dict:
    """The class graded once per way (one job, two jobs, two shards merged)."""
    root, listener, marker = tmp_path_factory.mktemp(request.param), Listener(), uuid.uuid4().hex
    paths = build_class(root, listener.port, marker)
    book = paths["out"] / "grades.csv"
    if request.param == "shards":
        books = [paths["out"] / f"grades-{k}.csv" for k in (1, 2)]
        runs = [grade(paths, b, marker, "--shard", f"{k}/2") for k, b in enumerate(books, 1)]
        runs.append(subprocess.run([sys.executable, "-m", "course_utils.grade", "--merge", *map(str, books),
                                    "--out", str(book)], capture_output=True, text=True, timeout=300))
    else:
        runs = [grade(paths, book, marker, "--jobs", request.param[-1])]
    left = no_process_left(marker)
    listener.sock.close()
    return {**paths, "runs": runs, "rows": read_rows(book), "feedback": book.with_suffix(""), "left": left,
            "peers": listener.peers, "marker": marker}


@needs_sandbox
def test_the_run_finishes_with_every_student_and_leaves_no_process(graded):
    for run in graded["runs"]:
        assert run.returncode == 0, run.stderr[-3000:]
    assert set(graded["rows"]) == {*HONEST, *ATTACKERS}
    assert graded["left"] == []


@needs_sandbox
def test_honest_classmates_keep_full_marks_and_intact_files(graded):
    results = results_by_student(graded["feedback"])
    for name in HONEST:
        row = graded["rows"][name]
        assert (row["total"], row["status"]) == ("3", "ok"), row
        assert results[name]["total"] == 3 and results[name]["status"] == "ok"
    for path in [*graded["feedback"].rglob("result.json"), *graded["feedback"].rglob("feedback.md"),
                 *graded["out"].glob("*.csv")]:
        assert "PWNED" not in path.read_text(encoding="utf-8"), path


@needs_sandbox
def test_the_reader_read_no_classmates_work(graded):
    printed = outputs(graded["feedback"], "x_reader")
    assert "FOUND" in printed
    assert not [s for s in graded["secrets"].values() if s in printed]
    assert "tried what student code may not, and the sandbox blocked it: read " in graded["rows"]["x_reader"]["message"]
    assert str(graded["subs"]) in graded["rows"]["x_reader"]["message"]


@needs_sandbox
def test_the_writer_wrote_nothing_outside_its_folder(graded):
    printed = outputs(graded["feedback"], "x_writer")
    assert "WROTE []" in printed
    feedback = (graded["feedback"] / "x_writer" / "feedback.md").read_text(encoding="utf-8")
    assert "the sandbox blocked it" in feedback and "result.json" in feedback


@needs_sandbox
def test_the_killer_reached_no_grader_process(graded):
    printed = outputs(graded["feedback"], "x_killer")
    assert "NOT KILLED" in printed and "KILLED " not in printed.replace("NOT KILLED", "")
    message = graded["rows"]["x_killer"]["message"]
    assert "the sandbox blocked it: signal SIGKILL to process" in message


@needs_sandbox
def test_the_connector_reached_no_port(graded):
    assert graded["peers"] == []
    assert "NOT CONNECTED" in outputs(graded["feedback"], "x_connector")
    assert "blocked (no network while grading): connect 127.0.0.1 port" in graded["rows"]["x_connector"]["message"]


def test_without_bwrap_the_grader_stops_and_says_how_to_enable_it(tmp_path):
    paths = build_class(tmp_path, 9, "unused")
    course = paths["course"]
    cmd = [sys.executable, "-m", "course_utils.grade", str(paths["subs"]), "--assignment", ASSIGNMENT,
           "--out", str(paths["out"] / "grades.csv"), "--exercises", str(course / "exercises"),
           "--solutions", str(course / "solutions"), "--checks", str(course / "tiny_checks.py"), "--quiet"]
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}          # no bwrap on the PATH
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 2 and not (paths["out"] / "grades.csv").exists()
    for advice in ("bubblewrap", "kernel.unprivileged_userns_clone=1", "kernel.apparmor_restrict_unprivileged_userns=0",
                   "--user nobody", "--no-sandbox"):
        assert advice in done.stderr


@needs_sandbox
def test_without_the_sandbox_the_reader_and_writer_reach_the_class(tmp_path):
    """The same reader and writer with --no-sandbox do the damage the checks above look for."""
    listener, marker = Listener(), uuid.uuid4().hex
    paths = build_class(tmp_path, listener.port, marker)
    for name in ("x_killer", "x_connector"):
        (paths["subs"] / f"{name}.ipynb").unlink()
    book = paths["out"] / "grades.csv"
    run = grade(paths, book, marker, "--no-sandbox")
    assert "warning: graded with --no-sandbox" in run.stderr and "classmates' hand-ins" in run.stderr
    printed = outputs(book.with_suffix(""), "x_reader")
    assert all(secret in printed for secret in paths["secrets"].values())
    damaged = [p for p in book.with_suffix("").rglob("result.json") if p.read_text(encoding="utf-8").startswith("PWNED")]
    assert damaged and "is not a grader result" in run.stderr


@needs_sandbox
@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT, signal.SIGTERM])
def test_a_grader_stopped_midway_leaves_no_process_and_a_rerun_finishes(tmp_path, how):
    listener, marker = Listener(), uuid.uuid4().hex
    paths = build_class(tmp_path, listener.port, marker)
    slow = with_cells(solution(), {}, insert={SQUARE: "import time\ntime.sleep(8)"})
    for name in ("ana", "björn"):
        nbformat.write(slow, paths["subs"] / f"{name}.ipynb")
    for name in ("chloé dupont", "x_reader", "x_writer", "x_connector"):      # a small class: ends sooner
        (paths["subs"] / f"{name}.ipynb").unlink()
    book = paths["out"] / "grades.csv"
    course = paths["course"]
    cmd = [sys.executable, "-m", "course_utils.grade", str(paths["subs"]), "--assignment", ASSIGNMENT,
           "--out", str(book), "--exercises", str(course / "exercises"), "--solutions", str(course / "solutions"),
           "--checks", str(course / "tiny_checks.py"), "--quiet", "--protect", str(course), "--work", str(paths["work"]),
           *LIMITS]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CNN_COURSE_TEST_MARK": marker}
    grader = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not any("sleep" in c or "ipykernel" in c for c in marked(marker)) and time.monotonic() < deadline:
        time.sleep(0.2)                      # a student's kernel runs: stop the grader now
    time.sleep(1)
    grader.send_signal(how)
    grader.wait(60)
    assert no_process_left(marker, wait=20) == []
    rerun = grade(paths, book, marker)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert set(read_rows(book)) == {"ana", "björn", "x_killer"}
    assert no_process_left(marker) == []


def _joined_report(pid: int, work: Path, user: str | None, write: int) -> None:
    """In a forked child: join the sandbox `pid` (as `user`), write what it is and sees as JSON, exit."""
    try:
        isolation.join(pid, str(work), user)
        status = Path("/proc/self/status").read_text()
        try:
            open(Path(isolation.__file__).parent / "planted.txt", "w")
            course_writable = True
        except OSError:
            course_writable = False
        Path("mine.txt").write_text("x")
        report = {"uid": os.getuid(), "pid": os.getpid(), "caps": status.split("CapEff:")[1].split()[0],
                  "root": sorted(os.listdir("/")), "course_writable": course_writable}
        os.write(write, json.dumps(report).encode())
    finally:
        os._exit(0)


@needs_sandbox
@pytest.mark.parametrize("user", [None, "nobody"])
def test_a_forked_process_joins_the_sandbox_without_privileges(tmp_path, user):
    if user and os.geteuid() != 0:
        pytest.skip("--user needs root")
    work = tmp_path / "work"
    work.mkdir()
    if user:
        work.chmod(0o777)
    holder = isolation.Holder(work, user_namespace=user is None)
    pid = holder.start()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        _joined_report(pid, work, user, write)
    os.close(write)
    with os.fdopen(read) as f:
        report = json.loads(f.read())
    os.waitpid(child, 0)
    holder.stop()
    assert report["caps"] == "0000000000000000" and report["pid"] < 10        # its own PID namespace
    assert not report["course_writable"] and "home" not in report["root"]
    assert (work / "mine.txt").is_file()
    if user:
        uid = pwd.getpwnam(user).pw_uid
        assert report["uid"] == uid and (work / "mine.txt").stat().st_uid == uid
