"""Notebook 05's modules and checks: EMA, Kalman filter, per-image smoothing, traced and warmed-up runs."""
from pathlib import Path

import nbformat
import pytest
import torch

from course_utils.batch_study import (images_seen, linear_warmup, loss_file_seconds, seconds_elapsed,
                                      trace_steps, train_sgd, traced_run, warmup_path)
from course_utils.checks import grade
from course_utils.model_cache import TrainConfig, cache_path
from course_utils.smoothing import (beta_for_images, ema, ema_lag, ema_per_image, kalman_local_level,
                                    noise_ratio_for_beta, steady_state_gain)
from course_utils.training import History

ROOT = Path(__file__).resolve().parent.parent


def solution_function(name: str):
    """The function `name` defined in solutions/05_batch_size_study.ipynb."""
    nb = nbformat.read(ROOT / "solutions" / "05_batch_size_study.ipynb", as_version=4)
    namespace: dict = {}
    exec("from typing import Sequence\nimport math\nimport torch\nfrom course_utils.training import History",
         namespace)
    for cell in nb.cells:
        if cell.cell_type == "code" and f"def {name}(" in cell.source:
            exec(cell.source, namespace)
    return namespace[name]


# --- the EMA ---------------------------------------------------------------------------------------

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


def test_ema_lags_beta_over_one_minus_beta_steps_on_a_falling_line():
    t = torch.arange(400, dtype=torch.float64)
    line = 5.0 - 0.01 * t
    for beta in (0.5, 0.9, 0.95):
        lag = (ema(line, beta)[-1] - line[-1]) / 0.01                           # how many steps behind
        assert lag.item() == pytest.approx(ema_lag(beta), rel=1e-6)


# --- per-image smoothing -----------------------------------------------------------------------------

def test_per_image_smoothing_on_a_known_sequence():
    # batch 1 averaging over 2 images: beta = 0.5; m = 2, 2, 2.5; s = m / (1 - 0.5^t) = 4, 8/3, 20/7
    torch.testing.assert_close(ema_per_image([4.0, 2.0, 3.0], batch_size=1, images=2),
                               torch.tensor([4.0, 8 / 3, 20 / 7], dtype=torch.float64))
    x = torch.rand(30, generator=torch.Generator().manual_seed(2))
    assert beta_for_images(32, 320) == pytest.approx(0.9)
    torch.testing.assert_close(ema_per_image(x, 32, 320), ema(x, 0.9))
    torch.testing.assert_close(ema_per_image(x, 512, 5120), ema(x, 0.9))
    assert beta_for_images(512, 5120 * 16) == pytest.approx(1 - 1 / 160)
    with pytest.raises(ValueError, match="exceed"):
        beta_for_images(512, 320)


# --- the Kalman filter -------------------------------------------------------------------------------

