"""``--shard I/N``: the I-th of N disjoint slices of a plan, so N machines cover one sweep.

A row belongs to slice ``1 + sha256(its settings) mod N``. The settings hashed are the row key
without the thread count, which defaults to each machine's core count: machines with different
cores still agree on every row's slice. The split depends on nothing else (not on the plan's
order or on which other rows it holds), so every machine that runs the same command with its
own ``I`` measures a different part, and ``bench report DIR...`` merges the parts.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Shard", "MACHINE_DEPENDENT"]

MACHINE_DEPENDENT = ("threads",)  # row-key columns left out of the hash

_PATTERN = re.compile(r"\s*(\d+)\s*/\s*(\d+)\s*")


@dataclass(frozen=True)
class Shard:
    """Slice ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 1 <= self.index <= self.count:
            raise ValueError(
                f"--shard {self.index}/{self.count}: I must be 1..N of N >= 1 slices "
                f"(the I-th of N), e.g. --shard 1/{max(self.count, 2)}"
            )

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"2/4"`` → ``Shard(2, 4)``; anything else is a one-line ``ValueError``."""
        match = _PATTERN.fullmatch(text)
        if match is None:
            raise ValueError(f"--shard {text!r}: write I/N, e.g. --shard 1/4 … --shard 4/4")
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def holds(self, settings: Mapping[str, Any]) -> bool:
        """True if the row with these settings (a row's key columns) is in this slice. An eager
        row (``compile`` none) hashes as it did before the column existed."""
        stable = {
            k: v
            for k, v in sorted(settings.items())
            if k not in MACHINE_DEPENDENT and not (k == "compile" and v in (None, "none"))
        }
        digest = hashlib.sha256(json.dumps(stable, default=str).encode()).digest()
        return int.from_bytes(digest[:8], "big") % self.count == self.index - 1
