"""Run against run: the rows of two results folders matched by their settings, the verdicts,
and the gate ``bench compare --fail-above`` applies.

Rows are matched by :func:`bench.schema.row_key` (model, device, dtype, memory format, batch
size, mode, threads, --max-batch, compile; accuracy rows are not compared). For each matched
pair the ratio is NEW/OLD samples per second, judged against the pair's noise
(:data:`NOISE_RULE`), the largest of three estimates:

- within the run: the two rows' ``step_iqr_rel`` (interquartile range of the step times over
  their median) added up. Runs differ by more than that: the steps within one run do not see
  the load of a shared machine changing over minutes;
- between passes, per row: the two rows' ``pass_spread_rel`` added up, the spread of the
  medians of a row's timing passes (the sweep re-times every row once all are measured,
  ``bench run --passes``, :func:`bench.sweep.loop.pass_spread`). One difference of two
  medians is a small sample, so alone it would often say too little;
- run to run, per device: the :data:`RUN_TO_RUN_PERCENTILE` th percentile of the pass spreads
  of both folders' rows on the pair's device (:func:`run_to_run_noise`). A pass spread is one
  difference between two timings of the same code minutes apart, the same kind of number as
  ``|NEW/OLD - 1|`` between two runs of identical code, so a high percentile of it leaves
  nearly every row of an unchanged run within the noise, while one wild row cannot raise the
  bar for all.

Where no row of either folder has a pass spread (folders written before ``pass_spread_rel``,
or with ``--passes 1``) the rule is the IQRs alone, as before, and each verdict says
``(within-run noise only)``. A pair is not judged (``no spread``) when it has no estimate at
all, and ``error`` when either row has no measurement; such rows are counted and named, never
folded into "no change" (:func:`outcome_text`).

The gate (:func:`gate`, ``--fail-above PCT``) fails on: a row OLD has and NEW lacks (NEW lost
it), a row OLD measured and NEW has as an error (out of memory, a crash), a row slower than
OLD by more than PCT % and beyond the noise, and a row slower by more than PCT % with no
estimate to judge it by (nothing to excuse it). A row slower by more than PCT % but within the
noise is named, and does not fail.

Folders measured on different machines (``meta.json``'s ``cpu_model``, ``gpu`` or
``hostname`` differ) are refused unless asked for. The texts of a comparison's cells, tally
and gate are here too: ``bench compare`` prints them, and the report's section (``bench
report NEW --compare OLD``, :mod:`bench.report.run_against_run`) tables them.

Reads folders through :mod:`bench.schema` only: no torch.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.schema import read_jsonl, row_key, settings_text

__all__ = [
    "MACHINE_KEYS",
    "Folder",
    "Pair",
    "NoiseEstimate",
    "Comparison",
    "Gate",
    "read_folder",
    "machine_difference",
    "refuse_other_machine",
    "run_to_run_noise",
    "compare_folders",
    "slower_than",
    "gate",
    "rate_text",
    "ratio_text",
    "noise_text",
    "verdict_label",
    "verdict_text",
    "verdict_counts",
    "unjudged_text",
    "noise_estimate_text",
    "outcome_text",
    "FLAGGED",
    "JUDGED",
    "NOISE_RULE",
    "RUN_TO_RUN_PERCENTILE",
    "WITHIN_RUN_ONLY",
]

# The meta.json facts that say which machine measured a folder.
MACHINE_KEYS = ("cpu_model", "gpu", "hostname")
SWEEP_MODES = ("infer", "train")
# The verdicts of a change beyond the pair's noise, and every verdict of a judged pair.
FLAGGED = ("faster", "slower")
JUDGED = (*FLAGGED, "within noise")
# The percentile of the rows' pass spreads taken as a device's run-to-run noise.
RUN_TO_RUN_PERCENTILE = 90
# What a verdict says when no pass spread was measured: the IQRs alone judged it.
WITHIN_RUN_ONLY = "(within-run noise only)"
NOISE_RULE = (
    "samples/s (IQR: interquartile range of the step times over their median; passes: the "
    "spread between the row's timing passes, pass_spread_rel); a change is flagged when "
    "|NEW/OLD - 1| exceeds the pair's noise, the largest of the two rows' IQRs added up, "
    "their pass spreads added up, and the run-to-run noise of their device (the "
    f"{RUN_TO_RUN_PERCENTILE}th percentile of both folders' pass spreads); without any pass "
    f"spread, the IQRs alone, and the verdict says {WITHIN_RUN_ONLY}"
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

    def pass_spreads(self, device: str) -> list[float]:
        """The ``pass_spread_rel`` of this folder's measured rows on ``device``."""
        return [
            row["pass_spread_rel"]
            for row in self.rows.values()
            if row.get("device") == device
            and not row.get("error")
            and _number(row, "pass_spread_rel")
        ]


