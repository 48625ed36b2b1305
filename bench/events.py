"""What library code reports while it works: one family of small event types, one listener.

The sweep and the training runs never print or draw bars; they call a :data:`Listener` with an
:data:`Event`, and the command line (``bench/cli/``) renders it (tqdm bars, one line a row).
A caller that wants nothing passes :func:`silent`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ModelStarted",
    "RowDone",
    "ModelFinished",
    "Note",
    "EpochStarted",
    "StepsDone",
    "EpochFinished",
    "Evaluated",
    "RunStarted",
    "RunSkipped",
    "RunOverBudget",
    "RunRateMeasured",
    "RunFinished",
    "Event",
    "Listener",
    "silent",
]


@dataclass(frozen=True)
class ModelStarted:
    """The sweep starts a model's rows (``rows`` of them in this plan or slice)."""

    model: str
    rows: int


@dataclass(frozen=True)
class RowDone:
    """A row was measured and written, or skipped as already measured (``--resume``)."""

    row: dict[str, Any]
    skipped: bool


@dataclass(frozen=True)
class ModelFinished:
    model: str


@dataclass(frozen=True)
class Note:
    """A line for the reader (a plan's progress, a skipped run)."""

    text: str


# --- training (bench.training): a run's epochs and evaluations, a plan's runs ---------------


@dataclass(frozen=True)
class EpochStarted:
    """A pass over the training split starts: ``epoch`` (1-based) of ``epochs``, ``steps`` long."""

    model: str
    epoch: int
    epochs: int
    steps: int


@dataclass(frozen=True)
class StepsDone:
    """Training steps done; every 20th step also gives the last loss and the samples/s since
    the previous evaluation (reading the loss waits for the device, so not at every step)."""

    steps: int
    loss: float | None = None
    samples_per_s: float | None = None


@dataclass(frozen=True)
class EpochFinished:
    """A pass ended, whole or cut short (a time budget, the target reached)."""

    model: str
    epoch: int


@dataclass(frozen=True)
class Evaluated:
    """An evaluation during a training run (a line of its epochs.jsonl)."""

    model: str
    seed: int
    epoch: float  # passes over the training split so far
    wall_s: float  # training clock so far, evaluation excluded
    train_loss: float
    test_accuracy: float
    samples_per_s: float
    test_samples: int  # how many test samples the accuracy is on


@dataclass(frozen=True)
class RunStarted:
    """Run ``index`` (1-based) of the ``total`` in an accuracy plan starts."""

    index: int
    total: int
    model: str
    data: str
    device: str
    seed: int
    budget_s: float | None
    predicted: str | None = None  # bench.training.estimate.Prediction.text(), where predicted


@dataclass(frozen=True)
class RunSkipped:
    """Run ``index`` of an accuracy plan is already in the results folder (``--resume``)."""

    index: int
    total: int
    model: str
    seed: int


@dataclass(frozen=True)
class RunOverBudget:
    """Run ``index`` of an accuracy plan is left out: its predicted time
    (:mod:`bench.training.estimate`) is over the ``left_s`` seconds left of the plan's budget."""

    index: int
    total: int
    model: str
    seed: int
    predicted: str  # Prediction.text()
    left_s: float
    command: str  # what trains it later


@dataclass(frozen=True)
class RunRateMeasured:
    """Run ``index`` of an accuracy plan was predicted from a training rate measured at another
    batch or memory format than its own, too near the ``left_s`` seconds left of the plan's
    budget to decide on: its own rate (``row``, :meth:`RateRow.text`) is measured first."""

    index: int
    total: int
    model: str
    seed: int
    predicted: str  # Prediction.text(), from the other rate
    left_s: float
    row: str  # RateRow.text(): what is measured


@dataclass(frozen=True)
class RunFinished:
    """A training run's row was written (``row["error"]`` set if it failed); ``weights``: the
    saved state dict, if any."""

    row: dict[str, Any]
    weights: Path | None


Event = (
    ModelStarted
    | RowDone
    | ModelFinished
    | Note
    | EpochStarted
    | StepsDone
    | EpochFinished
    | Evaluated
    | RunStarted
    | RunSkipped
    | RunOverBudget
    | RunRateMeasured
    | RunFinished
)
Listener = Callable[[Event], None]


def silent(event: Event) -> None:
    """A listener that ignores every event."""
