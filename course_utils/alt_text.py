"""Alternative text for figures, computed from what they show, carried in Jupyter's display data.

matplotlib has no alt-text API, so a figure's description travels with the figure: the course's plot
helpers add one sentence per panel (`add_alt`), `describe_figure` falls back to the panel's own data
(titles, axis labels, first and last values, image sizes and ranges) for anything drawn by hand, and
`show(fig, alt=...)` overrides both. Importing this module inside IPython makes every matplotlib figure
display with its description in two places: the PNG's output metadata `{"image/png": {"alt": ...}}`
(read by nbconvert, and so by static HTML exports) and an HTML `<img alt=...>` twin (read by JupyterLab,
whose PNG renderer ignores the metadata, and by the course website).
"""
from __future__ import annotations

import html
import math
from typing import Iterable

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

MAX_CHARS = 1200
_PARTS = "_course_alt_parts"        # list of sentences added by the course's helpers
_OVERRIDE = "_course_alt"           # the whole description, set by show(fig, alt=...)
_PNG = "_course_alt_png"            # the PNG rendered for the HTML twin, reused for image/png


def number(value: float) -> str:
    """A value as text for a description: 1,770 · 98.7 · 0.071 · −0.41 (a true minus sign)."""
    if not math.isfinite(value):
        return str(value)
    if float(value).is_integer() and abs(value) < 1e15:
        text = f"{int(value):,}"
    elif abs(value) >= 100:
        text = f"{value:,.0f}"
    elif abs(value) >= 1:
        text = f"{value:.3g}"
    else:
        text = f"{value:.2g}"
    return text.replace("-", "−")


def value_range(values: Iterable[float] | np.ndarray) -> str:
    """'from a to b' over the finite values (NaN padding ignored), or 'no finite values'."""
    array = np.asarray(values, dtype=float)
    array = array[np.isfinite(array)]
    if array.size == 0:
        return "no finite values"
    return f"from {number(array.min())} to {number(array.max())}"


def add_alt(target: Axes | Figure, sentence: str) -> None:
    """Add a sentence to the description of a panel (Axes) or of a whole figure."""
    parts = getattr(target, _PARTS, None)
    if parts is None:
        parts = []
        setattr(target, _PARTS, parts)
    parts.append(sentence)


def describe_line(line, ax: Axes) -> str:
    """'label: ylabel over N xlabel values x0–x1, from first to last (range a to b)' for one plotted line."""
    x, y = np.asarray(line.get_xdata(), dtype=float), np.asarray(line.get_ydata(), dtype=float)
    finite = np.isfinite(y)
    label = line.get_label()
    name = f"{label}: " if label and not label.startswith("_") else ""
    if finite.sum() == 0:
        return f"{name}no finite values"
    x, y = x[finite], y[finite]
    what = ax.get_ylabel() or "value"
    over = f" over {ax.get_xlabel() or 'x'} {number(x.min())} to {number(x.max())}" if len(x) > 1 else ""
    if len(y) == 1:
        return f"{name}{what} {number(y[0])} at {ax.get_xlabel() or 'x'} {number(x[0])}"
    text = f"{name}{what}{over} ({len(y):,} points), from {number(y[0])} to {number(y[-1])}"
    if y.min() < min(y[0], y[-1]) or y.max() > max(y[0], y[-1]):
        text += f" (range {number(y.min())} to {number(y.max())})"
    return text


def describe_axes(ax: Axes) -> str:
    """A panel's description: the course's own sentences, else one computed from its lines, bars and images."""
    parts = getattr(ax, _PARTS, None)
    if parts is not None:
        return "; ".join(parts)
    pieces = []
    title = ax.get_title() or ax.get_title("left")
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    for container in bars:
        heights = [p.get_height() for p in container.patches]
        label = container.get_label()
        name = f"{label}: " if label and not label.startswith("_") else ""
        pieces.append(f"{name}{len(heights)} bars of {ax.get_ylabel() or 'height'} {value_range(heights)}")
    pieces += [describe_line(line, ax) for line in ax.get_lines() if len(line.get_xdata())]
    for image in ax.get_images():
        array = np.ma.filled(np.ma.asarray(image.get_array(), dtype=float), np.nan)
        size = "×".join(str(n) for n in array.shape[:2])
        pieces.append(f"image {size}, values {value_range(array)}, colour map {image.get_cmap().name}")
    points = sum(len(c.get_offsets()) for c in ax.collections
                 if c.get_label() and not c.get_label().startswith("_"))
    if points:
        pieces.append(f"{points:,} scattered points")
    if not pieces:
        return title
    return (f"{title}: " if title else "") + "; ".join(pieces)


