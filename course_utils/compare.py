"""A guard before every conclusion: did each arm train, and is the difference larger than its noise?

A comparison pits two recipes, arms A and B, against each other. `verdict` asks three questions in order
and returns the one sentence the course prints about it:

1. **Did each arm train?** (`trained`) An arm that stayed near chance measures its own failure, not the
   idea it stands for. It trained when, for every seed, the accuracy on the evaluation set exceeds
   CHANCE_FACTOR / C and the final training loss is below LOSS_FRACTION · ln C (ln C is the loss of
   guessing uniformly among C classes). Otherwise: "A did not train under this budget: no comparison".
2. **Run to run** (`welch`), with at least 2 seeds per arm: the seed means differ by d = m_B - m_A with
   standard error se = sqrt(s_A²/n_A + s_B²/n_B) (Welch), t = d / se on the Welch-Satterthwaite degrees
   of freedom, a two-sided p-value and a 95 % interval d ± t_0.975 · se. This is the noise of retraining.
3. **Paired** (`mcnemar`): two trained models scored on the *same* n digits are not independent samples;
   only the digits they disagree on carry information. b = digits only A gets right, c = digits only B
   gets right; under "equally accurate" b ~ Binomial(b + c, 1/2), and the exact McNemar p-value is the
   two-sided binomial test. It says whether these two models differ, not whether their recipes do.

A difference is "resolved" only with p < ALPHA, and the p-value or interval is printed beside the word.
With seeds the verdict is Welch's; with one seed per arm only the paired test can resolve it.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

import torch
from scipy import stats
from torch import nn

from .training import predict_logits

CHANCE_FACTOR = 2.0     # an arm trained if its accuracy exceeds CHANCE_FACTOR / C ...
LOSS_FRACTION = 0.9     # ... and its final training loss is below LOSS_FRACTION * ln C
ALPHA = 0.05            # "resolved" means p < ALPHA


@dataclass(frozen=True)
class Guard:
    """Whether one arm trained: `ok`, and the sentence saying why not (empty when it trained)."""

    name: str
    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


def trained(name: str, val_accuracy: float, train_loss: float, n_classes: int = 10,
            min_accuracy: float | None = None) -> Guard:
    """Did an arm train? Needs val_accuracy > CHANCE_FACTOR / C (or > `min_accuracy`, a comparison's own
    higher bar) and train_loss < LOSS_FRACTION · ln C."""
    if n_classes < 2 or not 0 <= val_accuracy <= 1:
        raise ValueError(f"need n_classes >= 2 and an accuracy in [0, 1] (a fraction, not a percentage); "
                         f"got n_classes={n_classes}, val_accuracy={val_accuracy}.")
    min_acc, max_loss = CHANCE_FACTOR / n_classes, LOSS_FRACTION * math.log(n_classes)
    failed = []
    if min_accuracy is not None and min_accuracy > min_acc:
        if not val_accuracy > min_accuracy:
            failed.append(f"accuracy {100 * val_accuracy:.2f} %, not above the {100 * min_accuracy:.0f} % "
                          "this comparison asks of a trained arm")
    elif not val_accuracy > min_acc:
        failed.append(f"accuracy {100 * val_accuracy:.2f} %, not above {CHANCE_FACTOR:g} x chance "
                      f"= {100 * min_acc:.0f} %")
    if not train_loss < max_loss:
        failed.append(f"training loss {train_loss:.3f}, not below {LOSS_FRACTION:g} ln {n_classes} = {max_loss:.3f}")
    if not failed:
        return Guard(name, True)
    return Guard(name, False, f"{name} did not train under this budget ({'; '.join(failed)}): no comparison")


@dataclass(frozen=True)
class Paired:
    """Two models on the same n digits: b = right only for A, c = right only for B; exact McNemar p."""

    n: int
    b: int
    c: int
    p: float


def mcnemar(correct_a: torch.Tensor | Sequence[bool], correct_b: torch.Tensor | Sequence[bool]) -> Paired:
    """Exact McNemar test of two (n,) boolean 'correct' vectors over the same digits.

    p = P(|K - m/2| >= |b - m/2|) for K ~ Binomial(m = b + c, 1/2), i.e. for b < m/2
    p = 2 · sum_{k <= b} C(m, k) / 2^m (at most 1); p = 1 when the models never disagree.
    """
    a, b_ = torch.as_tensor(correct_a, dtype=torch.bool), torch.as_tensor(correct_b, dtype=torch.bool)
    if a.shape != b_.shape or a.dim() != 1:
        raise ValueError(f"correct_a and correct_b must be (n,) vectors over the same digits, got shapes "
                         f"{tuple(a.shape)} and {tuple(b_.shape)}: score both models on the same evaluation set.")
    b, c = int((a & ~b_).sum()), int((~a & b_).sum())
    p = stats.binomtest(b, b + c, 0.5).pvalue if b + c else 1.0
    return Paired(len(a), b, c, float(p))


@dataclass(frozen=True)
class SeedDifference:
    """Welch's comparison of two seed samples: d = mean_B - mean_A, its se, df, t, p and 95 % interval."""

    d: float
    se: float
    df: float
    t: float
    p: float
    low: float
    high: float


