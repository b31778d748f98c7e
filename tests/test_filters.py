"""Notebook 04's modules: train-or-load cache, filter grids, hooks, activation maximisation, explorer, checks."""
import base64
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_utils.checks import KINDS, grade, questions_for, written_for
from course_utils.data import MEAN, STD
from course_utils.filters import (conv_layers, feature_maps, filter_grid, image_grid, maximize_activation,
                                  plot_filters, spatial_layers)
from course_utils.grading.replay import record, replay
from course_utils.kernels import receptive_field
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
    assert explorer.panel_titles[1] == "filter weights: layer2.0 channel 0, 16 kernels 5×5"
    bundle, metadata = explorer._repr_mimebundle_()
    assert metadata["image/png"]["alt"] == explorer.alt
    assert bundle["image/png"] == explorer.output.outputs[0]["data"]["image/png"]
    assert "application/vnd.jupyter.widget-view+json" in bundle and bundle["image/png"] in bundle["text/html"]
    with pytest.raises(ValueError, match="N, 1, 28, 28"):
        FilterExplorer({"two": TwoLayerCNN()}, data.X_test[0], data.y_test)


# ---------------------------------------------------------------- the checks of the exercise sheet

NOTEBOOK = "04_filter_visualization"


def test_the_sheet_has_six_checked_questions_in_four_kinds_and_a_written_one_all_with_tiered_hints():
    questions = questions_for(NOTEBOOK)
    assert [q.id for q in questions] == ["feature_maps", "normalize_filters", "filter_tiles", "odd_pool_shape",
                                         "pool_receptive_field", "positive_filter_choice", "ink_channels",
                                         "conv_input_grad", "conv_layer_backward"]
    assert len({q.kind for q in questions}) >= 4 and all(q.kind in KINDS for q in questions)
    assert [w.id for w in written_for(NOTEBOOK)] == ["first_layer_filters"]
    assert all(2 <= len(q.hints) <= 3 for q in questions + written_for(NOTEBOOK))


def test_solution_answers_pass_and_stubs_are_not_attempted():
    solution = solution_functions(NOTEBOOK)
    for q in questions_for(NOTEBOOK):
        result = grade(q.id, solution[q.answer_name])
        assert result.passed and result.points == q.max_points, (q.id, result.message)
        stub = grade(q.id, lambda *args, **kwargs: (_ for _ in ()).throw(NotImplementedError()))
        assert not stub.passed and (not stub.attempted or q.kind in ("predict", "concept")), (q.id, stub.message)
        assert not grade(q.id, None).attempted
    written = grade("first_layer_filters", None)
    assert written.written and "recorded for your instructor" in written.message


def fails_with(qid: str, answer, fragment: str, points: float = 0.0) -> str:
    result = grade(qid, answer)
    assert not result.passed and fragment in result.message and result.points == points, result.message
    return result.message


# feature_maps

def maps_by_hook(model, image, layer):
    captured = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: captured.update(o=o))
    try:
        model.eval()
        with torch.no_grad():
            model(image.unsqueeze(0))
    finally:
        handle.remove()
    return captured["o"][0]


def maps_by_list_and_inference_mode(model, image, layer):
    outputs = []
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: outputs.append(o.clone()))
    with torch.inference_mode():
        model.eval()(image[None])
    handle.remove()
    return outputs[0].squeeze(0).numpy()


def maps_by_the_course(model, image, layer):
    return feature_maps(model, image, [layer])[layer]


@pytest.mark.parametrize("answer", [maps_by_hook, maps_by_list_and_inference_mode, maps_by_the_course])
def test_feature_maps_accepts_hooks_of_every_style(answer):
    assert grade("feature_maps", answer).passed, grade("feature_maps", answer).message


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


def hooked_input(model, image, layer):
    out = {}
    handle = model.get_submodule(layer).register_forward_hook(lambda m, i, o: out.update(i=i[0]))
    model.eval()(image[None])
    handle.remove()
    return out["i"][0]