def _panels(fig: Figure) -> list[Axes]:
    """The figure's axes that show something, colour bars left out."""
    return [ax for ax in fig.axes if not hasattr(ax, "_colorbar") and ax.get_visible()
            and (getattr(ax, _PARTS, None) is not None or ax.get_lines() or ax.get_images()
                 or ax.containers or ax.get_title())]


def describe_figure(fig: Figure) -> str:
    """The figure's description: show()'s text if given, else its title and one sentence per panel."""
    override = getattr(fig, _OVERRIDE, None)
    if override:
        return override
    suptitle = fig._suptitle.get_text() if fig._suptitle is not None else ""
    sentences = [suptitle] if suptitle else []
    sentences += getattr(fig, _PARTS, None) or []
    panels = [ax for ax in _panels(fig) if not getattr(ax, "_course_alt_skip", False)]
    descriptions = [d for d in (describe_axes(ax) for ax in panels) if d]
    if len(descriptions) > 1:
        sentences.append(f"{len(descriptions)} panels")
        sentences += [f"Panel {i}: {d}" for i, d in enumerate(descriptions, 1)]
    else:
        sentences += descriptions
    text = ". ".join(s.rstrip(".") for s in sentences if s) or "An empty figure"
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS - 1].rstrip() + "…"


def _figure_png(fig: Figure) -> str:
    """The figure as base64 PNG, drawn as the inline backend draws it."""
    from IPython.core.pylabtools import print_figure

    kwargs = {"bbox_inches": "tight"}
    try:
        from matplotlib_inline.config import InlineBackend
        kwargs = dict(InlineBackend.instance().print_figure_kwargs)
    except ImportError:                        # another front end: matplotlib's own defaults
        pass
    return print_figure(fig, fmt="png", base64=True, **kwargs)


def _html_formatter(fig: Figure) -> tuple[str, dict] | None:
    """The figure as <img alt=...>, for front ends that show HTML before PNG (JupyterLab, the website)."""
    install()                  # the inline backend, set up lazily, may have replaced the PNG formatter since
    png = _figure_png(fig)
    if png is None:            # a figure with nothing drawn: IPython shows no image for it
        return None
    setattr(fig, _PNG, png)
    alt = describe_figure(fig)
    return (f'<img src="data:image/png;base64,{png}" alt="{html.escape(alt)}">', {"alt": alt})


def _png_formatter(fig: Figure) -> tuple[str, dict] | None:
    """The figure as PNG with its description in the output metadata (nbconvert reads it)."""
    png = getattr(fig, _PNG, None) or _figure_png(fig)
    if hasattr(fig, _PNG):
        delattr(fig, _PNG)
    return None if png is None else (png, {"alt": describe_figure(fig)})


def install() -> bool:
    """Display matplotlib figures with their description in the running IPython; False outside IPython."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    if shell is None:
        return False
    if "inline" in str(matplotlib.rcParams._get("backend")):
        # The inline backend clears every Figure formatter when it is first set up (at the first figure,
        # so after this import): set it up now, so that the formatters registered below stay.
        import matplotlib_inline.backend_inline  # noqa: F401
    formatters = shell.display_formatter.formatters
    formatters["text/html"].for_type(Figure, _html_formatter)
    formatters["image/png"].for_type(Figure, _png_formatter)
    return True


def show(fig: Figure | None = None, alt: str | None = None) -> None:
    """Display `fig` (default: the current figure) with `alt` (default: computed from its data), then close it."""
    from IPython.display import display

    fig = fig if fig is not None else plt.gcf()
    if alt is not None:
        if not alt.strip():
            raise ValueError("show(fig, alt=...) needs a non-empty description; leave alt out to compute one.")
        setattr(fig, _OVERRIDE, alt)
    install()
    display(fig)
    plt.close(fig)


install()
