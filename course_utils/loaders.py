"""MNIST as a torchvision Dataset with per-image transforms, for a DataLoader: the standard PyTorch pipeline.

The course's own loop (`course_utils.training`) slices batches out of normalised in-memory tensors instead;
this module exists to show the standard pipeline beside it. `mnist_dataset` reads the same raw files as
`course_utils.data.load_mnist` and never downloads; where those files are not laid out as torchvision
expects (`<root>/MNIST/raw/`), or where there are none (the offline sample), it wraps the images already
in memory with the same transform.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import Dataset
from torchvision import datasets, transforms
from torchvision.transforms.functional import to_pil_image

from .data import MEAN, STD, MNISTData, locate_mnist, to_pixels


def augmenting_transform(max_degrees: float = 10.0, max_shift: float = 0.1) -> transforms.Compose:
    """PIL image (28, 28) -> its own random rotation (up to `max_degrees`) and shift (up to `max_shift` of the
    size) -> float tensor (1, 28, 28) in [0, 1] -> normalised with MEAN/STD, as `load_mnist`'s images are."""
    return transforms.Compose([transforms.RandomAffine(max_degrees, translate=(max_shift, max_shift)),
                               transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])


class ImageTensors(Dataset):
    """Normalised images X (N, 1, 28, 28) and labels y (N,) as a Dataset of (transform(PIL image), label)."""

    def __init__(self, X: torch.Tensor, y: torch.Tensor, transform: Callable):
        self.X, self.y, self.transform = X, y, transform

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        pixels = (to_pixels(self.X[i]) * 255).round().to(torch.uint8)   # (1, 28, 28): the raw file's 0-255
        image = to_pil_image(pixels)                                      # 8-bit grey PIL image (28, 28)
        return self.transform(image), int(self.y[i])


def mnist_dataset(transform: Callable, data: MNISTData, train: bool = True) -> tuple[Dataset, str]:
    """torchvision's MNIST Dataset over the raw files `load_mnist` reads (no download), else `data`'s training
    or test images wrapped as `ImageTensors`; with a sentence naming which one it is."""
    raw_dir = locate_mnist()
    if raw_dir is not None and raw_dir.parent.name == "MNIST":
        dataset = datasets.MNIST(str(raw_dir.parent.parent), train=train, transform=transform, download=False)
        return dataset, f"torchvision's MNIST Dataset, reading {raw_dir}"
    X, y = data.split("train" if train else "test")
    where = "are not laid out as <root>/MNIST/raw" if raw_dir is not None else "are not on this machine"
    return ImageTensors(X, y, transform), (f"torchvision's MNIST Dataset cannot be built here (the raw files {where}), "
                                           f"so the {len(X):,} images in memory are wrapped as a Dataset instead")
