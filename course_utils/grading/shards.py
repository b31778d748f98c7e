"""Grading a class on several machines: deterministic shards and merging their gradebooks.

`shard(items, k, n)` keeps the students whose id hashes (SHA-256, the same on every machine and
Python) to slice k of n, so that a student stays in the same shard when others are added.
Each shard's run writes its gradebook, its feedback folder and `GRADEBOOK.shard.json`
(assignment, k, n); `merge` joins them and refuses duplicates, mismatched columns or
assignments, and missing shards.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, TypeVar

from .tables import Gradebook, read_gradebook, write_gradebook

T = TypeVar("T")


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' as (K, N) with 1 <= K <= N; ValueError that says the form otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if not m or not 1 <= int(m[1]) <= int(m[2]):
        raise ValueError(f"--shard {text!r}: write K/N with 1 <= K <= N, e.g. 2/3 for the second of three "
                         "(a 0-based array index i is shard i+1).")
    return int(m[1]), int(m[2])


def shard_of(student: str, n: int) -> int:
    """The shard (1..n) of a student id."""
    return int.from_bytes(hashlib.sha256(student.encode("utf-8")).digest()[:8], "big") % n + 1


def shard(items: Iterable[T], k: int, n: int, key: Callable[[T], str] = lambda s: s.student) -> list[T]:
    """The items (submissions, by default keyed by `.student`) that fall in shard k of n."""
    if not 1 <= k <= n:
        raise ValueError(f"shard {k}/{n}: K must lie between 1 and N.")
    return [item for item in items if shard_of(key(item), n) == k]


def info_path(gradebook: Path) -> Path:
    """Where a shard's description lies: GRADEBOOK.shard.json beside the gradebook."""
    gradebook = Path(gradebook)
    return gradebook.with_name(f"{gradebook.stem}.shard.json")


def write_info(gradebook: Path, assignment: str, k: int, n: int, feedback: Path | None = None) -> Path:
    """Record which assignment and shard a gradebook holds, and its feedback folder relative to it
    (so that the shard can be merged on another machine, where the volume lies elsewhere)."""
    path = info_path(gradebook)
    folder = Path(feedback or Path(gradebook).with_suffix(""))
    path.write_text(json.dumps({"assignment": assignment, "shard": k, "of": n,
                                "feedback": os.path.relpath(folder.resolve(), path.parent.resolve())}))
    return path


def _feedback_dir(gradebook: Path, info: dict | None, given: Path | None) -> Path:
    """A shard's feedback folder: as given, as its description says, or the gradebook path without .csv."""
    candidates = [Path(given)] if given else [gradebook.parent / info["feedback"]] if info else []
    candidates.append(gradebook.with_suffix(""))
    for folder in candidates:
        if folder.is_dir():
            return folder
    raise FileNotFoundError(f"no feedback folder for {gradebook} (looked in {', '.join(map(str, candidates))}); "
                            "copy it beside the gradebook or pass the shards' feedback folders.")


def _infos(gradebooks: list[Path]) -> list[dict | None]:
    """Each gradebook's shard description, or None where it has none."""
    out = []
    for g in gradebooks:
        p = info_path(g)
        out.append(json.loads(p.read_text()) if p.is_file() else None)
    return out


def _check_shards(gradebooks: list[Path], infos: list[dict | None], allow_partial: bool) -> None:
    """ValueError unless the described shards share assignment and N, and all N are there."""
    known = [(g, i) for g, i in zip(gradebooks, infos) if i]
    if not known:
        return
    assignments = {i["assignment"] for _, i in known}
    if len(assignments) > 1:
        raise ValueError("the gradebooks are of different assignments: " +
                         ", ".join(f"{g} ({i['assignment']})" for g, i in known))
    ns = {i["of"] for _, i in known}
    if len(ns) > 1:
        raise ValueError("the gradebooks were sharded differently: " +
                         ", ".join(f"{g} ({i['shard']}/{i['of']})" for g, i in known))
    have = Counter(i["shard"] for _, i in known)
    twice = [k for k, c in have.items() if c > 1]
    if twice:
        raise ValueError(f"shard(s) {twice} appear twice among the gradebooks.")
    missing = sorted(set(range(1, ns.pop() + 1)) - set(have))
    if missing and not allow_partial:
        raise ValueError(f"shard(s) {missing} of {known[0][1]['of']} are missing; grade them first "
                         "(or merge with allow_partial to join what is there).")


def merge_books(books: list[tuple[str, Gradebook]]) -> Gradebook:
    """One gradebook from several (named) ones; ValueError on different columns or a repeated student."""
    name0, first = books[0]
    owner: dict[str, str] = {}
    rows = []
    for name, book in books:
        if book.columns != first.columns:
            raise ValueError(f"{name} has columns {book.columns}, but {name0} has {first.columns}: "
                             "they are not the same assignment (or were graded with different checks).")
        for r in book.rows:
            if r["student"] in owner:
                raise ValueError(f"student {r['student']!r} is in both {owner[r['student']]} and {name}; "
                                 "each student must be graded in one shard only.")
            owner[r["student"]] = name
            rows.append(r)
    return Gradebook(list(first.columns), sorted(rows, key=lambda r: r["student"]))


def merge(gradebooks: list[Path], out: Path, out_feedback: Path | None = None,
          feedback_dirs: list[Path | None] | None = None, allow_partial: bool = False) -> Gradebook:
    """Entry point: join shard gradebooks into `out` and their feedback folders into `out_feedback`.

    Feedback folders default to what each shard recorded (else its gradebook path without .csv);
    the merged one to `out` without .csv. Nothing is written if any check fails.
    """
    gradebooks = [Path(g) for g in gradebooks]
    if len(gradebooks) < 2:
        raise ValueError("merge needs at least two gradebooks.")
    out = Path(out)
    if out.resolve() in {g.resolve() for g in gradebooks}:
        raise ValueError(f"{out} is one of the gradebooks to merge; write the merged one elsewhere.")
    infos = _infos(gradebooks)
    _check_shards(gradebooks, infos, allow_partial)
    merged = merge_books([(str(g), read_gradebook(g)) for g in gradebooks])
    dirs = [_feedback_dir(g, i, d) for g, i, d in zip(gradebooks, infos, feedback_dirs or [None] * len(gradebooks))]
    target = Path(out_feedback or out.with_suffix(""))
    plan = _feedback_plan(dirs, target)
    for src, dst in plan:
        shutil.copytree(src, dst, dirs_exist_ok=True)
    write_gradebook(out, merged)
    return merged


def _feedback_plan(dirs: list[Path], target: Path) -> list[tuple[Path, Path]]:
    """(source, destination) folders to copy: each student folder once; `_changed` per shard."""
    plan, seen = [], {}
    for i, d in enumerate(dirs, start=1):
        for sub in sorted(d.iterdir()):
            if not sub.is_dir():
                continue
            dst = target / "_changed" / f"shard-{i}" if sub.name == "_changed" else target / sub.name
            if sub.name != "_changed" and sub.name in seen:
                raise ValueError(f"feedback folder {sub.name!r} is in both {seen[sub.name]} and {d}; "
                                 "the shards overlap.")
            if sub.name != "_changed" and dst.exists():
                raise ValueError(f"{dst} already exists; remove {target} (an earlier merge) to merge again.")
            seen[sub.name] = d
            plan.append((sub, dst))
    return plan
