"""Reading results folders into a :class:`Run`, and merging several (row keys, collisions,
machines); a root of ``shard-I-of-N`` folders (``--shard auto``) reads as its slices.

Also the peak rates a folder's meta.json records, by device and session, with their spread over
the repeats that measured them, and the peak a row is judged against.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench.report.formatting import fmt_num
from bench.schema import (
    EPOCH_COLUMNS,
    LAYER_COLUMNS,
    LAYER_TIME_COLUMNS,
    NUMERIC_COLUMNS,
    NUMERIC_EPOCH_COLUMNS,
    NUMERIC_LAYER_COLUMNS,
    NUMERIC_LAYER_TIME_COLUMNS,
    NUMERIC_OVER_BUDGET_COLUMNS,
    OVER_BUDGET_COLUMNS,
    ROW_COLUMNS,
    key_value,
    parse_shard_folder,
    read_jsonl,
    row_key,
    settings_text,
)

log = logging.getLogger("bench.report")  # one logger for the package, as before the split


PEAK_KINDS = ("fp32_matmul", "fp32_conv3x3", "bf16_matmul", "bf16_conv3x3")
# How a peak without a recorded spread reads (meta.json from before peaks were repeated).
SPREAD_NOT_MEASURED = "spread not measured"


@dataclass(frozen=True)
class PeakSpread:
    """A peak's GFLOP/s over the repeats that measured it (meta.json's
    ``peak_gflops_spread``); the peak itself is the best repeat, ``high``."""

    low: float
    median: float
    high: float
    repeats: int

    def range_text(self) -> str:
        """``331–429``: the slowest and the fastest repeat, GFLOP/s."""
        return f"{fmt_num(self.low)}–{fmt_num(self.high)}"

    def text(self) -> str:
        """``331–429 GFLOP/s over 5 repeats, median 388``."""
        return (
            f"{self.range_text()} GFLOP/s over {self.repeats} repeats, "
            f"median {fmt_num(self.median)}"
        )


def spread_text(spread: PeakSpread | None) -> str:
    """:meth:`PeakSpread.text`, or :data:`SPREAD_NOT_MEASURED` for a peak without one."""
    return spread.text() if spread is not None else SPREAD_NOT_MEASURED


@dataclass(frozen=True)
class Run:
    """One results folder (or several merged): its meta records and its four tables (a
    layer-times line's ``run``, as a row's, is its folder)."""

    name: str
    metas: tuple[Mapping[str, Any], ...]
    results: pd.DataFrame
    layers: pd.DataFrame = field(default_factory=lambda: empty(LAYER_COLUMNS))
    epochs: pd.DataFrame = field(default_factory=lambda: empty(EPOCH_COLUMNS))
    layer_times: pd.DataFrame = field(default_factory=lambda: empty((*LAYER_TIME_COLUMNS, "run")))
    # over_budget.jsonl: accuracy runs a job's budget left out (bench.schema.OVER_BUDGET_COLUMNS)
    over_budget: pd.DataFrame = field(default_factory=lambda: empty(OVER_BUDGET_COLUMNS))


def empty(columns: Iterable[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def _read_jsonl(path: Path) -> pd.DataFrame:
    return pd.DataFrame.from_records(read_jsonl(path))


# The columns of results.jsonl and layers.jsonl are the writer's (bench.schema); missing ones
# are added as nulls so a report still renders from an older or partial run.
def _with_columns(
    df: pd.DataFrame, columns: Iterable[str], numeric: Iterable[str] = ()
) -> pd.DataFrame:
    df = df.copy()
    for column in columns:
        if column not in df.columns:
            df[column] = None
    for column in numeric:
        df[column] = pd.to_numeric(df[column], errors="coerce")
    return df


def results_folders(paths: Sequence[Path]) -> list[Path]:
    """``paths`` with each root of slice folders (``ROOT/shard-I-of-N``, written by ``--shard
    auto``; a folder with no results.jsonl of its own) replaced by its slices, in order.

    A root must hold every slice of one split: one missing, or slices of two splits, is a
    one-line ``ValueError``. A slice without rows is left out (an empty slice, or one that
    never got to measure: that is logged).
    """
    folders: list[Path] = []
    for path in map(Path, paths):
        slices = _slices(path)
        folders += [path] if slices is None else slices
    return folders


def _slices(root: Path) -> list[Path] | None:
    """The slice folders of ``root`` holding rows; None if ``root`` is no root of slices."""
    if not root.is_dir() or (root / "results.jsonl").exists():
        return None
    found = {}
    for child in root.iterdir():
        split = parse_shard_folder(child.name) if child.is_dir() else None
        if split is not None:
            found[split] = child
    if not found:
        return None
    counts = sorted({count for _, count in found})
    if len(counts) > 1:
        raise ValueError(
            f"{root} holds the slices of {len(counts)} splits (of {', '.join(map(str, counts))}):"
            " keep one split a root, or name the folders to report one by one"
        )
    count = counts[0]
    missing = [str(i) for i in range(1, count + 1) if (i, count) not in found]
    if missing:
        raise ValueError(
            f"{root} lacks slice {', '.join(missing)} of {count} (shard-I-of-{count}): wait for "
            "its task or rerun it, or name the folders to report one by one"
        )
    slices = []
    for _, folder in sorted(found.items()):
        meta_file = folder / "meta.json"
        meta = json.loads(meta_file.read_text(encoding="utf-8")) if meta_file.is_file() else {}
        # A sweep's meta.json says whether it finished; an accuracy plan's folder has none.
        unfinished = bool(meta) and meta.get("interrupted") is not False
        if (folder / "results.jsonl").is_file():
            slices.append(folder)
            if unfinished:
                log.warning("%s has not finished (interrupted or still running)", folder)
        elif unfinished:
            log.warning("%s has no rows and has not finished: its slice is missing", folder)
        else:
            log.info("%s has no rows: its slice of the plan is empty", folder)
    if not slices:
        raise ValueError(f"no slice under {root} has rows: nothing to report")
    return slices


def load_run(path: Path) -> Run:
    """Read one results folder; a missing folder or an empty/missing results.jsonl is an error."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"results folder {path} does not exist: pass a folder written by "
            "`python -m bench run` (e.g. results/<run-id>)"
        )
    results_file = path / "results.jsonl"
    if not results_file.is_file():
        raise FileNotFoundError(
            f"{results_file} is missing: is {path} a results folder (or a root of "
            "shard-I-of-N folders)?"
        )
    results = _read_jsonl(results_file)
    if results.empty:
        raise ValueError(f"{results_file} has no rows: nothing to report")
    meta: dict[str, Any] = {}
    meta_file = path / "meta.json"
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text(encoding="utf-8"))
    else:
        log.warning("%s is missing: the report's header will be incomplete", meta_file)
    name = str(meta.get("run_id") or path.name)
    meta = {**meta, "run_id": name}
    results = _with_columns(results, ROW_COLUMNS, NUMERIC_COLUMNS)
    # In the report "run" is the folder (meta.json's run_id); a row's own training run id moves.
    results["training_run"] = results["run"]
    results["run"] = name
    layers = _optional_table(path / "layers.jsonl", LAYER_COLUMNS, NUMERIC_LAYER_COLUMNS)
    epochs = _optional_table(path / "epochs.jsonl", EPOCH_COLUMNS, NUMERIC_EPOCH_COLUMNS)
    epochs["folder"] = name
    layer_times = _optional_table(
        path / "layer_times.jsonl", LAYER_TIME_COLUMNS, NUMERIC_LAYER_TIME_COLUMNS
    )
    layer_times["run"] = name
    over_budget = _optional_table(
        path / "over_budget.jsonl", OVER_BUDGET_COLUMNS, NUMERIC_OVER_BUDGET_COLUMNS
    )
    return Run(
        name=name,
        metas=(meta,),
        results=results,
        layers=layers,
        epochs=epochs,
        layer_times=layer_times,
        over_budget=over_budget,
    )