def batch_kept(model, image, layer):
    return maps_by_hook(model, image, layer)[None]


def wrong_layer(model, image, layer):
    return maps_by_hook(model, image, layer) + 1.0


@pytest.mark.parametrize("answer, fragment", [
    (leaky_hook, "hook is still registered"), (train_mode, "training-mode ones"),
    (hooked_input, "the layer's input, not its output"), (batch_kept, "return (C, H, W)"),
    (wrong_layer, "off from the reference"),
])
def test_feature_maps_names_each_mistake(answer, fragment):
    fails_with("feature_maps", answer, fragment)


# normalize_filters

def scale_with_torch_where(weight):
    w = torch.as_tensor(weight).detach()
    flat = w.reshape(len(w), -1)
    low, high = flat.amin(1).view(-1, 1, 1, 1), flat.amax(1).view(-1, 1, 1, 1)
    return torch.where(high > low, (w - low) / (high - low), torch.zeros_like(w))


def scale_with_numpy(weight):
    w = weight.detach().numpy() if isinstance(weight, torch.Tensor) else np.asarray(weight)
    flat = w.reshape(len(w), -1)
    low, high = flat.min(1)[:, None, None, None], flat.max(1)[:, None, None, None]
    return (w - low) / np.maximum(high - low, 1e-12)


def scale_filter_by_filter(weight):
    w = torch.tensor(np.array(weight.detach() if isinstance(weight, torch.Tensor) else weight))
    out = torch.zeros_like(w)
    for o in range(len(w)):
        span = w[o].max() - w[o].min()
        out[o] = (w[o] - w[o].min()) / span if span > 0 else 0.5
    return out


@pytest.mark.parametrize("answer", [scale_with_torch_where, scale_with_numpy, scale_filter_by_filter])
def test_normalize_filters_accepts_torch_numpy_and_a_loop_over_filters(answer):
    assert grade("normalize_filters", answer).passed, grade("normalize_filters", answer).message


def scale_bank(weight):
    w = torch.as_tensor(weight).detach()
    return (w - w.min()) / (w.max() - w.min())


def scale_each_kernel(weight):
    w = torch.as_tensor(weight).detach()
    flat = w.flatten(2)
    return ((flat - flat.amin(2, keepdim=True)) / (flat.amax(2, keepdim=True) - flat.amin(2, keepdim=True))).view_as(w)


def scale_by_abs(weight):
    w = torch.as_tensor(weight).detach()
    return w / w.flatten(1).abs().amax(1).view(-1, 1, 1, 1)


def scale_around_half(weight):
    return (scale_by_abs(weight) + 1) / 2


def scale_in_place(weight):
    w = torch.as_tensor(weight).detach()
    flat = w.reshape(len(w), -1)
    low, high = flat.amin(1).view(-1, 1, 1, 1), flat.amax(1).view(-1, 1, 1, 1)
    w -= low
    w /= (high - low).clamp_min(1e-12)
    return w


def scale_to_nan(weight):
    w = torch.as_tensor(weight).detach()
    flat = w.reshape(len(w), -1)
    low, high = flat.amin(1).view(-1, 1, 1, 1), flat.amax(1).view(-1, 1, 1, 1)
    return (w - low) / (high - low)


@pytest.mark.parametrize("answer, fragment", [
    (scale_bank, "scales the whole bank at once"), (scale_each_kernel, "scales each k x k kernel"),
    (scale_by_abs, "that gives [-1, 1]"), (scale_around_half, "puts 0 at 0.5"),
    (scale_in_place, "changed the weights passed to it"), (scale_to_nan, "0 / 0 = nan"),
    (lambda w: 2 * scale_with_torch_where(w), "outside [0, 1]"),
    (lambda w: scale_with_torch_where(w) ** 2, "differ from each filter scaled"),
    (lambda w: scale_with_torch_where(w).flatten(1), "has shape"),
])
def test_normalize_filters_names_each_mistake(answer, fragment):
    fails_with("normalize_filters", answer, fragment)


