"""Grade one student, in a process the grader forks for them (`serve`).

1. Read the submission (only read: what runs is a prepared copy) and check it is this assignment.
2. Fork the checker (it holds the checks, imported before any student code ran).
3. Execute the notebook with papermill (`smoke=True` injected) in a kernel forked from this warm
   process (`kernel`) into the student's own bubblewrap sandbox (`isolation`: only the fresh
   working directory is writable, and no other student's files, no grader file exist there), with a per-cell limit and errors
   allowed. The student's `check(...)` cells are left out (the grader checks instead). A cell that hangs or kills the kernel is skipped
   and the notebook run again, so it costs only itself.
4. The grader's cell, appended at the end, hands each answer (cloudpickled by value) to the
   checker. Per question a child of the checker loads the answer and records what the student's
   code returns as plain data; the checker, which never runs student code, grades the recording:
   its results are the points. Nothing the notebook prints counts.
5. End every process the submission left behind; leave the executed notebook in the student's
   output folder and send the result to the grader through a pipe no student process holds.
"""
from __future__ import annotations

import copy
import io
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import tokenize
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import nbformat
import papermill
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from papermill.clientwrap import PapermillNotebookClient
from papermill.engines import NBClientEngine, papermill_engines
from papermill.exceptions import PapermillExecutionError
from papermill.utils import merge_kwargs, remove_args
from traitlets import Int
from traitlets.config import Config

from course_utils.checks import QUESTIONS

from . import isolation, kernel, processes
from .checker import Checker, import_checks
from .sandbox import Limits, command
from .submissions import InvalidSubmission, check_assignment, read_notebook

ENGINE, KERNEL, GRADER_TAG = "cnn-course-grader", "cnn-course-grader", "cnn-course-grader"
SEVERITY = ["ok", "error", "timeout", "killed", "invalid"]
CHECK_CALL = re.compile(r"(check|check_all|hint)\(.*\)\s*;?")
MAX_ATTEMPTS = 4
EXPORT_CELL = '''\
# Added by the grader: hands your answers to the grading process. Not part of your notebook.
def _cnn_course_export(names, folder):
    import builtins, inspect, io, json, os, cloudpickle
    space, manifest = builtins.globals(), {{"errors": {{}}, "defined": [], "sources": {{}}}}
    for name in names:
        if name in space:
            try:
                with io.open(os.path.join(folder, name + ".pkl"), "wb") as f:
                    cloudpickle.dump(space[name], f)
            except BaseException as err:
                manifest["errors"][name] = f"{{type(err).__name__}}: {{err}}"[:300]
            try:
                manifest["sources"][name] = str(inspect.getsource(space[name]))[:100000]
            except BaseException:
                pass
    manifest["defined"] = sorted(k for k, v in space.items() if callable(v) and not k.startswith("_"))[:500]
    if "student_id" in space:
        sid = space["student_id"]
        manifest["student_id"] = str.__str__(sid)[:200] if isinstance(sid, str) else ""
    with io.open(os.path.join(folder, "manifest.json"), "w") as f:
        json.dump(manifest, f)
_cnn_course_export({names!r}, {folder!r})
'''


@dataclass
class Job:
    """What the grader asks one worker to do (built by `course_utils.grade`)."""

    student: str
    hand_in: str
    submission: str | None
    problem: str
    assignment: str
    exercise: str
    questions: list[dict]            # id, answer_name, max_points
    out_dir: str
    work_root: str
    limits: dict
    cell_timeout: float = 60.0
    notebook_timeout: float = 300.0
    check_timeout: float = 60.0
    output_limit: int = 2 * 2**20
    parameters: dict = field(default_factory=lambda: {"smoke": True})
    checks: list[str] = field(default_factory=list)
    env: dict = field(default_factory=dict)          # thread counts and the token, for every process
    token: str = ""
    sandbox: bool = True                             # student code in a bubblewrap sandbox
    network: bool = False                            # ... with network access


class CappedClient(PapermillNotebookClient):
    """papermill's client, keeping at most `output_limit` bytes of outputs in the notebook."""

    output_limit = Int(2 * 2**20).tag(config=True)

    def output(self, outs, msg, display_id, cell_index):
        """Store the output while under the limit; then one note, then nothing."""
        used = getattr(self, "_used", 0)
        size = len(json.dumps(msg["content"]))
        self._used = used + size
        if used > self.output_limit:
            return None
        if used + size > self.output_limit:
            note = (f"\n[grader: output truncated here; the notebook printed more than "
                    f"{self.output_limit / 2**20:g} MB]\n")
            if msg["msg_type"] == "stream":
                text = msg["content"]["text"][: max(0, self.output_limit - used)]
                msg = {**msg, "content": {**msg["content"], "text": text + note}}
            else:
                msg = {**msg, "msg_type": "stream", "content": {"name": "stderr", "text": note}}
        return super().output(outs, msg, display_id, cell_index)


