"""Convolution kernels: classic image filters, 2-D cross-correlation by loops and by im2col, and
an interactive explorer that applies a kernel to an MNIST digit.

PyTorch's `F.conv2d` (like every deep-learning "convolution") computes a cross-correlation:

    out[i, j] = sum_{u, v} image[s*i + u, s*j + v] * kernel[u, v]

for a zero-padded image, stride s and an output of side `(n + 2p - k) // s + 1`. A true
convolution flips the kernel first: `conv(image, k) = cross_correlation(image, k.flip(0, 1))`.
"""
from __future__ import annotations


import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from .alt_text import describe_figure
from .data import to_pixels
from .plotting import figure_png

SOBEL_X = [[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]


def classic_kernels() -> dict[str, torch.Tensor]:
    """Name -> 3x3 float32 kernel: box blur, Gaussian blur, sharpen, emboss, Sobel x/y, Laplacian."""
    gauss = torch.tensor([1.0, 2.0, 1.0])
    sobel_x = torch.tensor(SOBEL_X)
    return {
        "box blur": torch.full((3, 3), 1 / 9),
        "Gaussian blur": torch.outer(gauss, gauss) / 16,
        "sharpen": torch.tensor([[0.0, -1.0, 0.0], [-1.0, 5.0, -1.0], [0.0, -1.0, 0.0]]),
        "emboss": torch.tensor([[-2.0, -1.0, 0.0], [-1.0, 1.0, 1.0], [0.0, 1.0, 2.0]]),
        "Sobel x": sobel_x,
        "Sobel y": sobel_x.T.contiguous(),
        "Laplacian": torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]),
    }


def output_size(n: int, kernel_size: int, stride: int = 1, padding: int = 0) -> int:
    """Side of a convolution's output: floor((n + 2p - k) / s) + 1."""
    if n + 2 * padding < kernel_size:
        raise ValueError(f"a {kernel_size}-wide kernel does not fit in {n} pixels plus padding {padding} "
                         "on each side; use a smaller kernel or more padding.")
    return (n + 2 * padding - kernel_size) // stride + 1


def _check_2d(image: torch.Tensor, kernel: torch.Tensor) -> None:
    """Raise a ValueError unless image and kernel are both 2-D tensors."""
    for name, t in (("image", image), ("kernel", kernel)):
        if not isinstance(t, torch.Tensor) or t.dim() != 2:
            shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must be a 2-D tensor (H, W), got {shape}; "
                             "for a batch (N, 1, H, W) use image[0, 0] or F.conv2d.")


def conv2d_loops(image: torch.Tensor, kernel: torch.Tensor, stride: int = 1, padding: int = 0) -> torch.Tensor:
    """Cross-correlation of a 2-D image (H, W) with a 2-D kernel (kH, kW), one output pixel at a time."""
    _check_2d(image, kernel)
    kh, kw = kernel.shape
    x = F.pad(image, (padding, padding, padding, padding))
    out_h = output_size(image.shape[0], kh, stride, padding)
    out_w = output_size(image.shape[1], kw, stride, padding)
    out = torch.zeros(out_h, out_w, dtype=torch.promote_types(image.dtype, kernel.dtype))
    for i in range(out_h):
        for j in range(out_w):
            patch = x[i * stride:i * stride + kh, j * stride:j * stride + kw]
            out[i, j] = (patch * kernel).sum()
    return out


def conv2d_unfold(image: torch.Tensor, kernel: torch.Tensor, stride: int = 1, padding: int = 0) -> torch.Tensor:
    """Cross-correlation by im2col: `F.unfold` puts every patch in a column, one matrix product sums them.

    image (H, W) -> columns (kH*kW, L) with L = out_h * out_w; out = kernel.flatten() @ columns.
    """
    _check_2d(image, kernel)
    kh, kw = kernel.shape
    out_h = output_size(image.shape[0], kh, stride, padding)
    out_w = output_size(image.shape[1], kw, stride, padding)
    columns = F.unfold(image[None, None], (kh, kw), padding=padding, stride=stride)[0]  # (kH*kW, L)
    return (kernel.reshape(1, -1).to(columns.dtype) @ columns).reshape(out_h, out_w)


