"""The course website: built from smoke runs, every page opened in Chromium.

Checks on every page: no internal link to a missing page or anchor, every image with non-empty alt text,
and axe-core (npm's axe-core, found at $AXE_CORE_JS or build/axe/node_modules/axe-core/axe.min.js) reporting
no serious or critical violation. Also: the landing page names each lecture with its headline, the sheets
carry no solution, and the build fetched nothing (every page's resources are local files). Skips without
Chromium or axe-core, unless CNN_COURSE_REQUIRE_BROWSER=1 (CI), where it fails.
"""
import os
import re
from pathlib import Path
from urllib.parse import urldefrag, urlparse

import nbformat
import pytest

from browser_helpers import CHROMIUM, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parent.parent
AXE = Path(os.environ.get("AXE_CORE_JS", ROOT / "build" / "axe" / "node_modules" / "axe-core" / "axe.min.js"))
LECTURES = ["01_convolution_kernels", "02_cross_entropy_derivation", "04_filter_visualization"]

missing = [f"{CHROMIUM} not found: apt-get install chromium"] if not CHROMIUM.exists() else []
missing += [f"{AXE} not found: npm install --prefix build/axe axe-core"] if not AXE.exists() else []
if missing:
    if os.environ.get("CNN_COURSE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"CNN_COURSE_REQUIRE_BROWSER=1 but {'; '.join(missing)}", pytrace=False)
    pytest.skip("; ".join(missing), allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("myst_nb", reason="the site extra is not installed: pip install -e '.[site]'")

from course_utils import run_notebooks, site  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """(site folder, course folder): three lectures run with smoke parameters, then the site built from them."""
    course, out = tmp_path_factory.mktemp("course"), tmp_path_factory.mktemp("site") / "site"
    os.environ.setdefault("CNN_COURSE_CACHE", str(tmp_path_factory.mktemp("models")))
    paths = [str(ROOT / "notebooks" / f"{name}.ipynb") for name in LECTURES]
    assert run_notebooks.main([*paths, "--smoke", "--kernel", "python3", "--out", str(course)]) == 0
    site.build(course, out)
    return out, course


@pytest.fixture(scope="module")
def pages(built):
    """{page path: (links, images' alt texts, axe violations, resources loaded)} for every HTML page."""
    out, _ = built
    axe = AXE.read_text()
    found = {}
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        for html in sorted(out.rglob("*.html")):
            if html.name in ("search.html", "genindex.html"):
                continue
            requests.clear()
            page.goto(html.as_uri())
            page.wait_for_load_state("load")
            page.evaluate("() => window.MathJax?.startup?.promise")             # the formulas typeset
            links = page.eval_on_selector_all("a[href]", "as => as.map(a => a.href)")
            alts = page.eval_on_selector_all("article img", "is => is.map(i => [i.getAttribute('alt'), i.src])")
            page.add_script_tag(content=axe)
            result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
            serious = [(v["id"], v["impact"], len(v["nodes"]), v["help"]) for v in result["violations"]
                       if v["impact"] in ("serious", "critical")]
            found[str(html.relative_to(out))] = (links, alts, serious, list(requests))
        browser.close()
    return found


def test_every_lecture_and_sheet_has_a_page(built, pages):
    assert {f"lectures/{name}.html" for name in LECTURES} <= set(pages)
    sheets = sorted(p.stem for p in (ROOT / "exercises").glob("*.ipynb"))
    assert {f"exercises/{name}.html" for name in sheets} <= set(pages)
    assert "index.html" in pages and (built[0] / "searchindex.js").is_file()


def test_no_broken_internal_link(built, pages):
    out, _ = built
    broken = []
    for page, (links, *_rest) in pages.items():
        for link in links:
            if urlparse(link).scheme != "file":
                continue
            url, anchor = urldefrag(link)
            target = Path(urlparse(url).path)
            if not target.exists():
                broken.append((page, link))
            elif anchor and target.suffix == ".html" and f'id="{anchor}"' not in target.read_text():
                broken.append((page, link))
    assert not broken, broken


def is_description(alt: str | None, src: str) -> bool:
    """Alt text that describes: not empty, and not the file name that docutils puts there by default."""
    alt = (alt or "").strip()
    return bool(alt) and not src.endswith(alt) and not alt.endswith((".png", ".jpg", ".svg"))


def test_every_figure_has_alt_text(pages):
    images = {page: alts for page, (_, alts, *_rest) in pages.items() if alts}
    assert sum(len(alts) for page, alts in images.items() if page.startswith("lectures/")) >= 10
    without = {page: [src[-40:] for alt, src in alts if not is_description(alt, src)]
               for page, alts in images.items()}
    assert not any(without.values()), without


def test_axe_finds_no_serious_or_critical_violation(pages):
    violations = {page: serious for page, (_, _, serious, _) in pages.items() if serious}
    assert not violations, violations


def test_pages_load_only_local_files(pages):
    remote = {page: [u for u in requests if not u.startswith(("file:", "data:", "about:"))]
              for page, (*_rest, requests) in pages.items()}
    assert not any(remote.values()), remote


def test_landing_page_shows_each_lecture_with_its_headline(built):
    out, course = built
    text = (out / "index.html").read_text()
    for name in LECTURES:
        nb = nbformat.read(course / "notebooks" / f"{name}.ipynb", as_version=4)
        summary = site.lecture_summary(nb)
        assert summary["headline"] and summary["minutes"] >= 1
        assert f'href="lectures/{name}.html"' in text
        for value in (summary["title"], summary["headline"]):
            assert re.sub(r"\s+", " ", value)[:40] in re.sub(r"<[^>]+>|\s+", " ", text).replace("  ", " ")
    assert "smoke run" in text


def test_sheets_carry_no_solution(built):
    out, _ = built
    for sheet in (out / "exercises").glob("*.html"):
        assert "### BEGIN SOLUTION" not in sheet.read_text() and "solution_" not in sheet.name
