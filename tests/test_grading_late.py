"""Late policy: penalties per started period with a cap, times from files or a CSV, the per-student report."""
from __future__ import annotations

import csv
import os
from datetime import datetime, timedelta, timezone

import pytest

from course_utils.grading import late
from course_utils.grading.tables import load_results, read_gradebook
from grading_class import result, write_class

DUE = late.parse_time("2026-12-01T23:59+01:00")
POLICY = late.LatePolicy(DUE, percent=10, cap=30)


@pytest.mark.parametrize("after, periods, percent", [
    (timedelta(minutes=-5), 0, 0), (timedelta(0), 0, 0), (timedelta(minutes=1), 1, 10),
    (timedelta(hours=24), 1, 10), (timedelta(hours=25), 2, 20), (timedelta(days=10), 10, 30)])
def test_percent_per_started_day_with_a_cap(after, periods, percent):
    got = late.lateness(POLICY, DUE + after)
    assert (got.periods, got.percent) == (periods, percent)
    assert late.penalised(3.0, got.percent) == pytest.approx(3.0 * (1 - percent / 100))


def test_grace_period_and_hourly_penalties():
    policy = late.LatePolicy(DUE, percent=5, period=timedelta(hours=1), grace=timedelta(minutes=15))
    assert late.lateness(policy, DUE + timedelta(minutes=14)).percent == 0
    assert late.lateness(policy, DUE + timedelta(minutes=16)).percent == 5
    assert late.lateness(policy, DUE + timedelta(hours=3)).percent == 15
    assert late.lateness(policy, None).percent == 0


def test_times_are_parsed_with_their_zone_or_the_one_given():
    assert DUE == datetime(2026, 12, 1, 22, 59, tzinfo=timezone.utc)
    assert late.parse_time("2026-12-01T22:59Z") == DUE
    assert late.parse_time("2026-12-01 23:59", timezone(timedelta(hours=1))) == DUE
    with pytest.raises(ValueError, match="ISO 8601"):
        late.parse_time("1 Dec 2026")
    with pytest.raises(ValueError, match="time zone"):
        late.LatePolicy(datetime(2026, 12, 1))
    with pytest.raises(ValueError, match="between 0 and 100"):
        late.LatePolicy(DUE, percent=150)


def test_file_times_and_the_report_in_feedback(tmp_path):
    subs = tmp_path / "submissions"
    subs.mkdir()
    times = {"on_time": DUE - timedelta(hours=2), "José García": DUE + timedelta(hours=30)}
    paths = {}
    for student, t in times.items():
        paths[student] = subs / f"{student}.ipynb"
        paths[student].write_text("{}")
        os.utime(paths[student], (t.timestamp(), t.timestamp()))
    paths["no_file"] = None
    found = late.file_times(paths)
    assert found["on_time"] == times["on_time"] and found["no_file"] is None
    results = [result("on_time", {"add": 1, "square": 2}), result("José García", {"add": 1, "square": 2}),
               result("no_file", {}, status="invalid")]
    book, folder = write_class(tmp_path, results)
    folders = {s: r.folder for s, r in load_results(folder).items()}
    report = late.write_late_report(read_gradebook(book).rows, found, POLICY, tmp_path / "late.csv", folders)
    by = {r["student"]: r for r in report}
    jose = by["José García"]
    assert (jose["late_periods"], jose["penalty_percent"], jose["final"]) == ("2", "20", "2.4")
    assert (by["on_time"]["final"], by["on_time"]["hours_late"], by["no_file"]["submitted_utc"]) == ("3", "0.00", "")
    with open(tmp_path / "late.csv", newline="") as f:
        assert [r["final"] for r in csv.DictReader(f)] == ["2.4", "0", "3"]
    text = (folders["José García"] / "feedback.md").read_text()
    assert text.count("## Late submission") == 1 and "30.0 h after the due time" in text and "20 % off" in text
    late.write_late_report(read_gradebook(book).rows, found, POLICY, tmp_path / "late.csv", folders)
    assert (folders["José García"] / "feedback.md").read_text() == text          # a re-run replaces the note
    assert "on time" in (folders["on_time"] / "feedback.md").read_text()


def test_timestamps_csv_must_cover_every_student(tmp_path):
    path = tmp_path / "timestamps.csv"
    path.write_text("student,submitted\nalice,2026-12-02T08:00+01:00\nbob,2026-12-01T12:00\n")
    times = late.read_timestamps(path, timezone.utc)
    assert times["alice"] == DUE + timedelta(hours=8, minutes=1) and times["bob"].hour == 12
    rows = [{"student": s, "total": "3", "max": "3"} for s in ("alice", "bob", "carol")]
    with pytest.raises(ValueError, match="no submission time for 1 students: carol"):
        late.late_report(rows, times, POLICY)
    path.write_text("student,submitted\nalice,yesterday\n")
    with pytest.raises(ValueError, match="line 2"):
        late.read_timestamps(path)
    path.write_text("name,time\n")
    with pytest.raises(ValueError, match="student,submitted"):
        late.read_timestamps(path)
