"""Course files a submission must not change: a snapshot, checked and restored after every student.

Student code runs as the grading user, so it *can* write the checks, the solutions or other
students' hand-ins. The guard notices (size, mtime or the file set changed), keeps a copy of
the changed file under `keep/`, puts the snapshot back, and says which files changed, so the
grader can flag who was running.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

MAX_SNAPSHOT_BYTES = 512 * 2**20


def _files(root: Path) -> list[Path]:
    """Files under `root` (or `root` itself), skipping __pycache__ and notebook checkpoints."""
    if root.is_file():
        return [root]
    return [p for p in sorted(root.rglob("*"))
            if p.is_file() and not {"__pycache__", ".ipynb_checkpoints"} & set(p.parts)]


class Guard:
    """Snapshot of the files under some roots; `restore()` undoes any change and lists it."""

    def __init__(self, roots: list[Path], keep: Path):
        self.roots = [r.resolve() for r in roots if r.exists()]
        self.keep = keep
        self.saved: dict[Path, tuple[tuple[int, int], bytes]] = {}
        total = 0
        for root in self.roots:
            for path in _files(root):
                data = path.read_bytes()
                total += len(data)
                if total > MAX_SNAPSHOT_BYTES:
                    raise MemoryError(f"the protected folders hold over {MAX_SNAPSHOT_BYTES >> 20} MB; "
                                      "grade from a smaller submissions folder")
                self.saved[path] = (self._signature(path), data)

    @staticmethod
    def _signature(path: Path) -> tuple[int, int]:
        st = path.stat()
        return st.st_size, st.st_mtime_ns

    def changed(self) -> list[Path]:
        """Files added, removed or modified since the snapshot."""
        now = {p for root in self.roots for p in _files(root)}
        gone_or_new = (now ^ set(self.saved))
        modified = {p for p in now & set(self.saved) if self._signature(p) != self.saved[p][0]}
        return sorted(gone_or_new | modified)

    def restore(self) -> list[Path]:
        """Put every changed file back as it was (new ones removed, both kept under `keep/`); return them."""
        changed = self.changed()
        for path in changed:
            if path.is_file():
                copy = self.keep / time.strftime("%Y%m%d-%H%M%S") / path.relative_to(path.anchor)
                copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, copy)
            if path in self.saved:
                path.parent.mkdir(parents=True, exist_ok=True)
                if path.is_symlink():
                    path.unlink()
                path.write_bytes(self.saved[path][1])
                st = self.saved[path][0]
                os.utime(path, ns=(st[1], st[1]))
            elif path.is_file() or path.is_symlink():
                path.unlink()
        return changed
