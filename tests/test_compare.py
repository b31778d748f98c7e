"""The comparison guard: untrained arms refused, McNemar and Welch against hand-computed small tables."""
import math
import statistics

import pytest
import torch
from scipy import stats

from course_utils.compare import ALPHA, Arm, correct, direction, guard, mcnemar, trained, verdict, welch
from course_utils.models import TwoLayerCNN


def test_trained_refuses_an_arm_at_chance_and_names_both_thresholds():
    guard = trained("report", val_accuracy=0.124, train_loss=2.30)
    assert not guard
    assert guard.reason.startswith("report did not train under this budget") and guard.reason.endswith("no comparison")
    assert "12.40 %" in guard.reason and "20 %" in guard.reason                     # 2 x chance for 10 classes
    assert f"{0.9 * math.log(10):.3f}" in guard.reason
    assert trained("upgrade", 0.97, 0.12)
    assert not trained("accurate but loss on the plateau", 0.5, 2.2)                # one condition is not enough
    assert trained("100 classes", 0.05, 4.0, n_classes=100) and not trained("100 classes", 0.05, 4.2, n_classes=100)
    with pytest.raises(ValueError, match="fraction, not a percentage"):
        trained("x", 97.0, 0.1)


def test_verdict_refuses_a_difference_with_an_untrained_arm():
    report = Arm("report", (0.124,), (2.29,))
    upgrade = Arm("upgrade", (0.92, 0.93, 0.91), (0.3, 0.28, 0.31))
    sentence = verdict(report, upgrade, "a")
    assert sentence == "(a) report did not train under this budget (accuracy 12.40 %, not above 2 x chance " \
                       "= 20 %; training loss 2.290, not below 0.9 ln 10 = 2.072): no comparison."
    one_bad_seed = Arm("upgrade", (0.92, 0.11, 0.91), (0.3, 2.3, 0.31))
    assert "upgrade (seed 2 of 3) did not train" in verdict(upgrade, one_bad_seed)
    assert "points" not in verdict(upgrade, one_bad_seed)
    assert guard(upgrade) and not guard(one_bad_seed)


def test_a_comparison_can_ask_more_of_a_trained_arm_than_twice_chance():
    report = Arm("report", (0.702,), (0.95,))
    upgrade = Arm("upgrade", (0.89,), (0.3,))
    assert guard(report) and not guard(report, min_accuracy=0.8)
    sentence = verdict(report, upgrade, "a", min_accuracy=0.8)
    assert sentence == ("(a) report did not train under this budget (accuracy 70.20 %, not above the 80 % this "
                        "comparison asks of a trained arm): no comparison.")
    assert direction(report, upgrade, min_accuracy=0.8) == 0
    assert "twice" not in sentence and not trained("x", 0.15, 0.5, min_accuracy=0.1)   # never below 2 x chance

def exact_mcnemar(b: int, c: int) -> float:
    """2 · sum_{k <= min(b, c)} C(b + c, k) / 2^(b + c), at most 1: the formula, by hand."""
    m = b + c
    return min(1.0, 2 * sum(math.comb(m, k) for k in range(min(b, c) + 1)) / 2 ** m)


def vectors(both: int, only_a: int, only_b: int, neither: int) -> tuple[torch.Tensor, torch.Tensor]:
    """'correct' vectors of two models from the four cells of their 2x2 table."""
    a = [True] * both + [True] * only_a + [False] * only_b + [False] * neither
    b = [True] * both + [False] * only_a + [True] * only_b + [False] * neither
    return torch.tensor(a), torch.tensor(b)


@pytest.mark.parametrize("both, only_a, only_b, neither", [(80, 1, 9, 10), (50, 9, 1, 0), (5, 3, 4, 1),
                                                           (30, 0, 0, 2), (900, 12, 30, 58)])
def test_mcnemar_matches_the_exact_binomial_formula(both, only_a, only_b, neither):
    result = mcnemar(*vectors(both, only_a, only_b, neither))
    assert (result.n, result.b, result.c) == (both + only_a + only_b + neither, only_a, only_b)
    assert result.p == pytest.approx(exact_mcnemar(only_a, only_b), rel=1e-12)


def test_mcnemar_of_b1_c9_is_0_0215_and_ignores_the_digits_both_get_right():
    assert mcnemar(*vectors(80, 1, 9, 10)).p == pytest.approx(22 / 1024, rel=1e-12)    # 2 (1 + 10) / 2^10
    assert mcnemar(*vectors(8000, 1, 9, 0)).p == mcnemar(*vectors(0, 1, 9, 0)).p
    with pytest.raises(ValueError, match="same evaluation set"):
        mcnemar(torch.ones(5, dtype=torch.bool), torch.ones(6, dtype=torch.bool))


def test_welch_matches_the_formula_and_scipy():
    a, b = [0.912, 0.931, 0.905], [0.951, 0.948, 0.962, 0.944]
    va, vb = statistics.variance(a) / 3, statistics.variance(b) / 4
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 3)
    d = statistics.fmean(b) - statistics.fmean(a)
    result = welch(a, b)
    assert (result.d, result.se, result.df, result.t) == pytest.approx((d, se, df, d / se), rel=1e-12)
    reference = stats.ttest_ind(b, a, equal_var=False)
    assert result.t == pytest.approx(reference.statistic, rel=1e-10)
    assert result.p == pytest.approx(reference.pvalue, rel=1e-10)
    half = stats.t.ppf(0.975, df) * se
    assert (result.low, result.high) == pytest.approx((d - half, d + half), rel=1e-12)
    with pytest.raises(ValueError, match="at least 2 seeds"):
        welch([0.9], b)


