"""The grading process: `course_utils.checks` applied to the answers a notebook handed over.

The worker forks it from itself before any student code runs: a clean process that already
imported the checks, which then enters the sandbox and waits. It never runs student code
itself. Each question is first graded in a forked child that loads the answer (a cloudpickle
file written by the grader's cell in the kernel) and runs the question's grader through a
recording stand-in (`replay.record`): the student's code runs there, and only plain data comes
back through the pipe; with the grader's sandbox that child first joins the student's sandbox
(`isolation`), as the kernel did. The grading process reads it with `torch.load(weights_only=True)` and
runs the same grader again against the recording (`replay.replay`): those points count. A
crash, an endless loop or a monkeypatch in one answer touches only its own child.

The cases are drawn for the hand-in's name. Where the sheet's own `student_id` (the kernel's value,
read from the manifest as untrusted text) differs, the student answered for other cases: a plain-data
answer (a number, a tuple) that did not pass is judged once more against its recording for the sheet's
id, which says whether it was right there. That changes no points; it goes into the feedback.
"""
from __future__ import annotations

import importlib
import importlib.util
import io
import json
import os
import pickle
import select
import signal
import sys
import time
from pathlib import Path

import torch

from course_utils.checks import Question, set_student
from course_utils.checks import student as current_student

from . import isolation
from .replay import record, replay
from .sandbox import Limits, close_fds_except, enter, sandbox_pid
from .state import rng_state, set_rng_state

MAX_RECORDING = 256 * 2**20
MAX_SHEET_ID = 200                  # characters of the sheet's student_id kept
MAX_PLAIN = 1 << 20                 # bytes of a recording judged again for the sheet's student_id


def import_checks(modules: list[str]) -> None:
    """Import extra checks modules (dotted names or .py files) so that their questions register."""
    for module in modules:
        if module.endswith(".py"):
            name = f"course_checks_{Path(module).stem}"
            spec = importlib.util.spec_from_file_location(name, module)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot import checks from {module}")
            sys.modules[name] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(sys.modules[name])
        else:
            importlib.import_module(module)


def _read_until_closed(fd: int, timeout: float, limit: int = MAX_RECORDING) -> bytes:
    """Everything written to pipe `fd` until its writer closes it; TimeoutError after `timeout` s,
    OverflowError past `limit` bytes."""
    chunks, size, deadline = [], 0, time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        if not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            raise OverflowError
    raise TimeoutError


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _record_in_child(question: Question, answers: Path, write_fd: int, threads: int, limits: Limits | None) -> None:
    """In the forked child: enter the student's sandbox (if any), load the answer, run the grader on it
    through the recorder, write the recording (b"R" + torch.save bytes) or why the answer could not be
    loaded (b"E" + text), exit."""
    close_fds_except({write_fd})
    if limits is not None and limits.sandbox_file:
        isolation.die_with_parent(os.getppid())
        try:
            isolation.join(sandbox_pid(limits), os.getcwd(), limits.user)
        except BaseException as err:        # no sandbox to run the student's code in: it does not run
            _write_all(write_fd, f"E the grader could not run your `{question.answer_name}` in its sandbox: "
                                 f"{err}".encode(errors="replace")[:2000])
            os._exit(0)
    torch.set_num_threads(threads)
    try:
        state = rng_state()
        with open(answers / f"{question.answer_name}.pkl", "rb") as f:
            answer = pickle.load(f)
        set_rng_state(state)                # unpickling may have drawn random numbers
    except BaseException as err:            # the answer could not be loaded (or it exited while loading)
        message = f"your `{question.answer_name}` could not be loaded by the grader: {type(err).__name__}: {err}"
        _write_all(write_fd, b"E" + message[:2000].encode(errors="replace"))
        os._exit(0)
    try:
        sources = json.loads((answers / "manifest.json").read_text()).get("sources", {})
        recording = b"R" + record(question.id, answer, sources.get(question.answer_name))
    except BaseException as err:            # the grader's recorder failed on this answer
        recording = f"E the grader could not run your `{question.answer_name}`: {type(err).__name__}: {err}"
        recording = recording[:2000].encode(errors="replace")
    _write_all(write_fd, recording)
    os._exit(0)


def sheet_student(answers: Path) -> str | None:
    """The sheet's `student_id` as the kernel held it at the end (the manifest's, untrusted text): stripped,
    at most MAX_SHEET_ID characters, '' if it was not a string; None if the notebook defines none."""
    try:
        value = json.loads((answers / "manifest.json").read_text()).get("student_id")
    except (OSError, ValueError, AttributeError):
        return None
    return value[:MAX_SHEET_ID].strip() if isinstance(value, str) else None


def _plain(recording: bytes) -> bool:
    """Whether a recording holds a plain-data answer: no call into the student's code was made."""
    if len(recording) > MAX_PLAIN:
        return False
    try:
        payload = torch.load(io.BytesIO(recording), weights_only=True)
    except Exception:
        return False
    return payload.get("problem") is None and not payload.get("events")


def _for_sheet_id(question: Question, recording: bytes, sheet_id: str) -> dict | None:
    """The verdict on a plain-data answer for the cases of `sheet_id` ({points, state}), or None when it is
    not a plain-data answer or earns nothing more there. The cases stay the hand-in's afterwards."""
    if not _plain(recording):
        return None
    own = current_student()
    try:
        set_student(sheet_id)
        result = replay(question.id, recording)
    except Exception:
        return None
    finally:
        set_student(own)
    points = float(result.points)
    return {"points": points, "state": str(result.state)} if 0 < points <= question.max_points else None


