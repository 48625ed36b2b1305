"""The lab's own training loop (MLAV Lab 3), kept as the baseline our training is timed against.

As a student completes Lab 3: ``lab_cnn``, inputs divided by 255, Adam lr 1e-3,
CrossEntropyLoss, batch 128, fp32, the per-sample ``DatasetMNIST`` through
``DataLoader(shuffle=True, num_workers=0)``. It is timed exactly as
:func:`bench.training.loop.train` times ours: the training wall clock with data loading,
evaluation off the clock, evaluated ``evals_per_epoch`` times a pass, so the two
times-to-accuracy compare like for like.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import zoo
from bench.training.loop import EvalPoint

__all__ = ["LabRun", "lab_loop"]


@dataclass
class LabRun:
    time_to_target_s: float | None
    accuracy: float
    history: list[EvalPoint] = field(default_factory=list)


def lab_loop(
    mnist_dir: Path,
    *,
    target_acc: float = 0.99,
    max_epochs: int = 3,
    evals_per_epoch: int = 2,
    seed: int = 0,
) -> LabRun:
    """Train ``lab_cnn`` the lab's way until ``target_acc`` or ``max_epochs``."""
    from data.lab import DatasetMNIST
    from data.mnist import find_split_files

    torch.manual_seed(seed)
    train_ds = DatasetMNIST(*find_split_files(mnist_dir, "train"))
    test_ds = DatasetMNIST(*find_split_files(mnist_dir, "test"))
    model = zoo.get_model("lab_cnn")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loader = DataLoader(train_ds, batch_size=128, shuffle=True, num_workers=0)
    eval_every = max(1, len(loader) // evals_per_epoch)

    def accuracy() -> float:
        model.eval()
        correct = 0
        with torch.no_grad():
            for batch in DataLoader(test_ds, batch_size=1000):
                scores = model(batch["date"] / 255)
                correct += (scores.argmax(1) == batch["etichete"]).sum().item()
        model.train()
        return correct / len(test_ds)

    history: list[EvalPoint] = []
    clock, last_eval, step, losses = 0.0, 0.0, 0, []
    for _ in range(max_epochs):
        started = time.perf_counter()
        for batch in loader:
            x, y = batch["date"] / 255, batch["etichete"]
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            step += 1
            now = time.perf_counter()
            clock += now - started
            started = now
            if step % eval_every == 0:
                acc = accuracy()
                rate = len(losses) * loader.batch_size / (clock - last_eval)
                history.append(
                    EvalPoint(
                        step / len(loader),
                        clock,
                        sum(losses) / len(losses),
                        acc,
                        rate,
                        len(test_ds),
                    )  # fmt: skip
                )
                losses.clear()
                last_eval = clock
                started = time.perf_counter()
                if acc >= target_acc:
                    return LabRun(clock, acc, history)
    return LabRun(None, history[-1].test_accuracy if history else accuracy(), history)