def _optional_table(path: Path, columns: Sequence[str], numeric: Sequence[str]) -> pd.DataFrame:
    table = _read_jsonl(path) if path.is_file() else pd.DataFrame()
    return _with_columns(table, columns, numeric)


def merge_runs(runs: Sequence[Run], *, across_machines: bool = False) -> Run:
    """Merge results folders into one; rows of different folders with the same settings collide.

    A collision raises a one-line ``ValueError`` naming the settings and both folders. Within one
    folder a repeated setting keeps the last row written (a retry), with a warning. Folders whose
    rows on one device name different hardware (``device_name``: the CPU or GPU model) are
    refused the same way unless ``across_machines`` (:func:`mixed_machines`).
    """
    if not runs:
        raise ValueError("no results folders given")
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[0]
        raise ValueError(f"run {dup!r} is given twice: pass each results folder once")
    mixed = mixed_machines(pd.concat([r.results for r in runs], ignore_index=True))
    if mixed and not across_machines:
        device, kinds = next(iter(mixed.items()))
        where = "; ".join(f"{kind} in {', '.join(folders)}" for kind, folders in kinds.items())
        raise ValueError(
            f"the {device} rows were measured on different machines ({where}): their speeds "
            "would share one table; report them apart, or give --across-machines to mix them"
        )
    seen: dict[tuple[Any, ...], str] = {}
    frames = []
    for one in runs:
        records = one.results.to_dict("records")
        # The report's ``run`` is the folder; a row's own training run id is ``training_run``.
        keys = [row_key({**r, "run": r.get("training_run")}, merge=True) for r in records]
        keep = pd.Series(keys).duplicated(keep="last").map(lambda d: not d).to_numpy()
        if not keep.all():
            log.warning(
                "%s: %d rows repeat an earlier setting; keeping the last of each",
                one.name,
                int((~keep).sum()),
            )
        for key, record in ((k, r) for k, r, kept in zip(keys, records, keep) if kept):
            if key in seen:
                raise ValueError(
                    f"rows collide: {seen[key]} and {one.name} both measured "
                    f"{settings_text(record)}; merge folders with different settings only"
                )
            seen[key] = one.name
        frames.append(one.results[keep])
    results = pd.concat(frames, ignore_index=True)
    # A model's layer breakdown does not depend on settings: keep the first folder's.
    layers = pd.concat([r.layers for r in runs], ignore_index=True)
    if not layers.empty:
        owner: dict[str, int] = {}
        for i, one in enumerate(runs):
            for model in one.layers["model"].unique():
                owner.setdefault(model, i)
        layers = pd.concat(
            [r.layers[r.layers["model"].map(owner) == i] for i, r in enumerate(runs)],
            ignore_index=True,
        )
    epochs = pd.concat([r.epochs for r in runs], ignore_index=True)
    layer_times = pd.concat([r.layer_times for r in runs], ignore_index=True)
    over_budget = pd.concat([r.over_budget for r in runs], ignore_index=True)
    name = runs[0].name if len(runs) == 1 else f"{runs[0].name}+{len(runs) - 1}"
    metas = tuple(m for r in runs for m in r.metas)
    return Run(
        name=name,
        metas=metas,
        results=results,
        layers=layers,
        epochs=epochs,
        layer_times=layer_times,
        over_budget=over_budget,
    )


