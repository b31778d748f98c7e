"""Calibration helpers against values computed by hand on tiny examples, and on a real network."""
import math

import matplotlib
import pytest
import torch
import torch.nn.functional as F

from course_utils.calibration import (_bootstrap_weights, _weighted_ece, bootstrap_ece, bootstrap_ece_change,
                                      ece_change_verdict, expected_calibration_error, fit_temperature,
                                      plot_reliability, reliability_bins, temperature_se, temperature_verdict)

# four predictions over two classes: confidences 0.95 (right), 0.95 (wrong), 0.65 (right), 0.75 (right)
PROBS = torch.tensor([[0.95, 0.05], [0.95, 0.05], [0.35, 0.65], [0.75, 0.25]])
LABELS = torch.tensor([0, 1, 1, 0])


def test_reliability_bins_by_hand():
    bins = reliability_bins(PROBS, LABELS, n_bins=10)
    assert bins.count.tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 0, 2]
    assert bins.confidence[[6, 7, 9]].tolist() == pytest.approx([0.65, 0.75, 0.95])
    assert bins.accuracy[[6, 7, 9]].tolist() == pytest.approx([1.0, 1.0, 0.5])
    assert bins.accuracy[:6].isnan().all()                          # empty bins have no accuracy


def test_bins_are_closed_on_the_right():
    probs = torch.tensor([[0.5, 0.5], [1.0, 0.0]])                 # confidence exactly 0.5 and 1.0
    assert reliability_bins(probs, torch.tensor([0, 0]), n_bins=4).count.tolist() == [0, 1, 0, 1]


def test_expected_calibration_error_by_hand():
    # bin (0.9, 1]: 2/4 * |0.5 - 0.95|; bin (0.6, 0.7]: 1/4 * |1 - 0.65|; bin (0.7, 0.8]: 1/4 * |1 - 0.75|
    expected = 0.5 * 0.45 + 0.25 * 0.35 + 0.25 * 0.25
    assert expected_calibration_error(PROBS, LABELS, n_bins=10) == pytest.approx(expected) == pytest.approx(0.375)
    assert expected_calibration_error(PROBS, LABELS, n_bins=1) == pytest.approx(abs(0.75 - 0.825))


def test_fit_temperature_by_hand():
    # logits (m, 0) for all, 3 of 4 labelled 0: the loss is lowest where sigmoid(m / T) = 3/4, T = m / ln 3
    labels = torch.tensor([0, 0, 0, 1])
    for margin in (1.0, 2.0, 5.0):
        logits = torch.tensor([[margin, 0.0]] * 4)
        assert fit_temperature(logits, labels) == pytest.approx(margin / math.log(3), rel=1e-9)


def test_fit_temperature_minimises_the_loss():
    gen = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(200, 10, generator=gen, dtype=torch.float64)
    labels = (logits + 4 * torch.randn(200, 10, generator=gen, dtype=torch.float64)).argmax(1)  # overconfident
    t = fit_temperature(logits, labels)
    loss = lambda temp: F.cross_entropy(logits / temp, labels).item()        # in float64: no ties from rounding
    assert 1 < t < 10 and loss(t) < min(loss(0.99 * t), loss(1.01 * t), loss(1.0))


def test_bad_input_gets_a_clear_error():
    with pytest.raises(ValueError, match=r"\(N, C\)"):
        expected_calibration_error(PROBS[:, 0], LABELS)
    with pytest.raises(ValueError, match="best temperature is 0"):
        fit_temperature(torch.tensor([[3.0, 0.0], [0.0, 3.0]]), torch.tensor([0, 1]))


def test_temperature_scaling_on_a_real_network(mnist):
    """An over-confident network: its temperature-scaled ECE on held-out digits is lower."""
    from course_utils.models import MLP
    from course_utils.training import fit, predict_logits

    data = mnist.subset(2000, 1000).with_validation(1000)
    torch.manual_seed(0)
    model = MLP()
    fit(model, data, torch.optim.Adam(model.parameters(), lr=3e-3), epochs=30, batch_size=100, progress=False,
        device=torch.device("cpu"))
    val_logits, test_logits = predict_logits(model, data.X_val), predict_logits(model, data.X_test)
    t = fit_temperature(val_logits, data.y_val)
    assert t > 1                                                    # over-fitted: too confident
    before = expected_calibration_error(F.softmax(test_logits, 1), data.y_test)
    after = expected_calibration_error(F.softmax(test_logits / t, 1), data.y_test)
    assert after < before


def test_plot_reliability_returns_its_axes():
    matplotlib.use("Agg")
    ax = plot_reliability(PROBS, LABELS, n_bins=10, label="tiny")
    assert "tiny ECE 37.50 %" in [text.get_text() for text in ax.get_legend().get_texts()]
    assert len(ax.patches) == 3                                     # one bar per filled bin


def _synthetic(n: int, temperature: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (n, 10) and labels drawn from softmax(logits / temperature): the best fitted T is about `temperature`."""
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(n, 10, generator=g, dtype=torch.float64)
    y = torch.multinomial(F.softmax(logits / temperature, 1), 1, generator=g).squeeze(1)
    return logits, y


def test_weighted_ece_is_the_ece_of_each_resample():
    probs, y = F.softmax(_synthetic(300, 1.0, 1)[0], 1), _synthetic(300, 1.0, 1)[1]
    ones = torch.ones(1, 300, dtype=torch.float64)
    assert _weighted_ece(PROBS, LABELS, 10, torch.ones(1, 4, dtype=torch.float64)).item() == pytest.approx(0.375)
    assert _weighted_ece(probs, y, 10, ones).item() == pytest.approx(expected_calibration_error(probs, y))
    draws = torch.randint(0, 300, (5, 300), generator=torch.Generator().manual_seed(7))
    weighted = _weighted_ece(probs, y, 10, _bootstrap_weights(300, 5, 7))
    for idx, value in zip(draws, weighted.tolist()):                        # the same resamples, drawn explicitly
        assert value == pytest.approx(expected_calibration_error(probs[idx], y[idx]))
    ece, se = bootstrap_ece(probs, y, n_boot=400)
    assert ece == pytest.approx(expected_calibration_error(probs, y)) and 0.005 < se < 0.1


def test_paired_ece_change_is_zero_for_the_same_probabilities():
    logits, y = _synthetic(2000, 1.5, 2)
    same = F.softmax(logits, 1)
    assert bootstrap_ece_change(same, same, y) == (0.0, 0.0)
    change, se = bootstrap_ece_change(same, F.softmax(logits / 1.5, 1), y)
    assert change < -2 * se < 0                                              # the right T removes a real gap


def test_temperature_se_agrees_with_a_bootstrap():
    logits, y = _synthetic(600, 1.3, 3)
    T = fit_temperature(logits, y)
    draws = torch.randint(0, 600, (30, 600), generator=torch.Generator().manual_seed(4))
    boot = torch.tensor([fit_temperature(logits[i], y[i]) for i in draws]).std().item()
    assert temperature_se(logits, y, T) == pytest.approx(boot, rel=0.35)
    assert abs(T - 1.3) < 3 * temperature_se(logits, y, T)


def test_calibration_verdicts_need_more_than_their_uncertainty():
    assert "no over- or under-confidence" in temperature_verdict(0.97, 0.03)
    assert "under-confident" in temperature_verdict(0.90, 0.03)
    assert "over-confident" in temperature_verdict(1.20, 0.03)
    assert "did not change" in ece_change_verdict(0.0041, 0.0031, 0.0008)
    assert "lowered" in ece_change_verdict(0.0300, 0.0100, 0.0020)
