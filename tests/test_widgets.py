"""Notebook 04's filter explorer without a browser: panels, titles, colour bars, the blitted redraw, the digit box;
and the line train_or_load prints before it trains."""
import base64
import io

import ipywidgets as widgets
import numpy as np
import pytest
import torch
from PIL import Image

from browser_helpers import colour_bars, decode_png, text_in_top_band
from course_utils.alt_text import number
from course_utils.data import MNISTData
from course_utils.model_cache import (TrainConfig, announce_training, cache_path, duration_words,
                                      estimate_seconds, train_or_load)
from course_utils.models import TutorialCNN, TwoLayerCNN
from course_utils.widgets import ExplorerFigure, FilterExplorer, explorer_panels, panel_titles


@pytest.fixture(scope="module")
def explorer() -> FilterExplorer:
    torch.manual_seed(0)
    images, labels = torch.randn(30, 1, 28, 28), torch.arange(30) % 10
    return FilterExplorer({"two-layer": TwoLayerCNN(), "tutorial": TutorialCNN()}, images, labels, digit=2)


def shown(explorer: FilterExplorer) -> Image.Image:
    """The PNG the explorer's output holds now."""
    return Image.open(io.BytesIO(base64.b64decode(explorer.output.outputs[0]["data"]["image/png"])))


def full_draw(view: ExplorerFigure) -> np.ndarray:
    """The same figure drawn from scratch by matplotlib, every artist included (RGBA pixels)."""
    for artist in view._animated:
        artist.set_animated(False)
    try:
        view.canvas.draw()
        return np.asarray(view.canvas.buffer_rgba()).copy()
    finally:
        for artist in view._animated:
            artist.set_animated(True)
        view._shapes = []                            # the next draw lays out and saves its background afresh


def test_panel_titles_name_the_digit_the_filter_and_the_map():
    assert panel_titles("conv2", 5, (16, 8, 3, 3), (24, 24), 42, 7) == [
        "digit 42 (label 7)", "filter weights: conv2 channel 5, 8 kernels 3×3",
        "feature map: 24×24"]
    assert panel_titles("conv1", 0, (8, 1, 5, 5), (28, 28), 3)[::2] == ["digit 3", "feature map: 28×28"]
    assert panel_titles("conv1", 0, (8, 1, 5, 5), (28, 28), 3)[1].endswith("1 kernel 5×5")


def test_filter_panel_tiles_the_kernels_near_square():
    model = TutorialCNN()
    digit, grid, fmap = explorer_panels(model, "layer2.0", 3, torch.randn(1, 28, 28))
    assert grid.shape == (4 * 6 + 1, 4 * 6 + 1)                 # 16 kernels 5×5: 4 per row, 1-pixel NaN gaps
    weight = model.layer2[0].weight[3].detach()
    assert torch.equal(grid[1:6, 1:6], weight[0]) and torch.equal(grid[7:12, 1:6], weight[4])
    assert digit.shape == (28, 28) and fmap.shape == (14, 14)
    assert explorer_panels(TwoLayerCNN(), "conv2", 0, torch.randn(1, 28, 28))[1].shape == (13, 13)   # 8 in 3×3


def test_figure_has_three_titles_and_two_colour_bars_that_the_png_shows(explorer):
    view = explorer.view
    assert [t.get_text() for t in view.titles] == explorer.panel_titles
    assert explorer.panel_titles[0] == "digit 2 (label 2)"
    assert explorer.panel_titles[1].startswith("filter weights: ") and explorer.panel_titles[2].startswith("feature map")
    image = shown(explorer)
    assert image.text["Title"] == " | ".join(explorer.panel_titles)
    assert text_in_top_band(image) == [True, True, True]
    bars = colour_bars(image)
    assert len(bars) == 2 and bars[0][0] > image.width / 3              # beside the filter and the map panels
    assert len(view.colour_bars) == 2


