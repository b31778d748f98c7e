"""Questions of notebook 03 (two-layer CNN): feature count, the model, one training step."""
import torch
import torch.nn.functional as F
from torch import nn

from ..cost import count_parameters
from ..models import TwoLayerCNN
from . import Mistake, question
from .tools import expect_close

NOTEBOOK = "03_two_layer_cnn"


def flat_features_reference(image_size: int, kernel_size: int, pool_size: int, channels: int) -> int:
    """Features after two valid stride-1 convolutions and one non-overlapping max-pool."""
    side = (image_size - 2 * (kernel_size - 1)) // pool_size
    return channels * side * side


def train_step_reference(model: nn.Module, optimizer: torch.optim.Optimizer,
                         X: torch.Tensor, y: torch.Tensor) -> float:
    """One optimisation step on the mean cross-entropy of (X, y); return the loss before the step."""
    model.train()
    optimizer.zero_grad()
    loss = F.cross_entropy(model(X), y)
    loss.backward()
    optimizer.step()
    return loss.item()


@question("flat_features", NOTEBOOK)
def check_flat_features(flat_features) -> str:
    cases = [(28, 3, 2, 16), (28, 5, 2, 16), (32, 3, 2, 8), (28, 3, 3, 4), (64, 7, 4, 10)]
    answers = [flat_features(*case) for case in cases]
    if len(set(answers)) == 1:
        raise Mistake(f"flat_features returned {answers[0]!r} for every input.",
                      "compute the count from the arguments instead of returning a fixed number.")
    for (n, k, p, c), got in zip(cases, answers):
        want = flat_features_reference(n, k, p, c)
        if got == want:
            continue
        side_no_pool, side_one_conv = n - 2 * (k - 1), (n - k + 1) // p
        hints = {
            c * side_no_pool ** 2: "you forgot the max-pool: it divides each side by the pool size.",
            side_no_pool ** 2 // p ** 2 if side_no_pool % p == 0 else -1: "multiply by the number of channels.",
            (side_no_pool // p) ** 2: "multiply by the number of channels.",
            c * side_one_conv ** 2: "there are two convolutions, each removing kernel_size - 1 pixels per side.",
            c * ((n - 2 * k) // p) ** 2: "a valid k x k convolution shrinks n to n - k + 1, not n - k.",
        }
        raise Mistake(f"flat_features({n}, {k}, {p}, {c}) returned {got!r}, expected {want}.",
                      hints.get(got, "trace the side length: n -> n-k+1 -> n-2k+2 -> (n-2k+2)//p."))
    return f"flat_features is right on {len(cases)} cases, e.g. (28, 3, 2, 16) -> 2304."


@question("make_two_layer_cnn", NOTEBOOK, points=2)
def check_make_two_layer_cnn(make_two_layer_cnn) -> str:
    model = make_two_layer_cnn()
    if not isinstance(model, nn.Module):
        raise Mistake(f"make_two_layer_cnn() returned a {type(model).__name__}, not an nn.Module.")
    n_params = count_parameters(model)
    if n_params != 149_418:
        raise Mistake(f"your model has {n_params:,} parameters, the description gives 149,418.",
                      "conv 1->8 3x3, conv 8->16 3x3, fc 2304->64, fc 64->10, each with a bias.")
    reference = TwoLayerCNN()
    theirs, ours = list(model.parameters()), list(reference.parameters())
    if [p.shape for p in theirs] != [p.shape for p in ours]:
        raise Mistake("the parameter shapes differ from conv1, conv2, fc1, fc2 in that order: "
                      f"{[tuple(p.shape) for p in theirs]}.")
    with torch.no_grad():
        for p, q in zip(theirs, ours):
            p.copy_(q)
    X = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    model.eval(), reference.eval()
    with torch.no_grad():
        out, want = model(X), reference(X)
    expect_close(out, want, "the logits for 5 random images (with the reference's weights copied in)",
                 "check ReLU after each conv and after fc1, and a 2x2 max-pool before flattening; "
                 "return logits (no softmax).")
    model.train()
    with torch.no_grad():
        a, b = model(X), model(X)
    if torch.equal(a, b):
        raise Mistake("in train mode two forward passes give identical outputs: dropout is missing.",
                      "add nn.Dropout(0.25) after pooling and nn.Dropout(0.5) after fc1.")
    return "149,418 parameters, output (N, 10), same logits as the reference in eval mode, dropout active in training."


@question("train_step", NOTEBOOK, points=2)
def check_train_step(train_step) -> str:
    g = torch.Generator().manual_seed(3)
    X, y = torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
    results = []
    for step_fn in (train_step, train_step_reference):
        torch.manual_seed(0)
        model = TwoLayerCNN()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        torch.manual_seed(1)
        losses = [step_fn(model, opt, X, y) for _ in range(2)]
        results.append((losses, torch.cat([p.detach().flatten() for p in model.parameters()])))
    (losses, params), (want_losses, want_params) = results
    if not isinstance(losses[0], (float, int, torch.Tensor)):
        raise Mistake(f"train_step returned {type(losses[0]).__name__}; return the loss as a float (loss.item()).")
    expect_close(torch.tensor(float(losses[0])), torch.tensor(want_losses[0]), "the loss of the first step",
                 "use F.cross_entropy(model(X), y) (mean over the batch) and return its value before the step.")
    torch.manual_seed(0)
    start = torch.cat([p.detach().flatten() for p in TwoLayerCNN().parameters()])
    if torch.equal(params, start):
        raise Mistake("the parameters did not change: call optimizer.step() after loss.backward().")
    expect_close(params, want_params, "the parameters after two steps",
                 "call optimizer.zero_grad() before loss.backward(), or gradients pile up across steps.")
    expect_close(torch.tensor(float(losses[1])), torch.tensor(want_losses[1]), "the loss of the second step",
                 "return the loss computed before optimizer.step().")
    return "two steps give the reference losses and parameters (zero_grad, backward, step in order)."
