"""Questions of notebook 05 (batch-size study): steps per epoch, equal images in steps when the batches leave
partial ones, the linear-scaling rule with its warm-up, three predictions written down before the cell that
measures them, why Adadelta shows no gap, a learning-rate search on validation data, a per-image smoothing to
fix, and the images the report's settled Kalman filter averages over. Drawn cases: `equal_images_case`,
`ema_beta` and `kalman_case` give the sheet the values its checks draw for a student id."""
import copy
import math
import re

import numpy as np
import torch

from ..smoothing import ema as ema_reference
from ..smoothing import ema_per_image, steady_state_gain
from ..training import History
from . import Mistake, question, set_student, student, written_question
from .tools import case_generator, case_random
from .tools import as_tensor, expect_choice, expect_close, expect_count, expect_shape

NOTEBOOK = "05_batch_size_study"
# the lecture sections the answers point to, by title
REPORT_RUN = "the lecture's section “The report's experiment, as it was run”"
ADADELTA_BOOST = "the lecture's section “Does Adadelta close the gap by itself?”"


def _number(value, what: str) -> float:
    """`value` (int, float, NumPy or one-element tensor) as a float, or a Mistake saying it is not a number."""
    if isinstance(value, np.ndarray) and value.size == 1 or isinstance(value, torch.Tensor) and value.numel() == 1:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise Mistake(f"{what} is a {type(value).__name__} ({value!r:.40}); write one number.")
    return float(value)


def _is_whole_number_type(value) -> bool:
    """Whether `value` is an integer type (int, NumPy integer, integer tensor), not a float that happens to be whole."""
    if isinstance(value, torch.Tensor):
        return not value.is_floating_point()
    if isinstance(value, np.ndarray):
        return np.issubdtype(value.dtype, np.integer)
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


# --- steps per epoch ---------------------------------------------------------------------------------

STEP_CASES = ((60_000, 32), (60_000, 512), (10_000, 512), (1_000, 64), (70, 32), (512, 512), (100, 512), (1, 1))


def _step_cases() -> tuple[tuple[int, int], ...]:
    """The designed cases and two drawn for the student: a batch size that does not divide n, and one that does."""
    r = case_random(30)
    b = r.choice((16, 32, 50, 64, 100, 128, 256, 500, 512))
    n = r.randrange(b + 1, 70_000)
    n += n % b == 0                                     # a partial last batch
    return STEP_CASES + ((n, b), (b * r.randrange(2, 200), b))