def welch(values_a: Sequence[float], values_b: Sequence[float]) -> SeedDifference:
    """Welch's t-test of mean(values_b) - mean(values_a), for n_A, n_B >= 2 seeds.

    v_i = s_i² / n_i (s_i: sample sd, n_i - 1), se = sqrt(v_A + v_B), t = d / se,
    df = (v_A + v_B)² / (v_A² / (n_A - 1) + v_B² / (n_B - 1)), p = 2 · P(T_df > |t|).
    """
    if len(values_a) < 2 or len(values_b) < 2:
        raise ValueError(f"Welch's test needs at least 2 seeds per arm, got {len(values_a)} and {len(values_b)}; "
                         "use mcnemar for single runs scored on the same digits.")
    (na, nb), d = (len(values_a), len(values_b)), statistics.fmean(values_b) - statistics.fmean(values_a)
    va, vb = statistics.variance(values_a) / na, statistics.variance(values_b) / nb
    se = math.sqrt(va + vb)
    if se == 0:                                  # identical seeds in both arms: no noise measured
        return SeedDifference(d, 0.0, math.nan, math.nan, 1.0 if d == 0 else 0.0, d, d)
    df = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
    t = d / se
    half = stats.t.ppf(0.975, df) * se
    return SeedDifference(d, se, df, t, float(2 * stats.t.sf(abs(t), df)), d - half, d + half)


@dataclass(frozen=True)
class Arm:
    """One recipe's results, one entry per seed: accuracy on the shared evaluation set, final training
    loss, and optionally `correct` (n,) bool of its first seed on those digits (for the paired test)."""

    name: str
    acc: tuple[float, ...]
    train_loss: tuple[float, ...]
    correct: torch.Tensor | None = None

    def __post_init__(self):
        if not self.acc or len(self.acc) != len(self.train_loss):
            raise ValueError(f"arm {self.name!r} needs one accuracy and one training loss per seed, got "
                             f"{len(self.acc)} and {len(self.train_loss)}.")


