"""Notebook 01: the conv2d references, classic kernels, receptive fields, the explorer, and every check."""
import ast
import itertools
import math
from pathlib import Path

import matplotlib
import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import kernels
from course_utils.checks import NOT_ATTEMPTED, grade, questions_for, written_for
from course_utils.data import to_pixels

matplotlib.use("Agg")
LECTURE = Path(__file__).resolve().parent.parent / "notebooks" / "01_convolution_kernels.ipynb"
CASES = [(6, 7, 3, 1, 0), (7, 5, 3, 1, 1), (9, 8, 3, 2, 0), (10, 11, 5, 3, 2), (28, 28, 5, 1, 2), (12, 9, 2, 2, 1)]


def lecture_function(name: str):
    """The function `name` as defined in the lecture notebook (its `def` alone, executed)."""
    cell = next(c for c in nbformat.read(LECTURE, as_version=4).cells
                if c.cell_type == "code" and f"def {name}(" in c.source)
    node = next(n for n in ast.parse(cell.source).body if isinstance(n, ast.FunctionDef) and n.name == name)
    namespace = {"torch": torch, "F": F}
    exec(compile(ast.Module([node], type_ignores=[]), str(LECTURE), "exec"), namespace)
    return namespace[name]


def reference_conv(image, kernel, stride, padding):
    return F.conv2d(image[None, None], kernel[None, None], stride=stride, padding=padding)[0, 0]


# ---------------------------------------------------------------- the module's references

@pytest.mark.parametrize("fn", [kernels.conv2d_loops, kernels.conv2d_unfold])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_conv2d_references_equal_torch(fn, dtype):
    g = torch.Generator().manual_seed(0)
    for h, w, k, s, p in CASES:
        image, kernel = torch.randn(h, w, generator=g, dtype=dtype), torch.randn(k, k, generator=g, dtype=dtype)
        got = fn(image, kernel, stride=s, padding=p)
        assert got.shape == reference_conv(image, kernel, s, p).shape
        assert (got - reference_conv(image, kernel, s, p)).abs().max() < (1e-5 if dtype == torch.float32 else 1e-12)


@pytest.mark.parametrize("name", ["correlate_loops", "correlate_unfold"])
def test_lecture_versions_equal_the_module(name):
    lecture = lecture_function(name)
    g = torch.Generator().manual_seed(1)
    for h, w, k in [(5, 5, 3), (13, 17, 4), (28, 28, 5)]:
        image, kernel = torch.randn(h, w, generator=g, dtype=torch.float64), torch.randn(k, k, generator=g, dtype=torch.float64)
        assert torch.allclose(lecture(image, kernel), kernels.conv2d_loops(image, kernel), atol=1e-12)


def test_output_size_matches_torch_and_rejects_kernels_that_do_not_fit():
    for n in (5, 8, 28):
        for k in (1, 2, 3, 5):
            for s in (1, 2, 3):
                for p in (0, 1, 2):
                    shape = F.conv2d(torch.zeros(1, 1, n, n), torch.zeros(1, 1, k, k), stride=s, padding=p).shape
                    assert kernels.output_size(n, k, s, p) == shape[-1]
    with pytest.raises(ValueError, match="does not fit"):
        kernels.output_size(3, 5)


def test_conv2d_references_reject_batches_with_a_clear_message():
    with pytest.raises(ValueError, match=r"2-D tensor .* image\[0, 0\]"):
        kernels.conv2d_loops(torch.zeros(1, 1, 5, 5), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="kernel must be a 2-D"):
        kernels.conv2d_unfold(torch.zeros(5, 5), torch.zeros(1, 3, 3))


def test_classic_kernels_on_real_digits(mnist):
    pixels = to_pixels(mnist.X_test[:8])          # MNIST digits have empty borders
    bank = kernels.filter_bank(pixels)
    assert set(bank) == set(kernels.classic_kernels()) | {"gradient magnitude"}
    assert all(r.shape == pixels.shape for r in bank.values())
    for blur in ("box blur", "Gaussian blur"):              # weights sum to 1: total ink is kept
        assert torch.allclose(bank[blur].sum(dim=(1, 2, 3)), pixels.sum(dim=(1, 2, 3)), rtol=1e-4)
    background = F.max_pool2d(pixels, 5, stride=1, padding=2) == 0     # 2+ pixels away from any ink
    for edge in ("Sobel x", "Sobel y", "Laplacian", "gradient magnitude"):
        assert bank[edge][background].abs().max() == 0
        assert bank[edge].abs().amax(dim=(1, 2, 3)).min() > 0.5
    assert torch.allclose(bank["gradient magnitude"], torch.hypot(bank["Sobel x"], bank["Sobel y"]))


def test_apply_kernel_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(N, 1, H, W\)"):
        kernels.apply_kernel(torch.zeros(28, 28), torch.ones(3, 3))
    with pytest.raises(ValueError, match="odd side"):
        kernels.apply_kernel(torch.zeros(1, 1, 28, 28), torch.ones(2, 2))