def grade_one(question: Question, answers: Path, timeout: float, threads: int = 1, limits: Limits | None = None,
              sheet_id: str | None = None) -> dict:
    """Grade one question: record in a child process (with `threads` torch threads, in the sandbox that
    `limits` names), replay here;
    return points, max_points, message and state (pass, part, fail or todo). With `sheet_id` (the sheet's
    student_id, when it differs from the hand-in's), an answer that did not pass and is plain data is judged
    again for that id's cases: `sheet_id_points` and `sheet_id_state` when it earns more there. Replays run
    single-threaded: a process that forks must not have started OpenMP threads, or its children may hang."""
    torch.set_num_threads(1)
    base = {"points": 0.0, "max_points": question.max_points, "state": "fail"}
    if not (answers / f"{question.answer_name}.pkl").is_file():
        return {**base, "message": _missing_message(question, answers)}
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        try:
            _record_in_child(question, answers, write_fd, threads, limits)
        finally:
            os._exit(1)
    os.close(write_fd)
    try:
        data = _read_until_closed(read_fd, timeout)
        if not data:
            _, status = os.waitpid(pid, 0)
            pid = 0
            how = (f"signal {signal.Signals(-os.waitstatus_to_exitcode(status)).name}"
                   if os.WIFSIGNALED(status) else f"exit code {os.waitstatus_to_exitcode(status)}")
            return {**base, "message": f"the check of `{question.answer_name}` ended the process "
                    f"({how}): a crash, os._exit or the memory limit"}
        if data[:1] != b"R":
            return {**base, "message": data[1:].decode(errors="replace")}
        result = replay(question.id, data[1:])
        points, state = float(result.points), str(result.state)
        if not 0 <= points <= question.max_points:
            points, state = 0.0, "fail"
        graded = {**base, "points": points, "state": state, "message": str(result.message)}
        if sheet_id is not None and state != "pass":
            other = _for_sheet_id(question, data[1:], sheet_id)
            if other is not None and other["points"] > points:
                graded.update(sheet_id_points=other["points"], sheet_id_state=other["state"])
        return graded
    except TimeoutError:
        os.kill(pid, signal.SIGKILL)
        return {**base, "message": f"the check of `{question.answer_name}` ran past {timeout:g} s "
                "(an endless loop?)"}
    except OverflowError:
        os.kill(pid, signal.SIGKILL)
        return {**base, "message": f"the check of `{question.answer_name}` stopped: your code returned "
                f"more than {MAX_RECORDING >> 20} MB of data to the grader"}
    finally:
        os.close(read_fd)
        if pid:
            os.waitpid(pid, 0)


def _missing_message(question: Question, answers: Path) -> str:
    """Why an answer was not handed over, from the manifest the grader's cell wrote."""
    manifest = json.loads((answers / "manifest.json").read_text())
    name = question.answer_name
    if name in manifest["errors"]:
        return f"`{name}` could not be handed to the grader: {manifest['errors'][name]}"
    squash = name.lower().replace("_", "")
    close = [n for n in manifest["defined"] if n.lower().replace("_", "") == squash
             or n.startswith(name) or name.startswith(n)]
    hint = f" (did you rename it to `{close[0]}`?)" if close else " (was its cell deleted or renamed?)"
    return f"`{name}` is not defined at the end of your notebook{hint}"


def _prepare(question: Question) -> None:
    """Load what the question's grader needs once, here, so that each recording child inherits it."""
    if question.prepare is not None:
        try:
            question.prepare()
        except Exception:                   # the grader meets the same failure and reports it
            pass


class Checker:
    """A forked, sandboxed grading process that waits until `results()` hands it the answers; its checks
    draw their cases for `student` (the hand-in's name), in the recording children as in the replay.
    After `results()`, `sheet_id` is the sheet's own student_id where it differs from `student` (None where
    it matches or the notebook defines none)."""

    def __init__(self, questions: list[Question], answers: Path, limits: Limits, work: Path,
                 timeout: float, threads: int, student: str = ""):
        go_r, go_w = os.pipe()
        res_r, res_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                close_fds_except({go_r, res_w})
                null = os.open(os.devnull, os.O_RDWR)
                os.dup2(null, 0), os.dup2(null, 1)
                os.chdir(work)
                torch.set_num_threads(1)
                set_student(student)        # the cases of this student's variant, here and in each recording child
                enter(limits, inside=False)
                for question in questions:
                    _prepare(question)
                os.read(go_r, 1)
                sheet = sheet_student(answers)
                sheet = sheet if sheet is not None and sheet != current_student() else None
                results = {q.id: grade_one(q, answers, timeout, threads, limits, sheet) for q in questions}
                _write_all(res_w, json.dumps({"questions": results, "sheet_id": sheet}).encode())
            finally:
                os._exit(0)
        os.close(go_r), os.close(res_w)
        self.go, self.res, self.budget = go_w, res_r, len(questions) * (timeout + 5) + 30
        self.sheet_id: str | None = None

    def results(self) -> dict | None:
        """Let the checker grade; return {qid: {points, max_points, message, state, ...}}, or None if it failed."""
        os.write(self.go, b"g")
        os.close(self.go)
        try:
            found = json.loads(_read_until_closed(self.res, self.budget))
            self.sheet_id = found["sheet_id"]
            return found["questions"]
        except (TimeoutError, ValueError, KeyError, TypeError):
            return None
        finally:
            self.stop()

    def stop(self) -> None:
        """Kill the checker (if still running) and collect it."""
        if self.pid:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            os.close(self.res)
            self.pid = 0