def _steps_mistakes(cases) -> dict[str, list[int]]:
    """What common wrong counts give on `cases`, keyed by the message that names the mistake."""
    return {"drops the last, partial batch (as DataLoader(drop_last=True) would): an epoch also trains on "
            "the images left over when b does not divide n.": [n // b for n, b in cases],
            "is one too many when b divides n: 512 images in batches of 512 are one step, not two.":
                [n // b + 1 for n, b in cases],
            "rounds n / b to the nearest whole number: a leftover of a few images still needs a step of "
            "its own.": [round(n / b) for n, b in cases],
            "has n and b swapped: steps_per_epoch(n_images, batch_size).": [-(-b // n) for n, b in cases]}


@question("steps_per_epoch", NOTEBOOK, kind="implement", hints=(
        "An epoch trains on every image once; count the batches, and look at what happens to the images "
        "left over when the batch size does not divide n.",
        "The last batch may be partial, and it still costs one step. n / b gives a float: a count is an int."),
    reveal="ceil(n / b): math.ceil(n / b), or in integers -(-n // b) or (n + b - 1) // b.")
def check_steps_per_epoch(steps_per_epoch) -> str:
    cases = _step_cases()
    want = [-(-n // b) for n, b in cases]
    mistakes = _steps_mistakes(cases)
    got = [steps_per_epoch(n, b) for n, b in cases]
    numbers = [_number(g, f"steps_per_epoch({n}, {b})") for g, (n, b) in zip(got, cases)]
    floats = [i for i, g in enumerate(got) if not _is_whole_number_type(g)]
    if floats and numbers == want:
        n, b = cases[floats[0]]
        raise Mistake(f"steps_per_epoch({n}, {b}) is the right count as a float ({numbers[floats[0]]!r}): "
                      "np.ceil, torch.ceil and / give floats, and a count is an int.",
                      "wrap it in int(...), or count with integers only.", earned=0.5, credit="the right counts")
    for message, wrong in mistakes.items():
        if numbers == wrong:
            raise Mistake(f"your count {message}", "see hint('steps_per_epoch').")
    fractions = [i for i, v in enumerate(numbers) if v != round(v)]
    if fractions:
        n, b = cases[fractions[0]]
        raise Mistake(f"steps_per_epoch({n}, {b}) is {numbers[fractions[0]]:g}, a fraction of a step: the optimiser "
                      "takes whole steps, and a count is an int.", "see hint('steps_per_epoch').")
    for g, w, (n, b) in zip(got, want, cases):
        expect_count(g.item() if isinstance(g, np.ndarray) else g, w, f"steps_per_epoch({n}, {b})",
                     "see hint('steps_per_epoch').")
    return (f"steps per epoch right on {len(cases)} cases, with a partial last batch where b does not divide n: "
            "60,000 images take 1,875 steps at batch 32 and 118 at batch 512 (117 full and one of 96).")


# --- equal images, in steps, when the batches do not divide the images --------------------------------------

def equal_images_case(student_id: str = "") -> dict[str, int]:
    """The run drawn for `student_id` in exercise partial_batch_steps: n_images, epochs, big and small batch."""
    set_student(student_id)
    return _equal_images_case()


def _equal_images_case() -> dict[str, int]:
    r = case_random(31)
    while True:
        small = r.choice((16, 32, 64))
        big, n, epochs = small * r.choice((4, 8, 16)), r.randrange(2_000, 20_000), r.randrange(2, 7)
        left = n % small                               # each epoch's partial batch of the small size
        if 0 < left <= small // 2 and -(-n // big) * big - n >= small:
            return {"n_images": n, "epochs": epochs, "big_batch": big, "small_batch": small}


def _partial_mistakes(n: int, epochs: int, big: int, small: int) -> dict[float, str]:
    """What common wrong counts give for the drawn run, keyed by the count."""
    named = {
        epochs * -(-n // big) * big / small: f"that scales batch {big}'s steps by {big} / {small}, as if every batch "
            f"of {big} were full; the last batch of each epoch holds only the images left over, at either size.",
        epochs * n / small: "that counts images / batch size as if a fraction of a step existed; a partial batch "
            "still takes a whole step.",
        epochs * (n // small): "that drops each epoch's partial batch: its images are trained on too.",
        round(epochs * n / small): "that rounds images / batch size to the nearest whole number; a partial batch "
            "still takes a whole step.",
        -(-epochs * n // small): "that runs the epochs together as one stream of batches; each epoch starts "
            "afresh from the first image, so each epoch ends with a partial batch of its own.",
        -(-n // small): f"that is one epoch; the run is {epochs} epochs.",
        epochs * -(-n // big): f"that is batch {big}'s number of steps, the equal-steps comparison; at equal images "
            "the small batch takes more steps."}
    right = epochs * -(-n // small)
    return {value: why for value, why in named.items() if not math.isclose(value, right)}


@question("partial_batch_steps", NOTEBOOK, answer_name="equal_images_steps", kind="concept", hints=(
        "Equal images seen means both runs train on the same number of images in all. Your run is whole epochs "
        "at the big batch: how many images is that, and how does an epoch at the small batch end?",
        "Batch sizes that do not divide the images leave a partial last batch in every epoch, at both sizes: so "
        "the ratio of the batch sizes does not convert one run's steps into the other's. Count the small "
        "batch's steps epoch by epoch, with your steps_per_epoch."),
    reveal="epochs × steps_per_epoch(n_images, small_batch), i.e. epochs × ceil(n_images / small_batch): the "
    "same epochs are the same images, and each epoch ends with its own partial batch.")
def check_partial_batch_steps(equal_images_steps) -> str:
    case = _equal_images_case()
    n, epochs, big, small = case.values()
    want = epochs * -(-n // small)
    number = _number(equal_images_steps, "equal_images_steps")
    run = f"{epochs} epochs of {n:,} images"
    for wrong, why in _partial_mistakes(n, epochs, big, small).items():
        if math.isclose(number, wrong, rel_tol=1e-9):
            raise Mistake(f"equal_images_steps = {number:g} for {run}: {why}", "see hint('partial_batch_steps').")
    if number != want:
        raise Mistake(f"equal_images_steps = {number:g} steps of batch {small} for {run} at batch {big}: that is "
                      "not the number of steps that sees as many images.", "see hint('partial_batch_steps').")
    expect_count(equal_images_steps.item() if isinstance(equal_images_steps, np.ndarray) else equal_images_steps,
                 want, "equal_images_steps", "write the count as an int, without a decimal point.")
    return (f"{want:,} steps of batch {small}: {epochs} epochs of {-(-n // small)} steps, each ending on a partial "
            f"batch of {n % small} images, see as many images as batch {big}'s {epochs * -(-n // big)} steps; "
            f"not {big // small} times as many steps, since batch {big}'s partial batches are partial too.")


# --- predictions -------------------------------------------------------------------------------------------

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


@question("prediction", NOTEBOOK, answer_name="my_prediction", kind="predict", hints=(
        "Same epochs, same rate, same seed: what differs between the three runs is the number of steps each "
        "takes and how noisy each step is.",
        "Use steps_per_epoch: how many updates does each batch size make in one epoch, and how far does each "
        "update move the weights at a fixed learning rate?"),
    reveal="Any order of 32, 64 and 512 written down before the run earns the point. The reasoning: at one fixed"
    " rate steps_per_epoch(n, 32) is about 16 * steps_per_epoch(n, 512), so after the same epochs the small "
    "batches have made many more updates and moved further; the next cell measures the order.")
def check_prediction(my_prediction) -> str:
    order = parse_ordering(my_prediction() if callable(my_prediction) else my_prediction)
    return (f"prediction recorded: {' > '.join(map(str, order))} (best first). It is graded for being "
            "written down, not for being right: run the next cell and compare.")


@question("noise_ratio", NOTEBOOK, answer_name="predicted_noise_ratio", kind="predict", hints=(
        "A step's loss is the mean of the losses of the batch's images. How does the spread of a mean depend on "
        "how many values it averages?",
        "The variance of a mean of b independent values is σ² / b; the question asks for a ratio of standard "
        "deviations, not of variances."),
    reveal="std₃₂ / std₅₁₂ = (σ / √32) / (σ / √512) = √(512 / 32) = √16 = 4.")
def check_noise_ratio(predicted_noise_ratio) -> str:
    truth = math.sqrt(512 / 32)
    number = _number(predicted_noise_ratio, "predicted_noise_ratio")
    if not number > 0:
        raise Mistake(f"predicted_noise_ratio is {number:g}: a ratio of two standard deviations is positive.",
                      "see hint('noise_ratio').")
    why = ("a batch's loss is the mean of b per-image losses, so its standard deviation is σ / √b: batch 32's "
           f"is √(512 / 32) = {truth:g} times batch 512's")
    if abs(number - truth) <= 0.1 * truth:
        return f"right: {why}. The next cell measures it."
    named = {16.0: "16 is the ratio of the variances (σ² / b); the question asks for the standard deviations.",
             1.0: "1 says the batch size does not change the noise; but a larger batch averages more images.",
             1 / truth: "that has the ratio upside down: the smaller batch averages fewer images, so it is the noisier.",
             1 / 16: "that has the ratio upside down (and of variances): the smaller batch is the noisier."}
    wrong = next((w for v, w in named.items() if math.isclose(number, v, rel_tol=0.05)), "")
    raise Mistake(f"predicted {number:g}: {wrong or 'not what sampling noise gives.'} The next cell measures it.",
                  "see hint('noise_ratio').", earned=0.5, credit="a prediction written down before the run")


ADADELTA_OPTIONS = {
    "a": "Adadelta does give batch 512's averaged, less noisy gradient a larger effective rate |Δθ| / |g|, but "
         f"{ADADELTA_BOOST} measures by how much: far less than the 16× the linear-scaling rule would ask (even less "
         "than the 4× of square-root scaling), so batch 512's steps are not 16 times larger and its 16 times fewer "
         f"steps do not cover the same ground ({REPORT_RUN} prints whether it trails epoch by epoch).",
    "b": "the number of steps per epoch depends only on the number of images and the batch size, whatever the "
         "optimiser: Adadelta takes 118 steps at batch 512, like SGD.",
    "c": "an epoch is every training image once, for any batch size: both see 60,000 images per epoch.",
    "d": "StepLR multiplies the rate by 0.7 once per epoch, for both batch sizes alike: it does not depend on the "
         "number of steps.",
    "e": "MNIST is the same task for both optimisers, yet plain SGD at a fixed rate does show a gap; the task "
         "cannot explain why only one of them does.",
    "f": "right: Adadelta's effective rate |Δθ| / |g| is larger for batch 512's less noisy gradients, but by far "
         f"less than 16× ({ADADELTA_BOOST} measures the ratio on a one-epoch trace at a constant rate), so "
         "the boost alone "
         f"does not close the gap ({REPORT_RUN} prints whether batch 512 trails epoch by epoch). The rest of the "
         "report's equal figures would need both runs to converge over its 15 epochs of a shrinking StepLR rate "
         "(not shown by the default 6; epochs = 15 runs them).",
}


@question("adadelta_no_gap", NOTEBOOK, answer_name="adadelta_answer", kind="concept", hints=(
        "Both optimisers see the same images and take the same number of steps per epoch; what differs is how "
        "big each step is.",
        f"{ADADELTA_BOOST[0].upper() + ADADELTA_BOOST[1:]} prints the ratio of Adadelta's effective rates "
        "|Δθ| / |g|, batch 512 over "
        "batch 32: compare it with the 16× that would make 16 times fewer steps cover the same ground. "
        f"{REPORT_RUN[0].upper() + REPORT_RUN[1:]} prints the test accuracy after every epoch: when do the two "
        "batch sizes meet?"),
    reveal="(f): Adadelta's effective rate |Δθ| / |g| grows for batch 512's less noisy gradients, but by far "
    f"less than 16× ({ADADELTA_BOOST}), a partial boost that does not close the gap by itself; the report's equal "
    "figures would need both runs to converge over its 15 epochs of a shrinking StepLR rate, a part the "
    "default 6 epochs do not show (epochs = 15 runs it).")
def check_adadelta_no_gap(adadelta_answer) -> str:
    return expect_choice(adadelta_answer, ADADELTA_OPTIONS, "f", "adadelta_answer")


# --- the linear-scaling rule with a gradual warm-up -------------------------------------------------------

WARMUP_CASES = ((0.05, 32, 512, 4, 7), (0.1, 256, 1024, 5, 8), (0.01, 64, 512, 10, 12), (0.05, 32, 32, 3, 5))


def _warmup_cases() -> tuple[tuple, ...]:
    """The designed cases and one drawn for the student (a one-step warm-up among the draws)."""
    r = case_random(34)
    base, warmup = r.choice((16, 32, 64, 128)), r.randrange(1, 10)
    drawn = (r.choice((0.01, 0.02, 0.05, 0.1)), base, base * r.choice((2, 4, 8, 16)), warmup, warmup + r.randrange(2, 6))
    return WARMUP_CASES + (drawn,)


def _schedule(base_lr, base_batch, batch_size, warmup_steps, total_steps, scale=None, frac=None, start=None):
    """A per-step schedule; `scale`, `frac` and `start` replace the rule's parts to build the named mistakes."""
    target = base_lr * (scale(batch_size, base_batch) if scale else batch_size / base_batch)
    lr0 = base_lr if start is None else start(target)
    fraction = frac or (lambda t, w: min(1.0, t / w))
    return torch.tensor([lr0 + fraction(t, warmup_steps) * (target - lr0) for t in range(1, total_steps + 1)],
                        dtype=torch.float64)


_WARMUP_MISTAKES = {
    "the target rate is base_lr × batch_size, not scaled by the ratio of the batch sizes: batch 512 from a "
    "base batch of 32 should get 16 times the rate, not 512 times.": dict(scale=lambda b, b0: b),
    "the rate is scaled the wrong way: a larger batch must get a larger rate.": dict(scale=lambda b, b0: b0 / b),
    "that is square-root scaling (√k); the rule of Goyal et al. is linear in k.": dict(scale=lambda b, b0: (b / b0) ** 0.5),
    "the rate never leaves base_lr: the larger batch is not scaled up.": dict(scale=lambda b, b0: 1.0),
    "your warm-up multiplies the target by the fraction of warm-up done, so it starts near 0; the warm-up "
    "climbs from base_lr to the scaled rate.": dict(start=lambda target: 0.0),
    "there is no warm-up: every step already runs at the scaled rate.": dict(frac=lambda t, w: 1.0),
    "the rate keeps climbing after warmup_steps: it should hold at the scaled rate from there on.":
        dict(frac=lambda t, w: t / w),
    "your warm-up is one step late: the first step runs at base_lr itself and the scaled rate is reached at "
    "step warmup_steps + 1; count steps from 1, as linear_warmup does.": dict(frac=lambda t, w: min(1.0, (t - 1) / w)),
}


def _as_schedule(value, what: str) -> torch.Tensor:
    """A returned schedule (list, tuple, NumPy array or tensor) as a float64 tensor."""
    if isinstance(value, (int, float, np.number)) or isinstance(value, torch.Tensor) and value.dim() == 0:
        raise Mistake(f"{what} returned one number; return one learning rate per step, total_steps of them.")
    return as_tensor(value, what)


@question("warmup_schedule", NOTEBOOK, kind="implement", hints=(
        "Two parts: the rate a batch of batch_size should end at (the linear-scaling rule, relative to "
        "base_batch), and how the first warmup_steps steps get there from base_lr.",
        "Look at the first and the last warm-up step of your schedule: where does it start, where does it stop "
        "climbing, and is the end rate scaled by the ratio of the batch sizes? Compare with linear_warmup in "
        "the lecture, which counts steps from 1."),
    reveal="lr_t = η + min(1, t / warmup_steps) · (kη − η) for t = 1, …, total_steps.")
def check_warmup_schedule(warmup_schedule) -> str:
    cases = _warmup_cases()
    wants = [_schedule(*case) for case in cases]
    mistakes = [{m: _schedule(*case, **parts) for m, parts in _WARMUP_MISTAKES.items()} for case in cases]
    for case, want, wrong in zip(cases, wants, mistakes):
        what = "warmup_schedule({}, {}, {}, {}, {})".format(*case)
        got = _as_schedule(warmup_schedule(*case), what)
        expect_shape(got, tuple(want.shape), what, "one rate per step: total_steps values, warm-up included.")
        if torch.allclose(got, want, rtol=1e-5, atol=1e-9):
            continue
        for message, schedule in wrong.items():
            if torch.allclose(got, schedule, rtol=1e-5, atol=1e-9):
                raise Mistake(f"{what}: {message}", "see hint('warmup_schedule').")
        first = int((~torch.isclose(got, want, rtol=1e-5, atol=1e-9)).nonzero()[0])
        raise Mistake(f"{what}: the rate of step {first + 1} is {got[first].item():.6g}, expected {want[first].item():.6g}.",
                      "see hint('warmup_schedule').")
    return ("linear scaling with a gradual warm-up, as Goyal et al.: batch 512 from a base of 32 at 0.05 climbs "
            "0.2375, 0.425, 0.6125 and holds at 0.8 from step 4; the same batch size keeps its rate.")


# --- choosing the learning rate -------------------------------------------------------------------------------

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


@question("choose_lr", NOTEBOOK, kind="implement", hints=(
        "Which of the three splits may a choice look at, and which epoch's model is the one you keep?",
        "The test set is scored once, after the choice; training accuracy rewards memorising; the model kept is "
        "the one after the last epoch."),
    reveal="return max(histories, key=lambda lr: histories[lr].val_acc[-1])")
def check_choose_lr(choose_lr) -> str:
    for histories, want in _choice_cases():
        got = choose_lr(copy.deepcopy(histories))
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
            raise Mistake(f"you chose lr {got:g} by test accuracy: the test set is scored once, after the "
                          "choice, or its figure is no longer an honest estimate.", "see hint('choose_lr').")
        if got == by(lambda h: h.train_acc[-1]):
            raise Mistake(f"you chose lr {got:g} by training accuracy, which rewards memorising.",
                          "see hint('choose_lr').")
        if got == by(lambda h: max(h.val_acc)):
            raise Mistake(f"you chose lr {got:g} by its best epoch, but the model you keep is the one after "
                          "the last epoch.", "see hint('choose_lr').")
        raise Mistake(f"choose_lr chose {got:g}, which does not have the highest final validation accuracy.",
                      "see hint('choose_lr').")
    return "choose_lr picks the rate with the highest final validation accuracy, not the test, training or best-epoch one."


# --- smoothing ---------------------------------------------------------------------------------------------

def _uncorrected(values: torch.Tensor, beta: float) -> torch.Tensor:
    out, m = torch.empty_like(values), 0.0
    for t, v in enumerate(values.tolist()):
        m = beta * m + (1 - beta) * v
        out[t] = m
    return out


def ema_beta(student_id: str = "") -> float:
    """The smoothing factor drawn for `student_id` in exercise ema_startup."""
    set_student(student_id)
    return _ema_beta()


def _ema_beta() -> float:
    if not student():
        return 0.9
    r = case_random(32)
    while True:
        beta = r.randrange(75, 99) / 100
        exact = math.log(0.01) / math.log(beta)
        if abs(exact - round(exact)) > 1e-6:            # no step sits on the 99 % line itself
            return beta


def _startup_steps(beta: float) -> int:
    """The first step t at which the uncorrected EMA of a constant reaches 99 % of it: 1 - beta^t >= 0.99."""
    return next(t for t in range(1, 10_000) if 1 - beta ** t >= 0.99)


def _startup_mistakes(beta: float) -> dict[float, str]:
    """What common wrong predictions give for `beta`, keyed by the value (those that differ from the truth)."""
    window = 1 / (1 - beta)
    truth = _startup_steps(beta)
    off_by_one = ("off by one step: m_1 = (1 - β) L is step 1, and the answer is the first step at which the "
                  "weights given to the loss sum to at least 99 %.")
    named = {truth - 1: off_by_one, truth + 1: off_by_one,
             window: "1 / (1 - β) is the window the EMA averages over; after that many steps the weights sum to "
                     "about 1 - 1/e, some 63 %, not 99 %.",
             round(window): "1 / (1 - β), rounded, is the window the EMA averages over; after that many steps the "
                            "weights sum to about 1 - 1/e, some 63 %, not 99 %.",
             beta / (1 - beta): "β / (1 - β) is how far a settled EMA trails a falling line, not its start-up.",
             100: "1 / 0.01 leaves β out; how fast the start-up fades depends on β.",
             1: "that is the bias-corrected curve s_t, which equals the loss from the first step; the question "
                "asks about the uncorrected m_t.",
             math.ceil(math.log(100) * window): "ln β ≈ -(1 - β) is an approximation, and not close enough here: "
                                                "take the logarithm of β itself.",
             round(math.log(100) * window): "ln β ≈ -(1 - β) is an approximation, and not close enough here: take "
                                            "the logarithm of β itself."}
    return {v: why for v, why in named.items() if not math.isclose(v, truth)}


@question("ema_startup", NOTEBOOK, answer_name="predicted_startup_steps", kind="predict", hints=(
        "On a constant loss L, write out m_1, m_2 and m_3 of the uncorrected EMA: what fraction of L is m_t?",
        "That fraction is the sum of the weights the EMA has given so far, a geometric series in β; set it to at "
        "least 0.99 and solve for the first whole t (a logarithm, or a loop)."),
    reveal="m_t = (1 - β^t) L, so t is the first step with β^t <= 0.01: t = ceil(ln(0.01) / ln(β)) (44 for "
    "β = 0.9).")
def check_ema_startup(predicted_startup_steps) -> str:
    beta = _ema_beta()
    truth = _startup_steps(beta)
    number = _number(predicted_startup_steps, "predicted_startup_steps")
    for wrong, why in _startup_mistakes(beta).items():
        if math.isclose(number, wrong, rel_tol=1e-9):
            raise Mistake(f"predicted_startup_steps = {number:g} for β = {beta}: {why} The cell after this check "
                          "measures it.", "see hint('ema_startup').")
    if number != truth:
        raise Mistake(f"predicted_startup_steps = {number:g} for β = {beta} is not the first step at which m_t "
                      "reaches 99 % of the loss. The cell after this check measures it.", "see hint('ema_startup').")
    expect_count(predicted_startup_steps.item() if isinstance(predicted_startup_steps, np.ndarray)
                 else predicted_startup_steps, truth, "predicted_startup_steps", "a step number is a whole number.")
    return (f"step {truth} for β = {beta}: m_t = (1 - β^t) L, and β^t first drops to 0.01 there; the bias "
            "correction divides by exactly that 1 - β^t, so s_t equals L from the first step.")


SMOOTHING_CASES = ((32, 320), (512, 5120), (64, 1024), (1, 2))


def _smoothing_mistakes(losses: torch.Tensor, b: int, images: int) -> dict[str, torch.Tensor]:
    """What the reported code and its half-fixed versions give, keyed by the message that names the mistake."""
    per_step, per_image = 1 - 1 / images, 1 - b / images
    return {"both reported bugs are still there: the window counts steps, not images, and the curve is not "
            "bias-corrected.": _uncorrected(losses, per_step),
            "the window is right now, but the curve is still not bias-corrected: it starts near zero, not at the "
            "first loss.": _uncorrected(losses, per_image),
            "bias-corrected now, but β still averages over `images` steps, that is batch_size × images "
            "images: the window must count images.": ema_reference(losses, per_step),
            "β and 1 − β are swapped: a β close to 0 barely smooths at all.": ema_reference(losses, b / images)}


@question("smooth_per_image", NOTEBOOK, kind="debug", hints=(
        "Run the check on `reported_smoothing` and compare its first value with the first loss; then ask how "
        "many images the EMA averages over at batch 32 and at batch 512.",
        "Two things are wrong: the window is counted in steps where it should count images (how many images "
        "does one step hold?), and the start of the curve is pulled towards zero (exercise `ema` met the same "
        "problem)."),
    reveal="beta = 1 − batch_size / images, and s_t = m_t / (1 − β^t) (or call the `ema` you wrote).")
def check_smooth_per_image(smooth_per_image) -> str:
    g, r = case_generator(7), case_random(35)
    b = r.choice((8, 16, 32, 64, 128))
    drawn = ((b, b * r.randrange(3, 40)),)                  # a batch size and a window drawn for the student
    cases = [(1.5 * torch.exp(-torch.arange(60.0, dtype=torch.float64) / 25)
              + 0.2 * torch.rand(60, generator=g, dtype=torch.float64), b, images) for b, images in SMOOTHING_CASES + drawn]
    refs = [(ema_per_image(x, b, images), _smoothing_mistakes(x, b, images)) for x, b, images in cases]
    for (losses, b, images), (want, wrong) in zip(cases, refs):
        what = f"smooth_per_image(losses, batch_size={b}, images={images})"
        got = expect_shape(smooth_per_image(losses.tolist(), b, images), tuple(want.shape), what,
                           "one smoothed value per step.")
        if torch.allclose(got, want, rtol=1e-5, atol=1e-9):
            continue
        for message, curve in wrong.items():
            if torch.allclose(got, curve, rtol=1e-5, atol=1e-9):
                raise Mistake(f"{what}: {message}", "see hint('smooth_per_image').")
        expect_close(got, want, what, "see hint('smooth_per_image').", rtol=1e-5)
    return ("both bugs fixed: bias-corrected, and the window counts images (β = 0.9 at batch 32 over 320 images, "
            "as at batch 512 over 5,120), so curves of different batch sizes are smoothed alike.")


def kalman_case(student_id: str = "") -> dict[str, float]:
    """The filter drawn for `student_id` in exercise kalman_window_images: q, r and the batch size."""
    set_student(student_id)
    return _kalman_case()


def _kalman_case() -> dict[str, float]:
    if not student():
        return {"q": 2e-4, "r": 0.05, "batch_size": 64}
    r = case_random(33)
    while True:
        noise, batch = r.choice((0.01, 0.02, 0.05, 0.1, 0.2)), r.choice((16, 32, 64, 128, 256, 512))
        k = r.uniform(0.02, 0.4)
        q = float(f"{k * k / (1 - k) * noise:.2g}")       # two significant digits, as printed
        case = {"q": q, "r": noise, "batch_size": batch}
        values = [v for v in _kalman_mistakes(**case)] + [batch / steady_state_gain(q, noise)]
        if min(abs(a / b - 1) for i, a in enumerate(values) for b in values[i + 1:]) > 0.03:
            return case


def _kalman_mistakes(q: float, r: float, batch_size: int) -> dict[float, str]:
    """What common wrong windows give for (q, r, batch_size), keyed by the value."""
    k, lam = steady_state_gain(q, r), q / r
    return {1 / k: "that is the window in steps; the question asks for images, and each step averages a batch.",
            batch_size / (1 - k): "that takes the gain k for β: the settled update is (1 - k) s + k x, an EMA with "
                                  "β = 1 - k.",
            batch_size * k: "that multiplies by the gain; an EMA with a small gain averages over many steps.",
            batch_size * (1 - k) / k: "that is β / (1 - β) in images: how far a settled EMA trails a falling "
                                      "line, not how many images it averages.",
            batch_size / lam: "λ = q / r is not the gain: the gain solves k² = λ (1 - k).",
            batch_size / math.sqrt(lam): "k ≈ √λ is only an approximation, and not close enough here: solve "
                                         "k² = λ (1 - k)."}


@question("kalman_window_images", NOTEBOOK, answer_name="kalman_images", kind="concept", hints=(
        "Once its gain k has settled, what is the Kalman filter's update s ← s + k (x − s)? The lecture's "
        "section on smoothing rewrites it as an EMA: with which β?",
        "An EMA with factor β averages about 1 / (1 − β) steps, and each step is one batch. The settled gain "
        "comes from the fixed point of the variance lines, with λ = q / r."),
    reveal="k = (−λ + √(λ² + 4λ)) / 2 with λ = q / r; the settled filter is the EMA with β = 1 − k, which "
    "averages "
    "1 / k steps, that is batch_size / k images.")
def check_kalman_window_images(kalman_images) -> str:
    case = _kalman_case()
    q, r, batch = case.values()
    k = steady_state_gain(q, r)
    number = _number(kalman_images, "kalman_images")
    said = f"kalman_images = {number:g} for q = {q:g}, r = {r:g}, batch {batch}"
    if math.isclose(number, batch / k, rel_tol=0.01):
        return (f"{batch / k:,.0f} images: the gain settles at k = {k:.4f}, the filter is then the EMA with "
                f"β = {1 - k:.4f}, averaging 1 / k = {1 / k:.1f} steps of {batch} images.")
    for wrong, why in _kalman_mistakes(q, r, batch).items():
        if math.isclose(number, wrong, rel_tol=0.01):
            raise Mistake(f"{said}: {why}", "see hint('kalman_window_images').")
    raise Mistake(f"{said}: not the number of images the settled filter averages over.",
                  "see hint('kalman_window_images').")


written_question("report_both_98_75", NOTEBOOK, hints=(
    "Which optimiser and schedule did the report use? The lecture measures by how much that optimiser raises "
    "its step for a large batch, in the section that asks whether it closes the gap by itself.",
    f"Also: does {REPORT_RUN} show the two batch sizes level at every epoch, and which noise separates two runs "
    "scored on the same 10,000 test digits?"),
    reveal="The report used Adadelta with StepLR, which raises its effective step for the large batch's less "
    f"noisy gradients ({ADADELTA_BOOST} measures by how much: far less than 16×), a partial boost, so batch 512 can "
    "trail during training (the lecture prints the report's run epoch by epoch); the equal figure would need both "
    "runs to converge over the report's 15 epochs of a shrinking rate, which the lecture's default 6 epochs do not "
    "show; two runs scored on the same 10,000 digits "
    "also differ by seed noise, so one equal final figure does not show that batch size does not matter.")