@pytest.mark.parametrize("sizes, strides", [([3], [1]), ([3, 3], [1, 1]), ([5, 2, 5, 2], [1, 2, 1, 2]),
                                            ([3, 3, 2, 3, 3, 2], [1, 1, 2, 1, 1, 2]), ([7, 3], [2, 1])])
def test_receptive_field_formula_matches_measurement(sizes, strides):
    torch.manual_seed(0)
    stack = nn.Sequential(*[nn.Conv2d(1, 1, k, stride=s) for k, s in zip(sizes, strides)])
    assert kernels.receptive_field(sizes, strides) == kernels.measured_receptive_field(stack)


def test_receptive_field_needs_one_stride_per_layer():
    with pytest.raises(ValueError, match="one stride per layer"):
        kernels.receptive_field([3, 3], [1])


def test_explorer_shows_a_figure_without_a_frontend(mnist):
    explorer = kernels.kernel_explorer(mnist.X_test[:3], mnist.y_test[:3])
    bundle, metadata = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "image/png" in bundle
    assert metadata["image/png"]["alt"].startswith("digit #0 (label ")          # alt text for static views
    assert "Sobel x" in explorer.result.axes[0].get_title()
    explorer.children[0].value = "Laplacian"
    assert "Laplacian" in explorer.result.axes[0].get_title()
    fig = kernels.plot_filter_grid(mnist.X_test[:2], mnist.y_test[:2])
    assert len(fig.axes) == 2 * (len(kernels.classic_kernels()) + 2)


# ---------------------------------------------------------------- the checks

NOTEBOOK = "01_convolution_kernels"
QIDS = ["output_size", "conv_output_shape", "conv2d_loops", "conv2d_fast", "same_conv", "horizontal_edge_kernel",
        "impulse_response", "conv_parameters", "conv2d_backward", "learn_kernel", "maxpool_backward"]


def failed_with(qid, answer, says):
    """Grade `answer`; assert it fails (attempted) with `says` in the message; return the result."""
    result = grade(qid, answer)
    assert not result.passed and result.attempted and says in result.message, result.message
    return result


def test_questions_of_notebook_01_are_registered_with_kinds_and_hints():
    questions = questions_for(NOTEBOOK)
    assert [q.id for q in questions] == QIDS
    assert {q.kind for q in questions} == {"implement", "predict", "debug", "concept", "backward"}
    assert all(2 <= len(q.hints) <= 3 for q in questions)
    assert [(w.id, w.max_points, len(w.hints)) for w in written_for(NOTEBOOK)] == [("weight_sharing", 2, 2)]


def test_the_written_question_is_recorded_for_the_instructor():
    result = grade("weight_sharing", None)
    assert result.state == "written" and "graded by hand" in result.message


def stub(*args, **kwargs):
    raise NotImplementedError()


@pytest.mark.parametrize("qid", ["output_size", "conv2d_loops", "conv2d_fast", "same_conv", "horizontal_edge_kernel",
                                 "conv2d_backward"])
def test_a_stub_is_not_attempted(qid):
    result = grade(qid, stub)
    assert not result.passed and not result.attempted and NOT_ATTEMPTED in result.message


@pytest.mark.parametrize("qid", ["conv_output_shape", "impulse_response", "conv_parameters"])
def test_an_unanswered_value_is_not_attempted(qid):
    assert grade(qid, None).state == "todo"


# ---------- output_size

@pytest.mark.parametrize("answer", [
    kernels.output_size,
    lambda n, kernel_size, stride=1, padding=0: math.floor((n + 2 * padding - kernel_size) / stride) + 1,
    lambda n, kernel_size, stride=1, padding=0: len(range(0, n + 2 * padding - kernel_size + 1, stride)),
    lambda n, kernel_size, stride=1, padding=0: np.int64(n + 2 * padding - kernel_size) // stride + 1,
    lambda n, kernel_size, stride=1, padding=0: torch.tensor(n + 2 * padding - kernel_size) // stride + 1,
])
def test_output_size_accepts_equivalent_formulas_and_integer_types(answer):
    assert grade("output_size", answer).passed


FORMULA = "(n + 2 * padding - kernel_size) // stride + 1"