def mixed_machines(results: pd.DataFrame) -> dict[str, dict[str, list[str]]]:
    """Each device whose rows of different folders (``run``) name different hardware
    (``device_name``): ``{device: {hardware: [folders]}}``. Hosts alike in CPU and GPU are one
    kind of machine (the slices of a job array); rows without a name (older folders) are
    left out."""
    kinds: dict[str, dict[str, list[str]]] = {}
    pairs = results[["device", "device_name", "run"]].dropna().drop_duplicates()
    for device, name, folder in pairs.itertuples(index=False):
        kinds.setdefault(str(device), {}).setdefault(str(name), []).append(str(folder))
    return {
        device: by_name
        for device, by_name in kinds.items()
        if len(by_name) > 1 and len({f for folders in by_name.values() for f in folders}) > 1
    }


def device_peaks(meta: Mapping[str, Any], device: str = "cpu") -> dict[str, float]:
    """The peaks measured for ``device``, keyed as :data:`PEAK_KINDS`.

    In meta.json the CPU's are ``fp32_matmul`` / ``fp32_conv3x3`` / ``bf16_matmul`` /
    ``bf16_conv3x3``, another device's carry its name as a prefix (``cuda_fp32_matmul``), as
    bench.measure.machine writes them.
    """
    raw = meta.get("peak_gflops") or {}
    prefix = "" if device == "cpu" else f"{device}_"
    peaks = {}
    for kind in PEAK_KINDS:
        value = raw.get(prefix + kind)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            peaks[kind] = float(value)
    return peaks


