"""Notebook 04's modules: train-or-load cache, filter grids, hooks, activation maximisation, explorer, checks."""
import base64
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F

from course_utils.checks import grade
from course_utils.data import MEAN, STD
from course_utils.filters import (conv_layers, feature_maps, filter_grid, image_grid, maximize_activation,
                                  plot_filters, spatial_layers)
from course_utils.model_cache import TrainConfig, build_model, cache_path, train_or_load
from course_utils.models import TutorialCNN, TwoLayerCNN
from course_utils.widgets import FilterExplorer

ROOT = Path(__file__).resolve().parent.parent
TINY = TrainConfig("TwoLayerCNN", optimizer="Adam", lr=1e-3, batch_size=128, epochs=1)


@pytest.fixture(scope="module")
def data(mnist):
    return mnist.subset(512, 200)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_COURSE_CACHE", str(tmp_path))
    return tmp_path


def solution_functions(notebook: str) -> dict:
    """The imports and the exercise functions of solutions/<notebook>.ipynb, executed."""
    nb = nbformat.read(ROOT / "solutions" / f"{notebook}.ipynb", as_version=4)
    namespace: dict = {}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if "### BEGIN SOLUTION" in cell.source:
            exec(cell.source, namespace)
        else:
            exec("\n".join(line for line in cell.source.splitlines()
                           if line.startswith(("import ", "from "))), namespace)
    return namespace


def test_train_or_load_trains_once_then_loads_the_same_weights(data, cache, capsys):
    model, history = train_or_load(TINY, data, torch.device("cpu"), progress=False)
    assert cache_path(TINY, data).is_file() and cache_path(TINY, data).parent == cache
    again, loaded = train_or_load(TINY, data, torch.device("cpu"), progress=False)
    assert "Loaded TwoLayerCNN" in capsys.readouterr().out
    assert loaded == history
    for p, q in zip(model.parameters(), again.parameters()):
        assert torch.equal(p, q)
    assert not again.training


def test_cache_key_depends_on_configuration_and_data(data):
    assert cache_path(TINY, data) != cache_path(TrainConfig("TwoLayerCNN", epochs=2, batch_size=128), data)
    assert cache_path(TINY, data) != cache_path(TINY, data.subset(256))
    assert cache_path(TINY, data) == cache_path(TrainConfig("TwoLayerCNN", "Adam", 1e-3, 128, 1), data)


def test_corrupt_cache_file_is_retrained_with_a_message(data, cache, capsys):
    path = cache_path(TINY, data)
    path.write_bytes(b"not a checkpoint")
    model, history = train_or_load(TINY, data, torch.device("cpu"), progress=False)
    assert "unreadable" in capsys.readouterr().out
    assert len(history.test_acc) == 1
    assert torch.load(path, weights_only=True)["history"]["test_acc"] == history.test_acc


def test_build_model_is_reproducible_and_rejects_unknown_names():
    a, b = build_model(TINY), build_model(TINY)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(ValueError, match="TwoLayerCNN"):
        build_model(TrainConfig("NoSuchNet"))


def test_filter_grid_places_weight_o_i_at_row_o_column_i():
    weight = torch.randn(4, 3, 5, 5)
    grid = filter_grid(weight, padding=1)
    assert grid.shape == (1 + 4 * 6, 1 + 3 * 6)
    for o in range(4):
        for i in range(3):
            r, c = 1 + 6 * o, 1 + 6 * i
            assert torch.equal(grid[r:r + 5, c:c + 5], weight[o, i])
    assert torch.isnan(grid[0]).all() and torch.isnan(grid[:, 0]).all()


def test_first_layer_grid_has_eight_filters_per_row():
    weight = TutorialCNN().layer1[0].weight                      # (16, 1, 5, 5)
    grid = filter_grid(weight)
    assert grid.shape == (1 + 2 * 6, 1 + 8 * 6)
    assert torch.equal(grid[7:12, 1:6], weight[8, 0].detach())


def test_grid_helpers_reject_wrong_shapes():
    with pytest.raises(ValueError, match="C_out, C_in"):
        filter_grid(torch.randn(8, 3, 3))
    with pytest.raises(ValueError, match="one channel"):
        image_grid(torch.randn(4, 3, 5, 5))


def test_plot_filters_uses_a_diverging_map_centred_at_zero():
    weight = TwoLayerCNN().conv2.weight
    image = plot_filters(weight).images[0]
    assert image.cmap.name == "RdBu_r"
    image.norm.autoscale(image.get_array())
    assert image.norm.vmin == pytest.approx(-image.norm.vmax)
    assert image.norm.vmax == pytest.approx(weight.abs().max().item())


def test_feature_maps_equal_the_layers_computed_by_hand(data):
    model, image = TwoLayerCNN(), data.X_test[0]
    maps = feature_maps(model, image, ["conv1", "conv2", "pool"])
    conv1 = F.conv2d(image[None], model.conv1.weight, model.conv1.bias)
    conv2 = F.conv2d(conv1.relu(), model.conv2.weight, model.conv2.bias)
    torch.testing.assert_close(maps["conv1"], conv1[0])
    torch.testing.assert_close(maps["conv2"], conv2[0])
    torch.testing.assert_close(maps["pool"], F.max_pool2d(conv2, 2)[0])      # ReLU follows the pool
    assert not model.conv1._forward_hooks and not model.pool._forward_hooks
    with pytest.raises(ValueError, match="one image"):
        feature_maps(model, data.X_test[:2], ["conv1"])


