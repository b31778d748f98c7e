"""Seconds per epoch of the course loop against the arithmetic floor, both measured in this run.

    floor per epoch = training FLOPs per epoch / matmul throughput
    matmul throughput  a 2048x2048 fp32 `torch.mm` on this device and these threads (median GFLOP/s)
    training FLOPs     forward MACs per image (`course_utils.cost.count_macs`) x 2 FLOPs per MAC x 3,
                       assuming the backward pass costs twice the forward (gradients of the inputs and
                       of the weights), x the training images of one epoch

No loop can beat the floor: it is the network's own arithmetic at the speed of a large matmul.
Rows (TwoLayerCNN, Adadelta lr 1.0 with StepLR 0.7, the report's recipe):
  course loop      `course_utils.training.fit` (tensors in memory, batches sliced), batch 512 and 32
  DataLoader loop  torchvision MNIST + ToTensor + Normalize through DataLoader(shuffle=True), batch 512,
                   as in the PyTorch MNIST example
Each row: the median of --epochs timed epochs after --warmup epochs that are not counted.
With --compile the course loop runs `torch.compile(model)`; its first epoch (compiling included)
is printed on its own line, never inside seconds per epoch.

    python benchmarks/train_speed.py [--epochs 3] [--warmup 1] [--threads 2] [--quick] [--compile]
"""
import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torchvision import datasets, transforms

from course_utils.cost import count_macs
from course_utils.data import MEAN, STD, load_mnist
from course_utils.device import get_device, seed_everything
from course_utils.models import TwoLayerCNN
from course_utils.training import fit

FLOPS_PER_MAC, TRAIN_OVER_FORWARD = 2, 3


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that a timer reads finished work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 10) -> float:
    """Median GFLOP/s of an n x n fp32 matmul (2 n^3 FLOPs) on `device`."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    seconds = []
    for i in range(repeats + 2):                       # the first two warm up
        synchronize(device)
        start = time.perf_counter()
        a @ b
        synchronize(device)
        if i >= 2:
            seconds.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(seconds) / 1e9


def recipe(model: torch.nn.Module):
    """The report's optimizer and schedule."""
    optimizer = torch.optim.Adadelta(model.parameters(), lr=1.0)
    return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)


def course_loop_seconds(data, batch_size: int, warmup: int, epochs: int, device: torch.device,
                        compile_model: bool = False) -> tuple[float, float]:
    """(first epoch's seconds, median seconds of the epochs after `warmup`) of `fit`, seed 1."""
    seed_everything(1)
    model = TwoLayerCNN()
    optimizer, scheduler = recipe(model)
    if compile_model:
        torch.compiler.reset()                         # compile afresh: each row pays its own compile time
        model = torch.compile(model)
    history = fit(model, data, optimizer, warmup + epochs, batch_size=batch_size, scheduler=scheduler,
                  device=device, progress=False)
    return history.epoch_seconds[0], statistics.median(history.epoch_seconds[warmup:])


def dataloader_loop_seconds(root: str, n_train: int, warmup: int, epochs: int, device: torch.device) -> float:
    """Median seconds per epoch of the example's loop: per-sample ToTensor through a DataLoader."""
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((MEAN,), (STD,))])
    train = datasets.MNIST(root, train=True, download=False, transform=transform)
    train = torch.utils.data.Subset(train, range(n_train))
    loader = torch.utils.data.DataLoader(train, batch_size=512, shuffle=True)
    seed_everything(1)
    model = TwoLayerCNN().to(device)
    optimizer, _ = recipe(model)
    model.train()
    seconds = []
    for _ in range(warmup + epochs):
        synchronize(device)
        start = time.perf_counter()
        for X, y in loader:
            X, y = X.to(device), y.to(device)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(X), y)
            loss.backward()
            optimizer.step()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds[warmup:])


def parse_args() -> argparse.Namespace:
    """Command-line options; --quick trains on 10,000 images for 1 + 2 epochs."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per row (the median is shown)")
    parser.add_argument("--warmup", type=int, default=1, help="epochs run first and not timed")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--images", type=int, default=60_000, help="training images per epoch")
    parser.add_argument("--quick", action="store_true", help="10,000 images, 1 warm-up + 2 timed epochs")
    parser.add_argument("--compile", action="store_true", help="also time the course loop on torch.compile(model)")
    args = parser.parse_args()
    if args.quick:
        args.images, args.warmup, args.epochs = 10_000, 1, 2
    if args.epochs < 1 or args.warmup < 0:
        parser.error("--epochs must be at least 1 and --warmup at least 0.")
    return args


def main() -> None:
    """Measure the floor and every loop, then print the table."""
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = get_device()
    data = load_mnist()
    raw_dir = data.source.removeprefix("MNIST from ")
    if not data.is_full or not raw_dir.endswith("MNIST/raw"):
        raise SystemExit("This benchmark needs the full MNIST in ROOT/MNIST/raw: set MNIST_ROOT=ROOT.")
    data = data.subset(args.images, 1000)              # evaluation is not timed; keep it short

    gflops = matmul_gflops(device)
    macs = count_macs(TwoLayerCNN())
    flops_per_image = macs * FLOPS_PER_MAC * TRAIN_OVER_FORWARD
    floor = flops_per_image * len(data.X_train) / (gflops * 1e9)
    rows, compiled = [], []
    for batch_size in (512, 32):
        first, seconds = course_loop_seconds(data, batch_size, args.warmup, args.epochs, device)
        rows.append((f"course loop (`fit`), batch {batch_size}", seconds))
        if args.compile:
            first, seconds = course_loop_seconds(data, batch_size, args.warmup, args.epochs, device, True)
            rows.append((f"course loop, torch.compile, batch {batch_size}", seconds))
            compiled.append((batch_size, first - seconds))
    loader = dataloader_loop_seconds(raw_dir.removesuffix("/MNIST/raw"), len(data.X_train),
                                     args.warmup, args.epochs, device)
    rows.append(("DataLoader + ToTensor (PyTorch example), batch 512", loader))

    print(f"device: {device}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{len(data.X_train):,} training images per epoch; median of {args.epochs} epochs after "
          f"{args.warmup} warm-up\n")
    print(f"| {'floor':<52} | {'value':>17} |")
    print(f"|{'-' * 54}|{'-' * 18}:|")
    print(f"| {'matmul 2048x2048 fp32 (median of 10)':<52} | {gflops:>10.1f} GFLOP/s |")
    print(f"| {f'training FLOPs per image ({macs:,} MACs x 2 x 3)':<52} | {flops_per_image / 1e6:>12.2f} MFLOP |")
    print(f"| {'floor per epoch':<52} | {floor:>16.3f} s |")
    print(f"\n| {'loop':<52} | {'s / epoch':>9} | {'x floor':>7} |")
    print(f"|{'-' * 54}|{'-' * 10}:|{'-' * 8}:|")
    for name, seconds in rows:
        print(f"| {name:<52} | {seconds:>9.3f} | {seconds / floor:>6.2f}x |")
    for batch_size, seconds in compiled:
        print(f"\ntorch.compile, batch {batch_size}: the first epoch took {seconds:.1f} s longer (compiling)")


if __name__ == "__main__":
    main()
