"""Grade a generated class of 30 with every instructor output in one command, and time it.

    python benchmarks/grade_speed.py [--assignment 03_two_layer_cnn] [--students 30] [--jobs 2]
                                     [--keep DIR] [--figure benchmarks/figures/grade_stats.png]
                                     [--sandbox-overhead]

Makes the class from solutions/NAME.ipynb: a third correct, a third partly correct (the first
exercise left as the stub), a third broken (a syntax error in the last function to write and a
cell that raises). The sheet's written-answer cells are answered, left as the placeholder or deleted, in
turn; every fifth hand-in is late (timestamps in a CSV), and two correct hand-ins share an odd
line in their first answer function (for the similarity report). A roster CSV maps the ids to
Canvas. Then ONE grader command writes the gradebook, the item analysis with its figure, feedback
(Markdown and HTML), Gradescope results.json and the Canvas import, the late report, the
written-answer sheets and the similarity report; the script prints that command, a table of what
it wrote, the wall time against the target (2 minutes for 30 hand-ins with --jobs 2 on 2 CPU
cores) and the CPU time each student's grading used (worker, kernel and checker together), which
other load on the machine inflates far less than the wall time. The exercise and solution
notebooks are copied first, so that the grader's guard watches only the copies. --keep DIR keeps
everything there; --figure copies the item-analysis PNG to a path. --sandbox-overhead grades the
same class with the default sandbox and with --no-sandbox, back to back (--rounds N: N rounds,
the order alternating), and prints both mean times and their ratio (the sandbox's cost, under
the same load).
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import nbformat

from course_utils.exercises import BEGIN, END, ROOT, strip_solutions
from course_utils.grading.written import PLACEHOLDER, QUESTION_KEY, TAG

TARGET_SECONDS = 120
DUE = datetime(2026, 12, 1, 23, 59, tzinfo=timezone.utc)
WRITTEN_STATES = ("answered", "empty", "deleted")
OUTPUTS = {"grades.csv": "gradebook: one row per student", "grades.stats.md": "item analysis (Markdown)",
           "grades.stats.csv": "item analysis: pass, part, fail, todo per question",
           "grades.stats.png": "item analysis figure", "grades.mistakes.csv": "most frequent mistakes",
           "grades.late.csv": "late policy: hours late, penalty, final points",
           "grades.canvas.csv": "Canvas gradebook import", "grades.similarity.md": "similar answer pairs (to read)",
           "grades.similarity.csv": "similar answer pairs (CSV)", "feedback.md": "feedback (Markdown)",
           "feedback.html": "feedback (HTML)", "results.json": "Gradescope autograder results",
           "result.json": "the grader's result", "log.txt": "the worker's log",
           "<student>.ipynb": "the executed notebook", "scores.csv": "written answers: scores to fill in",
           "<question>.md": "written answers: one reading sheet per question"}


def variants(solution: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    """The correct, partly correct and broken (the last function written loses a colon) versions of a solution."""
    exercise_cells = [i for i, c in enumerate(solution.cells) if c.cell_type == "code" and BEGIN in c.source]
    partial = copy.deepcopy(solution)
    partial.cells[exercise_cells[0]].source = strip_solutions(partial.cells[exercise_cells[0]].source)
    broken = copy.deepcopy(solution)
    last_def = [i for i in exercise_cells if "def " in solution.cells[i].source][-1]
    broken.cells[last_def].source = re.sub(r"(def [^\n]*):", r"\1", broken.cells[last_def].source, count=1)
    broken.cells.insert(exercise_cells[0], nbformat.v4.new_code_cell('raise RuntimeError("not finished")'))
    return {"correct": solution, "partial": partial, "broken": broken}


def copied(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """`nb` with one odd, harmless line at the end of the first solution region inside a function."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        found = re.search(rf"^([ \t]+){re.escape(END)}", cell.source, re.MULTILINE) if cell.cell_type == "code" else None
        if found:
            cell.source = cell.source[:found.start()] + f"{found[1]}_shared_odd_line = None\n" + cell.source[found.start():]
            return nb
    return nb