@pytest.mark.parametrize("beta", [0.5, 0.9, 0.98])
def test_kalman_gain_converges_to_one_minus_beta_for_the_matching_noise_ratio(beta):
    r = 0.3
    q = noise_ratio_for_beta(beta) * r
    x = torch.randn(3000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    estimates, gains = kalman_local_level(x, q, r)
    assert gains[0].item() > 0.99                                    # a vague start trusts the first point
    assert gains[-1].item() == pytest.approx(1 - beta, rel=1e-9)
    assert steady_state_gain(q, r) == pytest.approx(1 - beta, rel=1e-12)
    settled = (gains - (1 - beta)).abs() < 1e-12
    start = int(settled.nonzero()[0])                                # from here the filter is an EMA
    m = estimates[start - 1].item()
    for t in range(start, start + 50):
        m = beta * m + (1 - beta) * x[t].item()
        assert estimates[t].item() == pytest.approx(m, rel=1e-9, abs=1e-12)


def test_kalman_rejects_non_positive_variances():
    with pytest.raises(ValueError, match="positive"):
        kalman_local_level([1.0, 2.0], q=0.0, r=1.0)


# --- the run helpers ---------------------------------------------------------------------------------

def test_images_seen_and_seconds_count_partial_batches():
    h = History(step_loss=[1.0] * 6, epoch_seconds=[3.0, 6.0])
    assert images_seen(h, n_train=70, batch_size=32).tolist() == [32, 64, 70, 102, 134, 140]
    torch.testing.assert_close(seconds_elapsed(h), torch.tensor([1.0, 2, 3, 5, 7, 9]))


def test_step_trace_measures_sgd_updates_as_lr_times_gradient():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    trace = trace_steps(opt)
    for _ in range(3):
        opt.zero_grad()
        model(torch.randn(8, 3)).pow(2).mean().backward()
        opt.step()
    assert len(trace.update_norm) == 3
    torch.testing.assert_close(trace.effective_lr, torch.full((3,), 0.1), rtol=1e-4, atol=0)


def test_linear_warmup_ramps_the_rate_then_holds_it():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    linear_warmup(opt, target_lr=0.5, steps=4)
    seen = []
    for _ in range(6):
        p.grad = torch.ones(1)
        opt.step()
        seen.append(opt.param_groups[0]["lr"])
    assert seen == pytest.approx([0.2, 0.3, 0.4, 0.5, 0.5, 0.5])


def test_traced_and_warmed_up_runs_on_real_digits(mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_COURSE_CACHE", str(tmp_path))
    data = mnist.with_validation().subset(256, 200, 200)
    history, trace = traced_run(TrainConfig("TwoLayerCNN", "Adadelta", 1.0, 64, 1), data)
    assert len(trace.update_norm) == len(history.step_loss) == 4
    assert trace.effective_lr.std() > 0                              # Adadelta adapts its rate per step
    config = TrainConfig("TwoLayerCNN", "SGD", 0.2, 64, 1)
    _, warm = train_sgd(config, data, warmup_lr=0.05, warmup_steps=4)
    assert warmup_path(config, data, 0.05, 4).is_file() and not cache_path(config, data).exists()
    _, again = train_sgd(config, data, warmup_lr=0.05, warmup_steps=4)      # from the cache
    assert again.step_loss == warm.step_loss and len(warm.val_acc) == 1 and len(warm.test_acc) == 1
    _, plain = train_sgd(config, data)
    assert plain.step_loss[0] == warm.step_loss[0] and plain.step_loss[1:] != warm.step_loss[1:]
    with pytest.raises(ValueError, match="plain SGD"):
        train_sgd(TrainConfig("TwoLayerCNN", "Adam"), data)


def test_loss_file_cost_grows_with_the_number_of_steps():
    short, _ = loss_file_seconds(100, samples=3, repeats=1)
    long, per_call = loss_file_seconds(2000, samples=4, repeats=1)
    assert 0 < short < long and per_call > 0


# --- the checks ---------------------------------------------------------------------------------------

def test_ema_check_accepts_the_solution_and_names_mistakes():
    assert grade("ema", ema).passed
    assert grade("ema", solution_function("ema")).passed

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


def iterate_gain(q, r, steps=10_000):
    p = 0.0
    for _ in range(steps):
        k = (p + q) / (p + q + r)
        p = (1 - k) * (p + q)
    return k


def test_kalman_gain_check_accepts_closed_forms_and_iteration():
    import math
    import numpy as np
    closed = lambda q, r: (-q / r + math.sqrt((q / r) ** 2 + 4 * q / r)) / 2
    via_variance = lambda q, r: (lambda p: p / (p + r))((q + math.sqrt(q * q + 4 * q * r)) / 2)
    for answer in (closed, via_variance, iterate_gain, lambda q, r: np.float64(closed(q, r)),
                   lambda q, r: torch.tensor(closed(q, r)), solution_function("kalman_gain_limit")):
        result = grade("kalman_gain_limit", answer)
        assert result.passed, result.message


def test_kalman_gain_check_names_each_mistake():
    k = steady_state_gain
    mistakes = {"the EMA's factor": lambda q, r: 1 - k(q, r),
                "predicted variance": lambda q, r: q / k(q, r),
                "posterior variance": lambda q, r: (1 - k(q, r)) * q / k(q, r),
                "first step": lambda q, r: q / (q + r),
                "swapped": lambda q, r: k(r, q),
                "k² = λ (1 - k)": lambda q, r: q / r,
                "one number": lambda q, r: [k(q, r)]}
    for words, answer in mistakes.items():
        result = grade("kalman_gain_limit", answer)
        assert not result.passed and words in result.message, (words, result.message)


def test_choose_lr_check_accepts_variants_and_names_each_mistake():
    final = lambda hs: max(sorted(hs), key=lambda lr: hs[lr].val_acc[-1])
    by_items = lambda hs: sorted(hs.items(), key=lambda kv: (-kv[1].val_acc[-1], kv[0]))[0][0]
    for answer in (final, by_items, solution_function("choose_lr")):
        result = grade("choose_lr", answer)
        assert result.passed, result.message
    mistakes = {"by test accuracy": lambda hs: max(hs, key=lambda lr: hs[lr].test_acc[-1]),
                "by training accuracy": lambda hs: max(hs, key=lambda lr: hs[lr].train_acc[-1]),
                "best epoch": lambda hs: max(hs, key=lambda lr: max(hs[lr].val_acc)),
                "an accuracy, not a learning rate": lambda hs: max(h.val_acc[-1] for h in hs.values()),
                "returned a History": lambda hs: hs[final(hs)],
                "highest final validation accuracy": lambda hs: min(hs, key=lambda lr: hs[lr].val_acc[-1])}
    for words, answer in mistakes.items():
        result = grade("choose_lr", answer)
        assert not result.passed and words in result.message, (words, result.message)


def test_prediction_check_accepts_orderings_in_several_styles():
    for answer in ([64, 32, 512], (512, 64, 32), "32 > 64 > 512", "64, 512, 32", ["32", "64", "512"],
                   torch.tensor([32, 64, 512])):
        result = grade("prediction", answer)
        assert result.passed and "recorded" in result.message, result.message
    assert "32 > 64 > 512" in grade("prediction", "32>64>512").message


def test_prediction_check_names_each_mistake():
    mistakes = {"exactly once": [32, 32, 512], "looks like accuracies": [98.7, 98.6, 97.9],
                "has no order": {32, 64, 512}, "not a batch size": ["small", "medium", "large"],
                "not an ordered sequence": 32}
    for words, answer in mistakes.items():
        result = grade("prediction", answer)
        assert not result.passed and words in result.message, (words, result.message)
    assert "not an ordered sequence" in grade("prediction", {32: 1, 64: 2, 512: 3}).message
    assert not grade("prediction", None).attempted
