"""The filter / feature-map explorer for JupyterLab (ipywidgets 8).

Choose a model, a conv layer, an output channel and a test digit (slider, or type its number in the box
beside it; a number past either end is clamped, and the label beside the box says so): three titled
panels show the digit, that channel's filter weights (one kernel per input channel, tiled near-square)
and the feature map it produces, the last two with a colour bar centred at zero. To redraw fast, the
figure is drawn in full only when a new layer changes the panels' shapes; otherwise the images, titles
and colour-bar ends are drawn over a saved background (matplotlib blitting) and the canvas is encoded by
Pillow at its fastest compression level. The figure is shown as an <img> whose alt text names each panel
and its range of values, redrawn with it. The displayed widget also carries a PNG of its current figure,
so papermill, nbval and static viewers, which cannot run widgets, still show it for the initial values.
"""
from __future__ import annotations

import base64
import html
import io
import math

import ipywidgets as widgets
import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import offset_copy
from PIL import Image, PngImagePlugin
from torch import nn

from .alt_text import value_range
from .data import to_pixels
from .filters import DIVERGING, conv_layers, feature_maps, image_grid

LEGEND = ("Filter weights and feature map: red positive, blue negative, white 0; each colour bar runs "
          "from −m to +m, m the largest |value| in its panel.")


