"""Choosing the device and making runs repeatable."""
import ctypes
import random

import numpy as np
import torch


def get_device() -> torch.device:
    """Return CUDA when a GPU is present, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch generator seeded the same way."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed buffers up to 32 MB instead of returning them to the OS.

    A training step frees and reallocates the same large activation buffers; when glibc hands
    them back to the OS, every step pays page faults to touch them again. Returns False where
    glibc is not available (macOS, Windows), which changes nothing but speed.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    return bool(libc.mallopt(M_MMAP_THRESHOLD, 32 * 2**20) and libc.mallopt(M_TRIM_THRESHOLD, 2**30))
