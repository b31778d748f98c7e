"""Run the course: execute notebooks headless with papermill and print a results table.

    python -m course_utils.run_notebooks                 # every notebook in notebooks/, defaults
    python -m course_utils.run_notebooks --smoke         # smoke parameters: seconds each
    python -m course_utils.run_notebooks notebooks/03_two_layer_cnn.ipynb --out build/course

Executed copies go to the output folder (default build/course), one subfolder per source
folder. A notebook that calls `headline(...)` counts as ok only when its headline was shown: a
cell calling sys.exit() ends papermill's run "successfully", so success alone proves nothing.
While a notebook runs, a progress bar counts its code cells and names the section being run; its
headline is printed when it finishes. Kernels talk to the runner over Unix sockets (IPC) where the
system has them, so no TCP port is opened and the kernel has no unencrypted transport to warn about.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import nbformat
import papermill as pm
from jupyter_client.manager import AsyncKernelManager
from tqdm.auto import tqdm
from traitlets import default

from .notebook import HEADLINE_KEY

ROOT = Path(__file__).resolve().parent.parent
KERNEL = "cnn-course"


@dataclass
class RunResult:
    """One executed notebook: its name, status, wall-clock seconds and headline."""

    notebook: str
    status: str
    seconds: float
    headline: str


def headline_of(nb: nbformat.NotebookNode) -> str | None:
    """The text a notebook passed to `course_utils.notebook.headline`, or None."""
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text = output.get("metadata", {}).get(HEADLINE_KEY)
            if text:
                return text
    return None


class LocalKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel listens on Unix sockets (IPC), not TCP, where the system has them."""

    @default("transport")
    def _default_transport(self) -> str:
        return "tcp" if os.name == "nt" else "ipc"

    @default("ip")
    def _default_ip(self) -> str:
        """For IPC, socket paths of this kernel's own (jupyter_client's default, kernel-ipc in the working
        folder, is shared by kernels started there at the same time, which then read each other's messages)."""
        if self.transport != "ipc":
            return super()._ip_default()
        return os.path.join(tempfile.gettempdir(), f"cnn-course-kernel-{uuid.uuid4().hex[:12]}-ipc")


def section_titles(nb: nbformat.NotebookNode) -> dict[str, str]:
    """For each code cell's id: the title of the last markdown heading above it ('' before the first)."""
    titles, current = {}, ""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            headings = re.findall(r"^#{1,6}\s+(.+)$", cell.source, flags=re.MULTILINE)
            current = headings[-1].strip() if headings else current
        elif "id" in cell:
            titles[cell.id] = current
    return titles


class CellProgress:
    """A tqdm bar over a notebook's code cells, described by the section being run (nbclient hooks)."""

    def __init__(self, path: Path, show: bool = True):
        nb = nbformat.read(path, as_version=4)
        self.titles = section_titles(nb)
        total = sum(c.cell_type == "code" and bool(c.source.strip()) for c in nb.cells)
        self.bar = tqdm(total=total, unit="cell", desc=path.stem, disable=not show, leave=True,
                        dynamic_ncols=True, file=sys.stdout)
        self.name = path.stem

    def on_cell_start(self, cell: nbformat.NotebookNode, cell_index: int) -> None:
        """Name the section the cell belongs to (the injected parameters cell keeps the current one)."""
        title = self.titles.get(cell.get("id", ""))
        if title:
            self.bar.set_description_str(f"{self.name} · {title[:60]}")

    def on_cell_complete(self, cell: nbformat.NotebookNode, cell_index: int) -> None:
        """Count one more cell run."""
        if self.bar.n < self.bar.total:
            self.bar.update(1)


def run_notebook(path: Path, out_dir: Path, parameters: dict, kernel: str = KERNEL,
                 cell_timeout: int | None = None, progress: bool = False) -> RunResult:
    """Execute one notebook with papermill into `out_dir`; never raises for the notebook's own errors."""
    out_path = out_dir / path.parent.name / path.name
    out_path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    bar = CellProgress(path, show=progress)
    try:
        pm.execute_notebook(str(path), str(out_path), parameters=parameters, kernel_name=kernel,
                            cwd=str(path.parent), progress_bar=False, execution_timeout=cell_timeout,
                            kernel_manager_class=LocalKernelManager, on_cell_start=bar.on_cell_start,
                            on_cell_complete=bar.on_cell_complete)
        status = "ok"
    except pm.PapermillExecutionError as err:
        status = f"error: {err.ename}: {err.evalue}"[:120]
    except Exception as err:  # CellTimeoutError, DeadKernelError, missing kernel, unreadable file
        status = f"{type(err).__name__}: {err}".splitlines()[0][:120]
    finally:
        bar.bar.close()
    seconds = time.perf_counter() - start
    headline = headline_of(nbformat.read(out_path, as_version=4)) if out_path.exists() else None
    if status == "ok" and headline is None and "headline(" in path.read_text():
        status = "incomplete: no headline (did a cell stop the notebook early?)"
    return RunResult(path.name, status, seconds, headline or "")


def format_table(results: list[RunResult]) -> str:
    """The results as a fixed-width table."""
    width = max([len(r.notebook) for r in results] + [8])
    lines = [f"{'notebook':<{width}}  {'status':<8}  {'seconds':>7}  headline"]
    for r in results:
        lines.append(f"{r.notebook:<{width}}  {r.status if r.status == 'ok' else 'FAILED':<8}  "
                     f"{r.seconds:>7.1f}  {r.headline if r.status == 'ok' else r.status}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the notebooks given (default: all of notebooks/), print the table, exit 1 on any failure."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run (default: notebooks/*.ipynb)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "course", help="folder for executed copies")
    parser.add_argument("--smoke", action="store_true", help="inject smoke=True (seconds per notebook)")
    parser.add_argument("--kernel", default=KERNEL, help="Jupyter kernel name (default: %(default)s)")
    parser.add_argument("--cell-timeout", type=int, default=None, help="seconds allowed per cell")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("*.ipynb"))
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    args.out.mkdir(parents=True, exist_ok=True)
    parameters = {"smoke": True} if args.smoke else {}
    results = []
    for path in paths:
        result = run_notebook(path.resolve(), args.out, parameters, args.kernel, args.cell_timeout, progress=True)
        results.append(result)
        outcome = result.headline if result.status == "ok" else result.status
        print(f"{'✓' if result.status == 'ok' else '✗'} {path.name} in {result.seconds:.1f} s: {outcome}", flush=True)
    print("\n" + format_table(results))
    print(f"\nexecuted copies in {args.out}")
    return 0 if all(r.status == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
