"""Notebook 05's module and check: the bias-corrected exponential moving average."""
from pathlib import Path

import nbformat
import pytest
import torch

from course_utils.checks import grade
from course_utils.smoothing import ema

ROOT = Path(__file__).resolve().parent.parent


def solution_ema():
    """The `ema` defined in solutions/05_batch_size_study.ipynb."""
    nb = nbformat.read(ROOT / "solutions" / "05_batch_size_study.ipynb", as_version=4)
    namespace: dict = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and "def ema" in cell.source:
            exec("from typing import Sequence\nimport torch\n" + cell.source, namespace)
    return namespace["ema"]


def test_ema_equals_the_normalised_weighted_average():
    x = torch.rand(40, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    beta = 0.8
    for t in (1, 2, 17, 40):
        weights = beta ** torch.arange(t - 1, -1, -1, dtype=torch.float64)      # beta^(t-i), i = 1..t
        assert ema(x, beta)[t - 1].item() == pytest.approx((weights * x[:t]).sum() / weights.sum())


def test_ema_is_unbiased_at_the_start_and_reduces_noise():
    torch.testing.assert_close(ema([2.5] * 7, 0.9), torch.full((7,), 2.5, dtype=torch.float64))
    noisy = 1.0 + 0.3 * torch.randn(2000, generator=torch.Generator().manual_seed(1))
    smooth = ema(noisy, 0.9)
    assert smooth[0] == pytest.approx(noisy[0].item())
    assert smooth[100:].std() < noisy[100:].std() / 3                        # ~ sqrt((1-b)/(1+b)) = 0.23
    assert torch.equal(ema(noisy, 0.0), noisy.double())


def test_ema_rejects_bad_input():
    with pytest.raises(ValueError, match="1-D"):
        ema(torch.ones(3, 4))
    with pytest.raises(ValueError, match="beta"):
        ema([1.0, 2.0], beta=1.0)


def test_solution_passes_and_common_mistakes_are_named():
    assert grade("ema", ema).passed
    assert grade("ema", solution_ema()).passed

    def uncorrected(values, beta=0.9):
        m, out = 0.0, []
        for x in values:
            m = beta * m + (1 - beta) * x
            out.append(m)
        return out

    def off_by_one(values, beta=0.9):
        m, out = 0.0, []
        for t, x in enumerate(values):
            m = beta * m + (1 - beta) * x
            out.append(m / (1 - beta ** (t + 2)))
        return out

    assert "not bias-corrected" in grade("ema", uncorrected).message
    assert not grade("ema", off_by_one).passed
    stub = grade("ema", lambda values, beta=0.9: (_ for _ in ()).throw(NotImplementedError()))
    assert not stub.attempted
