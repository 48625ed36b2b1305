"""Run against run: the rows of two results folders matched by their settings.

Rows are matched by :func:`bench.schema.row_key` (model, device, dtype, memory format, batch
size, mode, threads, --max-batch, compile; accuracy rows are not compared). For each matched
pair the ratio is NEW/OLD samples per second. A row's noise is its ``step_iqr_rel``
(interquartile range of its step times over their median); a change counts as real when
``|ratio - 1|`` exceeds the two rows' noise added up, and as unjudged when either row has no
spread (fewer than ``bench.measure.timing.MIN_STEPS_FOR_SPREAD`` steps, or a folder written
before the column existed). Folders measured on different machines (``meta.json``'s
``cpu_model``, ``gpu`` or ``hostname`` differ) are refused unless asked for. The texts of a
comparison's cells and tally are here too: ``bench compare`` prints them, and the report's
section (``bench report NEW --compare OLD``, :mod:`bench.report.run_against_run`) tables them.

Reads folders through :mod:`bench.schema` only: no torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.schema import read_jsonl, row_key

__all__ = [
    "MACHINE_KEYS",
    "Folder",
    "Pair",
    "Comparison",
    "read_folder",
    "machine_difference",
    "refuse_other_machine",
    "compare_folders",
    "slower_than",
    "row_settings",
    "rate_text",
    "ratio_text",
    "verdict_text",
    "verdict_counts",
    "FLAGGED",
    "NOISE_RULE",
]

# The meta.json facts that say which machine measured a folder.
MACHINE_KEYS = ("cpu_model", "gpu", "hostname")
SWEEP_MODES = ("infer", "train")
# The verdicts of a change beyond the two rows' noise.
FLAGGED = ("faster", "slower")
NOISE_RULE = (
    "samples/s (IQR: interquartile range of the step times over their median); "
    "a change is flagged when it exceeds the two rows' IQRs added up"
)


@dataclass(frozen=True)
class Folder:
    """A results folder as compare reads it: its meta.json and its sweep rows by key (the last
    row written for a key wins, as for --resume)."""

    path: Path
    meta: dict[str, Any]
    rows: dict[tuple[Any, ...], dict[str, Any]]

    def machine(self) -> str:
        """``hostname (cpu, gpu)``: the machine in a few words."""
        parts = [str(self.meta.get(k)) for k in ("cpu_model", "gpu") if self.meta.get(k)]
        return f"{self.meta.get('hostname') or '?'} ({', '.join(parts) or 'unknown'})"


@dataclass(frozen=True)
class Pair:
    """One row measured in both folders."""

    old: dict[str, Any]
    new: dict[str, Any]

    @property
    def ratio(self) -> float | None:
        """NEW/OLD samples per second; None if either row has none (an error row)."""
        old, new = self.old.get("samples_per_s"), self.new.get("samples_per_s")
        if not isinstance(old, (int, float)) or not isinstance(new, (int, float)) or old <= 0:
            return None
        return new / old

    @property
    def noise(self) -> float | None:
        """The two rows' relative spreads (``step_iqr_rel``) added; None if either has none."""
        old, new = self.old.get("step_iqr_rel"), self.new.get("step_iqr_rel")
        if not isinstance(old, (int, float)) or not isinstance(new, (int, float)):
            return None
        return old + new

    @property
    def verdict(self) -> str:
        """``faster``/``slower`` (a change beyond the noise), ``within noise``, ``no spread``
        (a change that cannot be judged) or ``error`` (a row without a measurement)."""
        ratio, noise = self.ratio, self.noise
        if ratio is None:
            return "error"
        if noise is None:
            return "no spread"
        if abs(ratio - 1) <= noise:
            return "within noise"
        return "faster" if ratio > 1 else "slower"


@dataclass(frozen=True)
class Comparison:
    """Two folders' rows: matched pairs (in OLD's order) and rows only one side has."""

    old: Folder
    new: Folder
    across_machines: bool  # the folders' machines differ (and that was allowed)
    pairs: list[Pair]
    only_old: list[dict[str, Any]]
    only_new: list[dict[str, Any]]


