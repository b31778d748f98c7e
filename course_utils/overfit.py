"""Over-fitting, measured: memorise a few digits before a long run, and dropout's effect on the train–validation gap.

1. `memorise`: a network with a working loop fits a few dozen digits exactly (training loss near 0, every digit
   right) within seconds. One that cannot has a bug, and finding it before a long run is cheap.
2. `train_scored` trains with the course loop's `train_epoch`, an epoch at a time, and scores the training and
   the validation digits in *evaluation* mode after every epoch. (`fit` records its training loss in training
   mode, with dropout on, which would make a dropout arm's gap look smaller than it is.) `gap_verdict` reads the
   gap of two such runs and judges their difference on the shared digits with the paired McNemar test.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import torch
from matplotlib.figure import Figure
from torch import nn

from .alt_text import add_alt, number
from .compare import Arm, correct, direction, guard, mcnemar, p_text, verdict
from .data import MNISTData
from .device import get_device, seed_everything
from .training import evaluate, train_epoch


@dataclass(frozen=True)
class Memorised:
    """How far `memorise` got on its n digits: reached the target or not, after `steps`, at (loss, accuracy)."""

    reached: bool
    steps: int
    loss: float
    accuracy: float
    n: int

    def sentence(self, name: str) -> str:
        """One line saying whether `name` memorised its digits, with the numbers it got to."""
        if self.reached:
            return (f"{name}: memorised all {self.n} digits in {self.steps} steps (loss {self.loss:.4f}, "
                    "accuracy 100 %).")
        return (f"{name}: NOT memorised after {self.steps} steps (loss {self.loss:.3f}, accuracy "
                f"{100 * self.accuracy:.1f} %): look for a bug before any long run.")


def memorise(model: nn.Module, X: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
             max_steps: int = 100, target_loss: float = 0.01) -> Memorised:
    """Full-batch `train_epoch` steps on X (N, 1, 28, 28), y (N,) until, in evaluation mode, the loss is below
    `target_loss` and every digit is right; at most `max_steps`."""
    model.to(X.device, memory_format=torch.channels_last)            # as `fit` does: faster convolutions
    X, loss, acc, step = X.contiguous(memory_format=torch.channels_last), float("nan"), 0.0, 0
    for step in range(1, max_steps + 1):
        train_epoch(model, X, y, optimizer, batch_size=len(X))
        loss, acc = evaluate(model, X, y)
        if loss < target_loss and acc == 1:
            break
    return Memorised(loss < target_loss and acc == 1, step, loss, acc, len(X))


def without_dropout(model: nn.Module) -> nn.Module:
    """`model` with every `nn.Dropout` replaced by `nn.Identity` (in place): the same weights, nothing dropped."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Dropout):
                setattr(parent, name, nn.Identity())
    return model


@dataclass
class Curves:
    """Evaluation-mode loss and accuracy after every epoch on the training and validation digits; training seconds."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    seconds: float = 0.0


def train_scored(model: nn.Module, data: MNISTData, optimizer: torch.optim.Optimizer, epochs: int,
                 batch_size: int, seed: int = 1, device: torch.device | None = None) -> Curves:
    """Train on data's training digits with `train_epoch` (shuffled by `seed`); after every epoch score the
    training and the validation digits in evaluation mode. Needs `data.with_validation()`."""
    if not data.has_validation:
        raise ValueError("train_scored compares training and validation digits: pass data.with_validation().")
    device = device or get_device()
    model.to(device, memory_format=torch.channels_last)              # as `fit` does: faster convolutions
    data = data.to(device)
    generator, curves = seed_everything(seed), Curves()
    for _ in range(epochs):
        start = time.perf_counter()
        train_epoch(model, data.X_train, data.y_train, optimizer, batch_size, generator)
        curves.seconds += time.perf_counter() - start
        for split in ("train", "val"):
            loss, acc = evaluate(model, *data.split(split))
            getattr(curves, f"{split}_loss").append(loss)
            getattr(curves, f"{split}_acc").append(acc)
    return curves


def plot_gap(runs: dict[str, Curves]) -> Figure:
    """Loss (left, log scale) and accuracy (right) per epoch: training dashed, validation solid, a colour per run."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.6), layout="constrained")
    for k, (name, c) in enumerate(runs.items()):
        epochs, colour = range(1, len(c.val_loss) + 1), f"C{k}"
        for ax, metric, scale in ((ax_loss, "loss", 1), (ax_acc, "acc", 100)):
            for split, style in (("train", "--"), ("val", "-")):
                values = [scale * v for v in getattr(c, f"{split}_{metric}")]
                split_name = "training" if split == "train" else "validation"
                ax.plot(epochs, values, style, color=colour, label=f"{name}, {split_name}")
                add_alt(ax, f"{name}, {split} {metric} per epoch over {len(values)} epochs, from {number(values[0])} "
                            f"to {number(values[-1])}")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", yscale="log", title="Loss (evaluation mode)")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy (evaluation mode)")
    ax_acc.legend(fontsize=8)
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    return fig