# filter_tiles

def tiles_buggy(weight):
    w = weight.detach()
    w -= w.min()
    w /= w.max()
    c_out, c_in, kh, kw = w.shape
    return w.permute(1, 0, 3, 2).reshape(c_out * c_in, kh, kw)


def tiles_fixed(weight):
    w = weight.detach()
    c_out, c_in, kh, kw = w.shape
    flat = w.reshape(c_out, -1)
    low, high = flat.amin(1).view(-1, 1, 1, 1), flat.amax(1).view(-1, 1, 1, 1)
    return ((w - low) / (high - low)).reshape(c_out * c_in, kh, kw)


def tiles_by_loops(weight):
    tiles = []
    for o in range(weight.shape[0]):
        f = weight[o].detach()
        f = (f - f.min()) / (f.max() - f.min())
        tiles += [f[i] for i in range(weight.shape[1])]
    return torch.stack(tiles)


def tiles_numpy_with_channel(weight):
    w = weight.detach().numpy()
    low = w.min(axis=(1, 2, 3), keepdims=True)
    high = w.max(axis=(1, 2, 3), keepdims=True)
    return ((w - low) / (high - low)).reshape(-1, 1, *w.shape[2:])


@pytest.mark.parametrize("answer", [tiles_fixed, tiles_by_loops, tiles_numpy_with_channel])
def test_filter_tiles_accepts_fixes_in_every_style(answer):
    assert grade("filter_tiles", answer).passed, grade("filter_tiles", answer).message


def tiles_only_in_place(weight):
    w = weight.detach()
    c_out, c_in, kh, kw = w.shape
    low, high = w.flatten(1).amin(1).view(-1, 1, 1, 1), w.flatten(1).amax(1).view(-1, 1, 1, 1)
    w -= low
    w /= high - low
    return w.reshape(c_out * c_in, kh, kw).clone()


def tiles_only_bank(weight):
    w = weight.detach().clone()
    return ((w - w.min()) / (w.max() - w.min())).reshape(-1, *w.shape[2:])


def tiles_only_in_major(weight):
    c_out, c_in, kh, kw = weight.shape
    return tiles_fixed(weight).reshape(c_out, c_in, kh, kw).transpose(0, 1).reshape(-1, kh, kw)


def tiles_each_kernel(weight):
    c_out, c_in, kh, kw = weight.shape
    return tiles_fixed(weight.reshape(c_out * c_in, 1, kh, kw))


def tiles_only_transposed(weight):
    return tiles_fixed(weight).transpose(1, 2)


@pytest.mark.parametrize("answer, fragment", [
    (tiles_only_in_place, ".detach() shares memory"), (tiles_only_bank, "scales the whole bank at once"),
    (tiles_only_in_major, "input-channel-major order"), (tiles_only_transposed, "each k x k kernel is transposed"),
    (tiles_each_kernel, "scales each kernel"),
])
def test_filter_tiles_names_the_one_bug_left_and_gives_partial_credit(answer, fragment):
    message = fails_with("filter_tiles", answer, fragment, points=1.5)
    assert "1 bug left" in message and "fixing 3 of the 4 bugs" in message


def test_filter_tiles_names_all_four_bugs_of_the_given_function_and_an_unknown_one():
    message = fails_with("filter_tiles", tiles_buggy, "4 bugs left")
    assert all(f in message for f in (".detach() shares memory", "whole bank", "input-channel-major", "transposed"))
    fails_with("filter_tiles", lambda w: tiles_fixed(w) ** 2, "not in a way one of the known bugs explains")


# odd_pool_shape

