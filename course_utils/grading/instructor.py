"""The instructor's outputs beside a gradebook, and the command-line options that ask for them.

`add_arguments(parser)` adds the options; after grading, `after_grading(...)` writes, beside
GRADEBOOK.csv: HTML feedback, the item analysis (GRADEBOOK.stats.md/.csv/.png, .mistakes.csv),
the written-answer sheets (GRADEBOOK.written/), and on request merged written scores, the late
report (GRADEBOOK.late.csv), the similarity report, Gradescope and Canvas exports.
`merge_command(args)` joins shard gradebooks (`--merge`).
"""
from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path
from typing import Callable

import nbformat

from course_utils.checks import written_for

from . import exports, late, shards, similarity, stats, tables, written


def _typed(parse: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse type that shows the parser's own error message."""
    def convert(text: str) -> object:
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    convert.__name__ = parse.__name__
    return convert


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options for sharding, merging and the instructor's reports."""
    p.add_argument("--shard", type=_typed(shards.parse_shard), metavar="K/N",
                   help="grade only slice K of N of the class (K = 1..N; a student's slice never changes)")
    p.add_argument("--merge", nargs="+", type=Path, metavar="BOOK",
                   help="join shard gradebooks and their feedback folders into --out; grades nothing")
    g = p.add_argument_group("instructor reports (written beside the gradebook after grading)")
    g.add_argument("--no-stats", action="store_true", help="skip the item analysis (GRADEBOOK.stats.*)")
    g.add_argument("--written-scores", type=Path, metavar="CSV",
                   help="the filled GRADEBOOK.written/scores.csv: merge the written answers' scores")
    g.add_argument("--allow-unscored", action="store_true",
                   help="merge --written-scores although some answers have no score yet (they count 0)")
    g.add_argument("--format", action="append", choices=["gradescope", "canvas"], default=[],
                   help="also export Gradescope results.json per student, or a Canvas import CSV (repeatable)")
    g.add_argument("--roster", type=Path, help="for --format canvas: CSV with student_id (the grader's id), "
                   "Student, ID, SIS User ID[, SIS Login ID, Section]; Canvas's gradebook export works too")
    g.add_argument("--canvas-column", help='Canvas assignment column (default: the assignment name; '
                   '"Name (id)" updates an existing assignment)')
    g.add_argument("--due", type=_typed(late.parse_time), metavar="TIME",
                   help="due time, ISO 8601 (e.g. 2026-12-01T23:59+01:00): apply the late policy")
    g.add_argument("--late-penalty", type=float, default=10, metavar="PERCENT",
                   help="percent off per started late period (default 10)")
    g.add_argument("--late-period", type=float, default=24, metavar="HOURS", help="hours per period (default 24)")
    g.add_argument("--late-cap", type=float, default=100, metavar="PERCENT", help="most taken off (default 100)")
    g.add_argument("--grace", type=float, default=0, metavar="MINUTES", help="minutes not counted late (default 0)")
    g.add_argument("--timestamps", type=Path, metavar="CSV",
                   help="student,submitted (ISO 8601) per hand-in, instead of the files' modification times")
    g.add_argument("--similarity", action="store_true",
                   help="report pairs of near-identical answer functions (flags to read, never a penalty)")


def check_arguments(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """parser.error for options that do not go together."""
    if "canvas" in args.format and not args.roster:
        p.error("--format canvas needs --roster ROSTER.csv")
    if args.timestamps and not args.due:
        p.error("--timestamps needs --due")
    if args.merge and args.shard:
        p.error("--merge joins shards; grade them first with --shard, then merge")


def merge_command(args: argparse.Namespace) -> int:
    """`--merge BOOK... --out BOOK.csv`: join shard gradebooks; 0 on success, 2 with the reason printed."""
    try:
        merged = shards.merge(args.merge, args.out, args.feedback)
    except (ValueError, FileNotFoundError) as err:
        print(err, file=sys.stderr)
        return 2
    print(f"merged {len(args.merge)} gradebooks into {args.out}: {len(merged.rows)} students", file=sys.stderr)
    return 0


UNSANDBOXED = ("graded with --no-sandbox: each student's code ran without isolation, as the grading user, "
               "and could read (and change) classmates' hand-ins and feedback; only trusted hand-ins should be "
               "graded this way (see docs/grading-sandbox.md).")


def _beside(gradebook: Path, suffix: str) -> Path:
    """GRADEBOOK.<suffix> for GRADEBOOK.csv."""
    return gradebook.with_name(f"{gradebook.stem}.{suffix}")


def after_grading(args: argparse.Namespace, exercise: Path, questions: list[dict],
                  submitted: dict[str, Path | None], feedback_dir: Path) -> list[Path]:
    """Write the instructor's outputs for the gradebook `args.out`; return the paths written.

    `questions` are the checked questions (id, answer_name, max_points); `submitted` maps each
    student of this run to the file handed in (for the late policy's modification times).
    """
    out, assignment = Path(args.out), args.assignment
    results = tables.load_results(feedback_dir)
    notebooks = {s: r.notebook for s, r in results.items()}
    paths: list[Path] = []
    if not args.no_stats:
        paths += stats.write_report([r.result for r in results.values()], assignment, out.with_suffix("")).values()
    if getattr(args, "no_sandbox", False):
        report = _beside(out, "stats.md")
        text = report.read_text(encoding="utf-8") if report.is_file() else ""
        report.write_text(f"> **Warning:** {UNSANDBOXED}\n\n{text}", encoding="utf-8")
        paths += [] if text else [report]
    registered = {w.id: w.max_points for w in written_for(assignment)}
    for problem in written.registry_problems(written.written_questions(nbformat.read(exercise, as_version=4)),
                                             registered):
        print(f"warning: {problem}", file=sys.stderr)
    paths += written.export_written(exercise, notebooks, _beside(out, "written"), assignment).values()
    if args.written_scores:
        written.merge_written(out, args.written_scores, exercise, autograded=tuple(q["id"] for q in questions),
                              allow_unscored=args.allow_unscored)
    rows = tables.read_gradebook(out).rows
    finals, notes = None, {}
    if args.due:
        policy = late.LatePolicy(args.due, args.late_penalty, timedelta(hours=args.late_period),
                                 timedelta(minutes=args.grace), args.late_cap)
        times = late.read_timestamps(args.timestamps) if args.timestamps else late.file_times(submitted)
        report = late.write_late_report(rows, times, policy, _beside(out, "late.csv"),
                                        {s: r.folder for s, r in results.items()})
        finals = {r["student"]: float(r["final"]) for r in report}
        notes = late.notes(times, policy)
        paths.append(_beside(out, "late.csv"))
    paths += exports.write_html_feedback(results, assignment, notes)
    if args.similarity:
        similarity.similarity_report(notebooks, [q["answer_name"] for q in questions], out.with_suffix(""),
                                     assignment, exercise)
        paths += [_beside(out, "similarity.md"), _beside(out, "similarity.csv")]
    if "gradescope" in args.format:
        paths += exports.write_gradescope(results, finals, notes)
    if "canvas" in args.format:
        top = max((float(r["max"]) for r in rows), default=0.0)
        paths.append(exports.write_canvas(finals or exports.totals_of(rows), args.roster, _beside(out, "canvas.csv"),
                                          args.canvas_column or assignment, top))
    return paths
