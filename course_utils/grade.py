"""Grade a class's exercise notebooks with papermill, one sandboxed worker per student.

    python -m course_utils.grade SUBMISSIONS --assignment NAME --out GRADEBOOK.csv [--jobs N] [--force]
    python -m course_utils.grade --merge BOOK-1.csv BOOK-2.csv ... --out GRADEBOOK.csv   (join --shard runs)

SUBMISSIONS holds one notebook per student (`ID.ipynb`, or a folder `ID/` holding it); the id is
that name exactly as given (accents, spaces). Each is executed with papermill (`smoke=True`) in
its own kernel, working directory and limits, inside its own bubblewrap sandbox (no other
hand-in, no feedback, gradebook, solutions or --checks file, no home folder, no network, its own
processes only: see docs/grading-sandbox.md; --no-sandbox only for trusted hand-ins); then the grader's own cell hands the answers to a
child process that runs the student's code for the checks and sends back only plain data, which
the grading process, where no student code ever ran, judges with `course_utils.checks`.
Two hand-ins that claim one id (`bob.ipynb` and `bob/`) are both graded, the file under its full
name (`bob.ipynb`), and each row names the other. Writes GRADEBOOK.csv (UTF-8: student, one
column per question, total, max, status, seconds, message) and, per student, the executed
notebook, feedback.md, result.json and log.txt in the feedback folder (one folder per student,
its id percent-encoded by `folder_name`). Output paths among the hand-ins are refused before
anything runs. A re-run grades only students not yet in the gradebook, unless --force.
The hints, revealed answers and multiple-choice tries a hand-in recorded while the student worked are read
from it as saved (`course_utils.grading.usage`) and cost what --reveal-penalty (default 100 % of that
question), --hint-penalty (default 0 % per tier) and --mc-policy (default: the first letter checked) say.
Beside the gradebook it then writes the instructor's reports (item analysis, written-answer
sheets, HTML feedback; on request late policy, similarity, Gradescope and Canvas exports):
see `course_utils.grading.instructor`.
"""
from __future__ import annotations

import argparse
import csv
import json
import multiprocessing
import os
import pkgutil
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

from . import checks
from .checks import questions_for
from .grading import feedback, instructor, isolation, kernel, processes, shards, usage, written
from .grading.checker import import_checks
from .grading.guard import Guard
from .grading.sandbox import Limits
from .grading.submissions import Submission, discover
from .grading.worker import Job, serve

FORKS = multiprocessing.get_context("forkserver")
ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(__file__).resolve().parent
STATUSES = ("ok", "error", "timeout", "killed", "invalid")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    p = argparse.ArgumentParser(prog="cnn-course-grade", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("submissions", type=Path, nargs="?", help="folder with one notebook (or folder) per student")
    p.add_argument("--assignment", help="exercise notebook name, e.g. 03_two_layer_cnn")
    p.add_argument("--out", required=True, type=Path, help="gradebook CSV to write")
    p.add_argument("--feedback", type=Path, help="per-student folders (default: the gradebook path without .csv)")
    p.add_argument("--jobs", type=int, default=1, help="students graded in parallel (default 1)")
    p.add_argument("--force", action="store_true", help="regrade students already in the gradebook")
    p.add_argument("--exercises", type=Path, default=ROOT / "exercises", help="folder of exercise notebooks")
    p.add_argument("--solutions", type=Path, default=ROOT / "solutions",
                   help="folder of solution notebooks: student code reading it is flagged")
    p.add_argument("--protect", action="append", type=Path,
                   help="folder or file restored if a submission changes it (repeatable; default: the "
                        "course_utils package; exercises, solutions, submissions and --checks always are)")
    p.add_argument("--checks", action="append", default=[],
                   help="extra checks module (dotted name or .py file), e.g. private exam checks")
    p.add_argument("--cell-timeout", type=float, default=120, help="seconds per cell (default 120)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per notebook (default 600)")
    p.add_argument("--check-timeout", type=float, default=60, help="seconds per question's check (default 60)")
    p.add_argument("--memory", type=int, default=4096, help="MiB of data memory per process (default 4096)")
    p.add_argument("--output-limit", type=float, default=2, help="MiB of output kept per notebook (default 2)")
    p.add_argument("--threads", type=int, help="threads per student (default: CPU cores / jobs)")
    p.add_argument("--user", help="run student code as this user (needs root; hide solutions/ from it)")
    p.add_argument("--no-network", action="store_true",
                   help="with --no-sandbox: run student code without network access (the sandbox has none)")
    p.add_argument("--network", action="store_true", help="give student code network access in its sandbox")
    p.add_argument("--no-sandbox", action="store_true",
                   help="grade without the bubblewrap sandbox (each hand-in can read and change the whole "
                        "class's work): only for trusted hand-ins, where user namespaces are unavailable")
    p.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()), help="where working folders go")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--reveal-penalty", type=float, default=100, metavar="PERCENT",
                   help="percent of a question's points deducted when the hand-in revealed its answer with "
                        "solution() (default 100)")
    p.add_argument("--hint-penalty", type=float, default=0, metavar="PERCENT",
                   help="percent of a question's points deducted per hint tier the hand-in showed (default 0)")
    p.add_argument("--mc-policy", choices=sorted(usage.MC_POLICIES), default="first",
                   help="multiple choice: 'first' grades the first answer checked in the notebook (default), "
                        "'last' the answer handed in")
    instructor.add_arguments(p)
    args = p.parse_args(argv)
    instructor.check_arguments(p, args)
    if not args.merge and (args.submissions is None or args.assignment is None):
        p.error("give SUBMISSIONS and --assignment (or --merge BOOK... --out BOOK.csv)")
    if args.jobs < 1:
        p.error("--jobs must be at least 1")
    try:
        args.policy = usage.Policy(args.reveal_penalty, args.hint_penalty, args.mc_policy)
    except ValueError as err:
        p.error(f"--reveal-penalty, --hint-penalty: {err}")
    return args


