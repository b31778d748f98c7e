"""Notebook 05's experiments: traced and warmed-up runs of the two-layer CNN, cached like `train_or_load`,
and the figures and tables that compare batch sizes."""
from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from .data import MNISTData
from .device import get_device
from .model_cache import TrainConfig, _load, build_model, cache_path, train_or_load
from .smoothing import ema, ema_per_image
from .training import History, fit


@dataclass
class StepTrace:
    """Per optimiser step: the norm of the mini-batch gradient and of the update it caused."""

    grad_norm: list[float] = field(default_factory=list)
    update_norm: list[float] = field(default_factory=list)

    @property
    def effective_lr(self) -> torch.Tensor:
        """|Δθ| / |g| per step: the constant lr for plain SGD, adaptive for Adadelta."""
        return torch.tensor(self.update_norm) / torch.tensor(self.grad_norm)


def _flat(tensors) -> torch.Tensor:
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def trace_steps(optimizer: torch.optim.Optimizer) -> StepTrace:
    """Record |g| and |Δθ| of every `optimizer.step()` from now on (step hooks; nothing else changes)."""
    trace, before = StepTrace(), {}
    params = lambda: [p for group in optimizer.param_groups for p in group["params"]]

    def pre(opt, args, kwargs):
        before["theta"] = _flat(params())
        trace.grad_norm.append(_flat([p.grad for p in params() if p.grad is not None]).norm().item())

    def post(opt, args, kwargs):
        trace.update_norm.append((_flat(params()) - before["theta"]).norm().item())

    optimizer.register_step_pre_hook(pre)
    optimizer.register_step_post_hook(post)
    return trace


def linear_warmup(optimizer: torch.optim.Optimizer, target_lr: float, steps: int) -> None:
    """Ramp every group's lr linearly from its current value to `target_lr` over the first `steps` steps."""
    start = [group["lr"] for group in optimizer.param_groups]
    count = [0]

    def pre(opt, args, kwargs):
        count[0] += 1
        frac = min(1.0, count[0] / steps)
        for group, lr0 in zip(optimizer.param_groups, start):
            group["lr"] = lr0 + frac * (target_lr - lr0)

    optimizer.register_step_pre_hook(pre)


def traced_run(config: TrainConfig, data: MNISTData, device: torch.device | None = None
               ) -> tuple[History, StepTrace]:
    """Train `config` (no scheduler) with every step traced; not cached (use small runs)."""
    model = build_model(config)
    optimizer = getattr(torch.optim, config.optimizer)(model.parameters(), lr=config.lr)
    trace = trace_steps(optimizer)
    history = fit(model, data, optimizer, config.epochs, config.batch_size, seed=config.seed,
                  device=device, progress=False)
    return history, trace


def warmup_path(config: TrainConfig, data: MNISTData, warmup_lr: float, warmup_steps: int) -> Path:
    """Cache file of `config` started at `warmup_lr` and ramped to `config.lr` over `warmup_steps`."""
    plain = cache_path(config, data)
    return plain.with_name(f"{plain.stem}-warmup-{warmup_lr:g}-{warmup_steps}.pt")


def train_sgd(config: TrainConfig, data: MNISTData, warmup_lr: float | None = None, warmup_steps: int = 0,
              device: torch.device | None = None) -> tuple[nn.Module, History]:
    """Plain SGD as `config` says, optionally warmed up from `warmup_lr`; cached either way."""
    if config.optimizer != "SGD" or config.lr_gamma is not None:
        raise ValueError("train_sgd trains plain SGD at a fixed rate: use optimizer='SGD', lr_gamma=None.")
    if warmup_lr is None or warmup_steps == 0:
        return train_or_load(config, data, device, progress=False)
    device = device or get_device()
    path, model = warmup_path(config, data, warmup_lr, warmup_steps), build_model(config)
    history = _load(path, model)
    if history is None:
        optimizer = torch.optim.SGD(model.parameters(), lr=warmup_lr)
        linear_warmup(optimizer, config.lr, warmup_steps)
        history = fit(model, data, optimizer, config.epochs, config.batch_size, seed=config.seed,
                      device=device, progress=False)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"config": asdict(config), "warmup": [warmup_lr, warmup_steps],
                    "state_dict": model.state_dict(), "history": asdict(history)}, path)
    return model.to(device).eval(), history


