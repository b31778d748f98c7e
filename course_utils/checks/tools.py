"""Comparisons the graders share: each raises `Mistake` with what differed."""
from __future__ import annotations

import contextlib
import hashlib
import inspect
import os
import random
import sys
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

from . import Mistake, _is_student_file, student

_NUMPY = os.path.dirname(np.__file__) + os.sep


def describe_value(value: Any) -> str:
    """A short description of an argument: an array's type, shape and dtype, anything else its short repr."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return f"{type(value).__name__} of shape {tuple(value.shape)} ({str(value.dtype).removeprefix('torch.')})"
    text = repr(value)
    return text if len(text) <= 40 else text[:39] + "…"


@contextlib.contextmanager
def calling(call: str, *args: Any, **kwargs: Any) -> Iterator[None]:
    """Name the call on any error the student's code raises inside the block, for check's message: `call` as
    it is ('conv2d_fast(image 7x9, kernel 3x3, stride=2, padding=1)'), or, given arguments, the function name
    `call` with each argument described ('softmax(Tensor of shape (4, 10) (float64))')."""
    if args or kwargs:
        described = [*map(describe_value, args), *(f"{k}={describe_value(v)}" for k, v in kwargs.items())]
        call = f"{call}({', '.join(described)})"
    try:
        yield
    except (Mistake, NotImplementedError):
        raise
    except Exception as err:
        if not isinstance(getattr(err, "student_call", None), str):
            with contextlib.suppress(AttributeError, TypeError):
                err.student_call = call
        raise


def as_tensor(value: Any, what: str) -> torch.Tensor:
    """`value` as a float64 tensor, or a Mistake saying it is not array-like."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", torch.float64)
    try:
        return torch.as_tensor(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError):
        raise Mistake(f"{what} should be a tensor, got {type(value).__name__}: {value!r:.80}") from None


def expect_shape(value: Any, shape: tuple[int, ...], what: str, hint: str = "") -> torch.Tensor:
    """Return `value` as a tensor if its shape is `shape`; else a Mistake naming both shapes."""
    t = as_tensor(value, what)
    if tuple(t.shape) != tuple(shape):
        raise Mistake(f"{what} has shape {tuple(t.shape)}, expected {tuple(shape)}.", hint)
    return t


def rel_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """Max relative error, cs231n style: |a - e| / max(1e-8, |a| + |e|)."""
    a, e = actual.double(), expected.double()
    return ((a - e).abs() / (a.abs() + e.abs()).clamp_min(1e-8)).max().item()


def expect_close(value: Any, expected: torch.Tensor, what: str, hint: str = "",
                 atol: float = 1e-5, rtol: float = 1e-4) -> float:
    """Compare `value` with `expected` (shape, then values); return the max absolute error."""
    t = expect_shape(value, tuple(expected.shape), what, hint)
    if not torch.isfinite(t).all():
        raise Mistake(f"{what} contains inf or nan.", hint)
    err = (t - expected.double()).abs().max().item() if t.numel() else 0.0
    if not torch.allclose(t, expected.double(), atol=atol, rtol=rtol):
        raise Mistake(f"{what}: off from the reference by up to {err:.3g}.", hint)
    return err


def source_of(answer: Any) -> str:
    """The source text of a student's function or class (also when the grader passes a stand-in)."""
    recorded = getattr(answer, "__dict__", {}).get("_meta", {}).get("source")
    if isinstance(recorded, str):
        return recorded
    try:
        return inspect.getsource(answer)
    except (OSError, TypeError):
        raise Mistake("the grader cannot read the source of your answer.",
                      "define it with def or class in a code cell of the notebook.") from None


class Watch(TorchFunctionMode):
    """While active: count torch and NumPy calls, name the forbidden torch functions used, count the
    student's lines run.

    `forbidden` maps a torch function (e.g. `torch.softmax`, `F.cross_entropy`, `torch.Tensor.backward`)
    to the name shown; wrappers are caught too, since the call reaches torch whatever wraps it. `lines`
    counts Python lines executed in the student's own files: a loop over pixels, in torch, NumPy or
    plain Python, runs a number of lines that grows with the input, a vectorised answer does not.
    `calls` counts torch functions and NumPy functions (each enters NumPy's Python dispatcher), so a
    loop with no Python line of its own, `np.fromiter(map(np.dot, ...))`, still grows it.
    Its counts are plain attributes, so the grader's record-and-replay carries them.
    """

    def __init__(self, forbidden: dict[Callable, str] | None = None):
        super().__init__()
        self._forbidden = forbidden or {}
        self.calls, self.lines, self.used = 0, 0, ""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        name = self._forbidden.get(func)
        if name and name not in self.used.split(", "):
            self.used = f"{self.used}, {name}" if self.used else name
        return func(*args, **(kwargs or {}))

    def _trace(self, frame, event, arg):
        """The global tracer: count NumPy's frames; trace line events only in the student's own frames."""
        if event == "call":
            filename = frame.f_code.co_filename
            if filename.startswith(_NUMPY):
                self.calls += 1
            elif _is_student_file(filename):
                return self._count_line
        return None

    def _count_line(self, frame, event, arg):
        if event == "line":
            self.lines += 1
        return self._count_line

    def __enter__(self):
        self._previous = sys.gettrace()
        sys.settrace(self._trace)
        return super().__enter__()

    def __exit__(self, *exc):
        sys.settrace(self._previous)
        return super().__exit__(*exc)


