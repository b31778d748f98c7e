"""Notebook 05's modules and checks: EMA, Kalman filter, per-image smoothing, traced and warmed-up runs."""
import math
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch

from course_utils.batch_study import (images_seen, linear_warmup, loss_file_seconds, seconds_elapsed,
                                      trace_steps, train_sgd, traced_run, warmup_path)
from course_utils.checks import grade, hint, questions_for, written_for
from course_utils.model_cache import TrainConfig, cache_path
from course_utils.smoothing import (beta_for_images, ema, ema_lag, ema_per_image, kalman_local_level,
                                    noise_ratio_for_beta, steady_state_gain)
from course_utils.training import History

ROOT = Path(__file__).resolve().parent.parent


def solution_function(name: str):
    """The function `name` defined in solutions/05_batch_size_study.ipynb."""
    nb = nbformat.read(ROOT / "solutions" / "05_batch_size_study.ipynb", as_version=4)
    namespace: dict = {}
    exec("from typing import Sequence\nimport math\nimport torch\nfrom course_utils.training import History\n"
         "from course_utils.checks import grade", namespace)
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


def test_loss_file_cost_grows_with_the_steps_per_epoch_and_restarts_every_epoch():
    short, _, _ = loss_file_seconds(100, samples=3, repeats=1)
    long, per_epoch, per_call = loss_file_seconds(2000, epochs=15, samples=4, repeats=1)
    assert 0 < short < per_epoch and per_call > 0
    assert long == pytest.approx(15 * per_epoch)                  # one file per epoch: the cost repeats
    with pytest.raises(ValueError, match="steps_per_epoch >= 1"):
        loss_file_seconds(0)


def test_the_study_figures_and_speed_table_draw_each_run():
    import matplotlib.pyplot as plt
    from course_utils.batch_study import (StepTrace, plot_effective_lr, plot_equal_epochs_steps_time, plot_lr_search,
                                          plot_recipe, plot_smoothing_windows, speed_table)
    runs = {b: History(step_loss=[2.0 - 0.01 * i for i in range(steps)], test_acc=[0.9, 0.95],
                       val_acc=[0.8, 0.85], epoch_seconds=[2.0, 4.0]) for b, steps in ((32, 40), (512, 4))}
    fig = plot_recipe(runs, 0.9, 98.75, 15)
    assert len(fig.axes) == 3 and len(fig.axes[0].lines) == 2 and len(fig.axes[-1].lines) == 3
    trace = StepTrace(grad_norm=[1.0, 2.0], update_norm=[0.1, 0.2])
    assert len(plot_effective_lr({("SGD", 32): trace, ("Adadelta", 512): trace}).axes[0].lines) == 2
    assert [len(ax.lines) for ax in plot_equal_epochs_steps_time(runs, 640, 1024).axes] == [2, 2, 2]
    search = {0.1: runs[512], 0.4: runs[32]}
    line = plot_lr_search(search, 512, runs[32], "batch 32").axes[0].lines[0]
    assert line.get_xdata().tolist() == [0.1, 0.4] and line.get_ydata().tolist() == pytest.approx([85, 85])
    assert len(plot_smoothing_windows(runs, 640, 0.9, 1024).axes[0].lines) == 4
    table = speed_table(runs, {32: 10.0, 512: 2.0}, 60_000, 1.0)
    assert table.loc[32, "s/epoch, training run"] == 2.0 and table.loc[512, "images/s, this run"] == 30_000
    assert table.loc[32, "15 epochs with test evaluation, min (this run)"] == pytest.approx(15 * 11 / 60, abs=0.05)
    plt.close("all")


# --- the checks ---------------------------------------------------------------------------------------

def solution_value(name: str):
    """The value the solution sheet assigns to `name` inside its solution markers."""
    nb = nbformat.read(ROOT / "solutions" / "05_batch_size_study.ipynb", as_version=4)
    namespace: dict = {}
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.startswith("### BEGIN SOLUTION") and f"{name} =" in cell.source:
            exec(cell.source, namespace)
    return namespace[name]