class GraderEngine(NBClientEngine):
    """papermill's nbclient engine with `CappedClient` instead of the default client."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                 stderr_file=None, start_timeout=60, execution_timeout=None, **kwargs):
        kwargs = remove_args(["input_path", "timeout", "startup_timeout"], **kwargs)
        final = merge_kwargs(kwargs, timeout=execution_timeout, startup_timeout=start_timeout,
                             kernel_name=kernel_name, log=logging.getLogger("papermill"),
                             log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file)
        return CappedClient(nb_man, **final).execute()



@dataclass
class Run:
    """What happened while executing: incidents (kind, text) and cells skipped on later attempts."""

    incidents: list[tuple[str, str]] = field(default_factory=list)
    skipped: dict[int, str] = field(default_factory=dict)
    started: list = field(default_factory=list)
    reached_grader: bool = False

    def note(self, kind: str, text: str) -> None:
        self.incidents.append((kind, text))


def _without_comments(source: str) -> list[str] | None:
    """The cell's lines with their comments cut off (None if the cell does not tokenize)."""
    lines = source.splitlines()
    try:
        comments = [t.start for t in tokenize.generate_tokens(io.StringIO(source).readline)
                    if t.type == tokenize.COMMENT]
    except (tokenize.TokenError, SyntaxError):
        return None
    for row, col in comments:
        lines[row - 1] = lines[row - 1][:col]
    return lines


def is_check_cell(source: str) -> bool:
    """Whether a cell holds nothing but `check(...)`, `check_all()` or `hint(...)` calls (and comments):
    feedback, not answers."""
    lines = [line.strip() for line in _without_comments(source) or [] if line.strip()]
    return bool(lines) and all(CHECK_CALL.fullmatch(line) for line in lines)


def prepare(nb: nbformat.NotebookNode, skipped: dict[int, str], names: list[str],
            answers: Path) -> nbformat.NotebookNode:
    """The notebook to execute: cells numbered; check cells and skipped cells made raw (with a note
    for the latter); the grader's cell last."""
    out = copy.deepcopy(nb)
    out.cells = []
    for i, cell in enumerate(nb.cells):
        cell = copy.deepcopy(cell)
        cell.metadata["grader_index"] = i
        if cell.cell_type == "code" and is_check_cell(cell.source):
            cell = nbformat.v4.new_raw_cell(cell.source, metadata={"grader_index": i, "tags": [GRADER_TAG]})
        elif i in skipped and cell.cell_type == "code":
            note = f"**Grader:** the cell below was not run: {skipped[i]}."
            out.cells.append(nbformat.v4.new_markdown_cell(note))
            cell = nbformat.v4.new_raw_cell(cell.source, metadata={"grader_index": i})
        out.cells.append(cell)
    out.cells.append(nbformat.v4.new_code_cell(
        EXPORT_CELL.format(names=names, folder=str(answers)),
        metadata={"tags": [GRADER_TAG], "grader_index": -1}))
    out.metadata["kernelspec"] = {"name": KERNEL, "display_name": "grader", "language": "python"}
    return out


def _culprit(run: Run) -> int | None:
    """Index of the code cell that was running when the kernel hung or died: -1 for the grader's
    cell, None if no cell had started (the kernel did not start)."""
    started = [c for c in run.started if c.cell_type == "code"]
    return started[-1].metadata.get("grader_index", -1) if started else None


def _cell_errors(executed: Path) -> list[str]:
    """'cell N raised Name: value' for each error output of the executed notebook."""
    try:
        nb = nbformat.read(executed, as_version=4)
    except Exception:
        return []
    errors = []
    for cell in nb.cells:
        index = cell.metadata.get("grader_index")
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error" and index is not None:
                where = f"cell {index + 1}" if index >= 0 else "the grader's cell"
                errors.append(f"{where} raised {out.get('ename')}: {str(out.get('evalue'))[:100]}")
    return errors


