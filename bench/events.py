"""What library code reports while it works: one family of small event types, one listener.

The sweep and the training runs never print or draw bars; they call a :data:`Listener` with an
:data:`Event`, and the command line (``bench/cli.py``) renders it (tqdm bars, one line a row).
A caller that wants nothing passes :func:`silent`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ModelStarted",
    "RowDone",
    "ModelFinished",
    "Note",
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


Event = ModelStarted | RowDone | ModelFinished | Note
Listener = Callable[[Event], None]


def silent(event: Event) -> None:
    """A listener that ignores every event."""
