"""The course website's Sphinx extension: what Furo and Sphinx leave for an accessible page."""
from __future__ import annotations

from docutils import nodes
from sphinx import addnodes
from sphinx.application import Sphinx
from sphinx.writers.html5 import HTML5Translator

# A region that scrolls must be reachable by keyboard (WCAG 2.1.1): every code block or output that
# overflows gets a tab stop, as the PyData theme does. Run again when the window is resized.
TAB_STOPS = """
function courseTabStops() {
  for (const el of document.querySelectorAll("pre, div.output, div.cell_output")) {
    const scrolls = el.scrollWidth > el.clientWidth || el.scrollHeight > el.clientHeight;
    if (scrolls) { el.tabIndex = 0; } else if (el.tabIndex === 0) { el.removeAttribute("tabindex"); }
  }
}
document.addEventListener("DOMContentLoaded", courseTabStops);
window.addEventListener("resize", courseTabStops);
"""


class AccessibleTranslator(HTML5Translator):
    """Sphinx's HTML writer, with the heading level that a sidebar caption (role="heading") must carry."""

    def visit_title(self, node: nodes.title) -> None:
        """A toctree caption as <p role="heading" aria-level="2">; any other title as Sphinx writes it."""
        if isinstance(node.parent, addnodes.compact_paragraph) and node.parent.get("toctree"):
            self.body.append(self.starttag(node, "p", "", CLASS="caption", ROLE="heading",
                                          **{"aria-level": "2"}))
            self.body.append('<span class="caption-text">')
            self.context.append("</span></p>\n")
        else:
            super().visit_title(node)


def setup(app: Sphinx) -> dict:
    """Register the accessible translator and the tab stops on scrolling regions."""
    app.set_translator("html", AccessibleTranslator, override=True)
    app.add_js_file(None, body=TAB_STOPS)
    return {"parallel_read_safe": True}