def forbid(used: str, name: str, instead: str) -> None:
    """A Mistake if the watched code used a forbidden function: `used` is `Watch.used`."""
    if used:
        raise Mistake(f"{name} calls {used}: the point of this exercise is to compute it yourself, "
                      "so a function that wraps it does not count.", instead)


def is_integer(value: Any) -> bool:
    """Whether `value` is an integer type (int, NumPy integer, one-element integer tensor), not a bool."""
    if isinstance(value, torch.Tensor):
        return value.numel() == 1 and not value.is_floating_point() and value.dtype != torch.bool
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def expect_count(value: Any, expected: int, what: str, hint: str = "") -> int:
    """`value` as an int equal to `expected`; a float (even 4.0) is a Mistake, since a count is whole."""
    if not is_integer(value):
        kind = type(value).__name__
        raise Mistake(f"{what} is a {kind} ({value!r:.40}): a count is a whole number (int).",
                      hint or "use floor division // (it rounds down) and int(), not / (it gives a float).")
    value = int(value.item()) if isinstance(value, torch.Tensor) else value
    if int(value) != expected:
        raise Mistake(f"{what} is {int(value)}, expected {expected}.", hint)
    return int(value)


def expect_choice(answer: Any, options: dict[str, str], correct: str | Iterable[str], what: str,
                  hint: str = "") -> str:
    """A multiple-choice answer: `options` maps each letter to why it is right or wrong.

    Accepts 'b', 'B' or ' b '; for several right letters (`correct` a set), a string such as 'ac' or a
    list. A wrong pick gets the explanation of each wrong option chosen, and `hint` (where to read more).
    """
    right = {correct} if isinstance(correct, str) else set(correct)
    picks = [answer] if isinstance(answer, str) and len(right) == 1 else list(answer) if isinstance(
        answer, (str, list, tuple, set)) else None
    if picks is None:
        raise Mistake(f"{what}: answer with a letter as a string, e.g. 'a'; got {type(answer).__name__}.")
    picks = {str(p).strip().lower() for p in picks if str(p).strip(" ,")}
    unknown = sorted(picks - set(options))
    if unknown:
        raise Mistake(f"{what}: {', '.join(map(repr, unknown))} is not an option; choose from "
                      f"{', '.join(sorted(options))}.")
    if picks == right:
        return options[next(iter(sorted(right)))]
    wrong = sorted(picks - right)
    why = " ".join(f"({p}) {options[p]}" for p in wrong)
    missing = "" if wrong else f" Not all the right options are picked ({len(picks)} of {len(right)})."
    raise Mistake(f"{what}: {why}{missing}".rstrip(), hint)


def grad_check(got: Any, expected: torch.Tensor, what: str, hint: str = "", threshold: float = 1e-7) -> float:
    """cs231n-style: the relative error of `got` against autograd's float64 gradient must be below `threshold`."""
    t = expect_shape(got, tuple(expected.shape), what, hint)
    err = rel_error(t, expected)
    if not err < threshold:
        raise Mistake(f"{what}: relative error {err:.2e} against autograd in float64; it should be below "
                      f"{threshold:.0e}.", hint)
    return err


def variant_seed(base: int) -> int:
    """The seed of a check's cases for the current student: `base` without a student id, else a stable hash
    (SHA-256, the same on every machine and run) of the id and `base`, so each student gets other cases."""
    sid = student()
    if not sid:
        return base
    return int.from_bytes(hashlib.sha256(f"{sid}\0{base}".encode()).digest()[:6], "big")


def case_generator(base: int) -> torch.Generator:
    """A torch generator seeded for the current student's variant of the cases numbered `base`."""
    return torch.Generator().manual_seed(variant_seed(base))


def case_random(base: int) -> random.Random:
    """A Python random generator (for sizes, strides, paddings) seeded for the current student's variant."""
    return random.Random(variant_seed(base))
