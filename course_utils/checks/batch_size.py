"""Question of notebook 05 (batch-size study): smoothing a loss curve with a bias-corrected EMA."""
import torch

from ..smoothing import ema as ema_reference
from . import Mistake, question
from .tools import as_tensor, expect_close

NOTEBOOK = "05_batch_size_study"


def _uncorrected(values: torch.Tensor, beta: float) -> torch.Tensor:
    out, m = torch.empty_like(values), 0.0
    for t, v in enumerate(values.tolist()):
        m = beta * m + (1 - beta) * v
        out[t] = m
    return out


@question("ema", NOTEBOOK)
def check_ema(ema) -> str:
    g = torch.Generator().manual_seed(5)
    cases = [(torch.tensor([4.0, 2.0, 3.0]), 0.5),
             (2.3 * torch.exp(-torch.arange(200.0) / 60) + 0.3 * torch.rand(200, generator=g), 0.9),
             (torch.rand(50, generator=g, dtype=torch.float64) + 1.0, 0.98)]
    for values, beta in cases:
        got = as_tensor(ema(values.tolist(), beta), f"ema(values, beta={beta})")
        want = ema_reference(values, beta)
        if got.shape == want.shape and torch.allclose(got, _uncorrected(values.double(), beta), rtol=1e-4):
            raise Mistake(f"for beta={beta} your curve starts at {got[0].item():.4g}, the data at "
                          f"{values[0].item():.4g}: it is not bias-corrected.",
                          "divide m_t by (1 - beta**t), with t counted from 1.")
        expect_close(got, want, f"ema(values, beta={beta}) for {len(values)} values",
                     "m_t = beta * m_(t-1) + (1 - beta) * x_t from m_0 = 0, then s_t = m_t / (1 - beta**t); "
                     "return one value per input.", rtol=1e-5)
    return "bias-corrected EMA matches on 3 curves (beta 0.5, 0.9, 0.98); s_1 equals x_1."
