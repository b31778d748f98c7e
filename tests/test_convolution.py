"""Notebook 01: the conv2d references, classic kernels, receptive fields, the explorer, and every check."""
import ast
from pathlib import Path

import matplotlib
import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_utils import kernels
from course_utils.checks import NOT_ATTEMPTED, grade, questions_for
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
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle and "image/png" in bundle
    assert "Sobel x" in explorer.result.axes[0].get_title()
    explorer.children[0].value = "Laplacian"
    assert "Laplacian" in explorer.result.axes[0].get_title()
    fig = kernels.plot_filter_grid(mnist.X_test[:2], mnist.y_test[:2])
    assert len(fig.axes) == 2 * (len(kernels.classic_kernels()) + 2)


# ---------------------------------------------------------------- the checks

def test_questions_of_notebook_01_are_registered():
    assert [q.id for q in questions_for("01_convolution_kernels")] == [
        "output_size", "conv2d_loops", "conv2d_fast", "horizontal_edge_kernel"]


def stub(*args, **kwargs):
    raise NotImplementedError()


@pytest.mark.parametrize("qid", ["output_size", "conv2d_loops", "conv2d_fast", "horizontal_edge_kernel"])
def test_a_stub_is_not_attempted(qid):
    result = grade(qid, stub)
    assert not result.passed and not result.attempted and NOT_ATTEMPTED in result.message


@pytest.mark.parametrize("answer", [
    kernels.output_size,
    lambda n, kernel_size, stride=1, padding=0: int(np.floor((n + 2 * padding - kernel_size) / stride)) + 1,
    lambda n, kernel_size, stride=1, padding=0: len(range(0, n + 2 * padding - kernel_size + 1, stride)),
])
def test_output_size_accepts_equivalent_formulas(answer):
    assert grade("output_size", answer).passed


@pytest.mark.parametrize("answer, says", [
    (lambda n, kernel_size, stride=1, padding=0: (n + 2 * padding - kernel_size) // stride, "add 1"),
    (lambda n, kernel_size, stride=1, padding=0: (n + 2 * padding - kernel_size) // stride + 2, "one window too many"),
    (lambda n, kernel_size, stride=1, padding=0: (n - kernel_size) // stride + 1, "padding ignored"),
    (lambda n, kernel_size, stride=1, padding=0: (n + padding - kernel_size) // stride + 1, "one side only"),
    (lambda n, kernel_size, stride=1, padding=0: n + 2 * padding - kernel_size + 1, "stride ignored"),
    (lambda n, kernel_size, stride=1, padding=0: (n + 2 * padding - kernel_size) / stride + 1, "true division"),
    (lambda n, kernel_size, stride=1, padding=0: -(-(n + 2 * padding - kernel_size) // stride) + 1, "rounded up"),
    (lambda n, kernel_size, stride=1, padding=0: 26, "expected 28"),
])
def test_output_size_names_each_mistake(answer, says):
    result = grade("output_size", answer)
    assert not result.passed and result.attempted and says in result.message, result.message


def conv_shift_and_add(image, kernel, stride=1, padding=0):
    """Vectorised differently from unfold: one shifted, strided slice per kernel entry."""
    k = kernel.shape[0]
    x = F.pad(image, (padding, padding, padding, padding))
    out_h, out_w = (x.shape[0] - k) // stride + 1, (x.shape[1] - k) // stride + 1
    return sum(kernel[u, v] * x[u:u + stride * (out_h - 1) + 1:stride, v:v + stride * (out_w - 1) + 1:stride]
               for u in range(k) for v in range(k))


def conv_numpy_float32(image, kernel, stride=1, padding=0):
    """Loops in NumPy, computed in float32, returned as an array."""
    x, w, k = np.pad(image.numpy(), padding).astype(np.float32), kernel.numpy().astype(np.float32), kernel.shape[0]
    rows, cols = range(0, x.shape[0] - k + 1, stride), range(0, x.shape[1] - k + 1, stride)
    return np.array([[(x[i:i + k, j:j + k] * w).sum() for j in cols] for i in rows])


@pytest.mark.parametrize("qid", ["conv2d_loops", "conv2d_fast"])
@pytest.mark.parametrize("answer", [kernels.conv2d_unfold, conv_shift_and_add])
def test_conv2d_checks_accept_vectorised_versions(qid, answer):
    assert grade(qid, answer).passed


@pytest.mark.parametrize("answer", [kernels.conv2d_loops, conv_numpy_float32])
def test_conv2d_loops_accepts_loop_versions_in_torch_or_numpy(answer):
    assert grade("conv2d_loops", answer).passed


def test_conv2d_fast_rejects_pixel_by_pixel_loops():
    result = grade("conv2d_fast", kernels.conv2d_loops)
    assert not result.passed and "one output pixel at a time" in result.message and "unfold" in result.message


def with_slip(slip):
    """A correct conv2d, except for one slip applied to its arguments."""
    return lambda image, kernel, stride=1, padding=0: kernels.conv2d_unfold(*slip(image, kernel, stride, padding))


CONV_MISTAKES = [
    (with_slip(lambda x, w, s, p: (x, w.flip(0, 1), s, p)), "flipped the kernel"),
    (with_slip(lambda x, w, s, p: (x, w, s, 0)), "padding ignored"),
    (with_slip(lambda x, w, s, p: (x, w, 1, p)), "stride ignored"),
    (with_slip(lambda x, w, s, p: (x, w, 1, 0)), "padding and stride both ignored"),
    (lambda image, kernel, stride=1, padding=0: kernels.conv2d_unfold(image, kernel, stride, padding)[:-1], "off by one"),
    (lambda image, kernel, stride=1, padding=0: kernels.conv2d_unfold(image, kernel.T, stride, padding), "differs from F.conv2d by up to"),
    (lambda image, kernel, stride=1, padding=0: reference_conv(image, kernel, stride, padding), "calls F.conv2d"),
]


@pytest.mark.parametrize("qid", ["conv2d_loops", "conv2d_fast"])
@pytest.mark.parametrize("answer, says", CONV_MISTAKES)
def test_conv2d_checks_name_each_mistake(qid, answer, says):
    result = grade(qid, answer)
    assert not result.passed and result.attempted and says in result.message, result.message


@pytest.mark.parametrize("kernel", [
    [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],                 # Sobel y
    [[1, 1, 1], [-1, -1, -1], [0, 0, 0]],                 # Prewitt-like, one-sided
    [[-1, -1, -1], [2, 2, 2], [-1, -1, -1]],              # line detector
])
def test_horizontal_edge_kernel_accepts_horizontal_detectors(kernel):
    assert grade("horizontal_edge_kernel", lambda: torch.tensor(kernel, dtype=torch.float64)).passed
    assert grade("horizontal_edge_kernel", lambda: np.array(kernel, dtype=np.float32)).passed


@pytest.mark.parametrize("kernel, says", [
    (kernels.SOBEL_X, "vertical-edge kernel"),
    ([[0, 1, 0], [1, -4, 1], [0, 1, 0]], "also responds to vertical strokes"),
    ([[1 / 9] * 3] * 3, "flat patch"),
    ([[0.0] * 3] * 3, "all zeros"),
    ([[-1, 0, 1], [0, 0, 0], [1, 0, -1]], "gives 0 on horizontal strokes"),
    ([[-1, -2, -1], [1, 2, 1]], "shape (2, 3)"),
])
def test_horizontal_edge_kernel_names_each_mistake(kernel, says):
    result = grade("horizontal_edge_kernel", lambda: torch.tensor(kernel))
    assert not result.passed and says in result.message, result.message