def test_welch_on_the_issue_numbers_is_not_resolved():
    """Means 3.03 points apart, sds 1.44 and 1.75 over 3 seeds: se 1.31, t 2.3 on about 4 df, p > 0.05."""
    a = [95.0 - 1.44, 95.0, 95.0 + 1.44]
    b = [91.97 - 1.75, 91.97, 91.97 + 1.75]
    result = welch(a, b)
    assert result.se == pytest.approx(math.sqrt((1.44 ** 2 + 1.75 ** 2) / 3), rel=1e-12)
    assert 3.5 < result.df < 4.5 and ALPHA < result.p < 0.1
    sentence = verdict(Arm("upgrade", tuple(v / 100 for v in a), (0.1,) * 3),
                       Arm("upgrade + SE", tuple(v / 100 for v in b), (0.1,) * 3), "c")
    assert sentence.startswith("(c) upgrade + SE minus upgrade: -3.03 points of validation accuracy")
    assert "± 1.31 (Welch se" in sentence and "not resolved across seeds" in sentence and "(Welch p = 0.0" in sentence
    right_a, right_b = vectors(900, 30, 10, 60)                                       # McNemar p = 0.002
    paired = verdict(Arm("upgrade", tuple(v / 100 for v in a), (0.1,) * 3, right_a),
                     Arm("upgrade + SE", tuple(v / 100 for v in b), (0.1,) * 3, right_b), "c")
    assert paired.startswith(sentence) and "30 right only for upgrade and 10 only for upgrade + SE" in paired
    assert paired.endswith("a difference between these two networks that retraining does not confirm.")


def test_single_seeds_are_resolved_only_by_the_paired_test():
    a_right, b_right = vectors(900, 1, 9, 90)
    a, b = Arm("A", (0.901,), (0.3,), a_right), Arm("B", (0.909,), (0.3,), b_right)
    resolved = verdict(a, b)
    assert "+0.80 points" in resolved and "1 right only for A and 9 only for B" in resolved
    assert "resolved for these two trained networks (exact McNemar p = 0.021)" in resolved
    assert resolved.endswith("one seed each, so the spread from retraining is not measured.")
    assert "not resolved" in verdict(Arm("A", (0.9,), (0.3,), vectors(900, 4, 6, 90)[0]),
                                     Arm("B", (0.902,), (0.3,), vectors(900, 4, 6, 90)[1]))
    assert verdict(Arm("A", (0.9,), (0.3,)), Arm("B", (0.95,), (0.3,))).endswith("not resolvable by this run.")
    assert direction(a, b) == 1 and direction(b, a) == -1 and direction(Arm("A", (0.9,), (0.3,)), b) == 0


def test_one_seed_against_three_prints_the_paired_difference_of_the_first_seeds():
    """Report: 1 seed; upgrade: 3 seeds whose mean is far from its first: the printed difference is (c - b) / n."""
    right_report, right_upgrade = vectors(870, 24, 77, 29)                            # n = 1,000
    report = Arm("report", (0.894,), (0.1,), right_report)
    upgrade = Arm("upgrade", (0.947, 0.93, 0.94), (0.1,) * 3, right_upgrade)
    sentence = verdict(report, upgrade, "a")
    paired = 100 * (77 - 24) / 1000
    assert sentence.startswith(f"(a) upgrade minus report, first seeds paired on the same 1,000 validation digits, "
                               f"24 right only for report and 77 only for upgrade: {paired:+.2f} points")
    mean_gap = 100 * (statistics.fmean(upgrade.acc) - report.acc[0])
    assert f"{mean_gap:+.2f}" not in sentence and f"{100 * statistics.fmean(upgrade.acc):.2f} %" in sentence
    assert "exact McNemar p < 0.0001" in sentence and "one seed of report" in sentence


def test_a_loss_comparison_over_seeds_has_no_paired_test():
    shallow = Arm("4 layers", (0.9, 0.91, 0.92), (0.20, 0.22, 0.21))
    deep = Arm("32 layers", (0.9, 0.91, 0.92), (0.40, 0.45, 0.42))
    sentence = verdict(shallow, deep, metric="train_loss")
    assert "32 layers minus 4 layers: +0.213 of training loss" in sentence and "resolved across seeds" in sentence
    assert "McNemar" not in sentence
    assert direction(shallow, deep, "train_loss") == 1 and direction(deep, shallow, "train_loss") == -1
    assert direction(shallow, Arm("32 layers", (0.9, 0.1, 0.9), (0.4, 2.3, 0.4)), "train_loss") == 0   # refused
    assert direction(shallow, Arm("4 again", (0.9, 0.9, 0.9), (0.21, 0.20, 0.23)), "train_loss") == 0  # noise


def test_correct_scores_a_model_on_real_digits(mnist):
    torch.manual_seed(0)
    model = TwoLayerCNN().eval()
    right = correct(model, mnist.X_test[:200], mnist.y_test[:200])
    assert right.dtype == torch.bool and right.shape == (200,)
    assert right.float().mean().item() < 0.5                # an untrained network is near chance