def correct(model: nn.Module, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(N,) bool: which of the digits X (N, 1, 28, 28) `model` classifies as y (N,)."""
    device = next(model.parameters()).device
    return (predict_logits(model, X.to(device)).argmax(1).cpu() == y.cpu())


def guard(arm: Arm, n_classes: int = 10, min_accuracy: float | None = None) -> Guard:
    """`trained` for every seed of `arm`: the first seed that did not train, or an ok Guard."""
    for i, (acc, loss) in enumerate(zip(arm.acc, arm.train_loss)):
        guard = trained(arm.name if len(arm.acc) == 1 else f"{arm.name} (seed {i + 1} of {len(arm.acc)})",
                        acc, loss, n_classes, min_accuracy)
        if not guard:
            return guard
    return Guard(arm.name, True)


def p_text(p: float) -> str:
    """A p-value as the course prints it: 'p = 0.013', or 'p < 0.0001' below that."""
    return f"p = {p:.2g}" if p >= 1e-4 else "p < 0.0001"


def verdict(a: Arm, b: Arm, label: str = "", on: str = "validation", metric: str = "acc",
            n_classes: int = 10, min_accuracy: float | None = None) -> str:
    """The sentence for 'b minus a': the guard, then the difference with its uncertainty.

    `metric` is "acc" (accuracy on the shared `on` digits, in points) or "train_loss" (final training loss).
    Seeds (>= 2 per arm): mean difference ± Welch se, df, p and 95 % interval, resolved iff p < ALPHA.
    Otherwise, for accuracy, the paired test on the shared digits (needs both `correct`), resolved iff
    its p < ALPHA, beside the difference of the same two first seeds, (c - b) / n; without it a single-seed difference is "not resolvable".
    `min_accuracy` raises the accuracy an arm needs to count as trained (see `trained`).
    """
    if metric not in ("acc", "train_loss"):
        raise ValueError(f"metric must be 'acc' or 'train_loss', not {metric!r}.")
    head = f"({label}) " if label else ""
    for check in (guard(a, n_classes, min_accuracy), guard(b, n_classes, min_accuracy)):
        if not check:
            return head + check.reason + "."
    scale, unit, what = (100, " points", f"{on} accuracy") if metric == "acc" else (1, "", "training loss")
    digits = 2 if metric == "acc" else 3
    fmt = lambda v: f"{v:+.{digits}f}"
    va, vb = getattr(a, metric), getattr(b, metric)
    d = scale * (statistics.fmean(vb) - statistics.fmean(va))
    text = f"{head}{b.name} minus {a.name}: {fmt(d)}{unit} of {what}"
    m = mcnemar(a.correct, b.correct) if metric == "acc" and a.correct is not None and b.correct is not None else None
    pairs = m and (f"paired on the same {m.n:,} {on} digits, {m.b} right only for {a.name} and {m.c} "
                   f"only for {b.name}")
    if len(va) >= 2 and len(vb) >= 2:
        w = welch(va, vb)
        word = "resolved" if w.p < ALPHA else "not resolved"
        text += (f"; over {len(va)} and {len(vb)} seeds {fmt(scale * w.d)} ± {scale * w.se:.{digits}f} "
                 f"(Welch se, {w.df:.1f} df), t = {w.t:.2f}, 95 % interval [{fmt(scale * w.low)}, "
                 f"{fmt(scale * w.high)}]: {word} across seeds at the {100 * ALPHA:g} % level (Welch {p_text(w.p)}).")
        if m:
            unconfirmed = m.p < ALPHA <= w.p
            text += (f" The first seeds alone, {pairs}: exact McNemar {p_text(m.p)}"
                     + (", a difference between these two networks that retraining does not confirm." if unconfirmed
                        else "."))
        return text
    single = "each" if len(va) < 2 and len(vb) < 2 else "of " + (a.name if len(va) < 2 else b.name)
    if m:
        word = "resolved for these two trained networks" if m.p < ALPHA else "not resolved"
        text = (f"{head}{b.name} minus {a.name}, first seeds {pairs}: {fmt(100 * (m.c - m.b) / m.n)} points, "
                f"{word} (exact McNemar {p_text(m.p)}); one seed {single}, so the spread from retraining is not measured")
        many = a if len(va) >= 2 else b if len(vb) >= 2 else None
        if many is not None:
            text += (f"; {many.name}'s mean over its {len(many.acc)} seeds is {100 * statistics.fmean(many.acc):.2f} %, "
                     "untested against a single run")
        return text + "."
    return text + f"; one seed {single} and no paired test: not resolvable by this run."


def direction(a: Arm, b: Arm, metric: str = "acc", n_classes: int = 10, min_accuracy: float | None = None) -> int:
    """+1 if b's `metric` is resolved above a's (p < ALPHA, by the test `verdict` uses), -1 if resolved below,
    0 if not resolved or an arm did not train."""
    if not (guard(a, n_classes, min_accuracy) and guard(b, n_classes, min_accuracy)):
        return 0
    va, vb = getattr(a, metric), getattr(b, metric)
    if len(va) >= 2 and len(vb) >= 2:
        w = welch(va, vb)
        return int(math.copysign(1, w.d)) if w.p < ALPHA else 0
    if metric == "acc" and a.correct is not None and b.correct is not None:
        m = mcnemar(a.correct, b.correct)
        return (1 if m.c > m.b else -1) if m.p < ALPHA else 0
    return 0