@pytest.mark.parametrize("answer, says", [
    (lambda n, kernel_size, stride=1, padding=0: (n + 2 * padding - kernel_size) / stride + 1, "is a float (26.0)"),
    (lambda n, kernel_size, stride=1, padding=0: np.floor((n + 2 * padding - kernel_size) / stride) + 1,
     "is a float64"),
    (lambda n, kernel_size, stride=1, padding=0: True, "is a bool"),
    (lambda n, kernel_size, stride=1, padding=0: (n + 2 * padding - kernel_size) // stride, "one too few"),
    (lambda n, kernel_size, stride=1, padding=0: (n + 2 * padding - kernel_size) // stride + 2, "one window too many"),
    (lambda n, kernel_size, stride=1, padding=0: -(-(n + 2 * padding - kernel_size) // stride) + 1, "rounded up"),
    (lambda n, kernel_size, stride=1, padding=0: (n - kernel_size) // stride + 1, "padding ignored"),
    (lambda n, kernel_size, stride=1, padding=0: (n + padding - kernel_size) // stride + 1, "one side only"),
    (lambda n, kernel_size, stride=1, padding=0: n + 2 * padding - kernel_size + 1, "stride ignored"),
    (lambda n, kernel_size, stride=1, padding=0: 0, "is 0, expected 26"),
])
def test_output_size_names_each_mistake_without_giving_the_formula(answer, says):
    result = failed_with("output_size", answer, says)
    assert FORMULA not in result.message and "+ 1" not in result.message


def test_output_size_names_the_slip_of_the_first_wrong_case():
    """Right where the stride divides evenly; the first case where it does not is named."""
    def rounds_up(n, kernel_size, stride=1, padding=0):
        return math.ceil((n + 2 * padding - kernel_size) / stride) + 1
    result = failed_with("output_size", rounds_up, "rounded up")
    assert "output_size(n=28, kernel_size=5, stride=2, padding=2) is 15, expected 14: rounded up" in result.message


@pytest.mark.parametrize("answer, says", [
    (lambda n, kernel_size, stride=1, padding=0: (n + 2 * padding - kernel_size) // (2 * stride - 1) + 1,
     "right at stride 1, wrong at larger strides"),
    (lambda n, kernel_size, stride=1, padding=0: (n + 2 * padding - kernel_size) // stride + 1 + 3 * padding,
     "right without padding, wrong with padding"),
])
def test_output_size_diagnoses_what_the_wrong_cases_share(answer, says):
    failed_with("output_size", answer, says)


def test_the_solution_of_output_size_gives_the_formula_and_no_hint_does():
    q = next(q for q in questions_for(NOTEBOOK) if q.id == "output_size")
    assert FORMULA in q.reveal and not any(FORMULA in t for t in q.hints)


# ---------- conv_output_shape (predict)

@pytest.mark.parametrize("answer", [(8, 16, 15, 15), [8, 16, 15, 15], torch.Size([8, 16, 15, 15]),
                                    np.array([8, 16, 15, 15]), torch.tensor([8, 16, 15, 15])])
def test_the_shape_prediction_accepts_a_tuple_list_size_or_array(answer):
    result = grade("conv_output_shape", answer)
    assert result.passed and "(32 + 2*1 - 5) // 2 + 1 = 15" in result.message, result.message


@pytest.mark.parametrize("answer, says", [
    ((16, 15, 15), "batch dimension is missing"),
    ((8, 3, 15, 15), "3 channels is the input's count"),
    ((8, 15, 15, 16), "channels last"),
    ((8, 16, 16, 16), "rounded up"),
    ((8, 16, 14, 14), "one too few per side"),
    ((8, 16, 30, 30), "the stride is ignored"),
    ((8, 16, 15.5, 15.5), "15.5 is not a whole number"),
    ((1, 8, 16, 15, 15), "four entries"),
    ((8, 16, 13, 13), "predicted (8, 16, 13, 13): not the shape this layer gives"),
    ("8, 17, 14, 14", "should be a tuple"),
])
def test_the_shape_prediction_names_each_mistake_without_the_shape(answer, says):
    result = failed_with("conv_output_shape", answer, says)
    said = result.message.replace(str(answer), "the prediction")      # the student's own numbers aside
    assert "15, 15" not in said and "measured" not in said


# ---------- conv2d_loops and conv2d_fast

def conv_shift_and_add(image, kernel, stride=1, padding=0):
    """Vectorised differently from unfold: one shifted, strided slice per kernel entry."""
    k = kernel.shape[0]
    x = F.pad(image, (padding, padding, padding, padding))
    out_h, out_w = (x.shape[0] - k) // stride + 1, (x.shape[1] - k) // stride + 1
    return sum(kernel[u, v] * x[u:u + stride * (out_h - 1) + 1:stride, v:v + stride * (out_w - 1) + 1:stride]
               for u in range(k) for v in range(k))


def conv_numpy_windows(image, kernel, stride=1, padding=0):
    """NumPy, vectorised: every window by sliding_window_view, summed with einsum."""
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(image.numpy(), padding), kernel.shape)
    return np.einsum("ijuv,uv->ij", windows[::stride, ::stride], kernel.numpy())


def conv_as_strided(image, kernel, stride=1, padding=0):
    """torch, vectorised: a strided view of all patches and one tensordot."""
    x, k = F.pad(image, (padding,) * 4).contiguous(), kernel.shape[0]
    out_h, out_w = (x.shape[0] - k) // stride + 1, (x.shape[1] - k) // stride + 1
    rows, cols = x.stride()
    patches = x.as_strided((out_h, out_w, k, k), (rows * stride, cols * stride, rows, cols))
    return torch.tensordot(patches, kernel.to(x.dtype), dims=2)


def conv_numpy_float32(image, kernel, stride=1, padding=0):
    """Loops in NumPy, computed in float32, returned as an array."""
    x, w, k = np.pad(image.numpy(), padding).astype(np.float32), kernel.numpy().astype(np.float32), kernel.shape[0]
    rows, cols = range(0, x.shape[0] - k + 1, stride), range(0, x.shape[1] - k + 1, stride)
    return np.array([[(x[i:i + k, j:j + k] * w).sum() for j in cols] for i in rows])


def conv_python_lists(image, kernel, stride=1, padding=0):
    """Plain Python: nested lists in, nested lists out."""
    rows, w, k, p = image.tolist(), kernel.tolist(), kernel.shape[0], padding
    width = len(rows[0]) + 2 * p
    x = [[0.0] * width] * p + [[0.0] * p + r + [0.0] * p for r in rows] + [[0.0] * width] * p
    out = []
    for i in range(0, len(x) - k + 1, stride):
        out.append([sum(x[i + u][j + v] * w[u][v] for u in range(k) for v in range(k))
                    for j in range(0, width - k + 1, stride)])
    return out


def conv_numpy_map(image, kernel, stride=1, padding=0):
    """A loop over pixels without a Python line in it: map drives np.dot over every window."""
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(image.numpy(), padding), kernel.shape)[::stride, ::stride]
    flat = windows.reshape(-1, kernel.numel())
    dots = map(np.dot, flat, itertools.repeat(kernel.numpy().ravel()))
    return np.fromiter(dots, dtype=flat.dtype, count=len(flat)).reshape(windows.shape[:2])


def conv_torch_map(image, kernel, stride=1, padding=0):
    """The same in torch: map drives torch.dot over the unfolded patches."""
    x, k = F.pad(image, (padding,) * 4), kernel.shape[0]
    out_h, out_w = (x.shape[0] - k) // stride + 1, (x.shape[1] - k) // stride + 1
    patches = F.unfold(x[None, None], k, stride=stride)[0].T
    return torch.stack(list(map(torch.dot, patches, itertools.repeat(kernel.reshape(-1))))).reshape(out_h, out_w)


def conv_rows_unfold(image, kernel, stride=1, padding=0):
    """Vectorised within a row, but a Python loop over the output rows."""
    k, x = kernel.shape[0], F.pad(image, (padding,) * 4)
    rows = [F.unfold(x[i:i + k][None, None], k, stride=stride)[0] for i in range(0, x.shape[0] - k + 1, stride)]
    return torch.stack([kernel.reshape(1, -1) @ r for r in rows])[:, 0]


@pytest.mark.parametrize("qid", ["conv2d_loops", "conv2d_fast"])
@pytest.mark.parametrize("answer", [kernels.conv2d_unfold, conv_shift_and_add, conv_numpy_windows, conv_as_strided])
def test_conv2d_checks_accept_vectorised_versions_in_torch_and_numpy(qid, answer):
    result = grade(qid, answer)
    assert result.passed, result.message


@pytest.mark.parametrize("answer", [kernels.conv2d_loops, conv_numpy_float32, conv_python_lists, conv_numpy_map,
                                    conv_torch_map])
def test_conv2d_loops_accepts_loops_in_torch_numpy_or_plain_python(answer):
    result = grade("conv2d_loops", answer)
    assert result.passed, result.message


@pytest.mark.parametrize("answer", [kernels.conv2d_loops, conv_numpy_float32, conv_python_lists, conv_numpy_map,
                                    conv_torch_map])
def test_conv2d_fast_rejects_a_loop_over_pixels_in_any_library(answer):
    failed_with("conv2d_fast", answer, "still works one output pixel at a time")


def test_conv2d_fast_rejects_a_loop_over_rows():
    assert grade("conv2d_loops", conv_rows_unfold).passed
    failed_with("conv2d_fast", conv_rows_unfold, "still loops over output rows or columns")


def with_slip(slip):
    """A correct conv2d, except for one slip applied to its arguments."""
    return lambda image, kernel, stride=1, padding=0: kernels.conv2d_unfold(*slip(image, kernel, stride, padding))


def pad_one_side(image, kernel, stride=1, padding=0):
    return kernels.conv2d_unfold(F.pad(image, (padding, 0, padding, 0)), kernel, stride)


def last_row_and_column_zero(image, kernel, stride=1, padding=0):
    out = kernels.conv2d_unfold(image, kernel, stride, padding).clone()
    out[-1], out[:, -1] = 0, 0
    return out


def stride_on_rows_only(image, kernel, stride=1, padding=0):
    full = kernels.conv2d_unfold(image, kernel, 1, padding)
    return full[::stride, :kernels.output_size(image.shape[1], kernel.shape[0], stride, padding)]


def pads_with_ones(image, kernel, stride=1, padding=0):
    return kernels.conv2d_unfold(F.pad(image, (padding,) * 4, value=1.0), kernel, stride)


def through_a_module(image, kernel, stride=1, padding=0):
    layer = nn.Conv2d(1, 1, kernel.shape[0], stride=stride, padding=padding, bias=False).to(image.dtype)
    with torch.no_grad():
        layer.weight.copy_(kernel)
        return layer(image[None, None])[0, 0]


def through_conv_transpose(image, kernel, stride=1, padding=0):
    """Cross-correlation as a transposed convolution of the padded image with the flipped kernel (stride 1 only)."""
    k = kernel.shape[0]
    x = F.pad(image, (padding,) * 4)
    return F.conv_transpose2d(x[None, None], kernel.flip(0, 1)[None, None], padding=k - 1)[0, 0][::stride, ::stride]


def through_scipy(image, kernel, stride=1, padding=0):
    import scipy.signal
    return scipy.signal.correlate2d(np.pad(image.numpy(), padding), kernel.numpy(), "valid")[::stride, ::stride]


CONV_MISTAKES = [
    (with_slip(lambda x, w, s, p: (x, w.flip(0, 1), s, p)), "the kernel is turned by 180° (flipped)"),
    (with_slip(lambda x, w, s, p: (x, w.T, s, p)), "the kernel is transposed"),
    (with_slip(lambda x, w, s, p: (x, w, s, 0)), "the zero padding is missing"),
    (pad_one_side, "padded on one side only"),
    (with_slip(lambda x, w, s, p: (x, w, 1, p)), "the window moves one pixel at a time whatever the stride"),
    (with_slip(lambda x, w, s, p: (x, w, 1, 0)), "stride=1, padding=1) in float64 differs from F.conv2d: the zero "
     "padding is missing: the output has the values of padding 0."),
    (last_row_and_column_zero, "the last output row and column stay 0"),
    (lambda image, kernel, stride=1, padding=0: kernels.conv2d_unfold(image, kernel, stride, padding)[:-1],
     "off by one row or column"),
    (lambda image, kernel, stride=1, padding=0: kernels.conv2d_unfold(image, kernel, stride, padding)[None, None],
     "keeps extra batch or channel dimensions"),
    (stride_on_rows_only, "right at stride 1, wrong at stride 2"),
    (pads_with_ones, "right without padding, wrong with padding 1"),
    (lambda image, kernel, stride=1, padding=0: 2 * kernels.conv2d_unfold(image, kernel, stride, padding),
     "differs from F.conv2d by up to"),
    (lambda image, kernel, stride=1, padding=0: reference_conv(image, kernel, stride, padding), "calls F.conv2d"),
    (through_a_module, "calls F.conv2d"),
    (through_conv_transpose, "calls F.conv_transpose2d"),
    (through_scipy, "calls correlate2d()"),
]


@pytest.mark.parametrize("qid", ["conv2d_loops", "conv2d_fast"])
@pytest.mark.parametrize("answer, says", CONV_MISTAKES)
def test_conv2d_checks_name_each_mistake(qid, answer, says):
    result = failed_with(qid, answer, says)
    assert "out[i, j] =" not in result.message


def unfold_conv(image, kernel, stride, padding, unfold_stride, rows_first=True):
    """A vectorised conv2d through F.unfold with the patches taken at `unfold_stride`, reshaped (rows, cols) or not."""
    k = kernel.shape[0]
    out_h, out_w = ((side + 2 * padding - k) // stride + 1 for side in image.shape)
    patches = F.unfold(image[None, None], k, padding=padding, stride=unfold_stride)[0]
    return (kernel.reshape(1, -1) @ patches).reshape((out_h, out_w) if rows_first else (out_w, out_h))


def test_a_swapped_reshape_gets_a_message_true_for_vectorised_code():
    swapped = lambda image, kernel, stride=1, padding=0: unfold_conv(image, kernel, stride, padding, stride, False)
    result = failed_with("conv2d_fast", swapped, "conv2d_fast(image 6x7, kernel 3x3, stride=1, padding=0) in float64: "
                         "shape (5, 4), expected (4, 5): the right values in the right order, cut into rows of the "
                         "wrong length")
    assert "range()" not in result.message and "reshape(out_h, out_w), rows first" in result.message


def test_a_stride_forgotten_in_unfold_names_the_input_and_the_cause():
    no_stride = lambda image, kernel, stride=1, padding=0: unfold_conv(image, kernel, stride, padding, 1)
    result = failed_with("conv2d_fast", no_stride, "your code raised RuntimeError: shape '[4, 3]' is invalid for "
                         "input of size 42")
    assert "Called as: conv2d_fast(image 9x8, kernel 3x3, stride=2, padding=0) in float64." in result.message
    assert "(a forgotten stride= gives more)" in result.message


def test_a_flip_is_named_at_the_first_failing_case_even_with_a_second_bug():
    """Flipped and ignoring the stride: only the flip shows at stride 1, the first case."""
    both = with_slip(lambda x, w, s, p: (x, w.flip(0, 1), 1, p))
    result = failed_with("conv2d_loops", both, "flipped")
    assert "stride=1, padding=0" in result.message and "differs from F.conv2d by up to" not in result.message


def test_the_slips_of_one_case_are_named_together():
    """At stride 2 and padding 0 both the flip and the ignored stride show; both are named."""
    def flips_only_at_strides(image, kernel, stride=1, padding=0):
        return kernels.conv2d_unfold(image, kernel.flip(0, 1) if stride > 1 else kernel, 1, padding)
    failed_with("conv2d_loops", flips_only_at_strides, "flipped): that is a true convolution, but conv2d here, like "
                "PyTorch's, is a cross-correlation, which uses the kernel as it is; and the window moves one pixel")


# ---------- same_conv (debug)

def same_conv_fixed(image, kernel):
    k = kernel.shape[0]
    x = F.pad(image, (k // 2,) * 4)
    out = torch.zeros_like(image)
    for i in range(image.shape[0]):
        for j in range(image.shape[1]):
            out[i, j] = (x[i:i + k, j:j + k] * kernel).sum()
    return out


def same_conv_unfold(image, kernel):
    return kernels.conv2d_unfold(image, kernel, padding=kernel.shape[0] // 2)


def same_conv_numpy(image, kernel):
    k = kernel.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(image.numpy(), k // 2), (k, k))
    return np.einsum("ijuv,uv->ij", windows, kernel.numpy())


@pytest.mark.parametrize("answer", [same_conv_fixed, same_conv_unfold, same_conv_numpy])
def test_same_conv_accepts_fixed_versions(answer):
    assert grade("same_conv", answer).passed


def buggy_like_the_sheet(flip: bool, stop: str | None):
    """The sheet's buggy_same_conv with some of its bugs: a flipped kernel, loops stopping short."""
    def same_conv(image, kernel):
        k = kernel.shape[0]
        x = F.pad(image, (k // 2,) * 4)
        out = torch.zeros_like(image)
        short = {None: 0, "valid": k - 1, "one": 1}[stop]
        for i in range(image.shape[0] - short):
            for j in range(image.shape[1] - short):
                out[i, j] = (x[i:i + k, j:j + k] * (kernel.flip(0, 1) if flip else kernel)).sum()
        return out
    return same_conv


def test_the_sheet_shows_the_buggy_version_that_the_check_diagnoses():
    sheet = nbformat.read(Path(__file__).resolve().parent.parent / "exercises" / f"{NOTEBOOK}.ipynb", as_version=4)
    cell = next(c.source for c in sheet.cells if "def buggy_same_conv(" in c.source)
    namespace = {"torch": torch, "F": F}
    exec(cell, namespace)
    failed_with("same_conv", namespace["buggy_same_conv"], "still flipped")
    failed_with("same_conv", namespace["buggy_same_conv"], "the last k - 1 rows and columns stay 0")


@pytest.mark.parametrize("answer, says", [
    (buggy_like_the_sheet(True, "valid"), "the kernel is still flipped"),
    (buggy_like_the_sheet(True, None), "the kernel is still flipped: F.conv2d"),
    (buggy_like_the_sheet(False, "valid"), "the last k - 1 rows and columns stay 0"),
    (buggy_like_the_sheet(False, "one"), "the last row and column stay 0"),
    (lambda image, kernel: kernels.conv2d_unfold(image, kernel), "'same' padding keeps the input's shape"),
    (lambda image, kernel: 0.5 * same_conv_unfold(image, kernel), "differs from F.conv2d with padding 1 by up to"),
    (lambda image, kernel: reference_conv(image, kernel, 1, kernel.shape[0] // 2), "calls F.conv2d"),
])
def test_same_conv_names_each_bug_left(answer, says):
    failed_with("same_conv", answer, says)


# ---------- horizontal_edge_kernel

@pytest.mark.parametrize("kernel", [
    [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],                 # Sobel y
    [[1, 1, 1], [-1, -1, -1], [0, 0, 0]],                 # Prewitt-like, one-sided
    [[-1, -1, -1], [2, 2, 2], [-1, -1, -1]],              # line detector
])
def test_horizontal_edge_kernel_accepts_horizontal_detectors_as_tensor_array_list_or_value(kernel):
    assert grade("horizontal_edge_kernel", lambda: torch.tensor(kernel, dtype=torch.float64)).passed
    assert grade("horizontal_edge_kernel", lambda: np.array(kernel, dtype=np.float32)).passed
    assert grade("horizontal_edge_kernel", lambda: kernel).passed
    assert grade("horizontal_edge_kernel", torch.tensor(kernel, dtype=torch.float32)).passed


@pytest.mark.parametrize("kernel, says", [
    (kernels.SOBEL_X, "vertical-edge kernel"),
    ([[0, 1, 0], [1, -4, 1], [0, 1, 0]], "also responds to vertical strokes"),
    ([[1 / 9] * 3] * 3, "flat patch"),
    ([[0.0] * 3] * 3, "all zeros"),
    ([[-1, 0, 1], [0, 0, 0], [1, 0, -1]], "gives 0 on horizontal strokes"),
    ([[-1, -2, -1], [1, 2, 1]], "shape (2, 3)"),
])
def test_horizontal_edge_kernel_names_each_mistake(kernel, says):
    failed_with("horizontal_edge_kernel", lambda: torch.tensor(kernel), says)


# ---------- impulse_response (predict) and conv_parameters (concept)

TURNED = [[9, 8, 7], [6, 5, 4], [3, 2, 1]]


@pytest.mark.parametrize("answer", [TURNED, tuple(map(tuple, TURNED)), np.array(TURNED), torch.tensor(TURNED),
                                    torch.arange(1.0, 10.0).reshape(3, 3).flip(0, 1)])
def test_impulse_response_accepts_the_turned_kernel_in_any_container(answer):
    assert "turned by 180" in grade("impulse_response", answer).message


def test_impulse_response_is_what_f_conv2d_measures():
    image = torch.zeros(5, 5)
    image[2, 2] = 1.0
    out = F.conv2d(image[None, None], torch.arange(1.0, 10.0).reshape(1, 1, 3, 3), padding=1)[0, 0]
    assert grade("impulse_response", out[1:4, 1:4]).passed


@pytest.mark.parametrize("answer, says", [
    ([[1, 2, 3], [4, 5, 6], [7, 8, 9]], "which a TRUE convolution would give back"),
    ([[1, 4, 7], [2, 5, 8], [3, 6, 9]], "the kernel transposed"),
    ([[7, 8, 9], [4, 5, 6], [1, 2, 3]], "each row still reads left to right"),
    ([[3, 2, 1], [6, 5, 4], [9, 8, 7]], "the rows are in the kernel's order"),
    ([[5] * 3] * 3, "the centre weight everywhere"),
    ([[0, 0, 0], [0, 1, 0], [0, 0, 0]], "which weight meets the 1"),
    ([9, 8, 7, 6, 5, 4, 3, 2, 1], "shape (9,)"),
    ("9 8 7", "3x3 grid of numbers"),
])
def test_impulse_response_names_each_wrong_prediction_without_the_answer(answer, says):
    result = failed_with("impulse_response", answer, says)
    assert "[[9, 8, 7]" not in result.message and "9, 8, 7" not in result.message


@pytest.mark.parametrize("answer", [1216, np.int64(1216), torch.tensor(1216), 16 * 3 * 5 * 5 + 16])
def test_conv_parameters_accepts_the_count_as_any_integer(answer):
    assert grade("conv_parameters", answer).passed


@pytest.mark.parametrize("answer, says", [
    (1200, "the bias is missing"), (416, "the input channels are missing"), (400, "the input channels and the bias"),
    (76, "that is one filter"), (256, "k appears once"), (1203, "one bias per output channel, not per input"),
    (1216.0, "is a float"), (1000, "is 1000: not the count"),
])
def test_conv_parameters_names_each_mistake_without_the_count(answer, says):
    result = failed_with("conv_parameters", answer, says)
    assert "1216" not in result.message.replace("1216.0", "")


# ---------- conv2d_backward

def backward_unfold(image, kernel, grad_out, padding=0):
    """Both gradients as cross-correlations with the course's im2col conv2d."""
    k, (h, w) = kernel.shape[0], image.shape
    grad_kernel = F.unfold(F.pad(image, (padding,) * 4)[None, None], grad_out.shape)[0].T @ grad_out.reshape(-1)
    grad_padded = kernels.conv2d_unfold(F.pad(grad_out, (k - 1,) * 4), kernel.flip(0, 1))
    return grad_padded[padding:padding + h, padding:padding + w], grad_kernel.reshape(k, k)


def backward_loops(image, kernel, grad_out, padding=0):
    """Scatter each output's gradient back over its patch, one output pixel at a time (a list out)."""
    x = F.pad(image, (padding,) * 4)
    k, grad_x, grad_k = kernel.shape[0], torch.zeros_like(x), torch.zeros_like(kernel)
    for i in range(grad_out.shape[0]):
        for j in range(grad_out.shape[1]):
            grad_x[i:i + k, j:j + k] += grad_out[i, j] * kernel
            grad_k += grad_out[i, j] * x[i:i + k, j:j + k]
    return [grad_x[padding:padding + image.shape[0], padding:padding + image.shape[1]], grad_k]


def backward_numpy(image, kernel, grad_out, padding=0):
    """NumPy: sliding windows and einsum for both gradients."""
    x, w, g, k = np.pad(image.numpy(), padding), kernel.numpy(), grad_out.numpy(), kernel.shape[0]
    windows = np.lib.stride_tricks.sliding_window_view
    grad_k = np.einsum("uvij,ij->uv", windows(x, g.shape), g)
    grad_x = np.einsum("abuv,uv->ab", windows(np.pad(g, k - 1), (k, k)), w[::-1, ::-1])
    return grad_x[padding:padding + image.shape[0], padding:padding + image.shape[1]], grad_k


@pytest.mark.parametrize("answer", [backward_unfold, backward_loops, backward_numpy])
def test_conv2d_backward_accepts_right_gradients_in_torch_loops_or_numpy(answer):
    result = grade("conv2d_backward", answer)
    assert result.passed and "below 1e-07" in result.message, result.message


def change(which, how):
    """backward_unfold with one of its two gradients changed by `how(gradient, image, kernel, grad_out, p)`."""
    def conv2d_backward(image, kernel, grad_out, padding=0):
        grads = list(backward_unfold(image, kernel, grad_out, padding))
        grads[which] = how(grads[which], image, kernel, grad_out, padding)
        return tuple(grads)
    return conv2d_backward


def image_grad_unflipped(image, kernel, grad_out, padding=0):
    k, (h, w) = kernel.shape[0], image.shape
    return kernels.conv2d_unfold(F.pad(grad_out, (k - 1,) * 4), kernel)[padding:padding + h, padding:padding + w]


def image_grad_not_cropped(image, kernel, grad_out, padding=0):
    return kernels.conv2d_unfold(F.pad(grad_out, (kernel.shape[0] - 1,) * 4), kernel.flip(0, 1))


def by_autograd(image, kernel, grad_out, padding=0):
    x, w = image.clone().requires_grad_(), kernel.clone().requires_grad_()
    (F.conv2d(x[None, None], w[None, None], padding=padding)[0, 0] * grad_out).sum().backward()
    return x.grad, w.grad


def by_autograd_grad(image, kernel, grad_out, padding=0):
    x, w = image.clone().requires_grad_(), kernel.clone().requires_grad_()
    out = kernels.conv2d_unfold(x, w, padding=padding)
    return torch.autograd.grad(out, (x, w), grad_out)


def by_nn_grad(image, kernel, grad_out, padding=0):
    g, w = grad_out[None, None], kernel[None, None]
    return (torch.nn.grad.conv2d_input((1, 1, *image.shape), w, g, padding=padding)[0, 0],
            torch.nn.grad.conv2d_weight(image[None, None], (1, 1, *kernel.shape), g, padding=padding)[0, 0])


def by_conv_transpose(image, kernel, grad_out, padding=0):
    grad_image = F.conv_transpose2d(grad_out[None, None], kernel[None, None], padding=padding)[0, 0]
    return grad_image, backward_unfold(image, kernel, grad_out, padding)[1]


BACKWARD_MISTAKES = [
    (lambda x, w, g, padding=0: backward_unfold(x, w, g, padding)[::-1], "the kernel's gradient first"),
    (lambda x, w, g, padding=0: (image_grad_unflipped(x, w, g, padding), backward_unfold(x, w, g, padding)[1]),
     "grad_image: the kernel is not turned by 180°"),
    (lambda x, w, g, padding=0: (image_grad_not_cropped(x, w, g, padding), backward_unfold(x, w, g, padding)[1]),
     "it is the gradient of the padded image"),
    (change(1, lambda gk, *_: gk.flip(0, 1)), "grad_kernel: it is flipped"),
    (change(1, lambda gk, *_: gk.T), "grad_kernel: it is transposed"),
    (change(0, lambda gi, *_: gi.float()), "returns float32 gradients: the values are right up to the rounding"),
    (change(0, lambda gi, *_: gi.numpy().astype(np.float32)), "returns float32 gradients"),
    (change(1, lambda gk, *_: 1.01 * gk), "grad_kernel: relative error 4.98e-03 against autograd in float64"),
    (lambda x, w, g, padding=0: backward_unfold(x, w, g, padding)[0], "return two gradients"),
    (by_autograd, "Tensor.backward (autograd)"),
    (by_autograd_grad, "torch.autograd.grad"),
    (by_nn_grad, "convolution_backward (F.conv2d's own backward)"),
    (by_conv_transpose, "F.conv_transpose2d"),
]


@pytest.mark.parametrize("answer, says", BACKWARD_MISTAKES)
def test_conv2d_backward_names_each_mistake(answer, says):
    failed_with("conv2d_backward", answer, says)


def test_one_right_gradient_earns_half_the_points():
    result = failed_with("conv2d_backward", change(1, lambda gk, *_: gk.flip(0, 1)), "Partial credit: 1 of 2")
    assert result.state == "part" and "the right grad_image" in result.message


def test_right_without_padding_is_diagnosed():
    def ignores_padding_in_the_image_gradient(image, kernel, grad_out, padding=0):
        k = kernel.shape[0]
        grad = kernels.conv2d_unfold(F.pad(grad_out, (k - 1,) * 4), kernel.flip(0, 1))
        return grad[:image.shape[0], :image.shape[1]], backward_unfold(image, kernel, grad_out, padding)[1]
    failed_with("conv2d_backward", ignores_padding_in_the_image_gradient, "Right without padding, wrong with it")


# ---------- the solution sheet

def test_every_answer_of_the_solution_sheet_passes():
    solution = nbformat.read(Path(__file__).resolve().parent.parent / "solutions" / f"{NOTEBOOK}.ipynb", as_version=4)
    namespace: dict = {}
    for cell in solution.cells:
        if cell.cell_type == "code" and not cell.source.startswith("check"):
            exec(cell.source, namespace)
    for q in questions_for(NOTEBOOK):
        result = grade(q.id, namespace[q.answer_name])
        assert result.passed, (q.id, result.message)


def test_float32_gradients_earn_the_points_for_the_values():
    result = grade("conv2d_backward", change(1, lambda gk, *_: gk.float()))
    assert result.state == "part" and result.points == 1 and "the right values" in result.message, result.message