def apply_kernel(images: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Filter images (N, 1, H, W) with a square odd kernel (k, k), zero padding (k-1)/2: same size out."""
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"images must have shape (N, 1, H, W), got {tuple(images.shape)}; "
                         "for one image (H, W) pass image[None, None].")
    k = kernel.shape[-1]
    if kernel.dim() != 2 or kernel.shape[0] != k or k % 2 == 0:
        raise ValueError(f"kernel must be square with an odd side, got {tuple(kernel.shape)}.")
    return F.conv2d(images, kernel.to(images)[None, None], padding=k // 2)


def gradient_magnitude(images: torch.Tensor) -> torch.Tensor:
    """Edge strength sqrt(Gx^2 + Gy^2) of images (N, 1, H, W) from the two Sobel responses."""
    sobel = classic_kernels()
    return torch.hypot(apply_kernel(images, sobel["Sobel x"]), apply_kernel(images, sobel["Sobel y"]))


def filter_bank(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """Name -> response (N, 1, H, W) of every classic kernel, plus the Sobel gradient magnitude."""
    responses = {name: apply_kernel(images, k) for name, k in classic_kernels().items()}
    responses["gradient magnitude"] = gradient_magnitude(images)
    return responses


def plot_filter_grid(images: torch.Tensor, labels: torch.Tensor | None = None) -> plt.Figure:
    """One row per digit (normalised images (N, 1, 28, 28)), one column per filter; return the figure."""
    columns = {"digit": to_pixels(images), **filter_bank(to_pixels(images))}
    fig, axes = plt.subplots(len(images), len(columns), figsize=(1.3 * len(columns), 1.4 * len(images)),
                             squeeze=False)
    for col, (name, maps) in enumerate(columns.items()):
        axes[0, col].set_title(name, fontsize=8)
        for row in range(len(images)):
            ax = axes[row, col]
            ax.imshow(maps[row, 0].cpu().numpy(), cmap="gray")
            ax.set_xticks([]), ax.set_yticks([])
            if col == 0 and labels is not None:
                ax.set_ylabel(f"label {int(labels[row])}", fontsize=8)
    fig.tight_layout()
    return fig


def plot_kernel_on_digit(image: torch.Tensor, kernel: torch.Tensor, name: str = "kernel",
                         axes: list[plt.Axes] | None = None) -> plt.Figure:
    """Three panels: the kernel's weights, the digit (1, 28, 28), and the filtered digit."""
    if axes is None:
        _, axes = plt.subplots(1, 3, figsize=(8, 2.8))
    pixels = to_pixels(image)[None]
    limit = kernel.abs().max().item()
    panels = [(kernel, f"{name} weights", dict(cmap="coolwarm", vmin=-limit, vmax=limit)),
              (pixels[0, 0], "digit", dict(cmap="gray")),
              (apply_kernel(pixels, kernel)[0, 0], f"after {name}", dict(cmap="gray"))]
    for ax, (values, title, style) in zip(axes, panels):
        im = ax.imshow(values.cpu().numpy(), **style)
        ax.set_title(title), ax.set_xticks([]), ax.set_yticks([])
        ax.figure.colorbar(im, ax=ax, fraction=0.046)
    for u, row in enumerate(kernel.tolist()):
        for v, w in enumerate(row):
            axes[0].text(v, u, f"{w:.2g}", ha="center", va="center", fontsize=8)
    return axes[0].figure


class KernelExplorer(widgets.interactive):
    """`ipywidgets.interactive` whose static output (headless runs, saved notebooks) is the current figure."""

    def _repr_mimebundle_(self, **kwargs) -> dict:
        bundle = super()._repr_mimebundle_(**kwargs)
        if isinstance(self.result, plt.Figure):
            bundle["image/png"] = figure_png(self.result, bbox_inches="tight")
            return bundle, {"image/png": {"alt": describe_figure(self.result)}}
        return bundle


def kernel_explorer(images: torch.Tensor, labels: torch.Tensor) -> KernelExplorer:
    """Widget with a kernel dropdown and a digit slider over images (N, 1, 28, 28); show it as a cell's value."""
    kernels = classic_kernels()

    def show(kernel: str, index: int) -> plt.Figure:
        fig = plot_kernel_on_digit(images[index], kernels[kernel], kernel)
        fig.suptitle(f"digit #{index} (label {int(labels[index])})")
        plt.show()
        return fig

    return KernelExplorer(show, kernel=widgets.Dropdown(options=list(kernels), value="Sobel x"),
                          index=widgets.IntSlider(value=0, min=0, max=len(images) - 1))


def receptive_field(kernel_sizes: list[int], strides: list[int] | None = None) -> int:
    """Side of the input patch one output pixel sees: r = 1 + sum_l (k_l - 1) * prod_{m<l} s_m."""
    strides = strides or [1] * len(kernel_sizes)
    if len(strides) != len(kernel_sizes):
        raise ValueError(f"give one stride per layer: {len(kernel_sizes)} kernel sizes but {len(strides)} strides.")
    r, jump = 1, 1
    for k, s in zip(kernel_sizes, strides):
        r, jump = r + (k - 1) * jump, jump * s
    return r


def measured_receptive_field(model: nn.Module, size: int = 64, seed: int = 0) -> int:
    """Receptive field of a conv stack (1 input channel) measured with autograd on a random image:
    the side of the input region whose pixels change the centre output pixel."""
    x = torch.randn(1, 1, size, size, generator=torch.Generator().manual_seed(seed), requires_grad=True)
    out = model(x)
    out[0, 0, out.shape[2] // 2, out.shape[3] // 2].backward()
    rows = (x.grad[0, 0].abs().sum(1) > 0).nonzero()
    return int(rows.max() - rows.min() + 1)
