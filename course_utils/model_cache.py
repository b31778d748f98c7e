"""Train or load: trained models cached on disk, keyed by a hash of their training configuration.

The cache lives in `$CNN_COURSE_CACHE`, else in the git-ignored `.cache/models/` at the
repository root. Nothing is ever downloaded: a missing or unreadable file means "train now".
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from . import models
from .data import MNISTData
from .device import get_device, seed_everything
from .training import History, fit

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


def train_or_load(config: TrainConfig, data: MNISTData, device: torch.device | None = None,
                  progress: bool = True) -> tuple[nn.Module, History]:
    """Return (model in eval mode on `device`, its History): from the cache if there, else trained with `fit`."""
    device = device or get_device()
    path = cache_path(config, data)
    model = build_model(config)
    history = _load(path, model)
    if history is None:
        optimizer = getattr(torch.optim, config.optimizer)(model.parameters(), lr=config.lr)
        scheduler = (torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=config.lr_gamma)
                     if config.lr_gamma is not None else None)
        history = fit(model, data, optimizer, config.epochs, config.batch_size, scheduler=scheduler,
                      seed=config.seed, device=device, progress=progress)
        save_to_cache(config, data, model, history)
    else:
        print(f"Loaded {config.model} from {path} (test accuracy {100 * history.test_acc[-1]:.2f} %).")
    return model.to(device).eval(), history
