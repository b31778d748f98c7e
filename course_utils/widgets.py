"""The filter / feature-map explorer for JupyterLab (ipywidgets 8).

Choose a model, a conv layer, an output channel and a test digit: three panels show the digit,
that channel's filter (one kernel per input channel) and the feature map it produces, with a
caption above them. To redraw fast the panels are one persistent text-free matplotlib figure
whose image data is swapped (text rendering is what makes a figure slow). The displayed widget
also carries the caption and a PNG of its current figure, so papermill, nbval and static viewers,
which cannot run widgets, still show the figure for the initial values.
"""
from __future__ import annotations

import ipywidgets as widgets
import torch
from matplotlib.colors import CenteredNorm
from matplotlib.figure import Figure
from torch import nn

from .data import to_pixels
from .plotting import figure_png
from .filters import DIVERGING, conv_layers, feature_maps, image_grid


def explorer_panels(model: nn.Module, layer: str, channel: int,
                    image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(digit (28, 28) in [0, 1], grid of filter `channel`'s C_in kernels, its feature map (H, W))."""
    weight = model.get_submodule(layer).weight[channel].detach()                # (C_in, k, k)
    fmap = feature_maps(model, image, [layer])[layer][channel].cpu()            # (H, W)
    return to_pixels(image.cpu())[0], image_grid(weight, nrow=8), fmap


class FilterExplorer(widgets.VBox):
    """Dropdowns for model and layer, sliders for channel and digit, a caption and the three panels."""

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
        self.digit_slider = widgets.IntSlider(digit, 0, len(images) - 1, description="digit")
        self.digit_slider.add_class("explorer-digit")
        self.channel_slider.add_class("explorer-channel")
        self.caption, self.output = widgets.HTML(), widgets.Output()
        self.figure = Figure(figsize=(9, 2.6), dpi=72)
        axes = self.figure.subplots(1, 3, gridspec_kw=dict(width_ratios=[1, 1.4, 1], left=0.01, right=0.99,
                                                           bottom=0.02, top=0.98, wspace=0.08))
        self.panels = [ax.imshow(torch.zeros(2, 2).numpy(), cmap=cmap) for ax, cmap in
                       zip(axes, ["gray_r", DIVERGING, DIVERGING])]
        for ax in axes:
            ax.set_axis_off()
        self._set_channel_range()
        controls = [widgets.HBox([self.model_menu, self.layer_menu]),
                    widgets.HBox([self.channel_slider, self.digit_slider])]
        super().__init__([*controls, self.caption, self.output])
        self.add_class("widget-interact")
        self.model_menu.observe(self._on_model, "value")
        self.layer_menu.observe(self._on_layer, "value")
        self.channel_slider.observe(self.update, "value")
        self.digit_slider.observe(self.update, "value")
        self.update()

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
        """Redraw caption and panels for the current choices (one state update each, no flicker)."""
        layer, channel, i = self.layer_menu.value, self.channel_slider.value, self.digit_slider.value
        arrays = explorer_panels(self.models[self.model_menu.value], layer, channel, self.images[i])
        for panel, array in zip(self.panels, arrays):
            h, w = array.shape
            panel.set_data(array.numpy())
            panel.set_extent((-0.5, w - 0.5, h - 0.5, -0.5))
        self.panels[0].set_clim(0, 1)
        for panel in self.panels[1:]:
            panel.set_norm(CenteredNorm(vcenter=0.0))                  # rescaled to the new data
        self._png = figure_png(self.figure)
        self.output.outputs = ({"output_type": "display_data", "data": {"image/png": self._png},
                                "metadata": {}},)
        label = f", label {int(self.labels[i])}" if self.labels is not None else ""
        weight, fmap = self.models[self.model_menu.value].get_submodule(layer).weight, arrays[2]
        self.caption.value = (
            f"<b>digit {i}</b>{label} &nbsp;|&nbsp; <b>{layer} filter {channel}</b>: {weight.shape[1]} input "
            f"channel{'s' if weight.shape[1] > 1 else ''}, {weight.shape[2]}×{weight.shape[3]} &nbsp;|&nbsp; "
            f"<b>feature map</b> {fmap.shape[0]}×{fmap.shape[1]}, from {fmap.min():.2f} (blue) "
            f"to {fmap.max():.2f} (red), white = 0")

    def _repr_mimebundle_(self, **kwargs) -> dict:
        bundle = super()._repr_mimebundle_(**kwargs)
        bundle["image/png"] = self._png
        bundle["text/html"] = f'<p>{self.caption.value}</p><img src="data:image/png;base64,{self._png}">'
        return bundle