@dataclass(frozen=True)
class Pair:
    """One row measured in both folders; ``run_to_run``: its device's run-to-run noise
    (:func:`run_to_run_noise`), None where neither folder measured one."""

    old: dict[str, Any]
    new: dict[str, Any]
    run_to_run: float | None = None

    @property
    def ratio(self) -> float | None:
        """NEW/OLD samples per second; None if either row has none (an error row)."""
        old, new = self.old.get("samples_per_s"), self.new.get("samples_per_s")
        if not _measured(self.old) or not _measured(self.new) or old <= 0:
            return None
        return float(new) / float(old)

    @property
    def within_run(self) -> float | None:
        """The two rows' IQRs over their medians (``step_iqr_rel``) added; None if either has
        none."""
        return _sum_of(self.old, self.new, "step_iqr_rel")

    @property
    def between_passes(self) -> float | None:
        """The two rows' spreads between timing passes (``pass_spread_rel``) added; None if
        either has none."""
        return _sum_of(self.old, self.new, "pass_spread_rel")

    @property
    def noise(self) -> float | None:
        """The pair's noise: the largest of :attr:`within_run`, :attr:`between_passes` and
        :attr:`run_to_run` that exist; None if none does."""
        terms = (self.within_run, self.between_passes, self.run_to_run)
        known = [t for t in terms if t is not None]
        return max(known) if known else None

    @property
    def within_run_only(self) -> bool:
        """True if no spread between passes went into :attr:`noise` (the IQRs alone)."""
        return self.run_to_run is None and self.between_passes is None

    @property
    def error_side(self) -> str | None:
        """``"NEW"``, ``"OLD"`` or ``"both"``: the side(s) without a measurement; None if both
        measured."""
        old, new = _measured(self.old), _measured(self.new)
        if old and new:
            return None
        return "both" if not old and not new else ("NEW" if old else "OLD")

    @property
    def verdict(self) -> str:
        """``faster``/``slower`` (a change beyond the noise), ``within noise``, ``no spread``
        (no noise estimate: the change cannot be judged) or ``error`` (a row without a
        measurement, :attr:`error_side` says which)."""
        ratio, noise = self.ratio, self.noise
        if ratio is None:
            return "error"
        if noise is None:
            return "no spread"
        if abs(ratio - 1) <= noise:
            return "within noise"
        return "faster" if ratio > 1 else "slower"

    @property
    def judged(self) -> bool:
        """True if the change was judged against the noise (:data:`JUDGED`)."""
        return self.verdict in JUDGED


@dataclass(frozen=True)
class NoiseEstimate:
    """A device's run-to-run noise: the :data:`RUN_TO_RUN_PERCENTILE` th percentile of the
    pass spreads of both folders' rows on it, and how many rows of each it rests on."""

    device: str
    value: float
    rows_old: int
    rows_new: int


@dataclass(frozen=True)
class Comparison:
    """Two folders' rows: matched pairs (in OLD's order), rows only one side has, and the
    run-to-run noise of each device where either folder measured pass spreads."""

    old: Folder
    new: Folder
    across_machines: bool  # the folders' machines differ (and that was allowed)
    pairs: list[Pair]
    only_old: list[dict[str, Any]]
    only_new: list[dict[str, Any]]
    run_to_run: dict[str, NoiseEstimate] = field(default_factory=dict)

    def judged(self) -> list[Pair]:
        """The pairs judged against the noise."""
        return [p for p in self.pairs if p.judged]

    def unjudged(self) -> list[Pair]:
        """The pairs that could not be judged: ``no spread`` or ``error``."""
        return [p for p in self.pairs if not p.judged]

    def new_errors(self) -> list[Pair]:
        """The pairs OLD measured and NEW has as an error."""
        return [p for p in self.pairs if p.error_side == "NEW"]


@dataclass(frozen=True)
class Gate:
    """What ``--fail-above PCT`` found: a line per reason to fail (none: it passes) and a line
    per reason to look that does not fail."""

    percent: float
    failures: list[str]
    notes: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures


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


def run_to_run_noise(old: Folder, new: Folder) -> dict[str, NoiseEstimate]:
    """Each device's run-to-run noise: the :data:`RUN_TO_RUN_PERCENTILE` th percentile
    (linear interpolation) of the pass spreads of both folders' measured rows on it, pooled;
    devices where no row has one are left out."""
    devices = {row.get("device") for f in (old, new) for row in f.rows.values()}
    estimates = {}
    for device in sorted(d for d in devices if isinstance(d, str)):
        spreads_old, spreads_new = old.pass_spreads(device), new.pass_spreads(device)
        pooled = spreads_old + spreads_new
        if pooled:
            value = _percentile(pooled, RUN_TO_RUN_PERCENTILE / 100)
            estimates[device] = NoiseEstimate(device, value, len(spreads_old), len(spreads_new))
    return estimates