class Gradebook:
    """The CSV: one row per student, written atomically after every student."""

    def __init__(self, path: Path, question_ids: list[str]):
        self.path, self.ids = path, question_ids
        self.columns = ["student", *question_ids, "total", "max", "status", "seconds", "message"]
        self.rows: dict[str, dict] = {}
        self.written = b""
        if path.is_file():
            with open(path, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                if reader.fieldnames != self.columns:
                    raise ValueError(f"{path} has columns {reader.fieldnames}, not those of this assignment "
                                     f"({self.columns}); choose another --out.")
                self.rows = {row["student"]: row for row in reader}
            self.written = path.read_bytes()

    def add(self, result: dict) -> None:
        """Record one student's result (as returned by a worker)."""
        row = {"student": result["student"], "total": f"{result['total']:g}", "max": f"{result['max']:g}",
               "status": result["status"], "seconds": f"{result['seconds']:.1f}",
               "message": feedback.gradebook_message(result)}
        for qid in self.ids:
            q = result["questions"].get(qid)
            row[qid] = f"{q['points']:g}" if q else "0"
        self.rows[result["student"]] = row

    def tampered(self) -> bool:
        """Whether the file differs from what we last wrote."""
        current = self.path.read_bytes() if self.path.is_file() else b""
        return current != self.written

    def write(self) -> None:
        """Rewrite the whole CSV from memory (atomically)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, self.columns)
            writer.writeheader()
            writer.writerows(self.rows[s] for s in sorted(self.rows))
        os.replace(tmp, self.path)
        self.written = self.path.read_bytes()


def run_worker(job: Job, hard_limit: float, pids: dict[str, int]) -> dict:
    """Grade one student in a process forked from the warm fork server; stop it after `hard_limit` s.

    The worker's pid is kept in `pids` (by student) while it runs.
    """
    reader, writer = FORKS.Pipe(duplex=False)
    worker = FORKS.Process(target=serve, args=(asdict(job), writer), name=f"grade-{job.student}")
    start = time.monotonic()
    worker.start()
    pids[job.student] = worker.pid
    writer.close()
    timed_out = not reader.poll(hard_limit)
    try:
        result = None if timed_out else reader.recv()
    except (EOFError, OSError):
        result = None
    finally:
        if timed_out:
            _signal_group(worker.pid, signal.SIGTERM)
            worker.join(15)
        _signal_group(worker.pid, signal.SIGKILL)
        processes.kill(processes.with_token(job.token))
        worker.join()
        reader.close()
        pids.pop(job.student, None)
    if result is not None:
        return result
    why = (f"the student's grading ran past {hard_limit:.0f} s and was stopped" if timed_out else
           f"the grader's worker failed (exit code {worker.exitcode}); see log.txt")
    zero = {q["id"]: {"points": 0.0, "max_points": q["max_points"], "message": why, "state": "fail"}
            for q in job.questions}
    return {"student": job.student, "hand_in": job.hand_in, "status": "timeout" if timed_out else "error",
            "message": why,
            "questions": zero, "seconds": time.monotonic() - start, "total": 0.0,
            "max": sum(q["max_points"] for q in job.questions)}


def _signal_group(pid: int | None, sig: int) -> None:
    """Send `sig` to the process group (session) of the worker `pid`."""
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError, TypeError):
        pass


class Grader:
    """Grades the students of one run in parallel, checking the guard after each one."""

    def __init__(self, args: argparse.Namespace, questions: list[dict], gradebook: Gradebook):
        self.args, self.questions, self.gradebook = args, questions, gradebook
        self.feedback_dir = feedback_dir(args)
        watched = [args.solutions.resolve(), args.submissions.resolve(), self.feedback_dir, args.out.resolve(),
                   *[Path(c).resolve() for c in args.checks if c.endswith(".py")]]
        self.limits = Limits(memory_mb=args.memory, user=args.user, no_network=args.no_network and args.no_sandbox,
                             network=args.network if not args.no_sandbox else not args.no_network,
                             hidden=[str(p) for p in watched],
                             protected=[str(p) for p in watched + [PACKAGE, args.exercises.resolve()]])
        self.guard = Guard([*(args.protect or [PACKAGE]), args.exercises, args.solutions, args.submissions,
                            *[Path(c) for c in args.checks if c.endswith(".py")]],
                           keep=self.feedback_dir / "_changed")
        threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
        self.env = {**{v: str(threads) for v in THREAD_VARS},
                    "JUPYTER_PLATFORM_DIRS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
        self.hard_limit = args.timeout + len(questions) * (args.check_timeout + 5) + 120
        self.work = Path(tempfile.mkdtemp(prefix="cnn-course-grading-", dir=args.work))
        if args.user:
            self.work.chmod(0o711)                  # the student's account may pass, not list
        self.running: set[str] = set()
        self.pids: dict[str, int] = {}
        self.lock = threading.Lock()

    def job(self, sub: Submission) -> Job:
        """The worker's instructions for one student."""
        a = self.args
        return Job(student=sub.student, hand_in=sub.hand_in,
                   submission=str(sub.path) if sub.path else None, problem=sub.problem,
                   assignment=a.assignment, exercise=str(a.exercises / f"{a.assignment}.ipynb"),
                   questions=self.questions, out_dir=str(self.feedback_dir / sub.folder),
                   work_root=str(self.work), limits=asdict(self.limits), cell_timeout=a.cell_timeout,
                   notebook_timeout=a.timeout, check_timeout=a.check_timeout,
                   output_limit=int(a.output_limit * 2**20), checks=[str(Path(c).resolve()) if c.endswith(".py")
                                                                     else c for c in a.checks],
                   env={**self.env, "CNN_COURSE_GRADING": (token := uuid.uuid4().hex)},
                   token=f"CNN_COURSE_GRADING={token}", sandbox=not a.no_sandbox, network=a.network)

    def grade_one(self, sub: Submission) -> dict:
        """Grade `sub` in a worker process (called from a pool thread)."""
        job = self.job(sub)
        with self.lock:
            self.running.add(sub.student)
        try:
            result = run_worker(job, self.hard_limit, self.pids)
        finally:
            with self.lock:
                self.running.discard(sub.student)
        result["folder"] = sub.folder
        if result["status"] != "invalid":
            result = usage.apply_policy(result, usage.read_usage(sub.path), self.args.policy)
        if sub.same_id:
            note = f"{', '.join(sorted((sub.hand_in, *sub.same_id)))} claim the same student id: each has its own row"
            result["message"] = note + (f"; {result['message']}" if result["message"] else "")
        return result

    def record(self, result: dict, suspects: set[str]) -> None:
        """Check the guard and the gradebook file, then store `result` and rewrite the gradebook."""
        changed = [str(p) for p in self.guard.restore()]
        if self.gradebook.tampered():
            changed.append(str(self.gradebook.path))
        if changed:
            with self.lock:
                suspects.update(self.running | {result["student"]})
        self.gradebook.add(result)
        self.gradebook.write()
        out = self.feedback_dir / result["folder"]
        out.mkdir(parents=True, exist_ok=True)
        (out / "feedback.md").write_text(feedback.render(self.args.assignment, result), encoding="utf-8")
        (out / "result.json").write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")

    def run(self, subs: list[Submission]) -> None:
        """Grade `subs` with --jobs workers, then regrade one at a time any that ran while files changed."""
        try:
            suspects = self._grade_all(subs)
            by_id = {s.student: s for s in subs}
            for student in sorted(suspects):
                self._regrade_alone(by_id[student])
        finally:
            shutil.rmtree(self.work, ignore_errors=True)

    def _grade_all(self, subs: list[Submission]) -> set[str]:
        """Grade in parallel with a progress bar; return the students who ran while files changed."""
        suspects: set[str] = set()
        bar = tqdm(total=len(subs), unit="student", desc="grading", disable=self.args.quiet)
        with ThreadPoolExecutor(max_workers=self.args.jobs) as pool:
            pending: set[Future] = {pool.submit(self.grade_one, s) for s in subs}
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        result = future.result()
                        self.record(result, suspects)
                        bar.set_postfix_str(f"{result['student']}: {result['status']}")
                        bar.update(1)
            except KeyboardInterrupt:
                for future in pending:
                    future.cancel()
                for pid in list(self.pids.values()):
                    _signal_group(pid, signal.SIGTERM)
                raise
        bar.close()
        return suspects

    def _regrade_alone(self, sub: Submission) -> None:
        """Grade `sub` with nothing else running: if files change now, it did it (invalid, 0 points)."""
        result = self.grade_one(sub)
        changed = [str(p) for p in self.guard.restore()]
        if self.gradebook.tampered():
            changed.append(str(self.gradebook.path))
        if changed:
            result.update(status="invalid", total=0.0,
                          message=f"changed files it may not (restored): {', '.join(changed)[:300]}")
            for q in result["questions"].values():
                q.update(points=0.0, state="fail", message="no points: the notebook changed grader files")
        self.record(result, set())


def _probe(code: str, **kwargs) -> str:
    """'' if `python -c code` succeeds (kwargs go to subprocess.run, e.g. user=), else why it failed."""
    try:
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, timeout=120, **kwargs)
    except subprocess.CalledProcessError as err:
        lines = err.stderr.decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit code {err.returncode}"
    except (KeyError, OSError, subprocess.SubprocessError) as err:
        return str(err)
    return ""


