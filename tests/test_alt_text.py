"""Alt text computed from each figure's data, carried in the display metadata, on every figure of a smoke run."""
import matplotlib
import nbformat
import pytest
import torch
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from course_utils.alt_text import describe_figure, number, show  # noqa: E402
from course_utils.filters import plot_filters  # noqa: E402
from course_utils.plotting import confusion_matrix, plot_confusion, plot_digits, plot_history  # noqa: E402
from course_utils.run_notebooks import ROOT, run_notebook  # noqa: E402
from course_utils.training import History  # noqa: E402


def test_numbers_read_as_a_person_writes_them():
    assert [number(v) for v in (1770, 98.74, 0.0712, -0.41, 2.0)] == ["1,770", "98.7", "0.071", "−0.41", "2"]


def test_history_figure_says_steps_losses_and_accuracies():
    torch.manual_seed(0)
    losses = (2.3 * torch.rand(40).sort(descending=True).values).tolist()
    history = History(step_loss=losses, train_acc=[0.9, 0.95, 0.97], test_acc=[0.964, 0.98, 0.987])
    alt = describe_figure(plot_history(history))
    assert f"training loss over 40 steps, from {number(losses[0])} to {number(losses[-1])}" in alt
    assert "test accuracy per epoch over 3 epochs, from 96.4 % to 98.7 %" in alt
    assert "train accuracy per epoch over 3 epochs, from 90.0 % to 97.0 %" in alt


def test_filter_figure_says_how_many_filters_their_size_and_weight_range():
    weight = torch.randn(8, 1, 3, 3)
    alt = describe_figure(plot_filters(weight, title="conv1").figure)
    low, high = weight.min().item(), weight.max().item()
    assert alt.startswith("conv1: 8 filters 3×3, weights from ") and f"from {number(low)} to {number(high)}" in alt


def test_digit_grid_and_confusion_matrix_say_what_they_show():
    alt = describe_figure(plot_digits(torch.zeros(3, 1, 28, 28), ["a", "b", "c"], suptitle="Three"))
    assert alt == "Three. 3 digit images 28×28, black on white, titled: a, b, c"
    y_true, y_pred = torch.tensor([0, 0, 1, 1, 1, 2]), torch.tensor([0, 1, 1, 2, 2, 2])
    alt = describe_figure(plot_confusion(confusion_matrix(y_true, y_pred, 3)).figure)
    assert "6 digits, 3 on the diagonal" in alt and "true 1 predicted 2 (2), true 0 predicted 1 (1)" in alt


def test_a_figure_drawn_by_hand_is_described_from_its_lines_and_images():
    fig, (ax_line, ax_image) = plt.subplots(1, 2)
    ax_line.plot([1, 2, 3, 4], [0.5, 0.9, 0.2, 0.3], label="run A")
    ax_line.set(xlabel="epoch", ylabel="loss", title="Loss")
    ax_image.imshow([[0.0, -1.5], [2.0, 0.25]])
    alt = describe_figure(fig)
    assert alt.startswith("2 panels. Panel 1: Loss: run A: loss over epoch 1 to 4 (4 points), from 0.5 to 0.3 "
                          "(range 0.2 to 0.9)")
    assert "Panel 2: image 2×2, values from −1.5 to 2" in alt


def test_show_needs_a_real_description():
    with pytest.raises(ValueError, match="non-empty description"):
        show(plt.figure(), alt="  ")


def test_in_a_kernel_every_figure_carries_its_alt_text_for_jupyterlab_and_nbconvert():
    nb = new_notebook(cells=[
        new_code_cell("import matplotlib.pyplot as plt\nfrom course_utils.notebook import show"),
        new_code_cell("fig, ax = plt.subplots()\nax.plot([3, 1, 2])\nax.set_title('shown at the end of the cell')"),
        new_code_cell("fig, ax = plt.subplots()\nax.plot([1, 2])\nplt.show()"),
        new_code_cell("show(plt.subplots()[0], alt='empty axes, on purpose')")])
    NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    outputs = [o for cell in nb.cells[1:] for o in cell.outputs if "image/png" in o.get("data", {})]
    assert len(outputs) == 3
    alts = [o.metadata["image/png"]["alt"] for o in outputs]
    assert alts[0].startswith("shown at the end of the cell: value over x 0 to 2 (3 points), from 3 to 2")
    assert alts[1].startswith("value over x 0 to 1 (2 points), from 1 to 2") and alts[2] == "empty axes, on purpose"
    for output, alt in zip(outputs, alts):
        assert output.data["text/html"] == f'<img src="data:image/png;base64,{output.data["image/png"]}" alt="{alt}">'


FIGURE_NOTEBOOKS = sorted(ROOT.glob("notebooks/*.ipynb")) + [
    p for p in sorted(ROOT.glob("solutions/*.ipynb")) if "plt.subplots" in p.read_text()]


@pytest.mark.parametrize("path", FIGURE_NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_image_of_a_smoke_run_has_alt_text(path, tmp_path):
    result = run_notebook(path, tmp_path, {"smoke": True}, kernel="python3", cell_timeout=600)
    assert result.status == "ok", result.status
    nb = nbformat.read(tmp_path / path.parent.name / path.name, as_version=4)
    images = [(i, o) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
              for o in cell.outputs if "image/png" in o.get("data", {})]
    without = [i for i, o in images if not o.get("metadata", {}).get("image/png", {}).get("alt", "").strip()]
    assert images and not without, f"cells whose images have no alt text: {without}"