def assert_mistakes(qid: str, mistakes: dict[str, object]) -> None:
    """Each answer fails `qid` with a message containing its words."""
    for words, answer in mistakes.items():
        result = grade(qid, answer)
        assert not result.passed and words in result.message, (words, result.message)


def assert_right(qid: str, answers) -> None:
    for answer in answers:
        result = grade(qid, answer)
        assert result.passed, result.message


def test_the_sheet_has_the_kinds_and_tiered_hints_it_promises():
    questions = questions_for("05_batch_size_study")
    assert len(questions) >= 6 and len({q.kind for q in questions}) >= 4
    assert 1 <= len(written_for("05_batch_size_study")) <= 2
    for q in [*questions, *written_for("05_batch_size_study")]:
        assert 2 <= len(q.hints) <= 3, q.id


def test_steps_per_epoch_accepts_integer_styles():
    assert_right("steps_per_epoch", [
        lambda n, b: -(-n // b), lambda n, b: math.ceil(n / b), lambda n, b: (n + b - 1) // b,
        lambda n, b: int(np.ceil(n / b)), lambda n, b: np.int64(len(range(0, n, b))),
        lambda n, b: torch.ceil(torch.tensor(n / b)).int(), lambda n, b: np.array(-(-n // b)),
        solution_function("steps_per_epoch")])


def test_steps_per_epoch_names_each_mistake():
    assert_mistakes("steps_per_epoch", {
        "drops the last, partial batch": lambda n, b: n // b,
        "one too many when b divides n": lambda n, b: n // b + 1,
        "rounds n / b to the nearest": lambda n, b: round(n / b),
        "swapped": lambda n, b: -(-b // n),
        "is 117.188, a fraction of a step": lambda n, b: n / b,
        "is 0, expected 1875": lambda n, b: b // n,
        "write one number": lambda n, b: str(-(-n // b))})
    as_float = grade("steps_per_epoch", lambda n, b: np.ceil(n / b))
    assert as_float.state == "part" and as_float.points == 0.5 and "right count as a float" in as_float.message


def test_partial_batch_steps_draws_a_run_per_student_whose_batches_leave_partial_ones():
    from course_utils.checks import set_student
    from course_utils.checks.batch_size import equal_images_case
    runs = {sid: equal_images_case(sid) for sid in ("", "alice", "bob")}
    assert runs[""] == {"n_images": 5683, "epochs": 5, "big_batch": 128, "small_batch": 16}
    assert len({tuple(r.values()) for r in runs.values()}) == 3
    assert all(r["n_images"] % r["small_batch"] and r["n_images"] % r["big_batch"] for r in runs.values())
    set_student("alice")
    alice = runs["alice"]
    right = alice["epochs"] * -(-alice["n_images"] // alice["small_batch"])
    assert grade("partial_batch_steps", right).passed and not grade("partial_batch_steps", 1780).passed


def test_partial_batch_steps_accepts_integer_styles():
    assert_right("partial_batch_steps", [1780, 5 * -(-5683 // 16), np.int64(1780), torch.tensor(1780),
                                         solution_value("equal_images_steps")])


def test_partial_batch_steps_names_each_mistake_without_the_count():
    mistakes = {"as if every batch of 128 were full": 5 * 45 * 8, "a fraction of a step": 5 * 5683 / 16,
                "drops each epoch's partial batch": 5 * (5683 // 16), "one stream of batches": -(-5 * 5683 // 16),
                "that is one epoch": 356, "the equal-steps comparison": 5 * 45,
                "not the number of steps": 1781, "is a float (1780.0)": 1780.0, "write one number": "1780"}
    assert_mistakes("partial_batch_steps", mistakes)
    assert all("1780" not in grade("partial_batch_steps", answer).message.replace("(1780.0)", "")
               for answer in mistakes.values() if answer != "1780")


def linear_warmup_rates(base_lr, base_batch, batch_size, warmup_steps, total_steps):
    """The rates the course's `linear_warmup` sets, read off an optimiser step by step."""
    p = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([p], lr=base_lr)
    linear_warmup(optimizer, base_lr * batch_size / base_batch, warmup_steps)
    rates = []
    for _ in range(total_steps):
        p.grad = torch.zeros(1)
        optimizer.step()
        rates.append(optimizer.param_groups[0]["lr"])
    return rates


def warmup_numpy(base_lr, base_batch, batch_size, warmup_steps, total_steps):
    t = np.arange(1, total_steps + 1)
    return base_lr + np.minimum(1, t / warmup_steps) * (base_lr * batch_size / base_batch - base_lr)


def warmup_torch(base_lr, base_batch, batch_size, warmup_steps, total_steps):
    t = torch.arange(1, total_steps + 1, dtype=torch.float32)
    start, end = torch.full_like(t, base_lr), torch.full_like(t, base_lr * batch_size / base_batch)
    return torch.lerp(start, end, (t / warmup_steps).clamp(max=1))


def test_warmup_schedule_accepts_lists_arrays_tensors_and_the_course_warmup():
    assert_right("warmup_schedule", [linear_warmup_rates, warmup_numpy, warmup_torch,
                                     solution_function("warmup_schedule")])


def schedule(scale=lambda b, b0: b / b0, start=None, frac=lambda t, w: min(1, t / w)):
    """A warm-up schedule with one of its parts replaced."""
    def answer(base_lr, base_batch, batch_size, warmup_steps, total_steps):
        target = base_lr * scale(batch_size, base_batch)
        lr0 = base_lr if start is None else start
        return [lr0 + frac(t, warmup_steps) * (target - lr0) for t in range(1, total_steps + 1)]
    return answer


def test_warmup_schedule_names_each_mistake():
    right = schedule()
    assert_mistakes("warmup_schedule", {
        "base_lr × batch_size, not scaled by the ratio": schedule(scale=lambda b, b0: b),
        "scaled the wrong way": schedule(scale=lambda b, b0: b0 / b),
        "square-root scaling": schedule(scale=lambda b, b0: (b / b0) ** 0.5),
        "never leaves base_lr": schedule(scale=lambda b, b0: 1),
        "multiplies the target by the fraction": schedule(start=0.0),
        "there is no warm-up": schedule(frac=lambda t, w: 1),
        "keeps climbing after warmup_steps": schedule(frac=lambda t, w: t / w),
        "one step late": schedule(frac=lambda t, w: min(1, (t - 1) / w)),
        "has shape (6,), expected (7,)": lambda *args: right(*args)[1:],
        "returned one number": lambda *args: right(*args)[-1],
        "the rate of step 1 is 0.26125, expected 0.2375": lambda *args: [1.1 * lr for lr in right(*args)]})


def test_prediction_check_accepts_orderings_in_several_styles():
    for answer in ([64, 32, 512], (512, 64, 32), "32 > 64 > 512", "64, 512, 32", ["32", "64", "512"],
                   torch.tensor([32, 64, 512]), np.array([64, 512, 32]), solution_value("my_prediction")):
        result = grade("prediction", answer)
        assert result.passed and "recorded" in result.message, result.message
    assert "32 > 64 > 512" in grade("prediction", "32>64>512").message


def test_prediction_check_names_each_mistake():
    assert_mistakes("prediction", {"exactly once": [32, 32, 512], "looks like accuracies": [98.7, 98.6, 97.9],
                                   "has no order": {32, 64, 512}, "not a batch size": ["small", "medium", "large"],
                                   "not an ordered sequence": 32})
    assert "not an ordered sequence" in grade("prediction", {32: 1, 64: 2, 512: 3}).message
    assert not grade("prediction", None).attempted


def test_noise_ratio_accepts_numbers_in_several_styles():
    assert_right("noise_ratio", [4, 4.0, math.sqrt(512 / 32), np.float64(4.0), torch.tensor(4.0), 3.9,
                                 solution_value("predicted_noise_ratio")])
    assert "√(512 / 32) = 4" in grade("noise_ratio", 4).message


def test_noise_ratio_explains_each_wrong_prediction_and_credits_writing_it_down():
    wrong = {"ratio of the variances": 16, "upside down: the smaller batch averages fewer": 0.25,
             "does not change the noise": 1, "upside down (and of variances)": 1 / 16,
             "not what sampling noise gives": 2}
    for words, answer in wrong.items():
        result = grade("noise_ratio", answer)
        assert result.state == "part" and result.points == 0.5 and words in result.message, result.message
        assert "√(512 / 32)" not in result.message and not re.search(r"(?<![\w.,])4(?![\w.,])", result.message)
    assert_mistakes("noise_ratio", {"is positive": 0, "write one number": "4"})
    assert grade("noise_ratio", lambda: 4).points == 0


def test_adadelta_no_gap_accepts_the_letter_in_several_styles():
    assert_right("adadelta_no_gap", ["f", "F", " f ", ["f"], solution_value("adadelta_answer")])


def test_adadelta_no_gap_explains_each_wrong_option():
    assert_mistakes("adadelta_no_gap", {
        "far less than the 16× the linear-scaling rule would ask": "a",
        "depends only on the number of images and the batch size": "b", "every training image once": "c",
        "once per epoch, for both": "d", "the task cannot explain": "e", "not an option": "g",
        "answer with a letter": 1})


def test_choose_lr_check_accepts_variants_and_names_each_mistake():
    final = lambda hs: max(sorted(hs), key=lambda lr: hs[lr].val_acc[-1])
    by_items = lambda hs: sorted(hs.items(), key=lambda kv: (-kv[1].val_acc[-1], kv[0]))[0][0]
    assert_right("choose_lr", [final, by_items, solution_function("choose_lr")])
    assert_mistakes("choose_lr", {
        "by test accuracy": lambda hs: max(hs, key=lambda lr: hs[lr].test_acc[-1]),
        "by training accuracy": lambda hs: max(hs, key=lambda lr: hs[lr].train_acc[-1]),
        "best epoch": lambda hs: max(hs, key=lambda lr: max(hs[lr].val_acc)),
        "an accuracy, not a learning rate": lambda hs: max(h.val_acc[-1] for h in hs.values()),
        "returned a History": lambda hs: hs[final(hs)],
        "does not have the highest final validation accuracy": lambda hs: min(hs, key=lambda lr: hs[lr].val_acc[-1])})


def ema_loop(values, beta=0.9):
    m, out = 0.0, []
    for t, x in enumerate(values, start=1):
        m = beta * m + (1 - beta) * x
        out.append(m / (1 - beta ** t))
    return out


def ema_weights(values, beta=0.9):
    """Vectorised in NumPy: each s_t is the normalised, geometrically weighted mean of x_1..x_t."""
    x = np.asarray(values, dtype=np.float64)
    w = beta ** np.arange(len(x))[::-1]
    return np.array([(w[len(x) - t:] * x[:t]).sum() / w[len(x) - t:].sum() for t in range(1, len(x) + 1)])


def test_ema_startup_draws_beta_per_student_and_accepts_integer_styles():
    from course_utils.checks import set_student
    from course_utils.checks.batch_size import ema_beta
    assert len({ema_beta(sid) for sid in ("alice", "bob", "carol", "dave")}) > 1 and ema_beta("") == 0.9
    assert_right("ema_startup", [44, np.int64(44), torch.tensor(44), math.ceil(math.log(0.01) / math.log(0.9)),
                                 solution_value("predicted_startup_steps")])
    beta = ema_beta("alice")
    set_student("alice")
    assert grade("ema_startup", math.ceil(math.log(0.01) / math.log(beta))).passed


def test_ema_startup_names_each_mistake_without_the_step():
    mistakes = {"off by one step": 43, "the window the EMA averages over": 10, "how far a settled EMA trails": 9,
                "leaves β out": 100, "the bias-corrected curve": 1, "ln β ≈ -(1 - β)": 47,
                "is not the first step": 30, "a step number is a whole number": 44.0, "write one number": "44"}
    assert_mistakes("ema_startup", mistakes)
    assert all(" 44" not in grade("ema_startup", answer).message for answer in mistakes.values())
    assert "off by one step" in grade("ema_startup", 45).message


def test_smooth_per_image_accepts_fixed_versions_in_several_styles():
    assert_right("smooth_per_image", [
        lambda losses, b, images=5120: ema_loop(losses, 1 - b / images),
        lambda losses, b, images=5120: ema_weights(losses, 1 - b / images),
        lambda losses, b, images=5120: ema(losses, 1 - b / images), ema_per_image,
        solution_function("smooth_per_image")])


def test_smooth_per_image_names_each_bug_left():
    reported = solution_function("reported_smoothing")
    uncorrected = lambda losses, beta: [m * (1 - beta ** t) for t, m in enumerate(ema_loop(losses, beta), start=1)]
    assert_mistakes("smooth_per_image", {
        "both reported bugs are still there": reported,
        "still not bias-corrected": lambda losses, b, images=5120: uncorrected(losses, 1 - b / images),
        "the window must count images": lambda losses, b, images=5120: ema(losses, 1 - 1 / images),
        "β and 1 − β are swapped": lambda losses, b, images=5120: ema(losses, b / images),
        "has shape (59,), expected (60,)": lambda losses, b, images=5120: ema(losses, 1 - b / images)[1:],
        "off from the reference": lambda losses, b, images=5120: ema(losses, 1 - b / images / 2)})


def kalman_window(q, r, batch_size):
    lam = q / r
    return batch_size * 2 / (-lam + math.sqrt(lam * lam + 4 * lam))


def test_kalman_window_images_draws_a_filter_per_student_and_accepts_close_numbers():
    from course_utils.checks import set_student
    from course_utils.checks.batch_size import kalman_case
    assert kalman_case("") == {"q": 2e-4, "r": 0.05, "batch_size": 64}
    assert_right("kalman_window_images", [kalman_window(2e-4, 0.05, 64), 1044, np.float64(1040), torch.tensor(1050.0),
                                          solution_value("kalman_images")])
    alice = kalman_case("alice")
    set_student("alice")
    assert grade("kalman_window_images", kalman_window(**alice)).passed
    assert not grade("kalman_window_images", 1044).passed


def test_kalman_window_images_names_each_mistake_without_the_window():
    k = steady_state_gain(2e-4, 0.05)
    mistakes = {"the window in steps": 1 / k, "takes the gain k for β": 64 / (1 - k), "multiplies by the gain": 64 * k,
                "how far a settled EMA trails": 64 * (1 - k) / k, "λ = q / r is not the gain": 64 / 0.004,
                "k ≈ √λ is only an approximation": 64 / math.sqrt(0.004),
                "not the number of images": 500, "write one number": "1044"}
    assert_mistakes("kalman_window_images", mistakes)
    assert all("1044" not in grade("kalman_window_images", a).message for a in mistakes.values() if a != "1044")


def test_hints_come_one_tier_at_a_time_and_the_formula_only_in_the_solution(capsys):
    from course_utils.checks import _HINTS_SHOWN, solution
    _HINTS_SHOWN.pop("steps_per_epoch", None)
    first, second = (hint("steps_per_epoch") for _ in range(2))
    assert "HINT 1/2" in first and "ceil" not in first + second and "last hint" in second
    assert "-(-n // b)" in solution("steps_per_epoch")


def test_written_question_is_recorded_for_the_instructor():
    result = grade("report_both_98_75", None)
    assert result.written and "graded by hand" in result.message