def timing_source(loaded: list[bool]) -> str:
    """Where histories' seconds come from: this run, or the earlier runs that trained the cached models."""
    if not any(loaded):
        return "timed in this run"
    if all(loaded):
        return "timed when the cached models were trained, perhaps on another machine or under another load"
    return "some timed in this run, some when the cached models were trained"


def images_seen(history: History, n_train: int, batch_size: int) -> torch.Tensor:
    """Training images processed after each step (an epoch's last batch may be partial)."""
    per_epoch = [min(batch_size, n_train - start) for start in range(0, n_train, batch_size)]
    return torch.tensor(per_epoch * len(history.epoch_seconds)).cumsum(0)


def seconds_elapsed(history: History) -> torch.Tensor:
    """Training seconds at the end of each step, each epoch's time spread evenly over its steps."""
    steps = len(history.step_loss) // len(history.epoch_seconds)
    return (torch.tensor(history.epoch_seconds).repeat_interleave(steps) / steps).cumsum(0)


def loss_file_seconds(steps_per_epoch: int, epochs: int = 1, samples: int = 12,
                      repeats: int = 3) -> tuple[float, float, float]:
    """Measured upper bound on the report's per-step loss file: an `np.load` + `np.save` at every step.

    The report writes one file per epoch, so the array restarts every epoch and holds at most
    `steps_per_epoch` values. Times one load-append-save at `samples` lengths between 1 and
    `steps_per_epoch`, fits seconds = a + b * length, and sums it over the lengths 1..steps_per_epoch.
    Returns (total s over `epochs`, s per epoch, s per call at an epoch's end).
    """
    if steps_per_epoch < 1 or epochs < 1:
        raise ValueError(f"need steps_per_epoch >= 1 and epochs >= 1, got {steps_per_epoch} and {epochs}.")
    lengths = np.unique(np.linspace(1, steps_per_epoch, samples).astype(int))
    costs = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "loss.npy"
        for n in lengths:
            np.save(path, np.zeros(n - 1))
            start = time.perf_counter()
            for _ in range(repeats):
                np.save(path, np.append(np.load(path), 0.0))
            costs.append((time.perf_counter() - start) / repeats)
    b, a = np.polyfit(lengths, costs, 1) if len(lengths) > 1 else (0.0, costs[0])
    per_epoch = a * steps_per_epoch + b * steps_per_epoch * (steps_per_epoch + 1) / 2
    return float(epochs * per_epoch), float(per_epoch), float(a + b * steps_per_epoch)


def best_by_validation(histories: dict[float, History]) -> float:
    """The key (a learning rate) whose run ended with the highest validation accuracy."""
    if not all(h.val_acc for h in histories.values()):
        raise ValueError("choosing needs validation accuracies: train on data.with_validation().")
    return max(sorted(histories), key=lambda lr: histories[lr].val_acc[-1])


def plot_recipe(recipe: dict[int, History], beta: float, report_acc: float, report_epochs: int) -> Figure:
    """One panel per batch size: per-step loss, raw and EMA; last panel: test accuracy per epoch, and the report's."""
    fig, axes = plt.subplots(1, len(recipe) + 1, figsize=(4 * (len(recipe) + 1), 3.4), layout="constrained")
    for ax, (b, h) in zip(axes, recipe.items()):
        ax.plot(h.step_loss, lw=0.5, alpha=0.45, label="raw")
        ax.plot(ema(h.step_loss, beta), lw=1.5, label=f"EMA β={beta}")
        ax.set(title=f"batch {b}: per-step loss", xlabel="training step", yscale="log")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("training loss")
    axes[0].legend()
    for b, h in recipe.items():
        axes[-1].plot(range(1, len(h.test_acc) + 1), [100 * a for a in h.test_acc], "o-", label=f"batch {b}")
    axes[-1].plot([report_epochs], [report_acc], "k*", ms=12, label=f"report, both batches (epoch {report_epochs})")
    axes[-1].set(title="test accuracy per epoch", xlabel="epoch", ylabel="%")
    axes[-1].grid(alpha=0.3)
    axes[-1].legend(fontsize=8)
    return fig


