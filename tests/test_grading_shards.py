"""Sharding: deterministic, disjoint slices of a class; merging shard gradebooks gives the one-run gradebook."""
from __future__ import annotations

import random
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from course_utils.grading import shards
from course_utils.grading.tables import load_results, read_gradebook
from grading_class import ASSIGNMENT, result, write_class

DEPLOY = Path(__file__).resolve().parent.parent / "course_utils" / "grading" / "deploy"


@dataclass(frozen=True)
class Submission:
    """What the grader shards: anything with a `.student` id."""

    student: str
    path: Path | None


STUDENTS = [f"student_{i:02d}" for i in range(30)] + ["José García", "李雷", "o'brien, pat"]


def test_shard_spec_is_checked():
    assert shards.parse_shard("2/3") == (2, 3) and shards.parse_shard(" 1 / 1 ") == (1, 1)
    for bad in ("0/3", "4/3", "2", "a/b", "-1/3"):
        with pytest.raises(ValueError, match="K/N"):
            shards.parse_shard(bad)


def test_shards_are_disjoint_complete_stable_and_order_free():
    subs = [Submission(s, None) for s in STUDENTS]
    parts = [shards.shard(subs, k, 3) for k in (1, 2, 3)]
    assert sorted(s.student for p in parts for s in p) == sorted(STUDENTS)
    assert all(len(p) >= 5 for p in parts)
    shuffled = random.Random(1).sample(subs, len(subs))
    assert [sorted(s.student for s in shards.shard(shuffled, k, 3)) for k in (1, 2, 3)] == \
        [sorted(s.student for s in p) for p in parts]
    more = subs + [Submission(f"late_{i}", None) for i in range(10)]
    for k, p in enumerate(parts, start=1):           # adding students moves nobody already placed
        assert set(p) <= set(shards.shard(more, k, 3))
    assert shards.shard(STUDENTS, 2, 3, key=str) == [s.student for s in parts[1]]
    assert shards.shard_of("José García", 3) == 3   # SHA-256: the same on every machine


def class_results() -> list[dict]:
    rng = random.Random(0)
    return [result(s, {"add": rng.choice([0, 1]), "square": rng.choice([0, 2])},
                   status=rng.choice(["ok", "error", "timeout"]), message=f"note for {s}") for s in STUDENTS]


def sharded(root: Path, results: list[dict], n: int = 3) -> list[Path]:
    """Each shard's gradebook, feedback folder and shard description, as n grader runs would leave them."""
    books = []
    for k in range(1, n + 1):
        mine = shards.shard(results, k, n, key=lambda r: r["student"])
        book, folder = write_class(root / f"shard-{k}", mine, name=f"book-{k}")
        shards.write_info(book, ASSIGNMENT, k, n, folder)
        books.append(book)
    return books


def test_merging_shards_reproduces_the_single_gradebook(tmp_path):
    results = class_results()
    single, _ = write_class(tmp_path / "single", results)
    books = sharded(tmp_path, results)
    merged = shards.merge(books[::-1], tmp_path / "book.csv")
    assert merged == read_gradebook(single) == read_gradebook(tmp_path / "book.csv")
    assert (tmp_path / "book.csv").read_bytes() == single.read_bytes()
    copied = load_results(tmp_path / "book")
    assert sorted(copied) == sorted(STUDENTS)
    assert copied["José García"].result == next(r for r in results if r["student"] == "José García")
    assert all((r.folder / "feedback.md").is_file() for r in copied.values())


def test_shards_merge_where_their_volume_is_mounted_elsewhere(tmp_path):
    books = sharded(tmp_path / "grading-node", class_results())
    (tmp_path / "grading-node").rename(tmp_path / "laptop")
    moved = [tmp_path / "laptop" / b.relative_to(tmp_path / "grading-node") for b in books]
    assert len(shards.merge(moved, tmp_path / "book.csv").rows) == len(STUDENTS)
    assert len(load_results(tmp_path / "book")) == len(STUDENTS)
    shutil.rmtree(moved[0].with_suffix(""))
    with pytest.raises(FileNotFoundError, match="no feedback folder for"):
        shards.merge(moved, tmp_path / "again.csv")


def test_merge_refuses_duplicates_mismatches_and_missing_shards(tmp_path):
    results = class_results()
    books = sharded(tmp_path, results)
    with pytest.raises(ValueError, match=r"shard\(s\) \[3\] of 3 are missing"):
        shards.merge(books[:2], tmp_path / "book.csv")
    partial = shards.merge(books[:2], tmp_path / "partial.csv", allow_partial=True)
    assert len(partial.rows) == len(results) - len(read_gradebook(books[2]).rows)
    with pytest.raises(ValueError, match="is one of the gradebooks"):
        shards.merge(books, books[0])
    with pytest.raises(ValueError, match="already exists"):
        shards.merge(books[:2], tmp_path / "partial.csv", allow_partial=True)

    dup = tmp_path / "dup"
    book, folder = write_class(dup, [results[0]], name="extra")
    shards.write_info(book, ASSIGNMENT, 3, 3, folder)
    with pytest.raises(ValueError, match="appear twice"):
        shards.merge(books + [book], tmp_path / "x.csv")
    shards.info_path(book).unlink()
    with pytest.raises(ValueError, match=f"student '{results[0]['student']}' is in both"):
        shards.merge(books + [book], tmp_path / "x.csv")

    other = tmp_path / "other"
    book, folder = write_class(other, results[:1], name="other")
    shards.write_info(book, "01_convolution", 3, 3, folder)
    with pytest.raises(ValueError, match="different assignments"):
        shards.merge(books[:2] + [book], tmp_path / "x.csv")
    shards.write_info(book, ASSIGNMENT, 3, 4, folder)
    with pytest.raises(ValueError, match="sharded differently"):
        shards.merge(books[:2] + [book], tmp_path / "x.csv")
    book.write_text(book.read_text().replace("square", "conv_output_size"))
    shards.info_path(book).unlink()
    with pytest.raises(ValueError, match="not the same assignment"):
        shards.merge(books[:2] + [book], tmp_path / "x.csv", allow_partial=True)
    assert not (tmp_path / "x.csv").exists()


def test_cluster_recipes_are_well_formed():
    job, policy = yaml.safe_load_all((DEPLOY / "grade-job.yaml").read_text())
    assert policy["kind"] == "NetworkPolicy" and "egress" not in policy["spec"]       # no traffic allowed
    assert policy["spec"]["podSelector"]["matchLabels"] == job["spec"]["template"]["metadata"]["labels"]
    spec = job["spec"]
    assert job["kind"] == "Job" and spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 3
    container = spec["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"]["cpu"] and container["resources"]["limits"]["memory"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    script = container["args"][-1]
    assert "JOB_COMPLETION_INDEX + 1" in script and "--shard" in script
    assert {m["mountPath"]: m.get("readOnly", False) for m in container["volumeMounts"]}["/submissions"] is True
    slurm = (DEPLOY / "grade-array.sbatch").read_text()
    assert "#SBATCH --array=1-3" in slurm and "SLURM_ARRAY_TASK_ID" in slurm and "--merge" in slurm
    for script in ("grade-array.sbatch", "gradescope/setup.sh", "gradescope/run_autograder"):
        subprocess.run(["bash", "-n", str(DEPLOY / script)], check=True)
    assert "/autograder/results/results.json" in (DEPLOY / "gradescope" / "run_autograder").read_text()
    docker = (DEPLOY / "Dockerfile").read_text()
    assert "ENTRYPOINT" in docker and "USER" in docker