BANDWIDTH_KINDS = ("fp32_triad", "bf16_triad")


def device_bandwidth(meta: Mapping[str, Any], device: str = "cpu") -> dict[str, float]:
    """The memory roofs measured for ``device`` (meta.json's ``peak_bandwidth_gbs``, GB/s),
    keyed as :data:`BANDWIDTH_KINDS`, prefixed as :func:`device_peaks` reads the peaks."""
    raw = meta.get("peak_bandwidth_gbs") or {}
    prefix = "" if device == "cpu" else f"{device}_"
    roofs = {}
    for kind in BANDWIDTH_KINDS:
        value = raw.get(prefix + kind) if isinstance(raw, Mapping) else None
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            roofs[kind] = float(value)
    return roofs


def reference_bandwidth(roofs: Mapping[str, float], dtype: str) -> float | None:
    """The memory roof a step of ``dtype`` is held against: the triad of its element size
    (bf16 autocast moves bf16 activations), None if not measured."""
    return roofs.get("bf16_triad" if "bf16" in str(dtype) else "fp32_triad")


def row_bandwidth(
    metas: Sequence[Mapping[str, Any]],
) -> Callable[[Mapping[str, Any]], dict[str, float]]:
    """A function giving a row's (or layer-times line's) :func:`device_bandwidth`, of the
    session that measured it, as :func:`row_peaks` gives its peaks."""
    meta_of = _row_meta(metas)
    return lambda row: device_bandwidth(meta_of(row), str(row["device"]))


def _with_session(meta: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    """``meta``'s top-level keys under a ``sessions`` entry's. A session that lists peaks but
    no spread (written before the peaks were repeated) does not take the first session's."""
    merged = {**meta, **entry}
    if "peak_gflops" in entry and "peak_gflops_spread" not in entry:
        merged.pop("peak_gflops_spread", None)
    return merged


def session_meta(meta: Mapping[str, Any], session: Any = None) -> Mapping[str, Any]:
    """The meta records of the session that measured a row (``session``: the row's column).

    meta.json's ``sessions`` entry over its top-level keys; a folder without ``sessions`` is one
    session, and a row without a session belongs to the first. A session meta.json does not
    list gives the top-level keys without the peaks: no row is judged against another's.
    """
    sessions = meta.get("sessions")
    if not isinstance(sessions, list) or not sessions:
        return meta
    number = key_value(session) or 1
    for entry in sessions:
        if isinstance(entry, Mapping) and key_value(entry.get("session")) == number:
            return _with_session(meta, entry)
    return {k: v for k, v in meta.items() if k not in ("peak_gflops", "peak_gflops_spread")}


def device_spreads(meta: Mapping[str, Any], device: str = "cpu") -> dict[str, PeakSpread]:
    """The spreads of ``device``'s peaks over their repeats, keyed as :data:`PEAK_KINDS`, as
    :func:`device_peaks` reads the peaks. A peak without one (a folder from before the
    peaks were repeated, or an entry that does not read as numbers) is left out: its spread
    was not measured."""
    raw = meta.get("peak_gflops_spread") or {}
    prefix = "" if device == "cpu" else f"{device}_"
    spreads = {}
    for kind in PEAK_KINDS:
        entry = raw.get(prefix + kind) if isinstance(raw, Mapping) else None
        if not isinstance(entry, Mapping):
            continue
        values = [entry.get(name) for name in ("min", "median", "max", "repeats")]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in values):
            low, median, high, repeats = (float(v) for v in values)
            spreads[kind] = PeakSpread(low, median, high, int(repeats))
    return spreads