def compare_folders(old: Path, new: Path, *, across_machines: bool = False) -> Comparison:
    """Match the rows of the folders ``old`` and ``new``. Different machines raise a one-line
    ``ValueError`` unless ``across_machines``."""
    before, after = read_folder(old), read_folder(new)
    differ = refuse_other_machine(before, after, across_machines)
    noise = run_to_run_noise(before, after)
    pairs = [
        Pair(row, after.rows[key], _estimate(noise, row.get("device")))
        for key, row in before.rows.items()
        if key in after.rows
    ]
    return Comparison(
        old=before,
        new=after,
        across_machines=bool(differ),
        pairs=pairs,
        only_old=[row for key, row in before.rows.items() if key not in after.rows],
        only_new=[row for key, row in after.rows.items() if key not in before.rows],
        run_to_run=noise,
    )


def slower_than(pairs: Iterable[Pair], percent: float) -> list[Pair]:
    """The pairs whose NEW samples/s fell by more than ``percent`` % of OLD's (noise aside)."""
    return [p for p in pairs if p.ratio is not None and p.ratio < 1 - percent / 100]


def gate(comparison: Comparison, percent: float) -> Gate:
    """``--fail-above PCT``: fail on a row NEW lost, a row OLD measured and NEW has as an
    error, a row slower by more than ``percent`` % beyond the noise, and a row slower by more
    than ``percent`` % that has no noise estimate; name, without failing, a row slower by more
    than ``percent`` % but within the noise. One line per reason, each naming its rows."""
    failures: list[str] = []
    notes: list[str] = []
    if comparison.only_old:
        names = "; ".join(settings_text(row, as_key=True) for row in comparison.only_old)
        failures.append(f"NEW lost {_rows(len(comparison.only_old))}: {names}")
    errors = comparison.new_errors()
    if errors:
        names = "; ".join(
            f"{settings_text(p.new, as_key=True)} ({p.new.get('error')})" for p in errors
        )
        failures.append(f"NEW errors on {_rows(len(errors))} OLD measured: {names}")
    slower = slower_than(comparison.pairs, percent)
    by = f"slower by more than {percent:g}%"
    for verdict, text, failing in (
        ("slower", f"{by}, beyond the noise", True),
        ("no spread", f"{by}, with no noise estimate to judge them by", True),
        ("within noise", f"{by} but within the noise (not failed)", False),
    ):
        these = [p for p in slower if p.verdict == verdict]
        if these:
            names = "; ".join(
                f"{settings_text(p.old, as_key=True)} "
                f"(NEW/OLD {ratio_text(p)}, noise {noise_text(p)})"
                for p in these
            )
            (failures if failing else notes).append(f"{_rows(len(these))} {text}: {names}")
    return Gate(percent, failures, notes)


def rate_text(row: Mapping[str, Any]) -> str:
    """``1234.5 (IQR 4.0%)`` (samples/s and its IQR over median; ``, passes 1.2%`` added where
    the row has a spread between timing passes), or ``error``."""
    if row.get("error") or not _measured(row):
        return "error"
    iqr = row.get("step_iqr_rel")
    spread = ["no IQR" if iqr is None else f"IQR {iqr:.1%}"]
    if _number(row, "pass_spread_rel"):
        spread.append(f"passes {row['pass_spread_rel']:.1%}")
    return f"{row['samples_per_s']:.1f} ({', '.join(spread)})"


def ratio_text(pair: Pair) -> str:
    """NEW/OLD to three decimals, ``-`` where either row has no samples/s."""
    return "-" if pair.ratio is None else f"{pair.ratio:.3f}"


def noise_text(pair: Pair) -> str:
    """The pair's noise as a percentage (``4.0%``), ``-`` where it has none."""
    return "-" if pair.noise is None else f"{pair.noise:.1%}"


def verdict_label(pair: Pair) -> str:
    """The pair's verdict, an error naming its side (``error in NEW``)."""
    return f"error in {pair.error_side}" if pair.verdict == "error" else pair.verdict


def verdict_text(pair: Pair) -> str:
    """The pair's verdict, ``!`` added to a change beyond the noise (``slower !``) and
    :data:`WITHIN_RUN_ONLY` to one judged by the IQRs alone."""
    text = verdict_label(pair) + (" !" if pair.verdict in FLAGGED else "")
    return text + (f" {WITHIN_RUN_ONLY}" if pair.judged and pair.within_run_only else "")