def test_colour_bar_ends_are_the_panels_largest_absolute_value(explorer):
    explorer.digit_slider.value = 4
    _, grid, fmap = explorer_panels(explorer.models[explorer.model_menu.value], explorer.layer_menu.value,
                                    explorer.channel_slider.value, explorer.images[4])
    for image, (_, (top, bottom)), array in zip(explorer.view.images[1:], explorer.view.bar_ends, (grid, fmap)):
        m = array.nan_to_num(0).abs().max().item()
        assert image.get_clim() == pytest.approx((-m, m))
        assert top.get_text() == f"+{m:.3g}" and bottom.get_text() == f"−{m:.3g}"


def test_tools_find_no_colour_bar_or_titles_in_a_figure_without_them():
    from matplotlib.figure import Figure
    fig = Figure(figsize=(8, 3), dpi=80)
    for ax, seed in zip(fig.subplots(1, 3), range(3)):
        ax.imshow(torch.randn(14, 14, generator=torch.Generator().manual_seed(seed)).numpy(), cmap="RdBu_r")
        ax.set_axis_off()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    image = decode_png("data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode())
    assert colour_bars(image) == [] and text_in_top_band(image, band=0.05) == [False, False, False]


@pytest.mark.parametrize("moves", [
    [("digit_slider", 5), ("digit_slider", 6), ("digit_slider", 29)],
    [("channel_slider", 7), ("digit_slider", 11), ("channel_slider", 0)],
    [("layer_menu", "conv2"), ("digit_slider", 3), ("model_menu", "tutorial"), ("digit_slider", 8)],
], ids=["digits", "channels", "layers"])
def test_blitted_redraws_match_a_full_matplotlib_draw(moves):
    torch.manual_seed(1)
    explorer = FilterExplorer({"two-layer": TwoLayerCNN(), "tutorial": TutorialCNN()},
                              torch.randn(30, 1, 28, 28), torch.arange(30) % 10)
    for widget, value in moves:
        setattr(getattr(explorer, widget), "value", value)
    got = np.asarray(shown(explorer).convert("RGBA"))
    assert np.array_equal(got, full_draw(explorer.view))


def test_blitting_redraws_an_unchanged_title_that_a_changed_one_overlaps():
    view = ExplorerFigure(figsize=(5, 2.4))                # so narrow that neighbouring titles overlap
    g = torch.Generator().manual_seed(2)
    arrays = (torch.rand(28, 28, generator=g), torch.randn(5, 5, generator=g), torch.randn(28, 28, generator=g))
    view.draw(arrays, ["digit 1 (label 1)", "filter weights: conv1 channel 0, 1 kernel 5×5", "feature map"])
    png = view.draw(arrays, ["digit 1234 (label 9), a long title", "filter weights: conv1 channel 0, 1 kernel 5×5",
                             "feature map"])
    got = np.asarray(Image.open(io.BytesIO(base64.b64decode(png))).convert("RGBA"))
    assert np.array_equal(got, full_draw(view))


def test_a_digit_move_redraws_only_what_changed(explorer, monkeypatch):
    explorer.digit_slider.value = 7
    drawn = []
    figure = explorer.view.figure
    monkeypatch.setattr(figure, "draw_artist", lambda artist: drawn.append(artist))
    explorer.digit_slider.value = 8
    view = explorer.view
    assert view.images[0] in drawn and view.images[2] in drawn and view.titles[0] in drawn
    assert view.images[1] not in drawn and view.titles[1] not in drawn        # the filter did not change


def test_digit_box_sits_beside_the_slider_and_follows_it(explorer):
    box, slider = explorer.digit_box, explorer.digit_slider
    row = explorer.children[1].children
    assert row[row.index(slider) + 1] is box and row[row.index(box) + 1] is explorer.digit_message
    slider.value = 12
    assert box.value == "12" and explorer.panel_titles[0].startswith("digit 12 ")


@pytest.mark.parametrize("typed, shown, message", [
    ("17", 17, ""),
    ("12000", 29, "12,000 is past the last test digit: showing digit 29."),
    ("-3", 0, "-3 is below the first test digit: showing digit 0."),
    ("3.5", 5, "“3.5” is not a digit number: type a whole number from 0 to 29."),
    ("seven", 5, "“seven” is not a digit number: type a whole number from 0 to 29."),
])
def test_digit_box_clamps_or_rejects_and_says_why(explorer, typed, shown, message):
    explorer.digit_slider.value = 5
    explorer.digit_box.value = typed
    assert explorer.digit_slider.value == shown and explorer.digit_box.value == str(shown)
    assert explorer.panel_titles[0].startswith(f"digit {shown} ")
    assert explorer.digit_message.value == message


def test_figure_alt_text_names_the_panels_and_follows_digit_and_channel(explorer):
    explorer.digit_slider.value = 3
    explorer.channel_slider.value = 2
    output = explorer.output.outputs[0]
    alt = output["metadata"]["image/png"]["alt"]
    assert alt == explorer.alt and alt.startswith("digit 3 ") and "channel 2" in alt
    assert f'alt="{alt}"' in output["data"]["text/html"]
    _, grid, fmap = explorer_panels(explorer.models[explorer.model_menu.value], explorer.layer_menu.value, 2,
                                    explorer.images[3])
    low, high = fmap.min().item(), fmap.max().item()
    assert alt.endswith(f"values from {number(low)} to {number(high)}")
    explorer.digit_slider.value = 4
    assert explorer.alt.startswith("digit 4 ") and explorer.alt != alt


def test_static_views_get_the_current_figure(explorer):
    bundle, metadata = explorer._repr_mimebundle_()
    assert bundle["image/png"] == explorer.output.outputs[0]["data"]["image/png"]
    assert explorer.output.outputs[0]["data"]["image/png"] in bundle["text/html"]
    assert metadata["image/png"]["alt"] == explorer.alt and f'alt="{explorer.alt}"' in bundle["text/html"]


@pytest.fixture
def tiny_data() -> MNISTData:
    g = torch.Generator().manual_seed(0)
    X, y = torch.randn(300, 1, 28, 28, generator=g), torch.randint(0, 10, (300,), generator=g)
    return MNISTData(X[:200], y[:200], X[200:], y[200:], source="random noise", is_full=False)


def test_duration_words():
    assert [duration_words(s) for s in (3, 44, 150, 7200)] == ["under 10 s", "about 40 s", "about 2 min",
                                                                 "about 2.0 h"]


def test_training_estimate_grows_with_epochs_and_leaves_the_run_unchanged(tiny_data):
    one, ten = (estimate_seconds(TrainConfig("TwoLayerCNN", batch_size=50, epochs=e), tiny_data,
                                 torch.device("cpu")) for e in (1, 10))
    assert 0 < one and 3 < ten / one < 30


def test_train_or_load_announces_the_model_its_time_and_its_file_then_names_the_bar(tiny_data, tmp_path,
                                                                                     monkeypatch, capsys):
    monkeypatch.setenv("CNN_COURSE_CACHE", str(tmp_path))
    config = TrainConfig("TwoLayerCNN", batch_size=50, epochs=2)
    train_or_load(config, tiny_data, torch.device("cpu"))
    out, err = capsys.readouterr()
    line = out.splitlines()[0]
    assert line.startswith("Training TwoLayerCNN: 2 epochs of 4 batches of 50 on cpu, ")
    assert "under 10 s" in line and line.endswith(f"it will be saved to {cache_path(config, tiny_data)}")
    assert "TwoLayerCNN: 100%" in err                               # the progress bar carries the model's name
    train_or_load(config, tiny_data, torch.device("cpu"))
    assert "Training" not in capsys.readouterr().out              # loaded: nothing to announce


def test_quiet_training_announces_nothing(tiny_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CNN_COURSE_CACHE", str(tmp_path))
    train_or_load(TrainConfig("TwoLayerCNN", batch_size=50, epochs=1), tiny_data, torch.device("cpu"),
                  progress=False)
    assert capsys.readouterr() == ("", "")


def test_announcement_reads_the_same_as_train_or_load_prints(tiny_data):
    line = announce_training(TrainConfig("TutorialCNN", batch_size=100, epochs=1), tiny_data, torch.device("cpu"))
    assert line.startswith("Training TutorialCNN: 1 epoch of 2 batches of 100 on cpu")
