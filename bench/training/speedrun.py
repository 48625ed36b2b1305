"""The public MNIST speedrun recipe, written out plainly: a yardstick our fastest model is timed
against (the slow time-to-accuracy benchmark), as the lab's loop is for ``lab_cnn``.

The recipe, as published: conv 1→24 (5×5) → max pool 2 → ReLU → conv 24→32 (3×3) → max pool 2
→ ReLU → fc 800→256 → ReLU → fc 256→10, log-softmax and NLL loss; Adam (lr 0.01, betas 0.7 and
0.9) under a one-cycle schedule (peak 0.01, no momentum cycling) stepped every batch, over one
epoch at batch 256 (the last batch short), fp32, the training set in memory. Normalised with
MNIST's mean and standard deviation (0.1307, 0.3081), as PyTorch's MNIST example does.

Off the clock: loading, normalising, one seeded shuffle of the training set, building the model
(its initialisation seeded). On the clock: the epoch. Then the whole test split is scored, off
the clock, as our runs' evaluations are.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from data.batches import TensorSplit

__all__ = ["SPEEDRUN_MEAN_STD", "SpeedrunNet", "SpeedrunResult", "speedrun"]

SPEEDRUN_MEAN_STD = (0.1307, 0.3081)
BATCH, LR, BETAS = 256, 0.01, (0.7, 0.9)


class SpeedrunNet(nn.Module):
    """The speedrun's network: 1×28×28 → 24×24×24 → pool 12 → 32×10×10 → pool 5 → 800 → 256 → 10."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 24, 5)
        self.conv2 = nn.Conv2d(24, 32, 3)
        self.fc1 = nn.Linear(800, 256)
        self.fc2 = nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2(x), 2))
        x = F.relu(self.fc1(torch.flatten(x, 1)))
        return F.log_softmax(self.fc2(x), dim=1)


@dataclass(frozen=True)
class SpeedrunResult:
    train_s: float  # the epoch's wall clock
    accuracy: float  # on the whole test split, after the epoch


def _normalised(split: TensorSplit) -> torch.Tensor:
    mean, std = SPEEDRUN_MEAN_STD
    return (split.images.float() / 255 - mean) / std


def speedrun(train: TensorSplit, test: TensorSplit, *, seed: int = 0) -> SpeedrunResult:
    """One epoch of the speedrun recipe on ``train`` (MNIST's 60,000, uint8), then its accuracy
    on ``test``; see the module docstring for what is on the clock."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train.labels), generator=generator)
    images, labels = _normalised(train)[order], train.labels[order]
    torch.manual_seed(seed)
    model = SpeedrunNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR, betas=BETAS)
    steps = (len(labels) + BATCH - 1) // BATCH
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=LR, total_steps=steps, cycle_momentum=False
    )
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        x, y = images[step * BATCH : (step + 1) * BATCH], labels[step * BATCH : (step + 1) * BATCH]
        optimizer.zero_grad()
        F.nll_loss(model(x), y).backward()
        optimizer.step()
        schedule.step()
    train_s = time.perf_counter() - start
    model.eval()
    correct = 0
    with torch.inference_mode():
        test_images = _normalised(test)
        for first in range(0, len(test.labels), 2000):
            scores = model(test_images[first : first + 2000])
            correct += int((scores.argmax(1) == test.labels[first : first + 2000]).sum())
    return SpeedrunResult(train_s=train_s, accuracy=correct / len(test.labels))
