"""Seconds per epoch of the course loop against the PyTorch MNIST example's DataLoader loop.

Same model (TwoLayerCNN), same optimizer (Adadelta lr 1.0, StepLR 0.7), batch 512, one process:
  course loop      `course_utils.training.fit`: tensors in memory, batches sliced on the device
  DataLoader loop  torchvision MNIST + ToTensor + Normalize, DataLoader(shuffle=True), as the example
Then the training time the course loop needs to reach the report's 98.74 % test accuracy, with the
report's recipe (batch 512: it gets there only in its last epochs) and with batch 128 (4x as many
updates per epoch, same optimizer and schedule).

    python benchmarks/train_speed.py [--epochs 15] [--fast-epochs 6] [--loader-epochs 1] [--threads 2]
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torchvision import datasets, transforms

from course_utils.data import MEAN, STD, load_mnist
from course_utils.device import get_device, seed_everything
from course_utils.models import TwoLayerCNN
from course_utils.training import fit

TARGET = 0.9874


def recipe(model: torch.nn.Module):
    """The report's optimizer and schedule."""
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)


def train_course_loop(data, epochs: int, batch_size: int, device: torch.device):
    """The report's recipe through `fit`, seed 1."""
    seed_everything(1)
    model = TwoLayerCNN()
    optimizer, scheduler = recipe(model)
    return fit(model, data, optimizer, epochs, batch_size=batch_size, scheduler=scheduler,
               device=device, progress=False)


def reached(history, epochs: int) -> str:
    """'12.3 s (epoch 3)' for the first epoch at TARGET, or 'not reached'."""
    seconds = history.seconds_to(TARGET)
    if seconds is None:
        return f"not reached in {epochs} epochs"
    return f"{seconds:.1f} s (epoch {next(i for i, a in enumerate(history.test_acc, 1) if a >= TARGET)})"


def dataloader_epoch_seconds(root: str, epochs: int, device: torch.device) -> float:
    """Median seconds per epoch of the example's loop: per-sample ToTensor through a DataLoader."""
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    train = datasets.MNIST(root, train=True, download=False, transform=transform)
    loader = torch.utils.data.DataLoader(train, batch_size=512, shuffle=True)
    seed_everything(1)
    model = TwoLayerCNN().to(device)
    optimizer, _ = recipe(model)
    seconds = []
    for _ in range(epochs):
        model.train()
        start = time.perf_counter()
        for X, y in loader:
            X, y = X.to(device), y.to(device)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(X), y)
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds)


def main() -> None:
    """Run both loops and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=15, help="course-loop epochs (the report's 15)")
    parser.add_argument("--fast-epochs", type=int, default=6, help="epochs of the batch-128 run")
    parser.add_argument("--loader-epochs", type=int, default=1, help="DataLoader-loop epochs to time")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device()
    data = load_mnist()
    raw_dir = data.source.removeprefix("MNIST from ")
    if not data.is_full or not raw_dir.endswith("MNIST/raw"):
        raise SystemExit("This benchmark needs the full MNIST in ROOT/MNIST/raw: set MNIST_ROOT=ROOT.")

    history = train_course_loop(data, args.epochs, 512, device)
    fast = train_course_loop(data, args.fast_epochs, 128, device)
    course = statistics.median(history.epoch_seconds)
    loader = dataloader_epoch_seconds(raw_dir.removesuffix("/MNIST/raw"), args.loader_epochs, device)

    print(f"device: {device}, torch threads: {torch.get_num_threads()}, TwoLayerCNN, Adadelta lr 1.0, StepLR 0.7\n")
    print(f"| {'loop (batch 512)':<40} | {'s / epoch':>9} | {'speed-up':>8} |")
    print(f"|{'-' * 42}|{'-' * 11}|{'-' * 10}|")
    print(f"| {'DataLoader + ToTensor (PyTorch example)':<40} | {loader:>9.2f} | {1.0:>7.1f}x |")
    print(f"| {'course loop (tensors on the device)':<40} | {course:>9.2f} | {loader / course:>7.1f}x |")
    print(f"\n| {'course loop recipe':<22} | {'s / epoch':>9} | {'final test acc':>14} | {'test loss':>9} | "
          f"time to {100 * TARGET:.2f} % |")
    print(f"|{'-' * 24}|{'-' * 11}|{'-' * 16}|{'-' * 11}|{'-' * 20}|")
    for name, h, epochs in ((f"batch 512, {args.epochs} epochs", history, args.epochs),
                            (f"batch 128, {args.fast_epochs} epochs", fast, args.fast_epochs)):
        print(f"| {name:<22} | {statistics.median(h.epoch_seconds):>9.2f} | {100 * h.test_acc[-1]:>12.2f} % | "
              f"{h.test_loss[-1]:>9.4f} | {reached(h, epochs):>18} |")


if __name__ == "__main__":
    main()
