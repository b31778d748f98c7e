"""Train or load: trained models cached on disk, keyed by a hash of their training configuration.

The cache lives in `$CNN_COURSE_CACHE`, else in the git-ignored `.cache/models/` at the
repository root. Nothing is ever downloaded: a missing or unreadable file means "train now".
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from . import models
from .data import MNISTData
from .device import get_device, seed_everything
from .training import History, evaluate, fit, train_epoch

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class TrainConfig:
    """How a cached model is built and trained: a class of `course_utils.models` and `fit`'s settings."""

    model: str
    optimizer: str = "Adam"
    lr: float = 1e-3
    batch_size: int = 512
    epochs: int = 5
    seed: int = 1
    lr_gamma: float | None = None      # StepLR: the rate is multiplied by lr_gamma after every epoch


def cache_dir() -> Path:
    """`$CNN_COURSE_CACHE` if set, else `.cache/models/` at the repository root."""
    return Path(os.environ.get("CNN_COURSE_CACHE") or ROOT / ".cache" / "models")


def cache_key(config: TrainConfig, data: MNISTData) -> str:
    """16 hex digits of SHA-256 over the configuration and the data it is trained on."""
    described = {**asdict(config), "is_full": data.is_full,
                 "n_train": len(data.X_train), "n_val": len(data.X_val), "n_test": len(data.X_test)}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def cache_path(config: TrainConfig, data: MNISTData) -> Path:
    """The file holding this configuration's trained weights and history."""
    return cache_dir() / f"{config.model}-{cache_key(config, data)}.pt"


def build_model(config: TrainConfig) -> nn.Module:
    """The untrained model, initialised from `config.seed` (the same weights every time)."""
    model_class = getattr(models, config.model, None)
    if not (isinstance(model_class, type) and issubclass(model_class, nn.Module)):
        known = [n for n, c in vars(models).items() if isinstance(c, type) and issubclass(c, nn.Module)
                 and c.__module__ == models.__name__]
        raise ValueError(f"TrainConfig.model={config.model!r} is not a model in course_utils.models; "
                         f"use one of {known}.")
    seed_everything(config.seed)
    return model_class()


def _load(path: Path, model: nn.Module) -> History | None:
    """Load weights saved at `path` into `model` and return their history; None if absent or unreadable."""
    if not path.is_file():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(saved["state_dict"])
        return History(**saved["history"])
    except Exception as err:  # truncated file, old format, wrong keys: all mean "train again"
        print(f"Cached model {path} is unreadable ({type(err).__name__}: {err}); training again.")
        return None


def save_to_cache(config: TrainConfig, data: MNISTData, model: nn.Module, history: History) -> Path:
    """Save a model trained as `config` describes on `data`, for `train_or_load` to find; return the file."""
    path = cache_path(config, data)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"config": asdict(config), "state_dict": model.state_dict(), "history": asdict(history)}, tmp)
    tmp.replace(path)
    return path


def make_optimizer(config: TrainConfig, model: nn.Module) -> tuple[torch.optim.Optimizer,
                                                                    torch.optim.lr_scheduler.LRScheduler | None]:
    """The optimizer and per-epoch scheduler (None without `lr_gamma`) that `config` names, for `model`."""
    optimizer = getattr(torch.optim, config.optimizer)(model.parameters(), lr=config.lr)
    scheduler = (torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=config.lr_gamma)
                 if config.lr_gamma is not None else None)
    return optimizer, scheduler


def estimate_seconds(config: TrainConfig, data: MNISTData, device: torch.device, steps: int = 4) -> float:
    """Seconds `fit` will take for `config` on `data`, measured on this machine: `steps` timed training steps
    (shuffled, as `fit` draws them, after a warm-up step) of a new model, plus one timed scoring of up to
    2,000 images of the split `fit` scores every epoch (validation, else test). `fit` reseeds, so its run is
    the same with or without this.
    """
    model = build_model(config).to(device, memory_format=torch.channels_last)
    optimizer, _ = make_optimizer(config, model)
    b = config.batch_size
    X = data.X_train[:(steps + 1) * b].to(device, memory_format=torch.channels_last)
    y = data.y_train[:(steps + 1) * b].to(device)
    train_epoch(model, X[:b], y[:b], optimizer, b)
    timed = slice(b, None) if len(X) > b else slice(0, b)
    _synchronize(device)
    start = time.perf_counter()
    train_epoch(model, X[timed], y[timed], optimizer, b, generator=torch.Generator().manual_seed(0))
    _synchronize(device)
    per_image = (time.perf_counter() - start) / len(X[timed])
    X_scored, y_scored = data.split("val" if data.has_validation else "test")
    sample = min(len(X_scored), 2000)
    start = time.perf_counter()
    evaluate(model, X_scored[:sample].to(device), y_scored[:sample].to(device))
    _synchronize(device)
    per_scored = (time.perf_counter() - start) / max(sample, 1)
    return config.epochs * (per_image * len(data.X_train) + per_scored * len(X_scored))


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def duration_words(seconds: float) -> str:
    """A rough duration: "under 10 s", "about 40 s", "about 3 min", "about 1.5 h"."""
    if seconds < 10:
        return "under 10 s"
    if seconds < 90:
        return f"about {round(seconds, -1):.0f} s"
    if seconds < 90 * 60:
        return f"about {seconds / 60:.0f} min"
    return f"about {seconds / 3600:.1f} h"


def announce_training(config: TrainConfig, data: MNISTData, device: torch.device) -> str:
    """The line printed before `config` trains: the model, its schedule, about how long, and its cache file."""
    steps = -(-len(data.X_train) // config.batch_size)
    seconds = estimate_seconds(config, data, device)
    return (f"Training {config.model}: {config.epochs} epoch{'s' if config.epochs > 1 else ''} of {steps:,} "
            f"batches of {config.batch_size} on {device.type}, {duration_words(seconds)}; "
            f"it will be saved to {cache_path(config, data)}")


def train_or_load(config: TrainConfig, data: MNISTData, device: torch.device | None = None,
                  progress: bool = True) -> tuple[nn.Module, History]:
    """Return (model in eval mode on `device`, its History): from the cache if there, else trained with `fit`.

    Before training, with `progress`, a line says what trains, for about how long and where it will be
    saved, and the progress bar is named after the model. A load prints no test number.
    """
    device = device or get_device()
    path = cache_path(config, data)
    model = build_model(config)
    history = _load(path, model)
    if history is None:
        if progress:
            print(announce_training(config, data, device), flush=True)
        optimizer, scheduler = make_optimizer(config, model)
        history = fit(model, data, optimizer, config.epochs, config.batch_size, scheduler=scheduler,
                      seed=config.seed, device=device, progress=progress, desc=config.model)
        save_to_cache(config, data, model, history)
    else:
        print(load_message(config, path, history))
    return model.to(device).eval(), history


def load_message(config: TrainConfig, path: Path, history: History) -> str:
    """The line printed on a cache hit: never a test number (a load may sit inside a choice)."""
    scored = (f"validation accuracy {100 * history.val_acc[-1]:.2f} %" if history.val_acc
              else "trained without a validation split")
    epochs = len(history.train_loss)
    return f"Loaded {config.model} from {path} ({epochs} epoch{'s' if epochs != 1 else ''}, {scored})."