def gap_verdict(runs: dict[str, tuple[nn.Module, Curves]], data: MNISTData) -> str:
    """The train–validation gap of two runs (the first is the baseline) and what the shared digits resolve.

    Both arms must have trained (`compare.guard`). The validation side is "second minus first" on the shared
    validation digits (exact McNemar, `compare.verdict`); the training side is paired on the shared training digits.
    """
    (a, (model_a, ca)), (b, (model_b, cb)) = runs.items()
    arms = [Arm(name, (c.val_acc[-1],), (c.train_loss[-1],), correct(model, data.X_val, data.y_val))
            for name, (model, c) in runs.items()]
    refused = next((g for g in map(guard, arms) if not g), None)
    if refused is not None:
        return refused.reason + "."
    gap = {name: c.train_acc[-1] - c.val_acc[-1] for name, (_, c) in runs.items()}
    lines = [f"{name}: training {100 * c.train_acc[-1]:.2f} % (loss {c.train_loss[-1]:.4f}), validation "
             f"{100 * c.val_acc[-1]:.2f} % (loss {c.val_loss[-1]:.3f}): a gap of {100 * gap[name]:.2f} points"
             for name, (_, c) in runs.items()]
    best = min(range(len(ca.val_loss)), key=ca.val_loss.__getitem__)
    lines.append(f"{a}: validation loss lowest after epoch {best + 1} of {len(ca.val_loss)} ({ca.val_loss[best]:.3f})"
                 + (f", {ca.val_loss[-1]:.3f} after the last" if best + 1 < len(ca.val_loss) else "")
                 + f"; training loss {ca.train_loss[0]:.3f} after the first, {ca.train_loss[-1]:.4f} after the last")
    lines.append("Validation, " + verdict(*arms, on="validation"))
    side = mcnemar(correct(model_a, data.X_train, data.y_train), correct(model_b, data.X_train, data.y_train))
    lines.append(f"Training side, paired on the same {side.n:,} training digits: {b} minus {a} "
                 f"{100 * (side.c - side.b) / side.n:+.2f} points (exact McNemar {p_text(side.p)})")
    change = f"{100 * (gap[b] - gap[a]):+.2f} points (no interval of its own: its two sides' McNemar p are above)"
    sign = direction(*arms)
    if sign > 0:
        end = (f"So {b} the gap changed by {change}, and validation accuracy rose beyond the paired noise: a gain "
               "on unseen digits, shown for these two networks at this budget (one seed each).")
    elif sign < 0:
        end = f"So {b} the gap changed by {change}, and validation accuracy fell beyond the paired noise: no gain."
    else:
        end = (f"So {b} the gap changed by {change}, but validation accuracy did not change beyond the paired "
               "noise: a gain on unseen digits is not shown at this budget.")
    return "\n".join(lines + [end])