def _isolation_problem(args: argparse.Namespace) -> str:
    """Why the sandbox, --user or --no-network cannot work here ('' if they can, or were not asked for)."""
    if not args.no_sandbox and (why := isolation.problem(user_namespace=not args.user)):
        return isolation.ENABLE.format(why=why)
    if args.user:
        if os.geteuid() != 0:
            return "--user needs the grader to run as root"
        if why := _probe("import course_utils, ipykernel", user=args.user):
            return (f"user {args.user!r} cannot run {sys.executable} with the course installed ({why}); "
                    "install the course where that user can read it")
    if args.no_network and args.no_sandbox and (why := _probe("from course_utils.grading.sandbox import unshare_network; "
                                          "unshare_network()")):
        return f"--no-network is not available on this machine ({why})"
    return ""


def feedback_dir(args: argparse.Namespace) -> Path:
    """The per-student feedback folder: --feedback, or the gradebook path without .csv."""
    return (args.feedback or args.out.with_suffix("")).resolve()


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def output_problem(args: argparse.Namespace) -> str:
    """Why an output path would write into the hand-ins folder ('' if none would), with a fix."""
    subs = args.submissions.resolve()
    fixes = {"gradebook": f"--out {subs.parent / (subs.name + '-grades.csv')}",
             "feedback": f"--feedback {subs.parent / (subs.name + '-feedback')}",
             "work": f"--work {subs.parent / (subs.name + '-work')}"}
    named = "the feedback folder" + ("" if args.feedback else " (by default the gradebook path without .csv)")
    outputs = [("gradebook", "the gradebook", args.out.resolve()), ("feedback", named, feedback_dir(args)),
               ("work", "the working folder", args.work.resolve())]
    for kind, what, path in outputs:
        if path == subs:
            where = f"{what} {path} is the hand-ins folder"
        elif _within(path, subs):
            where = f"{what} {path} lies inside the hand-ins folder {subs}"
        elif kind == "feedback" and _within(subs, path):
            where = f"the hand-ins folder {subs} lies inside {what} {path}"
        else:
            continue
        return (f"{where}: the grader would write among the hand-ins, which it never does. "
                f"Choose an output outside it, e.g. {fixes[kind]}")
    return ""