def explorer_panels(model: nn.Module, layer: str, channel: int,
                    image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(digit (28, 28) in [0, 1], near-square grid of filter `channel`'s C_in kernels, its feature map (H, W))."""
    weight = model.get_submodule(layer).weight[channel].detach()                # (C_in, k, k)
    fmap = feature_maps(model, image, [layer])[layer][channel].cpu()            # (H, W)
    grid = image_grid(weight, nrow=math.ceil(math.sqrt(len(weight))))
    return to_pixels(image.cpu())[0], grid, fmap


def panel_titles(layer: str, channel: int, weight_shape: tuple[int, ...], fmap_shape: tuple[int, ...],
                 digit: int, label: int | None = None) -> list[str]:
    """Titles of the digit, filter-weights and feature-map panels."""
    c_in, k_h, k_w = weight_shape[1:]
    digit_title = f"digit {digit}" + (f" (label {label})" if label is not None else "")
    kernels = f"{c_in} kernel{'s' if c_in > 1 else ''} {k_h}×{k_w}"
    return [digit_title, f"filter weights: {layer} channel {channel}, {kernels}",
            f"feature map: {fmap_shape[0]}×{fmap_shape[1]}"]


def parse_digit(text: str, last: int) -> tuple[int | None, str]:
    """(digit number to show, message): a whole number clamped to 0..last, or None for anything else."""
    try:
        value = int(text.strip().replace(",", "").replace("_", ""))
    except ValueError:
        return None, f"“{text}” is not a digit number: type a whole number from 0 to {last:,}."
    if value < 0:
        return 0, f"{value:,} is below the first test digit: showing digit 0."
    if value > last:
        return last, f"{value:,} is past the last test digit: showing digit {last:,}."
    return value, ""


def panel_description(titles: list[str], arrays: tuple[torch.Tensor, ...]) -> str:
    """What the three panels show, for a screen reader: each title with its range of values."""
    return ". ".join(f"{title}, values {value_range(array.numpy())}" for title, array in zip(titles, arrays))


def image_html(png: str, alt: str) -> str:
    """An <img> of base64 PNG text with its alt text (JupyterLab's PNG renderer shows no alt)."""
    return f'<img src="data:image/png;base64,{png}" alt="{html.escape(alt)}">'


def png_base64(rgba: np.ndarray, title: str) -> str:
    """An (H, W, 4) uint8 canvas as base64 PNG text (the form notebooks store), `title` in its Title chunk."""
    info = PngImagePlugin.PngInfo()
    info.add_itxt("Title", title)
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, "PNG", compress_level=1, pnginfo=info)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class ExplorerFigure:
    """Digit, filter-weights and feature-map panels, titled, the last two with colour bars; redrawn by blitting."""

    def __init__(self, figsize: tuple[float, float] = (11, 4.2), dpi: int = 80):
        self.figure = Figure(figsize=figsize, dpi=dpi)
        self.canvas = FigureCanvasAgg(self.figure)
        self.axes = self.figure.subplots(1, 3, gridspec_kw=dict(
            width_ratios=[1, 1.7, 1.15], left=0.01, right=0.92, bottom=0.02, top=0.9, wspace=0.42))
        self.images = [ax.imshow(np.zeros((2, 2)), cmap=cmap, animated=True)
                       for ax, cmap in zip(self.axes, ["gray_r", DIVERGING, DIVERGING])]
        self.titles = [ax.set_title(" ", fontsize=11, animated=True) for ax in self.axes]
        self.bar_ends = [self._colour_bar(ax) for ax in self.axes[1:]]
        for ax in self.axes:
            ax.set_axis_off()
            ax.set_anchor("N")                     # panels (and titles) aligned at the top
        self.colour_bars = [bar for bar, _ in self.bar_ends]
        ends = [[], *(ends for _, ends in self.bar_ends)]
        self._animated = [a for image, title, texts in zip(self.images, self.titles, ends)   # full-draw order
                          for a in (image, title, *texts)]
        self._shapes: list[tuple[int, ...]] = []
        self._background = None
        self._shown: dict = {}                     # animated artist -> what it shows now
        self._extents: dict = {}                   # animated artist -> where it was drawn (display pixels)

    def _colour_bar(self, ax) -> tuple:
        """A colour bar beside `ax` on the fixed scale −1..1, with text for its two ends (set at each draw)."""
        cax = ax.inset_axes([1.04, 0.0, 0.06, 1.0])
        bar = self.figure.colorbar(ScalarMappable(Normalize(-1, 1), DIVERGING), cax=cax, ticks=[-1, 0, 1])
        bar.ax.set_yticklabels(["", "0", ""])
        beside = offset_copy(cax.transAxes, self.figure, x=5, units="points")
        ends = [cax.text(1.0, y, " ", transform=beside, va=va, fontsize=10, animated=True)
                for y, va in ((1.0, "top"), (0.0, "bottom"))]
        return bar, ends

    def draw(self, arrays: tuple[torch.Tensor, torch.Tensor, torch.Tensor], titles: list[str]) -> str:
        """Show the three (H, W) arrays with their titles; return the figure as base64 PNG."""
        for image, title, array, text in zip(self.images, self.titles, arrays, titles):
            image.set_data(array.numpy())
            title.set_text(text)
        self.images[0].set_clim(0, 1)
        for image, (_, (top, bottom)), array in zip(self.images[1:], self.bar_ends, arrays[1:]):
            m = float(array.nan_to_num(0.0).abs().max()) or 1.0
            image.set_clim(-m, m)
            top.set_text(f"+{m:.3g}")
            bottom.set_text(f"−{m:.3g}")
        shapes = [tuple(a.shape) for a in arrays]
        if shapes != self._shapes:
            self._relayout(shapes)
            redraw = self._animated
        else:
            redraw = self._erase([a for a in self._animated if self._content(a) != self._shown[a]])
        renderer = self.canvas.get_renderer()
        for artist in redraw:
            self.figure.draw_artist(artist)
            self._shown[artist] = self._content(artist)
            self._extents[artist] = artist.get_window_extent(renderer).padded(1)
        return png_base64(np.asarray(self.canvas.buffer_rgba()), " | ".join(titles))

    @staticmethod
    def _content(artist) -> object:
        """What an animated artist shows: its text, or its image data and colour limits."""
        if isinstance(artist, Text):
            return artist.get_text()
        return artist.get_array().tobytes(), artist.get_clim()

    def _erase(self, changed: list) -> list:
        """Restore the background under the changed artists, old and new extents; return all to redraw, in order.

        An unchanged artist overlapping an erased box is erased and redrawn too, so nothing is drawn twice.
        """
        renderer = self.canvas.get_renderer()
        redraw, boxes = set(changed), []
        while True:
            boxes = [box for a in redraw for box in (self._extents[a], a.get_window_extent(renderer).padded(1))]
            touched = {a for a in self._animated if a not in redraw
                       and any(self._extents[a].overlaps(box) for box in boxes)}
            if not touched:
                break
            redraw |= touched
        height = self.figure.bbox.height
        for box in boxes:                          # Agg's region rows count from the top; xy is an offset
            self.canvas.restore_region(self._background, bbox=(math.floor(box.x0), math.floor(height - box.y1),
                                                               math.ceil(box.x1), math.ceil(height - box.y0)),
                                       xy=(0, 0))
        return [a for a in self._animated if a in redraw]

    def _relayout(self, shapes: list[tuple[int, ...]]) -> None:
        """Fit each panel to its array's shape, draw everything not animated and keep it as the background."""
        for ax, image, (h, w) in zip(self.axes, self.images, shapes):
            image.set_extent((-0.5, w - 0.5, h - 0.5, -0.5))
            ax.set_xlim(-0.5, w - 0.5)
            ax.set_ylim(h - 0.5, -0.5)
        self.canvas.draw()
        self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        self._shapes = shapes


class FilterExplorer(widgets.VBox):
    """Dropdowns for model and layer, sliders for channel and digit (with a number box), the titled panels."""

    def __init__(self, models: dict[str, nn.Module], images: torch.Tensor, labels: torch.Tensor | None = None,
                 digit: int = 0):
        if not models or any(not conv_layers(m) for m in models.values()):
            raise ValueError("FilterExplorer needs a dict {name: model} of models with at least one nn.Conv2d.")
        if images.dim() != 4 or images.shape[1:] != (1, 28, 28):
            raise ValueError(f"images must be (N, 1, 28, 28) like data.X_test, got {tuple(images.shape)}.")
        self.models, self.images, self.labels = models, images, labels
        self.model_menu = widgets.Dropdown(options=list(models), description="model")
        self.layer_menu = widgets.Dropdown(options=conv_layers(models[self.model_menu.value]), description="layer")
        self.channel_slider = widgets.IntSlider(0, 0, 1, description="channel")
        self.digit_slider = widgets.IntSlider(digit, 0, len(images) - 1, description="digit", readout=False,
                                              layout=widgets.Layout(width="420px"))
        self.digit_box = widgets.Text(str(digit), continuous_update=False,
                                      layout=widgets.Layout(width="7em"))
        self.digit_message = widgets.Label("")
        self.digit_box.observe(self._on_digit_box, "value")
        self.digit_slider.add_class("explorer-digit")
        self.digit_box.add_class("explorer-digit-box")
        self.digit_message.add_class("explorer-digit-message")
        self.channel_slider.add_class("explorer-channel")
        self.view, self.output = ExplorerFigure(), widgets.Output()
        self.legend = widgets.HTML(LEGEND)
        self._set_channel_range()
        controls = [widgets.HBox([self.model_menu, self.layer_menu]),
                    widgets.HBox([self.channel_slider, self.digit_slider, self.digit_box, self.digit_message])]
        super().__init__([*controls, self.output, self.legend])
        self.add_class("widget-interact")
        self.model_menu.observe(self._on_model, "value")
        self.layer_menu.observe(self._on_layer, "value")
        self.channel_slider.observe(self.update, "value")
        self.digit_slider.observe(self.update, "value")
        self.update()

    def _on_digit_box(self, change: dict) -> None:
        """Move the slider to the typed digit number, clamped to the test set, saying why it changed."""
        value, message = parse_digit(change["new"], self.digit_slider.max)
        value = self.digit_slider.value if value is None else value
        self.digit_box.value = str(value)              # comes back here with a clean number: no message
        self.digit_slider.value = value
        self.digit_message.value = message

    def _set_channel_range(self) -> None:
        module = self.models[self.model_menu.value].get_submodule(self.layer_menu.value)
        self.channel_slider.max = module.out_channels - 1

    def _on_model(self, change: dict) -> None:
        self.layer_menu.unobserve(self._on_layer, "value")
        self.layer_menu.options = conv_layers(self.models[self.model_menu.value])
        self.layer_menu.observe(self._on_layer, "value")
        self._on_layer(change)

    def _on_layer(self, change: dict) -> None:
        self.channel_slider.unobserve(self.update, "value")
        self._set_channel_range()
        self.channel_slider.observe(self.update, "value")
        self.update()

    def update(self, change: dict | None = None) -> None:
        """Redraw the panels for the current choices (one output update, no flicker)."""
        layer, channel, i = self.layer_menu.value, self.channel_slider.value, self.digit_slider.value
        if self.digit_box.value != str(i):
            self.digit_message.value = ""
            self.digit_box.value = str(i)
        model = self.models[self.model_menu.value]
        arrays = explorer_panels(model, layer, channel, self.images[i])
        label = int(self.labels[i]) if self.labels is not None else None
        self.panel_titles = panel_titles(layer, channel, tuple(model.get_submodule(layer).weight.shape),
                                         tuple(arrays[2].shape), i, label)
        self._png = self.view.draw(arrays, self.panel_titles)
        self.alt = panel_description(self.panel_titles, arrays)
        self.output.outputs = ({"output_type": "display_data",
                                "data": {"text/html": image_html(self._png, self.alt), "image/png": self._png},
                                "metadata": {"image/png": {"alt": self.alt}}},)

    def _repr_mimebundle_(self, **kwargs) -> dict:
        bundle = super()._repr_mimebundle_(**kwargs)
        bundle["image/png"] = self._png
        bundle["text/html"] = f'{image_html(self._png, self.alt)}<p>{LEGEND}</p>'
        return bundle, {"image/png": {"alt": self.alt}}
