"""Build the course website: the executed lectures, the exercise sheets (questions only), a landing page.

    python -m course_utils.site                      # from build/course (python -m course_utils.run_notebooks)
    python -m course_utils.site --smoke              # run the lectures with smoke parameters first (~4 min)
    python -m course_utils.site --course DIR --out build/site

Sphinx with MyST-NB renders the stored outputs (nothing is executed) and the Furo theme, whose styles,
scripts and search ship inside the Python package, with MathJax copied from the sphinx-mathjax-offline
package: neither the build nor a reader's browser fetches anything from the network. The
landing page reads from each executed lecture its title, its first paragraph, its reading time (words
at 150 a minute), how long its run took and its headline result. Open build/site/index.html.
"""
from __future__ import annotations

import argparse
import html
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat

from .run_notebooks import ROOT, headline_of, main as run_course

WORDS_PER_MINUTE = 150
CONF = '''project = "CNN course"
copyright = "the CNN course authors; text and figures CC BY 4.0, code MIT"
extensions = ["myst_nb", "sphinx-mathjax-offline", "course_utils.sphinx_ext"]
html_theme = "furo"
html_title = "CNN course"
html_show_sourcelink = False
nb_execution_mode = "off"
nb_ipywidgets_js = {}
nb_mime_priority_overrides = [("html", "application/vnd.jupyter.widget-view+json", None)]
myst_enable_extensions = ["dollarmath", "amsmath"]
exclude_patterns = ["_build"]
suppress_warnings = ["mystnb.unknown_mime_type", "myst.header"]
'''


def lecture_summary(nb: nbformat.NotebookNode) -> dict:
    """Title, first paragraph, reading minutes, run seconds and headline of an executed lecture."""
    first = nb.cells[0].source if nb.cells and nb.cells[0].cell_type == "markdown" else ""
    title = re.search(r"^#\s+(.+)$", first, flags=re.MULTILINE)
    paragraphs = [p for p in re.split(r"\n\s*\n", first) if p.strip() and not p.lstrip().startswith("#")]
    words = sum(len(c.source.split()) for c in nb.cells if c.cell_type == "markdown")
    return {"title": title[1].strip() if title else "untitled",
            "idea": " ".join(paragraphs[0].split()) if paragraphs else "",
            "minutes": max(1, round(words / WORDS_PER_MINUTE)),
            "seconds": nb.metadata.get("papermill", {}).get("duration"),
            "headline": headline_of(nb)}


def landing_page(summaries: list[tuple[str, dict]], sheets: list[str], smoke: bool) -> str:
    """The index page: the course map, one row per lecture, the toctrees that make the navigation."""
    rows = []
    for page, s in summaries:
        run = f"{s['seconds']:.0f} s" if s["seconds"] else "not recorded"
        result = s["headline"] or "no headline: the run did not reach its end"
        rows.append(f"### [{s['title']}]({page}.ipynb)\n\n{s['idea']}\n\n"
                    f"*Reading time about {s['minutes']} min; this run took {run}.* **Result:** {result}\n")
    note = ("These pages were built from a smoke run (a small subset, seconds per lecture): its numbers are "
            "not the course's results.\n\n" if smoke else "")
    return "\n".join([
        "# A course on convolutional neural networks", "",
        "Six lectures in PyTorch on MNIST, each executed here with its outputs and figures, and six "
        "exercise sheets (questions only). Run them yourself with the course's repository.", "",
        note + "## Course map", "", *rows,
        "```{toctree}\n:caption: Lectures\n:hidden:\n\n" + "\n".join(f"lectures/{p.split('/')[-1]}"
                                                                    for p, _ in summaries) + "\n```", "",
        "```{toctree}\n:caption: Exercise sheets\n:hidden:\n\n" + "\n".join(sheets) + "\n```", ""])


def alt_text_html(nb: nbformat.NotebookNode) -> int:
    """Give each PNG output that has alt text in its metadata, and no HTML, an <img alt> twin; return how many.

    MyST-NB reads an image's alt text from the cell's metadata only, not from the output's.
    """
    added = 0
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data, alt = output.get("data", {}), output.get("metadata", {}).get("image/png", {}).get("alt")
            if alt and "image/png" in data and "text/html" not in data:
                data["text/html"] = f'<img src="data:image/png;base64,{data["image/png"]}" alt="{html.escape(alt)}">'
                added += 1
    return added


def stage(course: Path, source: Path) -> None:
    """Copy the executed lectures and the exercise sheets into a Sphinx source folder with its conf.py."""
    lectures = sorted((course / "notebooks").glob("*.ipynb"))
    if not lectures:
        raise SystemExit(f"no executed lectures in {course / 'notebooks'}: run "
                         "`python -m course_utils.run_notebooks` first, or build with --smoke.")
    shutil.rmtree(source, ignore_errors=True)
    (source / "lectures").mkdir(parents=True)
    (source / "exercises").mkdir()
    summaries, smoke = [], False
    for path in lectures:
        nb = nbformat.read(path, as_version=4)
        alt_text_html(nb)
        nbformat.write(nb, source / "lectures" / path.name)
        summaries.append((f"lectures/{path.stem}", lecture_summary(nb)))
        smoke |= bool(nb.metadata.get("papermill", {}).get("parameters", {}).get("smoke"))
    sheets = []
    for path in sorted((ROOT / "exercises").glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":                     # a sheet is shown as a student gets it
                cell.update(outputs=[], execution_count=None)
        nbformat.write(nb, source / "exercises" / path.name)
        sheets.append(f"exercises/{path.stem}")
    (source / "conf.py").write_text(CONF)
    (source / "index.md").write_text(landing_page(summaries, sheets, smoke))


def build(course: Path, out: Path) -> Path:
    """Stage and build the site into `out`; return the path of its index.html."""
    try:
        from sphinx.cmd.build import build_main
    except ImportError:
        raise SystemExit("building the website needs its tools: pip install -e '.[site]'") from None
    source = out.parent / f"{out.name}-source"
    stage(course, source)
    shutil.rmtree(out, ignore_errors=True)
    if build_main(["-b", "html", "-q", "-n", str(source), str(out)]) != 0:
        raise SystemExit(f"sphinx-build failed on {source}; its messages are above.")
    return out / "index.html"


def main(argv: list[str] | None = None) -> int:
    """Build the site, running the lectures first with --smoke."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--course", type=Path, default=None,
                        help="folder of executed lectures, as run_notebooks writes it "
                             "(default: build/course, or build/course-smoke with --smoke)")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "site", help="where the site goes")
    parser.add_argument("--smoke", action="store_true", help="run the lectures with smoke parameters first")
    parser.add_argument("--kernel", default="python3", help="kernel for --smoke runs (default: %(default)s)")
    args = parser.parse_args(argv)
    args.course = args.course or ROOT / "build" / ("course-smoke" if args.smoke else "course")
    if args.smoke and run_course(["--smoke", "--kernel", args.kernel, "--out", str(args.course)]) != 0:
        print("some lectures failed; the site shows them as they stopped", file=sys.stderr)
    start = time.perf_counter()
    index = build(args.course, args.out)
    print(f"site built in {time.perf_counter() - start:.1f} s: open {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
