"""Seconds per epoch of the course loop against the PyTorch MNIST example's DataLoader loop.

Same model (TwoLayerCNN), same optimizer (Adadelta lr 1.0, StepLR 0.7), batch 512, one process:
  course loop      `course_utils.training.fit`: tensors in memory, batches sliced on the device
  DataLoader loop  torchvision MNIST + ToTensor + Normalize, DataLoader(shuffle=True), as the example
Then the time the course loop needs to reach the report's 98.74 % test accuracy.

    python benchmarks/train_speed.py [--epochs 15] [--loader-epochs 1] [--threads 2]
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

    seed_everything(1)
    model = TwoLayerCNN()
    optimizer, scheduler = recipe(model)
    history = fit(model, data, optimizer, args.epochs, batch_size=512, scheduler=scheduler,
                  device=device, progress=False)
    course = statistics.median(history.epoch_seconds)
    loader = dataloader_epoch_seconds(raw_dir.removesuffix("/MNIST/raw"), args.loader_epochs, device)
    reach = history.seconds_to(TARGET)

    print(f"device: {device}, torch threads: {torch.get_num_threads()}, batch 512, TwoLayerCNN\n")
    print(f"| {'loop':<38} | {'s / epoch':>9} | {'speed-up':>8} |")
    print(f"|{'-' * 40}|{'-' * 11}|{'-' * 10}|")
    print(f"| {'DataLoader + ToTensor (PyTorch example)':<38} | {loader:>9.2f} | {1.0:>7.1f}x |")
    print(f"| {'course loop (tensors on the device)':<38} | {course:>9.2f} | {loader / course:>7.1f}x |")
    print(f"\ncourse loop, {args.epochs} epochs: test accuracy {100 * history.test_acc[-1]:.2f} %, "
          f"test loss {history.test_loss[-1]:.4f}, {history.seconds:.1f} s of training")
    reached = f"{reach:.1f} s (epoch {next(i for i, a in enumerate(history.test_acc, 1) if a >= TARGET)})" \
        if reach is not None else f"not reached in {args.epochs} epochs"
    print(f"time to {100 * TARGET:.2f} % test accuracy: {reached}")


if __name__ == "__main__":
    main()
