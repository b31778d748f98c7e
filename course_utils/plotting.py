"""Figures shared by the notebooks: training curves, digit grids, confusion matrices."""
from __future__ import annotations

import base64
import io

from typing import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .data import to_pixels
from .training import History


def plot_history(history: History, axes: Sequence[Axes] | None = None, label: str = "") -> Figure:
    """Loss per training step (left) and train and validation (else test) accuracy per epoch (right)."""
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
    ax_loss, ax_acc = axes
    ax_loss.plot(history.step_loss, lw=0.8, label=label or None)
    ax_loss.set(xlabel="training step", ylabel="cross-entropy loss", yscale="log", title="Loss per step")
    watched, name = (history.val_acc, "validation") if history.val_acc else (history.test_acc, "test")
    epochs = range(1, len(history.train_acc) + 1)
    ax_acc.plot(epochs, [100 * a for a in history.train_acc], "o--", label=f"{label} train".strip())
    ax_acc.plot(epochs, [100 * a for a in watched], "o-", label=f"{label} {name}".strip())
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy per epoch")
    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_acc.legend()
    for ax in axes:
        ax.grid(alpha=0.3)
    return ax_loss.figure


def plot_digits(images: torch.Tensor, titles: Sequence[str], ncols: int = 8,
                title_colors: Sequence[str] | None = None, suptitle: str = "") -> Figure:
    """A grid of normalised digits (N, 1, 28, 28), each with its title."""
    n = len(images)
    if n == 0:
        raise ValueError("plot_digits got no images to show.")
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.45 * ncols, 1.7 * nrows), squeeze=False,
                             layout="constrained")
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(to_pixels(images[i]).squeeze(0).cpu(), cmap="gray_r", vmin=0, vmax=1)
            ax.set_title(titles[i], fontsize=8, color=title_colors[i] if title_colors else "black")
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """Counts (C, C): row = true class, column = predicted class."""
    index = y_true.cpu() * num_classes + y_pred.cpu()
    return torch.bincount(index, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def precision_recall(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class precision M[k, k] / sum_i M[i, k] and recall M[k, k] / sum_j M[k, j] of a confusion matrix (C, C).

    Precision: of the digits predicted k, the fraction that are k. Recall: of the true k, the fraction
    found. A class never predicted (or absent) gets nan.
    """
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"expected a square confusion matrix (C, C), got shape {tuple(matrix.shape)}; "
                         "build it with confusion_matrix(y_true, y_pred).")
    right = matrix.diagonal().double()
    return right / matrix.sum(0), right / matrix.sum(1)


def plot_precision_recall(matrix: torch.Tensor, ax: Axes | None = None) -> Axes:
    """Per-class precision and recall as paired bars, from a confusion matrix (C, C)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.2), layout="constrained")
    precision, recall = precision_recall(matrix)
    classes = torch.arange(len(matrix)).numpy()
    ax.bar(classes - 0.2, 100 * precision.numpy(), width=0.4, label="precision")
    ax.bar(classes + 0.2, 100 * recall.numpy(), width=0.4, label="recall")
    low = min(precision.nan_to_num(1).min().item(), recall.nan_to_num(1).min().item())
    ax.set(xlabel="digit", ylabel="%", xticks=classes, ylim=(100 * low - 1, 100.2),
           title="Per-class precision and recall")
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3, axis="y")
    return ax


def plot_confusion(matrix: torch.Tensor, ax: Axes | None = None) -> Axes:
    """Show a confusion matrix with counts; the diagonal is masked so the mistakes stand out."""
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 5), layout="constrained")
    classes = range(len(matrix))
    off_diagonal = matrix.clone().fill_diagonal_(0)
    ax.imshow(off_diagonal, cmap="Reds")
    for (i, j), count in zip(torch.cartesian_prod(torch.arange(len(matrix)), torch.arange(len(matrix))).tolist(),
                             matrix.flatten().tolist()):
        ax.text(j, i, count, ha="center", va="center", fontsize=7, fontweight="bold" if i == j else "normal",
                color="darkgreen" if i == j else ("white" if off_diagonal[i, j] > off_diagonal.max() / 2 else "black"))
    ax.set(xlabel="predicted", ylabel="true", xticks=classes, yticks=classes,
           title="Confusion matrix (diagonal in green, mistakes shaded)")
    return ax


def figure_png(fig: Figure, **savefig_kwargs) -> str:
    """The figure as base64 PNG text, the form notebooks store images in (for static widget output)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **savefig_kwargs)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