def test_layer_listings():
    assert spatial_layers(TwoLayerCNN()) == ["conv1", "conv2", "pool"]
    assert conv_layers(TutorialCNN()) == ["layer1.0", "layer2.0"]
    assert len(spatial_layers(TutorialCNN())) == 8


def test_gradient_ascent_excites_each_channel_and_leaves_the_weights_alone():
    torch.manual_seed(0)
    model = TutorialCNN().eval()
    before = [p.clone() for p in model.parameters()]
    start = 0.1 * torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    x = maximize_activation(model, "layer2.0", channels=[0, 1, 2, 3], steps=30)
    assert x.shape == (4, 1, 28, 28)
    assert x.min() >= -MEAN / STD - 1e-6 and x.max() <= (1 - MEAN) / STD + 1e-6
    with torch.no_grad():
        act_x = model.layer2[0](model.layer1(x))[range(4), range(4)].mean(dim=(1, 2))
        act_0 = model.layer2[0](model.layer1(start))[range(4), range(4)].mean(dim=(1, 2))
    assert (act_x > act_0 + 0.03).all()
    assert all(torch.equal(p, q) and p.grad is None for p, q in zip(model.parameters(), before))


def test_gradient_ascent_on_a_first_layer_centre_unit_rediscovers_its_filter():
    torch.manual_seed(0)
    model = TutorialCNN()
    x = maximize_activation(model, "layer1.0", channels=[3, 7], centre=True, steps=100)
    for image, c in zip(x, [3, 7]):
        patch = image[0, 12:17, 12:17].flatten()                 # the 5x5 field of the unit at (14, 14)
        weight = model.layer1[0].weight[c, 0].detach().flatten()
        assert torch.corrcoef(torch.stack([patch, weight]))[0, 1] > 0.8


def test_explorer_updates_its_figure_and_follows_the_model(data):
    explorer = FilterExplorer({"two": TwoLayerCNN(), "tutorial": TutorialCNN()}, data.X_test, data.y_test)
    first = explorer.output.outputs[0]["data"]["image/png"]
    explorer.digit_slider.value = 1
    second = explorer.output.outputs[0]["data"]["image/png"]
    assert second != first and base64.b64decode(second).startswith(b"\x89PNG")
    explorer.model_menu.value = "tutorial"
    assert list(explorer.layer_menu.options) == ["layer1.0", "layer2.0"] and explorer.channel_slider.max == 15
    explorer.layer_menu.value = "layer2.0"
    assert explorer.channel_slider.max == 31
    assert "layer2.0 filter 0" in explorer.caption.value and "16 input channels" in explorer.caption.value
    bundle = explorer._repr_mimebundle_()
    assert bundle["image/png"] == explorer.output.outputs[0]["data"]["image/png"]
    assert "application/vnd.jupyter.widget-view+json" in bundle and explorer.caption.value in bundle["text/html"]
    with pytest.raises(ValueError, match="N, 1, 28, 28"):
        FilterExplorer({"two": TwoLayerCNN()}, data.X_test[0], data.y_test)


def test_reference_and_solution_answers_pass_and_stubs_are_not_attempted():
    solution = solution_functions("04_filter_visualization")
    for qid in ("plot_filters", "feature_maps"):
        assert grade(qid, solution[qid]).passed, grade(qid, solution[qid]).message
        stub = grade(qid, lambda *args, **kwargs: (_ for _ in ()).throw(NotImplementedError()))
        assert not stub.attempted and not stub.passed


def test_checks_catch_the_common_mistakes():
    def gray_filters(weight, ax=None):
        ax.imshow(filter_grid(weight).numpy(), cmap="gray")
        return ax

    def minmax_filters(weight, ax=None):
        ax.imshow(filter_grid(weight).numpy(), cmap="RdBu_r")
        return ax

    def leaky_hook(model, image, layer):
        out = {}
        model.get_submodule(layer).register_forward_hook(lambda m, i, o: out.update(o=o))
        model.eval()(image[None])
        return out["o"][0]

    def train_mode(model, image, layer):
        out = {}
        handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: out.update(o=o))
        model(image[None])
        handle.remove()
        return out["o"][0]

    assert "not diverging" in grade("plot_filters", gray_filters).message
    assert "not centred" in grade("plot_filters", minmax_filters).message
    assert "hook is still registered" in grade("feature_maps", leaky_hook).message
    assert "model.eval()" in grade("feature_maps", train_mode).message


def test_checks_compute_references_before_the_students_code_can_change_its_inputs():
    def zeroing_maps(model, image, layer):
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
            image.zero_()
        return feature_maps(model, image, [layer])[layer]      # maps of the zeroed model: all biases, no weights

    def zeroing_filters(weight, ax=None):
        with torch.no_grad():
            weight.zero_()
        ax.imshow(torch.zeros(10, 10), cmap="RdBu_r", vmin=-1, vmax=1)
        return ax

    assert not grade("feature_maps", zeroing_maps).passed
    assert not grade("plot_filters", zeroing_filters).passed
