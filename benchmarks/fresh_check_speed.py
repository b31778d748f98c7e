"""Time the pre-hand-in check, `check_all(fresh=True)`, per sheet, against the grader's command run as it
used to be, on the same solution, under the same load.

    python benchmarks/fresh_check_speed.py [--sheets 01_convolution_kernels 03_two_layer_cnn]

Per sheet it grades solutions/NAME.ipynb three times: with `python -m course_utils.grade` and its
defaults in a new interpreter (what the fresh check ran before: as many torch threads as cores, the
item analysis, torch imported by the command and again by its fork server); then with the fresh
check's `grade_saved` as a first check in a kernel (its fork server started cold) and as the next one
(the fork server warm). It checks that the three gradebook rows give the same points, and prints a
table of the seconds. The times include starting the grader and, on sheet 03, training the challenge
with smoke parameters; other load on the machine inflates them (the load average is printed).
"""
from __future__ import annotations

import argparse
import csv
import multiprocessing.forkserver
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from course_utils.grading.fresh import FRESH_OPTIONS, grade_saved

ROOT = Path(__file__).resolve().parent.parent
NOT_POINTS = {"student", "status", "seconds", "message"}


def command_row(sheet: str, work: Path) -> dict:
    """The gradebook row of the solution of `sheet` graded by the grader's command in a new interpreter."""
    subs = work / "hand-in"
    subs.mkdir(parents=True)
    shutil.copyfile(ROOT / "solutions" / f"{sheet}.ipynb", subs / "me.ipynb")
    subprocess.run([sys.executable, "-m", "course_utils.grade", str(subs), "--assignment", sheet, "--out",
                    str(work / "book.csv"), "--quiet", "--work", str(work)], check=True, capture_output=True)
    with open(work / "book.csv", newline="", encoding="utf-8") as f:
        return next(csv.DictReader(f))


def timed(grade, sheet: str) -> tuple[float, dict]:
    """Seconds taken by `grade(sheet, work)` in a fresh working folder, and the row it returned."""
    with tempfile.TemporaryDirectory(prefix="fresh-speed-") as work:
        start = time.perf_counter()
        row = grade(sheet, Path(work))
        return time.perf_counter() - start, row


def main(argv: list[str] | None = None) -> int:
    """Print the table; 0 when every sheet's three rows give the same points."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sheets", nargs="+", default=["01_convolution_kernels", "03_two_layer_cnn"])
    args = p.parse_args(argv)
    fresh = lambda sheet, work: grade_saved(ROOT / "solutions" / f"{sheet}.ipynb", sheet, "me", work)["row"]
    print(f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the start; the fresh check's "
          f"options: {' '.join(FRESH_OPTIONS)}")
    print(f"{'sheet':24s} {'grader command, s':>18s} {'fresh check, first, s':>22s} {'fresh check, again, s':>22s}"
          "  same points")
    agree = True
    for sheet in args.sheets:
        multiprocessing.forkserver._forkserver._stop()          # each sheet's first check starts it cold
        before, row = timed(command_row, sheet)
        first, row_first = timed(fresh, sheet)
        again, row_again = timed(fresh, sheet)
        points = [{k: v for k, v in r.items() if k not in NOT_POINTS} for r in (row, row_first, row_again)]
        same = points[0] == points[1] == points[2]
        agree &= same
        print(f"{sheet:24s} {before:18.1f} {first:22.1f} {again:22.1f}  {'yes' if same else 'NO'}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
