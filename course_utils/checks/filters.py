"""Questions of notebook 04 (filter visualization): a filter grid, feature maps through hooks."""
import copy

import numpy as np
import torch
from matplotlib.figure import Figure

from ..filters import feature_maps as feature_maps_reference
from ..filters import filter_grid
from ..models import TutorialCNN, TwoLayerCNN
from . import Mistake, question
from .tools import expect_close, expect_shape

NOTEBOOK = "04_filter_visualization"
DIVERGING_MAPS = {"RdBu", "bwr", "seismic", "coolwarm", "PuOr", "PiYG", "PRGn", "BrBG", "RdGy",
                  "RdYlBu", "RdYlGn", "Spectral", "berlin", "vanimo", "managua"}


def _seeded(model_class):
    torch.manual_seed(0)
    return model_class()


@question("plot_filters", NOTEBOOK, points=2)
def check_plot_filters(plot_filters) -> str:
    weights = {"conv1 of the two-layer CNN (8, 1, 3, 3)": _seeded(TwoLayerCNN).conv1.weight.detach(),
               "a (4, 3, 5, 5) layer": torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(1))}
    for what, weight in weights.items():
        want = filter_grid(weight)                     # references first, on data the student never receives
        fig = Figure()
        ax = fig.add_subplot()
        returned = plot_filters(weight.clone(), ax=ax)
        if returned is not ax:
            raise Mistake(f"plot_filters(weight, ax=ax) returned {type(returned).__name__}, not the axes it drew on.",
                          "draw with ax.imshow(...) and `return ax`; create axes only when ax is None.")
        if len(ax.images) != 1:
            raise Mistake(f"for {what} the axes hold {len(ax.images)} images; draw the whole grid with one imshow.")
        image = ax.images[0]
        got = expect_shape(torch.as_tensor(np.ma.filled(image.get_array(), np.nan)), tuple(want.shape),
                           f"the grid drawn for {what}",
                           "make_grid(..., nrow=8, padding=1) on (C_out, 1, k, k); for C_in > 1 reshape to "
                           "(C_out * C_in, 1, k, k) with nrow=C_in; keep channel 0 of the result.")
        inside = ~torch.isnan(want)
        expect_close(got[inside], want[inside].double(), f"the filter values in the grid for {what}",
                     "row o, column i of the grid should show weight[o, i]; did you transpose or normalise?")
        name = image.cmap.name.removesuffix("_r")
        if name not in DIVERGING_MAPS:
            raise Mistake(f"the colour map is {image.cmap.name!r}, which is not diverging.",
                          "weights are signed: use cmap='RdBu_r' so that zero is white.")
        norm = image.norm
        centred = getattr(norm, "vcenter", None) == 0 or abs(norm.vmin + norm.vmax) <= 1e-6 * abs(norm.vmax)
        if not centred:
            raise Mistake(f"the colour scale runs from {norm.vmin:.3g} to {norm.vmax:.3g}, not centred at zero.",
                          "use norm=CenteredNorm() or vmin=-m, vmax=m with m the largest |weight|.")
        if norm.vmax < weight.abs().max().item() * (1 - 1e-6):
            raise Mistake("the colour scale clips the largest weights.", "set m = weight.abs().max().")
    return "grids of (8, 1, 3, 3) and (4, 3, 5, 5) weights match filter_grid, on a diverging map centred at 0."


@question("feature_maps", NOTEBOOK, points=2)
def check_feature_maps(feature_maps) -> str:
    image = torch.randn(1, 28, 28, generator=torch.Generator().manual_seed(2))
    cases = [(_seeded(TwoLayerCNN), "conv1"), (_seeded(TwoLayerCNN), "pool"),
             (_seeded(TutorialCNN), "layer1.3"), (_seeded(TutorialCNN), "layer2.0")]
    for model, layer in cases:
        model.train()
        with torch.no_grad():                          # give BatchNorm running statistics to use
            model(torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(3)))
        students = copy.deepcopy(model)                # still in training mode, as a student may leave it
        want = feature_maps_reference(model, image, [layer])[layer]      # before the student's code runs
        got = feature_maps(students, image.clone(), layer)
        if students.get_submodule(layer)._forward_hooks:
            raise Mistake(f"after feature_maps(model, image, {layer!r}) a hook is still registered on that layer.",
                          "keep the handle from register_forward_hook and call handle.remove() (in a finally).")
        if isinstance(got, torch.Tensor) and got.dim() == 4 and got.shape[0] == 1:
            raise Mistake(f"the maps for {layer!r} have shape {tuple(got.shape)}; return (C, H, W) for the one image.",
                          "index the batch dimension away: output[0].")
        expect_close(got, want, f"the maps of {type(model).__name__}.{layer}",
                     "call model.eval() first (BatchNorm and dropout behave differently in training), "
                     "and record the hooked module's output, not its input.", atol=1e-4)
    return "maps of conv1 and pool (two-layer CNN), layer1.3 and layer2.0 (tutorial CNN) match; hooks removed."
