"""The ideas notebook 06 adds around its ResNets: 1x1 convolutions, global average pooling, and the standard
Dataset / DataLoader / transforms pipeline of `course_utils.loaders` (torchvision's MNIST or, without its raw
files, the images in memory)."""
import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import transforms

from course_utils import loaders
from course_utils.cost import count_parameters
from course_utils.data import MEAN, STD
from course_utils.loaders import ImageTensors, augmenting_transform, mnist_dataset
from course_utils.resnets import FastResNet, ReportResNet

PLAIN = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
LOW, HIGH = -MEAN / STD, (1 - MEAN) / STD


def test_a_1x1_convolution_is_a_linear_layer_over_channels_at_every_pixel():
    conv = nn.Conv2d(16, 32, 1)
    x = torch.randn(3, 16, 5, 5)
    per_pixel = x.permute(0, 2, 3, 1) @ conv.weight[:, :, 0, 0].T + conv.bias     # (N, H, W, C_out)
    torch.testing.assert_close(conv(x), per_pixel.permute(0, 3, 1, 2))
    assert count_parameters(conv) == 16 * 32 + 32


def test_global_average_pooling_lets_the_upgrade_take_any_size_and_keeps_its_classifier_small():
    model = FastResNet().eval()
    with torch.no_grad():
        assert model(torch.zeros(2, 1, 28, 28)).shape == model(torch.zeros(2, 1, 36, 36)).shape == (2, 10)
    assert count_parameters(model.fc) == 128 * 10 + 10
    assert count_parameters(ReportResNet().fc) == 128 * 6 * 6 * 10 + 10


def test_the_in_memory_dataset_gives_back_load_mnists_images(mnist):
    dataset = ImageTensors(mnist.X_train[:20], mnist.y_train[:20], PLAIN)
    for i in range(20):
        image, label = dataset[i]
        torch.testing.assert_close(image, mnist.X_train[i], rtol=0, atol=1e-6)
        assert label == mnist.y_train[i].item()


def test_mnist_dataset_is_torchvisions_where_the_raw_files_are_laid_out_for_it(mnist):
    dataset, how = mnist_dataset(PLAIN, mnist)
    if mnist.is_full and loaders.locate_mnist().parent.name == "MNIST":
        assert "torchvision's MNIST Dataset, reading" in how and len(dataset) == 60_000
        torch.testing.assert_close(dataset[7][0], mnist.X_train[7], rtol=0, atol=1e-6)
    else:
        assert "cannot be built here" in how and isinstance(dataset, ImageTensors)


def test_without_raw_files_the_images_in_memory_are_wrapped_and_the_sentence_says_so(mnist, monkeypatch):
    monkeypatch.setattr(loaders, "locate_mnist", lambda: None)
    dataset, how = mnist_dataset(PLAIN, mnist, train=False)
    assert isinstance(dataset, ImageTensors) and len(dataset) == len(mnist.X_test)
    assert "cannot be built here (the raw files are not on this machine)" in how


def test_an_augmented_batch_has_the_course_layout_and_range_and_moves_the_digits(mnist):
    torch.manual_seed(0)
    dataset = ImageTensors(mnist.X_train[:64], mnist.y_train[:64], augmenting_transform())
    images, labels = next(iter(DataLoader(dataset, batch_size=64)))
    assert images.shape == (64, 1, 28, 28) and images.dtype == torch.float32 and labels.dtype == torch.int64
    assert LOW - 1e-5 <= images.min().item() and images.max().item() <= HIGH + 1e-5
    assert torch.equal(labels, mnist.y_train[:64])
    moved = (images - mnist.X_train[:64]).abs().amax(dim=(1, 2, 3)) > 0.1
    assert moved.float().mean() > 0.9
