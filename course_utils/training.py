"""The course's one training loop: batches sliced from tensors already on the device.

A per-sample `DataLoader` with `ToTensor` converts every image on every epoch; MNIST fits in
memory, so we convert once (`course_utils.data`) and slice batches from a shuffled index.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .data import MNISTData
from .device import get_device, keep_freed_memory, seed_everything


@dataclass
class History:
    """What `fit` measured: per-step training loss, per-epoch metrics and training seconds.

    With a validation split, `val_*` hold one value per epoch and `test_*` one value, measured
    after the last epoch. Without one, `test_*` hold one value per epoch (monitoring only).
    """

    step_loss: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)

    def record(self, split: str, loss: float, acc: float) -> None:
        """Append one evaluation of `split` ('val' or 'test')."""
        getattr(self, f"{split}_loss").append(loss)
        getattr(self, f"{split}_acc").append(acc)

    @property
    def seconds(self) -> float:
        """Total training time (evaluation excluded)."""
        return sum(self.epoch_seconds)

    def seconds_to(self, accuracy: float) -> float | None:
        """Training seconds until the *validation* accuracy first reached `accuracy`, or None if never."""
        if not self.val_acc:
            raise ValueError("time to an accuracy is a choice made on validation data: train on "
                             "data.with_validation() so that fit records val_acc.")
        for epoch, acc in enumerate(self.val_acc):
            if acc >= accuracy:
                return sum(self.epoch_seconds[: epoch + 1])
        return None


def batches(X: torch.Tensor, y: torch.Tensor, batch_size: int,
            generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (X[idx], y[idx]) mini-batches; shuffled when a generator is given, in order otherwise."""
    n = len(X)
    order = torch.randperm(n, generator=generator).to(X.device) if generator is not None else None
    for start in range(0, n, batch_size):
        if order is None:
            yield X[start:start + batch_size], y[start:start + batch_size]
        else:
            idx = order[start:start + batch_size]
            yield X[idx], y[idx]


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_epoch(model: nn.Module, X: torch.Tensor, y: torch.Tensor, optimizer: torch.optim.Optimizer,
                batch_size: int, generator: torch.Generator | None = None,
                bar: tqdm | None = None) -> tuple[list[float], float]:
    """One pass over (X, y) in shuffled mini-batches; return (per-step losses, training accuracy)."""
    model.train()
    losses, correct = [], torch.zeros((), device=X.device)
    for Xb, yb in batches(X, y, batch_size, generator):
        logits = model(Xb)                              # (B, C)
        loss = F.cross_entropy(logits, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
        correct += (logits.argmax(1) == yb).sum()
        if bar is not None:
            bar.update(1)
    return torch.stack(losses).tolist(), correct.item() / len(X)


@torch.inference_mode()
def predict_logits(model: nn.Module, X: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Logits (N, C) for images X (N, ...), in eval mode and large batches."""
    model.eval()
    return torch.cat([model(X[i:i + batch_size]) for i in range(0, len(X), batch_size)])


def evaluate(model: nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of `model` on (X, y)."""
    logits = predict_logits(model, X, batch_size)
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def fit(model: nn.Module, data: MNISTData, optimizer: torch.optim.Optimizer, epochs: int,
        batch_size: int = 512, scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        test_batch_size: int = 1000, seed: int = 1, device: torch.device | None = None,
        progress: bool = True, desc: str = "training") -> History:
    """Train `model` for `epochs` on `data`; return its History.

    With a validation split (`data.with_validation()`), the validation set is scored after every
    epoch and the test set once, after the last. Without one, the test set is scored after every
    epoch, as the reports did: fine for recording a fixed recipe, never for choosing. The progress bar
    shows the validation accuracy, or without a validation split the training loss: never a test number.

    The scheduler (if any) steps once per epoch. Data and model move to `device` (default:
    `get_device()`) once, in channels-last layout (faster convolutions on CPU and GPU); the
    shuffling order is fixed by `seed`. `desc` names the run on its progress bar.
    """
    device = device or get_device()
    if device.type == "cpu":
        keep_freed_memory()
    model.to(device, memory_format=torch.channels_last)
    data = data.to(device)
    generator = seed_everything(seed)
    history = History()
    steps = -(-len(data.X_train) // batch_size)
    with tqdm(total=epochs * steps, desc=desc, unit="batch", disable=not progress) as bar:
        for epoch in range(epochs):
            _synchronize(device)
            start = time.perf_counter()
            losses, train_acc = train_epoch(model, data.X_train, data.y_train, optimizer,
                                            batch_size, generator, bar)
            _synchronize(device)
            history.epoch_seconds.append(time.perf_counter() - start)
            if scheduler is not None:
                scheduler.step()
            history.step_loss += losses
            history.train_loss.append(sum(losses) / len(losses))
            history.train_acc.append(train_acc)
            watched = "val" if data.has_validation else "test"
            loss, acc = evaluate(model, *data.split(watched), test_batch_size)
            history.record(watched, loss, acc)
            shown = (f"{100 * acc:.2f}%" if watched == "val"        # a test number is never shown while training
                     else f"{history.train_loss[-1]:.4f}")
            bar.set_postfix(epoch=epoch + 1, **{"val_acc" if watched == "val" else "train_loss": shown})
    if data.has_validation:                                 # the test set, once, at the end
        history.record("test", *evaluate(model, data.X_test, data.y_test, test_batch_size))
    return history