def main(argv: list[str] | None = None) -> int:
    """Grade every submission; return 0 when the gradebook is written."""
    args = parse_args(argv)
    if args.merge:
        return instructor.merge_command(args)
    if problem := output_problem(args):
        print(problem, file=sys.stderr)
        return 2
    exercise = args.exercises / f"{args.assignment}.ipynb"
    if not exercise.is_file():
        known = ", ".join(sorted(p.stem for p in args.exercises.glob("*.ipynb"))) or "none"
        print(f"no exercise notebook {exercise}; known assignments: {known}", file=sys.stderr)
        return 2
    problem = _isolation_problem(args)
    if problem:
        print(problem, file=sys.stderr)
        return 2
    if args.no_sandbox:
        print(f"warning: {instructor.UNSANDBOXED}", file=sys.stderr)
    if not kernel.registered():
        print(f"warning: {kernel.NOT_REGISTERED}", file=sys.stderr)
    import_checks(args.checks)
    questions = [{"id": q.id, "answer_name": q.answer_name, "max_points": q.max_points}
                 for q in questions_for(args.assignment)]
    if not questions:
        print(f"no checks are registered for {args.assignment} (course_utils/checks or --checks)", file=sys.stderr)
        return 2
    try:
        subs = discover(args.submissions, args.assignment)
    except FileNotFoundError as err:
        print(err, file=sys.stderr)
        return 2
    if args.shard:
        subs = shards.shard(subs, *args.shard)
    args.work.mkdir(parents=True, exist_ok=True)
    kept = written.set_aside(args.out, exercise)
    try:
        gradebook = Gradebook(args.out, [q["id"] for q in questions])
    except ValueError as err:
        print(err, file=sys.stderr)
        return 2
    todo = [s for s in subs if args.force or s.student not in gradebook.rows]
    warned: set[frozenset] = set()
    for sub in subs:
        group = {sub.hand_in, *sub.same_id}
        if sub.same_id and frozenset(group) not in warned:
            warned.add(frozenset(group))
            rows = ", ".join(repr(s.student) for s in subs if s.hand_in in group)
            print(f"warning: {', '.join(sorted(group))} claim the same student id; each is graded, in the rows {rows}",
                  file=sys.stderr)
    print(f"{args.assignment}: {len(subs)} submissions, {len(subs) - len(todo)} already graded, "
          f"grading {len(todo)} with {args.jobs} job(s)", file=sys.stderr)
    FORKS.set_forkserver_preload(["course_utils.grading.warmup", "course_utils.grading.worker"] +
                                 [f"course_utils.checks.{m.name}" for m in pkgutil.iter_modules(checks.__path__)])
    try:
        grader = Grader(args, questions, gradebook)
    except MemoryError as err:
        print(err, file=sys.stderr)
        return 2
    try:
        grader.run(todo)
    except KeyboardInterrupt:
        print(f"interrupted: {len(gradebook.rows)} students are in {args.out}; run again to grade the rest",
              file=sys.stderr)
        written.put_back(args.out, exercise, kept)
        return 130
    gradebook.write()
    grader.feedback_dir.mkdir(parents=True, exist_ok=True)      # also for a shard that holds nobody
    written.put_back(args.out, exercise, kept)
    if args.shard:
        shards.write_info(args.out, args.assignment, *args.shard, grader.feedback_dir)
    try:
        instructor.after_grading(args, exercise, questions, {s.student: s.path for s in subs}, grader.feedback_dir)
    except (ValueError, FileNotFoundError) as err:
        print(f"{args.out} is written, but a report failed: {err}", file=sys.stderr)
        return 2
    counts = {s: sum(r["status"] == s for r in gradebook.rows.values()) for s in STATUSES}
    print(f"wrote {args.out}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
