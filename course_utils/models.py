"""The course's small MNIST networks (the ResNets live in `resnets.py`)."""
import torch
from torch import nn


class TwoLayerCNN(nn.Module):
    """The reference report's network: 149,418 parameters.

    x (N, 1, 28, 28) -> conv 3x3 (N, 8, 26, 26) -> conv 3x3 (N, 16, 24, 24) -> max-pool (N, 16, 12, 12)
    -> flatten (N, 2304) -> fc (N, 64) -> fc logits (N, 10). ReLU after each conv and the first fc;
    dropout 0.25 after pooling and 0.5 after the first fc. ReLU and max-pool commute
    (max(relu(a), relu(b)) = relu(max(a, b))), so the second ReLU runs after the pool: same
    function, same gradients, a quarter of the work.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, kernel_size=3, stride=1)
        self.conv2 = nn.Conv2d(8, 16, kernel_size=3, stride=1)
        self.pool = nn.MaxPool2d(2)
        self.dropout1 = nn.Dropout(0.25)
        self.fc1 = nn.Linear(16 * 12 * 12, 64)
        self.dropout2 = nn.Dropout(0.5)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv1(x))                  # (N, 8, 26, 26)
        x = torch.relu(self.pool(self.conv2(x)))       # (N, 16, 24, 24) -> (N, 16, 12, 12)
        x = self.dropout1(x).flatten(1)                # (N, 2304)
        x = self.dropout2(torch.relu(self.fc1(x)))     # (N, 64)
        return self.fc2(x)                             # (N, 10) logits


class TutorialCNN(nn.Module):
    """The tutorial network with 5x5 kernels: two conv-BN-ReLU-pool stages, then one fc layer.

    x (N, 1, 28, 28) -> (N, 16, 14, 14) -> (N, 32, 7, 7) -> flatten (N, 1568) -> logits (N, 10).
    The tutorial trained it with Adam lr 1e-3, batch 100, 5 epochs and reported 98.89 % test accuracy.
    """

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.layer1 = nn.Sequential(nn.Conv2d(1, 16, 5, padding=2), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2))
        self.layer2 = nn.Sequential(nn.Conv2d(16, 32, 5, padding=2), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2))
        self.fc = nn.Linear(7 * 7 * 32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layer2(self.layer1(x)).flatten(1))


class MLP(nn.Module):
    """A dense baseline with the two-layer CNN's parameter budget: 149,470 parameters (CNN: 149,418).

    x (N, 1, 28, 28) -> flatten (N, 784) -> fc (N, 188) -> ReLU -> dropout 0.5 -> fc logits (N, 10).
    Every hidden unit sees every pixel: no locality, no weight sharing.
    """

    def __init__(self, num_classes: int = 10, hidden: int = 188):
        super().__init__()
        self.fc1 = nn.Linear(28 * 28, hidden)
        self.dropout = nn.Dropout(0.5)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.dropout(torch.relu(self.fc1(x.flatten(1)))))
