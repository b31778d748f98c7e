"""Questions of notebook 05 (batch-size study): the EMA, the Kalman gain's fixed point, a learning-rate
search on validation data, and a prediction written down before the run."""
import math
import re

import torch

from ..smoothing import ema as ema_reference
from ..smoothing import steady_state_gain
from ..training import History
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


def _gain_mistakes(q: float, r: float) -> dict[str, float]:
    """What common wrong derivations return for (q, r), each with its hint."""
    k = steady_state_gain(q, r)
    p_prior = q / k
    return {"that is 1 - k = beta, the EMA's factor; the question asks for the gain k itself.": 1 - k,
            "that is the predicted variance P⁻ = P + q at the fixed point; the gain is P⁻ / (P⁻ + r).": p_prior,
            "that is the posterior variance P = (1 - k) P⁻; the gain is P⁻ / (P⁻ + r).": (1 - k) * p_prior,
            "that is the gain of the first step from P = 0, q / (q + r); iterate P⁻ = P + q, "
            "k = P⁻ / (P⁻ + r), P = (1 - k) P⁻ until k stops changing.": q / (q + r),
            "q and r are swapped: q is the variance of the level's drift, r the noise of each "
            "observation (a noisier observation must give a smaller gain).": steady_state_gain(r, q)}


@question("kalman_gain_limit", NOTEBOOK)
def check_kalman_gain_limit(kalman_gain_limit) -> str:
    cases = [(1.0, 1.0), (0.01 / 0.9, 1.0), (2e-4, 0.05), (3.0, 0.5), (1e-6, 1.0)]
    for q, r in cases:
        got = kalman_gain_limit(q, r)
        try:
            got = float(got)
        except (TypeError, ValueError):
            raise Mistake(f"kalman_gain_limit({q:g}, {r:g}) returned {type(got).__name__}; return the gain "
                          "as one number.") from None
        want = steady_state_gain(q, r)
        if math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-9):
            continue
        for hint, wrong in _gain_mistakes(q, r).items():
            if math.isclose(got, wrong, rel_tol=1e-4, abs_tol=1e-9):
                raise Mistake(f"kalman_gain_limit({q:g}, {r:g}) returned {got:.6g}, expected {want:.6g}.", hint)
        raise Mistake(f"kalman_gain_limit({q:g}, {r:g}) returned {got:.6g}, expected {want:.6g}.",
                      "at the fixed point P⁻ = P + q and P = (1 - k) P⁻ give k P⁻ = q; with k = P⁻ / (P⁻ + r) "
                      "this is k² = λ (1 - k), λ = q / r. Iterating until k stops changing works too.")
    return (f"the steady-state gain is right for {len(cases)} noise ratios, e.g. q = r gives "
            f"{steady_state_gain(1, 1):.4f} and q / r = 0.01 / 0.9 gives 0.1 (the EMA with beta = 0.9).")


def _history(val: list[float], test: float, train: list[float]) -> History:
    return History(val_acc=val, test_acc=[test], train_acc=train, epoch_seconds=[1.0] * len(val))


def _choice_cases() -> list[tuple[dict[float, History], float]]:
    """Searches where validation, test, training and best-epoch choices all disagree."""
    first = {0.05: _history([0.80, 0.90], 0.95, [0.85, 0.93]),
             0.2: _history([0.85, 0.93], 0.90, [0.88, 0.99]),
             0.8: _history([0.96, 0.92], 0.91, [0.90, 0.95]),
             0.4: _history([0.50, 0.60], 0.60, [0.50, 0.60])}
    second = {1.6: _history([0.10, 0.11, 0.10], 0.10, [0.12, 0.11, 0.10]),
              0.4: _history([0.90, 0.95, 0.965], 0.960, [0.90, 0.96, 0.995]),
              0.1: _history([0.85, 0.94, 0.96], 0.975, [0.86, 0.95, 0.99]),
              0.2: _history([0.88, 0.95, 0.97], 0.965, [0.90, 0.96, 0.98])}
    return [(first, 0.2), (second, 0.2)]


@question("choose_lr", NOTEBOOK)
def check_choose_lr(choose_lr) -> str:
    for histories, want in _choice_cases():
        got = choose_lr(dict(histories))
        by = lambda score: max(sorted(histories), key=lambda lr: score(histories[lr]))
        if isinstance(got, History):
            raise Mistake("choose_lr returned a History; return its learning rate (the dictionary's key).")
        if got not in histories:
            values = {round(a, 6) for h in histories.values() for a in h.val_acc + h.test_acc}
            what = " (an accuracy, not a learning rate)" if isinstance(got, float) and round(got, 6) in values else ""
            raise Mistake(f"choose_lr returned {got!r}{what}; return one of the keys {sorted(histories)}.")
        if got == want:
            continue
        if got == by(lambda h: h.test_acc[-1]):
            raise Mistake(f"you chose lr {got:g} by test accuracy.",
                          "choose on validation (history.val_acc); the test set is scored once, after "
                          "the choice, or its figure is no longer an honest estimate.")
        if got == by(lambda h: h.train_acc[-1]):
            raise Mistake(f"you chose lr {got:g} by training accuracy.",
                          "training accuracy rewards memorising; choose on history.val_acc.")
        if got == by(lambda h: max(h.val_acc)):
            raise Mistake(f"you chose lr {got:g} by its best epoch, but the model you keep is the one after "
                          "the last epoch.", "compare history.val_acc[-1].")
        raise Mistake(f"choose_lr chose {got:g}; the highest final validation accuracy belongs to {want:g}.",
                      "return the key whose history.val_acc[-1] is largest ")
    return "choose_lr picks the rate with the highest final validation accuracy, not the test, training or best-epoch one."


BATCHES = (32, 64, 512)


def parse_ordering(prediction) -> tuple[int, ...]:
    """A predicted ordering as batch sizes, best first: '32 > 64 > 512', [32, 64, 512] or ('32', ...)."""
    if isinstance(prediction, str):
        parts = re.split(r"\s*(?:>|,|\s)\s*", prediction.strip())
        prediction = [p for p in parts if p]
    if isinstance(prediction, (set, frozenset)):
        raise Mistake("a set has no order; write the batch sizes in a list, best first, e.g. [64, 32, 512].")
    if isinstance(prediction, dict) or not hasattr(prediction, "__iter__"):
        raise Mistake(f"the prediction {prediction!r} is not an ordered sequence; write the three batch "
                      "sizes, best first, e.g. [64, 32, 512] or '64 > 32 > 512'.")
    try:
        values = [float(p) for p in prediction]
    except (TypeError, ValueError):
        raise Mistake(f"the prediction {prediction!r} holds something that is not a batch size.",
                      "write only the numbers 32, 64 and 512, best first.") from None
    if values and all(0 <= v <= 100 and v not in BATCHES for v in values):
        raise Mistake(f"{prediction!r} looks like accuracies; the question asks for the order of the batch "
                      "sizes, best first.")
    if sorted(values) != sorted(BATCHES):
        raise Mistake(f"the prediction {prediction!r} must name each of 32, 64 and 512 exactly once.",
                      "e.g. [64, 32, 512] means batch 64 ends best and batch 512 worst.")
    return tuple(int(v) for v in values)


@question("prediction", NOTEBOOK, answer_name="my_prediction")
def check_prediction(my_prediction) -> str:
    order = parse_ordering(my_prediction() if callable(my_prediction) else my_prediction)
    return (f"prediction recorded: {' > '.join(map(str, order))} (best first). It is graded for being "
            "written down, not for being right: run the next cell and compare.")