def with_written(nb: nbformat.NotebookNode, state: str, student: str) -> nbformat.NotebookNode:
    """`nb` with every written-answer cell answered (a text of `student`'s), left as the placeholder, or deleted."""
    nb = copy.deepcopy(nb)
    cells = []
    for cell in nb.cells:
        qid = cell.metadata.get(QUESTION_KEY) if TAG in cell.metadata.get("tags", []) else None
        if qid and state == "deleted":
            continue
        if qid:
            cell.source = PLACEHOLDER if state == "empty" else f"{student} on {qid}: the answer in my own words."
        cells.append(cell)
    nb.cells = cells
    return nb


def make_class(solution: nbformat.NotebookNode, students: int, root: Path) -> dict[str, Path]:
    """Write the hand-ins, the timestamps CSV and the roster CSV under `root`; return their paths."""
    subs, kinds = root / "submissions", variants(solution)
    subs.mkdir(parents=True)
    names = list(kinds)
    times, roster = [["student", "submitted"]], [["student_id", "Student", "ID", "SIS User ID", "SIS Login ID",
                                                 "Section"]]
    for i in range(students):
        student, kind = f"{names[i % 3]}_{i:02d}", names[i % 3]
        nb = copied(kinds[kind]) if i in (0, 3) else kinds[kind]
        nbformat.write(with_written(nb, WRITTEN_STATES[(i // 3) % 3], student), subs / f"{student}.ipynb")
        late = timedelta(hours=7 * (i // 5 + 1)) if i % 5 == 4 else -timedelta(hours=1)
        times.append([student, (DUE + late).isoformat()])
        roster.append([student, f"Student {i:02d}", str(1000 + i), f"S{i:04d}", student, "A" if i % 2 else "B"])
    paths = {"submissions": subs, "timestamps": root / "timestamps.csv", "roster": root / "roster.csv"}
    for key, rows in (("timestamps", times), ("roster", roster)):
        with open(paths[key], "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(rows)
    return paths


def grade_command(assignment: str, jobs: int, root: Path, paths: dict[str, Path], out: str = "out") -> list[str]:
    """The one grader command that writes every output (under ROOT/OUT)."""
    course = root / "course"
    return [sys.executable, "-m", "course_utils.grade", str(paths["submissions"]), "--assignment", assignment,
            "--out", str(root / out / "grades.csv"), "--jobs", str(jobs), "--quiet",
            "--exercises", str(course / "exercises"), "--solutions", str(course / "solutions"),
            "--protect", str(course), "--format", "gradescope", "--format", "canvas", "--roster", str(paths["roster"]),
            "--due", DUE.isoformat(), "--timestamps", str(paths["timestamps"]), "--similarity"]


def outputs_table(out: Path) -> list[str]:
    """Markdown rows: each kind of file the grader wrote under `out`, how many, what it is."""
    kinds: Counter = Counter()
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        parts = list(path.relative_to(out).parts)
        if len(parts) > 1 and parts[0] == "grades" and parts[1] != "_changed":
            parts[1] = "<student>"
            parts[-1] = "<student>.ipynb" if parts[-1].endswith(".ipynb") else parts[-1]
        if len(parts) == 2 and parts[0] == "grades.written" and path.suffix == ".md":
            parts[1] = "<question>.md"
        kinds["/".join(parts)] += 1
    return [f"| `{name}` | {n} | {OUTPUTS.get(Path(name).name, '')} |" for name, n in kinds.items()]


def main(argv: list[str] | None = None) -> int:
    """Make the class, grade it with one command, print the outputs and the timing; exit 1 if over the target."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--assignment", default="03_two_layer_cnn")
    p.add_argument("--students", type=int, default=30)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--keep", type=Path, help="make the class and the outputs in this (new) folder and keep them")
    p.add_argument("--figure", type=Path, help="copy the item-analysis figure (grades.stats.png) here")
    p.add_argument("--sandbox-overhead", action="store_true",
                   help="grade the class with and without the sandbox, back to back; print both times")
    p.add_argument("--rounds", type=int, default=1,
                   help="with --sandbox-overhead: rounds, the order of the arms alternating (ABBA...)")
    args = p.parse_args(argv)
    if args.sandbox_overhead:
        return sandbox_overhead(args)
    with tempfile.TemporaryDirectory(prefix="grade-speed-") as tmp:
        root = args.keep or Path(tmp)
        paths = course_and_class(args, root)
        command = grade_command(args.assignment, args.jobs, root, paths)
        print("$ " + shlex.join(["python", *command[1:]]).replace(str(root), "CLASS"))
        start = time.perf_counter()
        subprocess.run(command, check=True)
        seconds = time.perf_counter() - start
        out = root / "out" / "grades.csv"
        with open(out, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        results = [json.loads(r.read_text()) for r in out.with_suffix("").glob("*/result.json")]
        print("\n| output (under CLASS/out) | files | what |\n|---|---|---|")
        print("\n".join(outputs_table(out.parent)))
        if args.figure:
            args.figure.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(out.with_name("grades.stats.png"), args.figure)
    cpu = [r["cpu_seconds"] for r in results]
    states = Counter(q["state"] for r in results for q in r["questions"].values())
    print("\n| assignment | hand-ins | jobs | seconds | CPU s per student | target |\n|---|---|---|---|---|---|")
    print(f"| {args.assignment} | {len(rows)} | {args.jobs} | {seconds:.1f} | {sum(cpu) / len(cpu):.2f} | "
          f"≤ {TARGET_SECONDS * args.students / 30:.0f} s |")
    for kind in ("correct", "partial", "broken"):
        counts = Counter(f"{r['total']}/{r['max']} {r['status']}" for r in rows if r["student"].startswith(kind))
        print(f"{kind:>8}: " + ", ".join(f"{n} × {what}" for what, n in sorted(counts.items())))
    print("question states: " + ", ".join(f"{n} {s}" for s, n in states.most_common()))
    return 0 if seconds <= TARGET_SECONDS * args.students / 30 else 1


def course_and_class(args: argparse.Namespace, root: Path) -> dict[str, Path]:
    """Copy the sheet (exercise and solution) under root/course and generate the class from the solution."""
    for folder in ("exercises", "solutions"):
        (root / "course" / folder).mkdir(parents=True)
        shutil.copy(ROOT / folder / f"{args.assignment}.ipynb", root / "course" / folder)
    solution = nbformat.read(ROOT / "solutions" / f"{args.assignment}.ipynb", as_version=4)
    return make_class(solution, args.students, root)


def sandbox_overhead(args: argparse.Namespace) -> int:
    """Grade one class with the sandbox, then without; print seconds, CPU s per student and the ratio."""
    with tempfile.TemporaryDirectory(prefix="grade-speed-") as tmp:
        root = args.keep or Path(tmp)
        paths = course_and_class(args, root)
        timings, books = {"sandbox": [], "no sandbox": []}, {}
        arms = [("sandbox", []), ("no sandbox", ["--no-sandbox"])]
        for r, (arm, extra) in enumerate(a for r in range(args.rounds) for a in (arms if r % 2 == 0 else arms[::-1])):
            out = f"out-{r}-" + arm.replace(" ", "-")
            command = grade_command(args.assignment, args.jobs, root, paths, out) + extra
            print("$ " + shlex.join(["python", *command[1:]]).replace(str(root), "CLASS"), flush=True)
            start = time.perf_counter()
            subprocess.run(command, check=True)
            seconds = time.perf_counter() - start
            book = root / out / "grades.csv"
            cpu = [json.loads(r.read_text())["cpu_seconds"] for r in book.with_suffix("").glob("*/result.json")]
            timings[arm].append((seconds, sum(cpu) / len(cpu)))
            print(f"{arm}: {seconds:.1f} s", flush=True)
            with open(book, newline="", encoding="utf-8") as f:
                books[arm] = {r["student"]: (r["total"], r["status"]) for r in csv.DictReader(f)}
    mean = {arm: [sum(x) / len(runs) for x in zip(*runs)] for arm, runs in timings.items()}
    print(f"\n| arm | hand-ins | jobs | rounds | seconds (mean) | CPU s per student |\n|---|---|---|---|---|---|")
    for arm, (seconds, cpu) in mean.items():
        print(f"| {arm} | {args.students} | {args.jobs} | {args.rounds} | {seconds:.1f} | {cpu:.2f} |")
    ratio = mean["sandbox"][0] / mean["no sandbox"][0]
    same = "the same" if books["sandbox"] == books["no sandbox"] else "DIFFERENT"
    print(f"\nsandbox / no sandbox: {ratio:.2f}x the seconds, "
          f"{mean['sandbox'][1] / mean['no sandbox'][1]:.2f}x the CPU per student; gradebooks: {same}")
    return 0 if ratio <= 1.25 and same == "the same" else 1


if __name__ == "__main__":
    sys.exit(main())