def execute(job: Job, nb: nbformat.NotebookNode, work: Path, answers: Path, executed: Path,
            env_dir: Path, deadline: float) -> Run:
    """Run the notebook with papermill up to the grader's cell, skipping cells that hang or kill the kernel."""
    papermill_engines.register(ENGINE, GraderEngine)
    run = Run()
    names = sorted({q["answer_name"] for q in job.questions})
    # Unix sockets in the work folder (the sandbox has no network to the kernel), named relative to it
    # (papermill runs in `cwd`, as the kernel does): a socket's path may not exceed 107 bytes
    config = Config({"KernelManager": {"transport": "ipc", "ip": ".rt/kernel",
                                       "connection_file": str(work / ".rt" / "kernel.json")}})
    for attempt in range(MAX_ATTEMPTS):
        for stale in answers.iterdir():
            stale.unlink()
        isolation.ensure()                          # a cell may have ended the sandbox
        run.started = []
        source = env_dir / "prepared.ipynb"
        nbformat.write(prepare(nb, run.skipped, names, answers), source)
        limit = min(job.cell_timeout, max(1.0, deadline - time.monotonic()))
        failure = None
        try:
            papermill.execute_notebook(
                str(source), str(executed), parameters=job.parameters, engine_name=ENGINE,
                kernel_name=KERNEL, cwd=str(work), progress_bar=False, log_output=False,
                start_timeout=60, execution_timeout=limit, allow_errors=True,
                shutdown_kernel="immediate", output_limit=job.output_limit, config=config,
                on_cell_start=lambda cell, cell_index: run.started.append(cell))
        except PapermillExecutionError:
            pass                                    # errors in cells: recorded in the executed notebook
        except CellTimeoutError:
            failure = ("timeout", f"ran past the {limit:g} s limit")
        except DeadKernelError:
            failure = ("killed", "ended the kernel (a crash, os._exit, exit() or the memory limit)")
        except Exception as err:
            failure = ("error", f"could not be executed ({type(err).__name__}: {str(err)[:150]})")
        if time.monotonic() >= deadline:
            run.note("timeout", f"the notebook ran past its {job.notebook_timeout:g} s limit")
            break
        if failure is None:
            break
        index = _culprit(run)
        if index is None or index < 0 or index in run.skipped or attempt == MAX_ATTEMPTS - 1:
            where = {None: "the kernel", -1: "the grader's cell"}.get(index, f"cell {(index or 0) + 1}")
            run.note(failure[0], f"{where} {failure[1]}")
            break
        run.skipped[index] = failure[1]
        run.note(failure[0], f"cell {index + 1} {failure[1]}; it was skipped and the rest graded")
    kernel.discard_spare()
    run.reached_grader = (answers / "manifest.json").is_file()
    for text in _cell_errors(executed):
        run.note("error", text)
    return run


def _zero(job: Job, message: str) -> dict:
    return {q["id"]: {"points": 0.0, "max_points": q["max_points"], "message": message, "state": "fail"}
            for q in job.questions}


def _audit(log: Path) -> list[str]:
    """What the audit hook recorded ('read PATH', 'write PATH', 'signal SIGKILL to process 1',
    'connect 127.0.0.1 port 80', ...), deduplicated."""
    try:
        return sorted(set(log.read_text().splitlines()))[:20]
    except OSError:
        return []


def _blocked(audit: list[str], sandboxed: bool) -> str:
    """The feedback's sentence on what the notebook attempted."""
    what = "; ".join(audit)
    if sandboxed:
        return f"tried what student code may not, and the sandbox blocked it: {what}"
    return f"touched files it may not: {what}"


def grade_student(job: Job) -> dict:
    """Execute and grade one submission; return its result (student, status, message, questions, ...)."""
    start = time.monotonic()
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    executed = out / f"{out.name}.ipynb"
    result = {"student": job.student, "hand_in": job.hand_in, "status": "ok", "message": "", "questions": {}}
    try:
        if job.submission is None:
            raise InvalidSubmission(job.problem)
        nb = read_notebook(Path(job.submission))
        check_assignment(nb, nbformat.read(job.exercise, as_version=4),
                         [q["answer_name"] for q in job.questions], job.assignment)
    except InvalidSubmission as err:
        result.update(status="invalid", message=str(err), questions=_zero(job, f"not graded: {err}"))
        return _finish(result, start)
    env_dir = Path(tempfile.mkdtemp(prefix="grader-", dir=job.work_root))
    try:
        result.update(_grade_notebook(job, nb, env_dir, executed, start))
    finally:
        isolation.close_sandbox()
        processes.end_descendants(job.token)
        shutil.rmtree(env_dir, ignore_errors=True)
    return _finish(result, start)


