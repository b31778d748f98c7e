"""Late policy: a due time, a timestamp per hand-in and a penalty per started late period, capped.

Timestamps come from the submitted files' modification times (keep them when you unpack the
hand-ins: `unzip` does, a plain copy does not) or from a CSV `student,submitted` with ISO 8601
times. Times without a UTC offset are read in the time zone given (default: this machine's).
The penalty is a pure function of the total: final = total * (1 - percent / 100).
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from pathlib import Path

from .tables import number, write_csv

def parse_time(text: str, tz: tzinfo | None = None) -> datetime:
    """An ISO 8601 time (e.g. 2026-12-01T23:59 or 2026-12-01 23:59:00+01:00), aware, in UTC."""
    try:
        t = datetime.fromisoformat(str(text).strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is not a time; write it as ISO 8601, e.g. 2026-12-01T23:59 or "
                         "2026-12-01T23:59+01:00.") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=tz) if tz else t.astimezone()     # naive: this machine's zone, with its DST
    return t.astimezone(timezone.utc)


@dataclass(frozen=True)
class LatePolicy:
    """`percent` off per started `period` after `due` + `grace`, at most `cap` percent."""

    due: datetime
    percent: float = 10.0
    period: timedelta = timedelta(days=1)
    grace: timedelta = timedelta(0)
    cap: float = 100.0

    def __post_init__(self):
        if self.due.tzinfo is None:
            raise ValueError("the due time needs a time zone; build it with parse_time.")
        if not (0 <= self.percent <= 100 and 0 <= self.cap <= 100):
            raise ValueError(f"penalty {self.percent}% and cap {self.cap}% must lie between 0 and 100.")
        if self.period <= timedelta(0) or self.grace < timedelta(0):
            raise ValueError("the late period must be positive and the grace period not negative.")


@dataclass(frozen=True)
class Lateness:
    """How late one hand-in was and what it costs."""

    submitted: datetime | None
    late_by: timedelta
    periods: int
    percent: float

    def describe(self, policy: LatePolicy) -> str:
        """One sentence for the student's feedback."""
        if self.submitted is None:
            return "No submission time is known; no late penalty was applied."
        if not self.periods:
            return f"Handed in {self.submitted:%Y-%m-%d %H:%M} UTC, on time (due {policy.due:%Y-%m-%d %H:%M} UTC)."
        hours = self.late_by.total_seconds() / 3600
        return (f"Handed in {self.submitted:%Y-%m-%d %H:%M} UTC, {hours:.1f} h after the due time "
                f"{policy.due:%Y-%m-%d %H:%M} UTC: {self.periods} started late period(s) of "
                f"{policy.period.total_seconds() / 3600:g} h at {policy.percent:g} % each, "
                f"{self.percent:g} % off (at most {policy.cap:g} %).")


def lateness(policy: LatePolicy, submitted: datetime | None) -> Lateness:
    """The penalty for a hand-in at `submitted` (None: unknown, no penalty)."""
    if submitted is None:
        return Lateness(None, timedelta(0), 0, 0.0)
    late_by = submitted - policy.due
    counted = late_by - policy.grace
    periods = math.ceil(counted / policy.period) if counted > timedelta(0) else 0
    return Lateness(submitted, max(late_by, timedelta(0)), periods, min(policy.cap, periods * policy.percent))


def penalised(total: float, percent: float) -> float:
    """The total after a penalty of `percent` (final = total * (1 - percent/100))."""
    return total * (1 - percent / 100)


def file_times(paths: dict[str, Path | None]) -> dict[str, datetime | None]:
    """Each student's hand-in modification time in UTC (None for a student without a file)."""
    return {s: datetime.fromtimestamp(p.stat().st_mtime, timezone.utc) if p else None for s, p in paths.items()}


def read_timestamps(path: Path, tz: tzinfo | None = None) -> dict[str, datetime]:
    """`student,submitted` rows of a CSV as {student: UTC time}; ValueError on a bad or repeated row."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not {"student", "submitted"} <= set(reader.fieldnames or []):
            raise ValueError(f"{path} needs the columns student,submitted (it has {reader.fieldnames}).")
        times: dict[str, datetime] = {}
        for line, r in enumerate(reader, start=2):
            if r["student"] in times:
                raise ValueError(f"{path} line {line}: {r['student']!r} has two timestamps.")
            try:
                times[r["student"]] = parse_time(r["submitted"], tz)
            except ValueError as err:
                raise ValueError(f"{path} line {line}: {err}") from None
    return times


REPORT_COLUMNS = ["student", "submitted_utc", "hours_late", "late_periods", "penalty_percent", "total", "final",
                  "max"]


def late_report(rows: list[dict[str, str]], times: dict[str, datetime | None],
                policy: LatePolicy) -> list[dict[str, str]]:
    """One row per gradebook row: submission time, lateness, penalty and the final points.

    Every gradebook student needs an entry in `times` (None where no file exists): a student
    missing from a timestamps CSV is an error, not an on-time hand-in.
    """
    missing = [r["student"] for r in rows if r["student"] not in times]
    if missing:
        raise ValueError(f"no submission time for {len(missing)} students: {', '.join(missing[:10])}; "
                         "add them to the timestamps CSV.")
    out = []
    for r in rows:
        late = lateness(policy, times[r["student"]])
        total = number(r["total"], f"the total of {r['student']!r}")
        out.append({"student": r["student"],
                    "submitted_utc": late.submitted.isoformat(timespec="seconds") if late.submitted else "",
                    "hours_late": f"{late.late_by.total_seconds() / 3600:.2f}", "late_periods": str(late.periods),
                    "penalty_percent": f"{late.percent:g}", "total": r["total"],
                    "final": f"{penalised(total, late.percent):g}", "max": r["max"]})
    return out


SECTION = "\n## Late submission\n\n"


def note_in_feedback(feedback_md: Path, text: str) -> None:
    """Add (or replace) the late-submission section at the end of a feedback.md."""
    body = feedback_md.read_text(encoding="utf-8") if feedback_md.is_file() else ""
    body = body.split(SECTION)[0].rstrip("\n") + "\n"
    feedback_md.write_text(body + SECTION + text + "\n", encoding="utf-8")


def notes(times: dict[str, datetime | None], policy: LatePolicy) -> dict[str, str]:
    """Each student's late-policy sentence (for feedback, HTML and Gradescope)."""
    return {s: lateness(policy, t).describe(policy) for s, t in times.items()}


def write_late_report(rows: list[dict[str, str]], times: dict[str, datetime | None], policy: LatePolicy,
                      out: Path, folders: dict[str, Path] | None = None) -> list[dict[str, str]]:
    """Entry point: write the late report CSV to `out`; with `folders` (student -> feedback folder)
    also tell each student in their feedback.md. Returns the report rows."""
    report = late_report(rows, times, policy)
    write_csv(out, REPORT_COLUMNS, report)
    sentences = notes(times, policy)
    for student, folder in (folders or {}).items():
        if student in sentences:
            note_in_feedback(Path(folder) / "feedback.md", sentences[student])
    return report