def plot_effective_lr(traces: dict[tuple[str, int], StepTrace]) -> Figure:
    """|Δθ| / |g| per step against training images seen, one line per (optimiser name, batch size)."""
    fig, ax = plt.subplots(figsize=(7, 3.6), layout="constrained")
    for (opt, b), trace in traces.items():
        seen = torch.arange(1, len(trace.update_norm) + 1) * b
        ax.plot(seen, trace.effective_lr, lw=1, ls="-" if opt == "Adadelta" else "--", label=f"{opt}, batch {b}")
    ax.set(xlabel="training images seen", ylabel="|Δθ| / |g|", yscale="log", title="effective learning rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_equal_epochs_steps_time(histories: dict[int, History], n_train: int, images: int) -> Figure:
    """Training loss smoothed over about `images` images against steps, images seen and seconds, per batch size."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6), sharey=True, layout="constrained")
    for b, h in histories.items():
        smooth = ema_per_image(h.step_loss, b, images)
        axes[0].plot(range(1, len(smooth) + 1), smooth, label=f"batch {b}")
        axes[1].plot(images_seen(h, n_train, b), smooth, label=f"batch {b}")
        axes[2].plot(seconds_elapsed(h), smooth, label=f"batch {b}")
    for ax, x in zip(axes, ("training steps", "training images seen", "training seconds")):
        ax.set(xlabel=x, xscale="log" if x == "training steps" else "linear", yscale="log")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel(f"training loss (EMA over ~{images} images)")
    return fig


def plot_lr_search(search: dict[float, History], batch_size: int, baseline: History, baseline_label: str) -> Figure:
    """Final validation accuracy of batch `batch_size` per learning rate (log axis), a baseline run's dashed."""
    fig, ax = plt.subplots(figsize=(6, 3.4), layout="constrained")
    lrs = sorted(search)
    ax.plot(lrs, [100 * search[lr].val_acc[-1] for lr in lrs], "o-", label=f"batch {batch_size}")
    ax.axhline(100 * baseline.val_acc[-1], color="k", ls="--", label=baseline_label)
    ax.set(xscale="log", xlabel="learning rate", ylabel="validation accuracy (%)", title="learning-rate search")
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def plot_smoothing_windows(recipe: dict[int, History], n_train: int, beta: float, images: int) -> Figure:
    """Per batch size, the loss smoothed with one β (b / (1 - β) images) and over about `images` images."""
    fig, ax = plt.subplots(figsize=(7, 3.4), layout="constrained")
    for b, h in recipe.items():
        n = images_seen(h, n_train, b)
        ax.plot(n, ema(h.step_loss, beta), lw=0.8, alpha=0.6,
                label=f"batch {b}, EMA β={beta} ({b / (1 - beta):,.0f} images)")
        ax.plot(n, ema_per_image(h.step_loss, b, max(images, 2 * b)), lw=1.8, label=f"batch {b}, per image")
    ax.set(xlabel="training images seen", ylabel="training loss", yscale="log", title="the report's recipe")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def speed_table(recipe: dict[int, History], now: dict[int, float], n_train: int, eval_s: float,
                epochs: int = 15) -> pd.DataFrame:
    """Per batch size: s/epoch timed now and in the training run (median epoch), images/s, `epochs` epochs in min."""
    rows = [{"batch": b, "s/epoch, this run": round(now[b], 2),
             "s/epoch, training run": round(float(torch.tensor(h.epoch_seconds).median()), 2),
             "images/s, this run": round(n_train / now[b]),
             f"{epochs} epochs with test evaluation, min (this run)": round(epochs * (now[b] + eval_s) / 60, 1)}
            for b, h in recipe.items()]
    return pd.DataFrame(rows).set_index("batch")