def unjudged_text(pair: Pair) -> str:
    """A row not judged, and why: ``vgg16 … b=1 t=2: error in NEW (NEW: out of memory: …)``
    or ``… : no spread``."""
    errors = [
        f"{side}: {row['error']}"
        for side, row in (("OLD", pair.old), ("NEW", pair.new))
        if row.get("error")
    ]
    reason = f" ({'; '.join(errors)})" if errors else ""
    return f"{settings_text(pair.old, as_key=True)}: {verdict_label(pair)}{reason}"


def verdict_counts(comparison: Comparison) -> str:
    """``3 matched (1 no spread, 1 slower, 1 within noise); 1 only in OLD, 1 only in NEW``."""
    return (
        f"{len(comparison.pairs)} matched ({_tally(comparison.pairs) or 'none'}); "
        f"{len(comparison.only_old)} only in OLD, {len(comparison.only_new)} only in NEW"
    )


def noise_estimate_text(comparison: Comparison) -> str:
    """The run-to-run noise the verdicts used, per device, and what it rests on; or that it
    was not measured, and what the verdicts rest on instead."""
    if not comparison.run_to_run:
        return (
            "run-to-run noise not measured: no row of either folder has a spread between "
            "timing passes (pass_spread_rel, written by `bench run --passes 2`, the default); "
            f"the verdicts rest on the IQRs within each run alone, which runs exceed, and say "
            f"{WITHIN_RUN_ONLY}"
        )
    each = ", ".join(
        f"{e.device} {e.value:.1%} (over {e.rows_old} OLD and {e.rows_new} NEW rows)"
        for e in comparison.run_to_run.values()
    )
    text = (
        f"run-to-run noise, measured (the {RUN_TO_RUN_PERCENTILE}th percentile of the rows' "
        f"spreads between timing passes, both folders pooled): {each}"
    )
    bare = sorted({str(p.old.get("device")) for p in comparison.pairs if p.run_to_run is None})
    if bare:
        text += (
            f"; not measured on {', '.join(bare)}, whose verdicts rest on the IQRs alone "
            f"{WITHIN_RUN_ONLY}"
        )
    return text


def outcome_text(comparison: Comparison) -> str:
    """The comparison's outcome in a sentence. "No change beyond the noise" only when every
    matched row was judged, none changed beyond the noise and NEW lost no row; otherwise how
    many rows were judged, what became of them, and what the others were (not judged: no
    spread, an error on either side; lost by NEW)."""
    pairs, judged, unjudged = comparison.pairs, comparison.judged(), comparison.unjudged()
    flagged = [p for p in judged if p.verdict in FLAGGED]
    only_iqr = " " + WITHIN_RUN_ONLY if judged and all(p.within_run_only for p in judged) else ""
    if pairs and not unjudged and not flagged and not comparison.only_old:
        return (
            f"No change beyond the noise: all {len(pairs)} matched rows judged, each within "
            f"it{only_iqr}."
        )
    if not pairs:
        parts = ["No row matched, so none was judged"]
    elif judged:
        parts = [
            f"Judged against the noise{only_iqr}: {len(judged)} of {len(pairs)} matched rows "
            f"({_tally(judged)})"
        ]
    else:
        parts = [f"None of the {len(pairs)} matched rows could be judged against the noise"]
    if unjudged:
        parts.append(f"not judged: {len(unjudged)} ({_tally(unjudged)})")
    if comparison.only_old:
        parts.append(f"NEW lost {_rows(len(comparison.only_old))}")
    return "; ".join(parts) + "."


def _tally(pairs: Iterable[Pair]) -> str:
    """``1 slower, 2 within noise``: the pairs' verdicts (:func:`verdict_label`) counted."""
    tally: dict[str, int] = {}
    for pair in pairs:
        label = verdict_label(pair)
        tally[label] = tally.get(label, 0) + 1
    return ", ".join(f"{n} {label}" for label, n in sorted(tally.items()))


def _rows(n: int) -> str:
    return f"{n} row" + ("" if n == 1 else "s")


def _number(row: Mapping[str, Any], column: str) -> bool:
    value = row.get(column)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _measured(row: Mapping[str, Any]) -> bool:
    """True if ``row`` has a samples/s (an error row has none)."""
    return _number(row, "samples_per_s")


def _sum_of(old: Mapping[str, Any], new: Mapping[str, Any], column: str) -> float | None:
    if not _number(old, column) or not _number(new, column):
        return None
    return float(old[column]) + float(new[column])


def _estimate(noise: Mapping[str, NoiseEstimate], device: Any) -> float | None:
    estimate = noise.get(device) if isinstance(device, str) else None
    return None if estimate is None else estimate.value


def _percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values``, interpolated linearly between order statistics
    (numpy's default)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
