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

from .alt_text import add_alt, number, show
from .data import to_pixels
from .training import History

NOTEBOOK_WIDTH_PX = 880      # an output area of JupyterLab on a laptop: a wider figure is shrunk to fit
CELL_INCHES = 1.1            # one digit of plot_digits: 8 per row fill NOTEBOOK_WIDTH_PX at 100 dpi
CAPTION_POINTS = 11          # digit captions: still >= 9 pt when a page 20 % narrower shrinks the figure

__all__ = ["plot_history", "plot_digits", "confusion_matrix", "precision_recall", "plot_precision_recall",
           "plot_confusion", "figure_png", "show"]


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
    name_of = f"{label} " if label else ""
    if history.step_loss:
        add_alt(ax_loss, f"{name_of}training loss over {len(history.step_loss):,} steps, from "
                         f"{number(history.step_loss[0])} to {number(history.step_loss[-1])}")
    for what, values in (("train", history.train_acc), (name, watched)):
        if values:
            add_alt(ax_acc, f"{name_of}{what} accuracy per epoch over {len(values)} epoch"
                            f"{'s' if len(values) > 1 else ''}, from {100 * values[0]:.1f} % to "
                            f"{100 * values[-1]:.1f} %")
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
    fig, axes = plt.subplots(nrows, ncols, figsize=(CELL_INCHES * ncols, 1.45 * nrows), squeeze=False,
                             layout="constrained")
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(to_pixels(images[i]).squeeze(0).cpu(), cmap="gray_r", vmin=0, vmax=1)
            ax.set_title(titles[i], fontsize=CAPTION_POINTS, color=title_colors[i] if title_colors else "black")
    if suptitle:
        fig.suptitle(suptitle)
    shown = ", ".join(titles[:24]) + (", …" if n > 24 else "")
    add_alt(fig, f"{n} digit images 28×28, black on white, titled: {shown}")
    for ax in axes.flat:
        ax._course_alt_skip = True
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
    for what, values in (("precision", precision), ("recall", recall)):
        low, high = int(values.nan_to_num(2).argmin()), int(values.nan_to_num(-1).argmax())
        add_alt(ax, f"per-class {what} from {100 * values[low]:.1f} % (digit {low}) to "
                    f"{100 * values[high]:.1f} % (digit {high})")
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
    counts = off_diagonal.flatten().tolist()
    worst = sorted(range(len(counts)), key=lambda k: -counts[k])[:3]
    mistakes = ", ".join(f"true {k // len(matrix)} predicted {k % len(matrix)} ({counts[k]:,})"
                         for k in worst if counts[k] > 0)
    add_alt(ax, f"confusion matrix of {int(matrix.sum()):,} digits, {int(matrix.trace()):,} on the diagonal; "
                + (f"most frequent mistakes: {mistakes}" if mistakes else "no mistakes"))
    return ax


def figure_png(fig: Figure, **savefig_kwargs) -> str:
    """The figure as base64 PNG text, the form notebooks store images in (for static widget output)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **savefig_kwargs)
    return base64.b64encode(buffer.getvalue()).decode("ascii")
