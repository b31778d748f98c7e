"""How long the papermill grader takes for a class: 30 submissions of one exercise notebook.

    python benchmarks/grade_speed.py [--assignment 03_two_layer_cnn] [--students 30] [--jobs 2]

Makes the submissions from solutions/NAME.ipynb: a third correct, a third partly correct (the
first exercise left as the stub), a third broken (a syntax error in the last exercise and a cell
that raises). Grades them with `python -m course_utils.grade` into a temporary folder and prints
the wall time against the target (2 minutes for 30 submissions on 2 CPU cores) and the CPU time
each student's grading used (worker, kernel and checker together), which other load on the
machine inflates far less than the wall time. The exercise and
solution notebooks are copied there first, so that the grader's guard watches only the copies.
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import nbformat

from course_utils.exercises import BEGIN, ROOT, strip_solutions

TARGET_SECONDS = 120


def variants(solution: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    """The correct, partly correct and broken versions of a solution notebook."""
    exercise_cells = [i for i, c in enumerate(solution.cells) if c.cell_type == "code" and BEGIN in c.source]
    partial = copy.deepcopy(solution)
    partial.cells[exercise_cells[0]].source = strip_solutions(partial.cells[exercise_cells[0]].source)
    broken = copy.deepcopy(solution)
    broken.cells[exercise_cells[-1]].source = broken.cells[exercise_cells[-1]].source.replace(":", "", 1)
    broken.cells.insert(exercise_cells[0], nbformat.v4.new_code_cell('raise RuntimeError("not finished")'))
    return {"correct": solution, "partial": partial, "broken": broken}


def main(argv: list[str] | None = None) -> int:
    """Make the submissions, grade them, print the timing table; exit 1 if over the target."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--assignment", default="03_two_layer_cnn")
    p.add_argument("--students", type=int, default=30)
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args(argv)
    kinds = variants(nbformat.read(ROOT / "solutions" / f"{args.assignment}.ipynb", as_version=4))
    with tempfile.TemporaryDirectory(prefix="grade-speed-") as tmp:
        subs, out, course = Path(tmp) / "submissions", Path(tmp) / "grades.csv", Path(tmp) / "course"
        subs.mkdir()
        for folder in ("exercises", "solutions"):
            (course / folder).mkdir(parents=True)
            shutil.copy(ROOT / folder / f"{args.assignment}.ipynb", course / folder)
        names = list(kinds)
        for i in range(args.students):
            kind = names[i % len(names)]
            nbformat.write(kinds[kind], subs / f"{kind}_{i:02d}.ipynb")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "course_utils.grade", str(subs), "--assignment", args.assignment,
                        "--out", str(out), "--jobs", str(args.jobs), "--quiet", "--protect", str(course),
                        "--exercises", str(course / "exercises"), "--solutions", str(course / "solutions")],
                       check=True)
        seconds = time.perf_counter() - start
        with open(out, newline="") as f:
            rows = list(csv.DictReader(f))
        cpu = [json.loads(p.read_text())["cpu_seconds"] for p in out.with_suffix("").glob("*/result.json")]
    by_kind = {k: Counter(f"{r['total']}/{r['max']} {r['status']}" for r in rows if r["student"].startswith(k))
               for k in names}
    print("\n| assignment | submissions | jobs | seconds | CPU s per student | target |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.assignment} | {len(rows)} | {args.jobs} | {seconds:.1f} | {sum(cpu) / len(cpu):.2f} | "
          f"≤ {TARGET_SECONDS * args.students / 30:.0f} s |")
    for kind, counts in by_kind.items():
        print(f"{kind:>8}: " + ", ".join(f"{n} × {what}" for what, n in sorted(counts.items())))
    return 0 if seconds <= TARGET_SECONDS * args.students / 30 else 1


if __name__ == "__main__":
    sys.exit(main())