def _grade_notebook(job: Job, nb: nbformat.NotebookNode, env_dir: Path, executed: Path, start: float) -> dict:
    """Sandbox set-up, execution, checking; return status, message and per-question results."""
    work, answers, runtime = env_dir / "work", env_dir / "work" / ".grader-answers", env_dir / "work" / ".rt"
    for folder in (work, answers, runtime):
        folder.mkdir()
    pid_file = env_dir / "sandbox.pid"
    limits = Limits(**{**job.limits, "audit_log": str(env_dir / "audit.log"),
                       "sandbox_file": str(pid_file) if job.sandbox else None})
    limits.save(env_dir / "limits.json")
    if limits.user:
        env_dir.chmod(0o711)
        for folder in (work, answers, runtime):
            shutil.chown(folder, limits.user)
    if job.sandbox:
        isolation.open_sandbox(work, pid_file, job.network, user_namespace=not limits.user,
                               hide=[*limits.hidden, *job.checks])
    spec = env_dir / "kernels" / KERNEL
    spec.mkdir(parents=True)
    argv = command(env_dir / "limits.json", "ipykernel_launcher", "-f", "{connection_file}")
    (spec / "kernel.json").write_text(json.dumps(kernel.kernel_spec(argv)))
    os.environ.update(JUPYTER_PATH=str(env_dir), JUPYTER_RUNTIME_DIR=str(runtime))
    kernel.prepare_spare()          # before --checks modules are imported: the kernel never holds them
    import_checks(job.checks)
    questions = [QUESTIONS[q["id"]] for q in job.questions]
    threads = int(os.environ.get("OMP_NUM_THREADS", "1"))
    checker = Checker(questions, answers, limits, work, job.check_timeout, threads, job.student)
    deadline = start + job.notebook_timeout
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _stop_kernel, args=(checker.pid,))
    watchdog.start()
    try:
        run = execute(job, nb, work, answers, executed, env_dir, deadline)
    finally:
        watchdog.cancel()
    mismatch: dict = {}
    if run.reached_grader:
        isolation.ensure()
        results = checker.results()
        graded = results or _zero(job, "the grading process failed (a crash or the memory limit)")
        mismatch = {"student_id_mismatch": checker.sheet_id} if results and checker.sheet_id is not None else {}
    else:
        checker.stop()
        reason = run.incidents[0][1] if run.incidents else "the kernel stopped"
        graded = _zero(job, f"not graded: the notebook never reached the grader's cell ({reason})")
        run.note("error", "the notebook never reached the grader's cell")
    for qid, q in graded.items():
        if "ran past" in q["message"] and q["points"] == 0:
            run.note("timeout", f"the check of {qid} ran past {job.check_timeout:g} s")
    audit = _audit(env_dir / "audit.log")
    connects = [line for line in audit if line.startswith("connect ")]
    if connects:
        run.note("error", "blocked (no network while grading): " + "; ".join(connects))
    if audit := [line for line in audit if line not in connects]:
        run.note("invalid", _blocked(audit, job.sandbox))
        graded = _zero(job, "no points: the notebook tried to reach other students' or the grader's files "
                       "or processes (" + "; ".join(audit) + ")")
        mismatch = {}
    status = max((kind for kind, _ in run.incidents), key=SEVERITY.index, default="ok")
    texts = [text for _, text in sorted(run.incidents, key=lambda i: -SEVERITY.index(i[0]))]  # worst first
    message = "; ".join(texts[:8]) + (f"; and {len(texts) - 8} more" if len(texts) > 8 else "")
    return {"status": status, "message": message, "questions": graded, **mismatch}


def _stop_kernel(keep: int) -> None:
    """At the notebook deadline: kill every descendant except the checker and its children."""
    spare = {keep, *processes.descendants(keep)}
    processes.kill([p for p in processes.descendants(os.getpid()) if p not in spare])


def _finish(result: dict, start: float) -> dict:
    """Add the totals, the seconds taken and the CPU seconds used (worker, kernel, checker) to `result`."""
    result["seconds"] = round(time.monotonic() - start, 1)
    t = os.times()
    result["cpu_seconds"] = round(t.user + t.system + t.children_user + t.children_system, 2)
    result["total"] = sum(q["points"] for q in result["questions"].values())
    result["max"] = sum(q["max_points"] for q in result["questions"].values())
    return result


def serve(job: dict, conn: Connection) -> None:
    """Entry point in a fresh process (forked by the grader): grade `job`, send the result on `conn`."""
    os.setsid()
    job = Job(**job)
    out = Path(job.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = os.open(out / "log.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log, 1), os.dup2(log, 2)
    os.environ.update(job.env)
    isolation.die_with_parent(os.getppid())
    processes.become_subreaper()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    logging.getLogger("papermill").setLevel(logging.ERROR)
    conn.send(grade_student(job))
    conn.close()
