"""Looking inside a CNN: filter grids, feature maps (forward hooks), inputs that excite a channel.

Filters and activations are signed, so they are drawn on a diverging colour map centred at
zero (red positive, blue negative, white zero); the grid padding is NaN and shows as blank.
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.colors import CenteredNorm
from torch import nn

from .alt_text import add_alt, value_range
from .cost import layer_costs
from .data import MEAN, STD

DIVERGING = "RdBu_r"


def image_grid(images: torch.Tensor, nrow: int = 8, padding: int = 1) -> torch.Tensor:
    """Tile images (N, 1, h, w) or (N, h, w) into one (H, W) tensor, `nrow` per row, NaN between."""
    from torchvision.utils import make_grid  # torchvision takes ~2 s to import: only when drawing

    images = images.detach().float().cpu()
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"image_grid expects (N, 1, h, w) or (N, h, w), got {tuple(images.shape)}; "
                         "pick one channel first, e.g. weight[:, 0:1].")
    return make_grid(images, nrow=nrow, padding=padding, pad_value=float("nan"))[0]


def filter_grid(weight: torch.Tensor, nrow: int = 8, padding: int = 1) -> torch.Tensor:
    """Grid (H, W) of conv weights (C_out, C_in, k, k).

    C_in == 1: the C_out filters, `nrow` per row. C_in > 1: one row per output channel and one
    column per input channel, so row o, column i shows weight[o, i].
    """
    if weight.dim() != 4:
        raise ValueError(f"filter_grid expects conv weights (C_out, C_in, k, k), got {tuple(weight.shape)}; "
                         "pass e.g. model.conv1.weight.")
    c_out, c_in, kh, kw = weight.shape
    if c_in == 1:
        return image_grid(weight, nrow, padding)
    return image_grid(weight.reshape(c_out * c_in, 1, kh, kw), c_in, padding)


def show_grid(grid: torch.Tensor, ax: Axes | None = None, title: str | None = None,
              colorbar: bool = True) -> Axes:
    """Draw a grid (H, W) on the diverging colour map, centred at zero; return the axes."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6 * grid.shape[0] / grid.shape[1]))
    image = ax.imshow(grid.numpy(), cmap=DIVERGING, norm=CenteredNorm(vcenter=0.0))
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    if getattr(ax, "_course_alt_parts", None) is None:
        add_alt(ax, f"{title + ': ' if title else ''}grid {grid.shape[0]}×{grid.shape[1]}, values "
                    f"{value_range(grid.numpy())}, red positive, blue negative, white zero")
    return ax


def plot_filters(weight: torch.Tensor, ax: Axes | None = None, title: str | None = None,
                 nrow: int = 8) -> Axes:
    """Show conv weights (C_out, C_in, k, k) as `filter_grid` on the diverging map; return the axes."""
    grid = filter_grid(weight, nrow)
    c_out, c_in, kh, kw = weight.shape
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 6 * grid.shape[0] / grid.shape[1]))
    kernels = (f"{c_out} filters {kh}×{kw}" if c_in == 1 else
               f"{c_out} filters of {c_in} input channels, {c_out * c_in} kernels {kh}×{kw} "
               "(row = output channel, column = input channel)")
    what = title if title and f"{c_out} filters" in title else ": ".join(filter(None, [title, kernels]))
    add_alt(ax, f"{what}, weights {value_range(weight.detach().cpu())}, red positive, blue negative, white zero")
    return show_grid(grid, ax, title)


def spatial_layers(model: nn.Module, input_shape: tuple[int, ...] = (1, 1, 28, 28)) -> list[str]:
    """Names of the leaf modules (dropout aside) whose output is maps (N, C, H, W), in forward order."""
    names = [row.name for row in layer_costs(model, input_shape)
             if len(row.out_shape) == 3 and row.kind != "Dropout"]
    return list(dict.fromkeys(names))


def conv_layers(model: nn.Module) -> list[str]:
    """Names of the model's nn.Conv2d modules, e.g. ['conv1', 'conv2'] or ['layer1.0', 'layer2.0']."""
    return [name for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]


@torch.no_grad()
def feature_maps(model: nn.Module, image: torch.Tensor, layers: list[str]) -> dict[str, torch.Tensor]:
    """Outputs (C, H, W) of the named modules for one image (1, 28, 28), in eval mode, via forward hooks."""
    if image.dim() != 3:
        raise ValueError(f"feature_maps expects one image (1, H, W), got {tuple(image.shape)}; "
                         "use data.X_test[i], not data.X_test[i:i+1].")
    maps: dict[str, torch.Tensor] = {}
    handles = [model.get_submodule(name).register_forward_hook(
        lambda m, inp, out, name=name: maps.__setitem__(name, out[0].detach()))
        for name in layers]
    try:
        model.eval()(image.unsqueeze(0).to(next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    return maps


def maximize_activation(model: nn.Module, layer: str, channels: list[int] | None = None, centre: bool = False,
                        steps: int = 200, lr: float = 0.05, weight_decay: float = 1e-3,
                        seed: int = 0) -> torch.Tensor:
    """Inputs (len(channels), 1, 28, 28) found by gradient ascent, image c exciting channel c of `layer`.

    Maximises a_c(x) - weight_decay * ||x||^2 over x with Adam, where a_c is channel c's map
    averaged over all positions (h, w), or with `centre=True` its value at the centre position;
    x starts from small noise and is clipped to the valid normalised pixel range [-MEAN/STD, (1-MEAN)/STD].
    """
    module = model.get_submodule(layer)
    device = next(model.parameters()).device
    if channels is None:
        n = getattr(module, "out_channels", getattr(module, "num_features", None))     # conv, BatchNorm
        if n is None:
            raise ValueError(f"cannot tell how many channels {layer!r} has; pass channels=[0, 1, ...].")
        channels = list(range(n))
    index = torch.tensor(channels, device=device)
    x = 0.1 * torch.randn(len(channels), 1, 28, 28, generator=torch.Generator().manual_seed(seed))
    x = x.to(device).requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=lr)
    captured = {}
    handle = module.register_forward_hook(lambda m, inp, out: captured.__setitem__("out", out))
    model.eval()
    try:
        for _ in range(steps):
            model(x)
            acts = captured["out"][torch.arange(len(channels), device=device), index]   # (n, H, W)
            h, w = acts.shape[1:]
            excitation = acts[:, h // 2, w // 2] if centre else acts.mean(dim=(1, 2))    # (n,)
            objective = excitation.sum() - weight_decay * (x ** 2).sum()
            (x.grad,) = torch.autograd.grad(-objective, x)     # gradient for x only, weights untouched
            optimizer.step()
            with torch.no_grad():
                x.clamp_(-MEAN / STD, (1 - MEAN) / STD)
    finally:
        handle.remove()
    return x.detach()