def read_folder(path: Path) -> Folder:
    """A results folder's meta.json and sweep rows; a one-line ``FileNotFoundError`` if it has
    no results.jsonl."""
    path = Path(path)
    if not (path / "results.jsonl").exists():
        raise FileNotFoundError(f"{path}/results.jsonl does not exist: not a results folder")
    meta_path = path / "meta.json"
    meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
    rows = {
        row_key(row): row
        for row in read_jsonl(path / "results.jsonl")
        if row.get("mode") in SWEEP_MODES
    }
    return Folder(path, meta, rows)


def machine_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """The machine facts (:data:`MACHINE_KEYS`) two meta.json differ in; empty if alike."""
    return [key for key in MACHINE_KEYS if old.get(key) != new.get(key)]


def refuse_other_machine(old: Folder, new: Folder, across_machines: bool) -> list[str]:
    """The machine facts ``old`` and ``new`` differ in; a one-line ``ValueError`` if any do
    and ``across_machines`` is not set. ``new`` may be a folder not yet written (its meta the
    machine about to measure it: ``bench all --compare``)."""
    differ = machine_difference(old.meta, new.meta)
    if differ and not across_machines:
        raise ValueError(
            f"{old.path} and {new.path} were measured on different machines "
            f"({', '.join(differ)} differ: {old.machine()} vs {new.machine()}); "
            "give --across-machines to compare them anyway"
        )
    return differ


def compare_folders(old: Path, new: Path, *, across_machines: bool = False) -> Comparison:
    """Match the rows of the folders ``old`` and ``new``. Different machines raise a one-line
    ``ValueError`` unless ``across_machines``."""
    before, after = read_folder(old), read_folder(new)
    differ = refuse_other_machine(before, after, across_machines)
    pairs = [Pair(row, after.rows[key]) for key, row in before.rows.items() if key in after.rows]
    return Comparison(
        old=before,
        new=after,
        across_machines=bool(differ),
        pairs=pairs,
        only_old=[row for key, row in before.rows.items() if key not in after.rows],
        only_new=[row for key, row in after.rows.items() if key not in before.rows],
    )


def slower_than(pairs: Iterable[Pair], percent: float) -> list[Pair]:
    """The pairs whose NEW samples/s fell by more than ``percent`` % of OLD's."""
    return [p for p in pairs if p.ratio is not None and p.ratio < 1 - percent / 100]


def row_settings(row: Mapping[str, Any]) -> str:
    """A row's settings in a few words: ``vgg16 cpu fp32 contiguous train b=32``, its compile
    mode and thread count added where set."""
    batch = "max" if row.get("max_batch") is not None else row.get("batch_size")
    words = [str(row.get(c)) for c in ("model", "device", "dtype", "memory_format", "mode")] + [
        f"b={batch}"
    ]
    if row.get("compile") not in (None, "none"):
        words.append(f"compile={row['compile']}")
    words.append(f"t={row.get('threads')}")
    return " ".join(words)


def rate_text(row: Mapping[str, Any]) -> str:
    """``1234.5 (IQR 4.0%)`` (samples/s and its IQR over median), or ``error``."""
    rate = row.get("samples_per_s")
    if row.get("error") or not isinstance(rate, (int, float)):
        return "error"
    iqr = row.get("step_iqr_rel")
    return f"{rate:.1f} " + ("(no IQR)" if iqr is None else f"(IQR {iqr:.1%})")


def ratio_text(pair: Pair) -> str:
    """NEW/OLD to three decimals, ``-`` where either row has no samples/s."""
    return "-" if pair.ratio is None else f"{pair.ratio:.3f}"


def verdict_text(pair: Pair) -> str:
    """The pair's verdict, ``!`` added to a change beyond the noise (``slower !``)."""
    return pair.verdict + (" !" if pair.verdict in FLAGGED else "")


def verdict_counts(comparison: Comparison) -> str:
    """``3 matched (1 no spread, 1 slower, 1 within noise); 1 only in OLD, 1 only in NEW``."""
    tally: dict[str, int] = {}
    for pair in comparison.pairs:
        tally[pair.verdict] = tally.get(pair.verdict, 0) + 1
    counts = ", ".join(f"{n} {verdict}" for verdict, n in sorted(tally.items())) or "none"
    return (
        f"{len(comparison.pairs)} matched ({counts}); {len(comparison.only_old)} only in OLD, "
        f"{len(comparison.only_new)} only in NEW"
    )