def row_peaks(
    metas: Sequence[Mapping[str, Any]],
) -> Callable[[Mapping[str, Any]], dict[str, float]]:
    """A function giving a row's :func:`device_peaks` as measured by the session that measured
    the row (its folder's meta by ``run``, then its ``session``)."""
    meta_of = _row_meta(metas)
    return lambda row: device_peaks(meta_of(row), str(row["device"]))


def row_spreads(
    metas: Sequence[Mapping[str, Any]],
) -> Callable[[Mapping[str, Any]], dict[str, PeakSpread]]:
    """A function giving a row's :func:`device_spreads`, of the session that measured it, as
    :func:`row_peaks` gives its peaks."""
    meta_of = _row_meta(metas)
    return lambda row: device_spreads(meta_of(row), str(row["device"]))


def _row_meta(
    metas: Sequence[Mapping[str, Any]],
) -> Callable[[Mapping[str, Any]], Mapping[str, Any]]:
    meta_by_run = {str(m.get("run_id")): m for m in metas}
    return lambda row: session_meta(meta_by_run.get(str(row["run"]), {}), row["session"])


def reference_peak(peaks: Mapping[str, float], dtype: str) -> tuple[str, float] | None:
    """The peak a row of ``dtype`` is judged against, as ``(kind, GFLOP/s)``: the faster of the
    matmul and the 3×3 convolution of the row's precision, bf16 or fp32 (on some CPUs the
    convolution kernels outrun the matmul library). None if nothing was measured."""
    precision = "bf16" if "bf16" in str(dtype) else "fp32"
    kinds = (f"{precision}_matmul", f"{precision}_conv3x3")
    measured = [(kind, peaks[kind]) for kind in kinds if peaks.get(kind)]
    return max(measured, key=lambda item: item[1]) if measured else None


def split_sessions(meta: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """One meta per session (run id ``<run_id> session N``), or ``[meta]`` for a single one."""
    sessions = meta.get("sessions")
    if not isinstance(sessions, list) or len(sessions) < 2:
        return [meta]
    return [
        {
            **_with_session(meta, entry),
            "run_id": f"{meta.get('run_id')} session {entry.get('session')}",
        }
        for entry in sessions
        if isinstance(entry, Mapping)
    ]


@dataclass(frozen=True)
class Curve:
    """One training run's evaluations (epochs.jsonl lines), in training-clock order."""

    folder: str
    run: str
    model: str
    data: str
    seed: Any
    world_size: int
    device: str | None
    points: pd.DataFrame
    recipe_name: str | None = None  # an alternative recipe (--recipe), None for the model's own


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def epoch_curves(epochs: pd.DataFrame) -> list[Curve]:
    """Split the per-epoch log into one :class:`Curve` per training run (folder and ``run``).

    Lines written before ``run`` existed carry none: there a curve is a folder's model, data,
    seed and process count, as those lines could tell runs apart.
    """
    df = epochs[epochs["test_accuracy"].notna() & epochs["wall_s"].notna()].copy()
    if df.empty:
        return []
    df["folder"] = df["folder"].fillna("") if "folder" in df.columns else ""
    world = df["world_size"].map(key_value).fillna(1).astype(int)
    legacy = df["model"].astype(str) + "-seed" + df["seed"].astype(str) + "-" + world.astype(str)
    run = df["run"] if "run" in df.columns else pd.Series(None, index=df.index, dtype=object)
    df["run"] = run.where(run.notna(), legacy)
    df["world_size"] = world
    curves = []
    for (folder, run_id), points in df.groupby(["folder", "run"], sort=True, dropna=False):
        first = points.iloc[0]
        device = first.get("device")
        curves.append(
            Curve(
                folder=str(folder),
                run=str(run_id),
                model=str(first["model"]),
                data=str(first["data"]),
                seed=key_value(first["seed"]),
                world_size=int(first["world_size"]),
                device=None if device is None or key_value(device) is None else str(device),
                points=points.sort_values(["wall_s", "epoch"], kind="mergesort"),
                recipe_name=_text_or_none(first.get("recipe_name")),
            )
        )
    return curves