def test_odd_pool_shape_draws_an_input_per_student_with_one_odd_side_and_names_it(monkeypatch):
    from course_utils.checks import set_student
    from course_utils.checks.filters import pool_input_size
    sizes = {sid: pool_input_size(sid) for sid in ("", "alice", "bob", "carol")}
    assert len(set(sizes.values())) == 4 and all(sum(side % 2 for side in size) == 1 for size in sizes.values())
    assert pool_input_size("") == (30, 19)
    set_student("alice")
    h, w = sizes["alice"]
    result = grade("odd_pool_shape", (16, (h - 4) // 2, (w - 4) // 2))
    assert result.passed and f"{h} x {w}" in result.message
    assert not grade("odd_pool_shape", (16, 13, 7)).passed or sizes["alice"] == (30, 19)


@pytest.mark.parametrize("answer", [(16, 13, 7), [16, 13, 7], torch.Size([16, 13, 7]), np.array([16, 13, 7])])
def test_odd_pool_shape_accepts_a_tuple_list_size_or_array(answer):
    result = grade("odd_pool_shape", answer)
    assert result.passed and "30 x 19" in result.message, result.message


@pytest.mark.parametrize("answer, fragment", [
    ((1, 16, 13, 7), "batch dimension"), ((13, 7, 16), "channels come last"), ((16, 7, 13), "sides are swapped"),
    ((16, 13, 8), "rounded up"), ((16, 12, 12), "28 x 28 digit"), ((16, 15, 9), "neither 3x3 convolution"),
    ((16, 14, 8), "two convolutions"), ((16, 12, 6), "not n - 3"), ((16, 26, 15), "halves each side"),
    ((8, 13, 7), "conv1's channel count"), ((32, 13, 7), "channel count of the convolution"),
    ((16, 13), "has 3 numbers"), ((16.0, 13, 7), "other than ints"), ("16x13x7", "a tuple of ints"),
    ((16, 10, 10), "trace each side"),
])
def test_odd_pool_shape_explains_each_wrong_shape_without_the_answer(answer, fragment):
    message = fails_with("odd_pool_shape", answer, fragment)
    assert "(16, 13, 7)" not in message


# pool_receptive_field

@pytest.mark.parametrize("answer", [6, np.int64(6), torch.tensor(6), receptive_field([3, 3, 2], [1, 1, 2])])
def test_receptive_field_count_accepts_ints_of_every_kind(answer):
    assert grade("pool_receptive_field", answer).passed


@pytest.mark.parametrize("answer, fragment", [
    (5, "the field of conv2's units"), (7, "not its whole window"), (8, "you added the kernel sizes"),
    (10, "applied to the layers before it"), (12, "you doubled"), (9, "walk back from one unit"),
    (6.0, "a count is a whole number"), ("6", "a count is a whole number"),
])
def test_receptive_field_count_names_each_mistake_without_giving_the_count_away(answer, fragment):
    message = fails_with("pool_receptive_field", answer, fragment)
    assert "expected 6" not in message and "= 6" not in message


# positive_filter_choice

@pytest.mark.parametrize("answer", ["a", "A", " a ", ["a"]])
def test_positive_filter_choice_accepts_the_letter_written_any_way(answer):
    assert grade("positive_filter_choice", answer).passed


@pytest.mark.parametrize("answer, fragment", [
    ("b", "needs weights of both signs"), ("c", "largest on the ink"), ("d", "follows the strokes"),
    ("e", "not an option"), (1, "answer with a letter"),
])
def test_positive_filter_choice_explains_each_wrong_option(answer, fragment):
    fails_with("positive_filter_choice", answer, fragment)


# ink_channels

def ink_by_sum(weight, bias):
    return [o for o in range(len(weight)) if weight[o].sum() > 0]


def ink_by_responses(weight, bias):
    ink, background = (1 - MEAN) / STD, -MEAN / STD
    patch = torch.ones_like(weight[:1].detach())
    on_ink = F.conv2d(ink * patch, weight.detach(), bias.detach()).flatten()
    on_background = F.conv2d(background * patch, weight.detach(), bias.detach()).flatten()
    return on_ink > on_background


def ink_by_numpy_mask(weight, bias):
    return np.asarray(weight.detach()).reshape(len(weight), -1).mean(axis=1) > 0


def ink_by_nonzero(weight, bias):
    return (weight.detach().flatten(1).sum(1) > 0).nonzero()


@pytest.mark.parametrize("answer", [ink_by_sum, ink_by_responses, ink_by_numpy_mask, ink_by_nonzero,
                                    lambda w, b: set(ink_by_sum(w, b)), lambda w, b: torch.tensor(ink_by_sum(w, b))])
def test_ink_channels_accepts_indices_masks_and_the_responses_themselves(answer):
    result = grade("ink_channels", answer)
    assert result.passed, result.message


def only(mask_of):
    return lambda w, b: [o for o, yes in enumerate(mask_of(w.detach().double(), b.detach().double())) if yes]


@pytest.mark.parametrize("answer, fragment", [
    (only(lambda w, b: b > 0), "positive bias"),
    (only(lambda w, b: (1 - MEAN) / STD * w.flatten(1).sum(1) + b > 0), "response on ink is positive"),
    (only(lambda w, b: w.flatten(1).sum(1) < 0), "respond more to the background"),
    (only(lambda w, b: w[:, 0, w.shape[2] // 2, w.shape[3] // 2] > 0), "centre weight only"),
    (only(lambda w, b: (w.flatten(1) > 0).double().mean(1) > 0.5), "counted the positive weights"),
    (only(lambda w, b: w.flatten(1).gather(1, w.flatten(1).abs().argmax(1, keepdim=True))[:, 0] > 0),
     "sign of the largest weight"),
    (only(lambda w, b: (w.flatten(1) > 0).all(1)), "every weight positive"),
    (lambda w, b: w.detach().flatten(1).sum(1), "not per-channel scores"),
    (lambda w, b: [0, 0], "each once"), (lambda w, b: [True], "a mask of 1 entries"),
    (lambda w, b: "0, 2", "return the channel indices"),
    (lambda w, b: ink_by_sum(w, b)[1:] if w.shape[-1] == 3 else ink_by_sum(w, b),
     "you left out channel"),
])
def test_ink_channels_names_each_mistake(answer, fragment):
    fails_with("ink_channels", answer, fragment)


def test_ink_channels_draws_its_layers_per_student_with_the_edge_sizes():
    from course_utils.checks import set_student
    seen = {}
    for sid in ("", "alice"):
        calls = []
        set_student(sid)
        assert grade("ink_channels", lambda w, b: calls.append((w.detach().clone(), b.detach().clone()))
                     or ink_by_sum(w, b)).passed
        seen[sid] = calls
    assert [tuple(w.shape) for w, _ in seen[""]] == [(8, 1, 3, 3), (8, 1, 5, 5), (4, 1, 1, 1)]
    assert not all(torch.equal(a[0], b[0]) for a, b in zip(seen[""], seen["alice"]))


# conv_input_grad

def grad_by_loops(g, w):
    kh, kw = w.shape
    dx = torch.zeros(g.shape[0] + kh - 1, g.shape[1] + kw - 1, dtype=w.dtype)
    for i in range(g.shape[0]):
        for j in range(g.shape[1]):
            dx[i:i + kh, j:j + kw] += g[i, j] * w
    return dx


def grad_by_flipped_conv(g, w):
    kh, kw = w.shape
    return F.conv2d(F.pad(g[None, None], (kw - 1, kw - 1, kh - 1, kh - 1)), w.flip(0, 1)[None, None])


def grad_by_fold(g, w):
    kh, kw = w.shape
    columns = w.reshape(-1, 1) * g.reshape(1, -1)
    return F.fold(columns[None], (g.shape[0] + kh - 1, g.shape[1] + kw - 1), (kh, kw))[0, 0]


def grad_by_numpy(g, w):
    g, w = np.asarray(g), np.asarray(w)
    kh, kw = w.shape
    dx = np.zeros((g.shape[0] + kh - 1, g.shape[1] + kw - 1))
    for i, j in np.ndindex(*g.shape):
        dx[i:i + kh, j:j + kw] += g[i, j] * w
    return dx


@pytest.mark.parametrize("answer", [grad_by_loops, grad_by_flipped_conv, grad_by_fold, grad_by_numpy])
def test_conv_input_grad_accepts_loops_a_flipped_convolution_fold_and_numpy(answer):
    result = grade("conv_input_grad", answer)
    assert result.passed and "below 1e-7" in result.message, result.message


def grad_by_backward(g, w):
    x = torch.zeros(g.shape[0] + w.shape[0] - 1, g.shape[1] + w.shape[1] - 1, dtype=w.dtype, requires_grad=True)
    (F.conv2d(x[None, None], w[None, None])[0, 0] * g).sum().backward()
    return x.grad


def grad_by_autograd_grad(g, w):
    x = torch.zeros(g.shape[0] + w.shape[0] - 1, g.shape[1] + w.shape[1] - 1, dtype=w.dtype, requires_grad=True)
    return torch.autograd.grad((F.conv2d(x[None, None], w[None, None])[0, 0] * g).sum(), x)[0]


@pytest.mark.parametrize("answer, fragment", [
    (lambda g, w: grad_by_flipped_conv(g, w.flip(0, 1)), "turned 180 degrees"),
    (lambda g, w: grad_by_loops(torch.ones_like(g), w), "ignores grad_output"),
    (lambda g, w: grad_by_loops(g.float(), w.float()), "returned torch.float32"),
    (grad_by_backward, "calls Tensor.backward"), (grad_by_autograd_grad, "calls torch.autograd.grad"),
    (lambda g, w: F.conv_transpose2d(g[None, None], w[None, None])[0, 0], "calls conv_transpose2d"),
    (lambda g, w: g * w.sum(), "has the shape of grad_output"),
    (lambda g, w: 1.001 * grad_by_loops(g, w), "relative error"),
])
def test_conv_input_grad_names_each_mistake(answer, fragment):
    fails_with("conv_input_grad", answer, fragment)


# the trust boundary

@pytest.mark.parametrize("qid, answer", [
    ("normalize_filters", scale_with_numpy), ("normalize_filters", scale_in_place), ("filter_tiles", tiles_buggy),
    ("filter_tiles", tiles_fixed), ("feature_maps", leaky_hook), ("conv_input_grad", grad_by_backward),
    ("conv_input_grad", grad_by_fold), ("odd_pool_shape", (16, 24, 24)), ("pool_receptive_field", 6),
    ("ink_channels", ink_by_responses), ("ink_channels", only(lambda w, b: b > 0)),
])
def test_replayed_grading_gives_the_verdict_and_message_of_the_notebook(qid, answer):
    replayed, direct = replay(qid, record(qid, answer)), grade(qid, answer)
    assert (replayed.points, replayed.message) == (direct.points, direct.message)


def test_checks_compute_references_before_the_students_code_can_change_its_inputs():
    def zeroing_maps(model, image, layer):
        with torch.no_grad():
            for p in model.parameters():
                p.zero_()
            image.zero_()
        return feature_maps(model, image, [layer])[layer]      # maps of the zeroed model: all biases, no weights

    def zeroing_ink(weight, bias):
        with torch.no_grad():
            weight.zero_()
            bias.zero_()
        return []

    def zeroing_grad(g, w):
        g.zero_()
        w.zero_()
        return torch.zeros(g.shape[0] + w.shape[0] - 1, g.shape[1] + w.shape[1] - 1, dtype=w.dtype)

    def zeroing_tiles(weight):
        with torch.no_grad():
            weight.fill_(1.0)
        return torch.zeros(weight.shape[0] * weight.shape[1], *weight.shape[2:])

    assert not grade("feature_maps", zeroing_maps).passed
    assert not grade("ink_channels", zeroing_ink).passed
    assert not grade("conv_input_grad", zeroing_grad).passed
    assert not grade("filter_tiles", zeroing_tiles).passed
