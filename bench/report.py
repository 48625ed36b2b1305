"""The comparison report: turn one or more results folders into tables, plots and sentences.

``python -m bench report RESULTS_DIR...`` (or ``python -m bench.report``) reads the folders
described in docs/ARCHITECTURE.md (meta.json, results.jsonl, layers.jsonl, epochs.jsonl) and
writes ``reports/<run_id>/``: ``report.md`` with its ``fig_*.png`` plots, ``summary.csv`` (the
at-a-glance table) and a self-contained ``report.html`` (images inlined). Every number comes from
the results or, for the papers' figures, from the registry's ``PaperFacts``; the output depends
only on those inputs, so building twice gives identical bytes.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import logging
import math
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from bench import plots
from bench.results import ROW_COLUMNS

__all__ = [
    "Run",
    "add_arguments",
    "build_report",
    "layer_shares",
    "load_run",
    "main",
    "merge_runs",
    "register_cli",
    "run",
    "summary_table",
]

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]

# The columns of results.jsonl are the writer's (bench.results.ROW_COLUMNS); missing ones are
# added as nulls so a report still renders from an older or partial run.
_NUMERIC_RESULT_COLUMNS = (
    "num_classes",
    "threads",
    "batch_size",
    "params",
    "params_total",
    "macs_fvcore",
    "flops",
    "weights_mib",
    "grads_mib",
    "optimizer_mib",
    "activations_mib",
    "peak_mem_mib",
    "step_ms_median",
    "step_ms_p10",
    "step_ms_p90",
    "steps_timed",
    "samples_per_s",
    "achieved_gflops",
    "max_batch",
    "accuracy",
    "target_acc",
    "time_to_target_s",
    "budget_s",
    "epochs",
    "train_s",
    "world_size",
    "global_batch",
)
LAYER_COLUMNS = (
    "model",
    "family",
    "index",
    "layer",
    "type",
    "output_shape",
    "params",
    "macs",
    "activation_mib",
)
EPOCH_COLUMNS = (
    "model",
    "data",
    "seed",
    "world_size",
    "epoch",
    "wall_s",
    "train_loss",
    "test_accuracy",
    "samples_per_s",
)
# Two rows measure the same thing when these agree (accuracy rows also need data, seed and the
# number of training processes; rows written before that column existed ran one process).
SETTING_KEYS = ("model", "device", "dtype", "memory_format", "batch_size", "mode", "threads")
ACCURACY_KEYS = ("data", "seed", "world_size")
# The at-a-glance table compares models on equal footing: fp32, contiguous.
REFERENCE_DTYPE = "fp32"
REFERENCE_FORMAT = "contiguous"
PEAK_KINDS = ("fp32_matmul", "fp32_conv3x3", "bf16_matmul")
ERROR = "error"


# --------------------------------------------------------------------------- loading and merging


@dataclass(frozen=True)
class Run:
    """One results folder (or several merged): its meta records and its three tables."""

    name: str
    metas: tuple[Mapping[str, Any], ...]
    results: pd.DataFrame
    layers: pd.DataFrame = field(default_factory=lambda: _empty(LAYER_COLUMNS))
    epochs: pd.DataFrame = field(default_factory=lambda: _empty(EPOCH_COLUMNS))


def _empty(columns: Iterable[str]) -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})


def _read_jsonl(path: Path) -> pd.DataFrame:
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            # Rows are appended as measured: a run killed mid-write leaves a torn last line.
            if number == len(lines):
                log.warning("%s:%d: skipping a truncated last line", path, number)
                continue
            raise ValueError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise ValueError(f"{path}:{number}: expected a JSON object per line")
        records.append(record)
    return pd.DataFrame.from_records(records)


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
        raise FileNotFoundError(f"{results_file} is missing: is {path} a results folder?")
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
    results = _with_columns(results, ROW_COLUMNS, _NUMERIC_RESULT_COLUMNS)
    results["run"] = name
    layers = _optional_table(
        path / "layers.jsonl", LAYER_COLUMNS, ("index", "params", "macs", "activation_mib")
    )
    epochs = _optional_table(
        path / "epochs.jsonl",
        EPOCH_COLUMNS,
        ("world_size", "epoch", "wall_s", "train_loss", "test_accuracy", "samples_per_s"),
    )
    return Run(name=name, metas=(meta,), results=results, layers=layers, epochs=epochs)


def _optional_table(path: Path, columns: Sequence[str], numeric: Sequence[str]) -> pd.DataFrame:
    table = _read_jsonl(path) if path.is_file() else pd.DataFrame()
    return _with_columns(table, columns, numeric)


def _key_value(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _row_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    if row.get("mode") != "accuracy":
        return tuple((k, _key_value(row.get(k))) for k in SETTING_KEYS)
    row = {**row, "world_size": _key_value(row.get("world_size")) or 1}
    return tuple((k, _key_value(row.get(k))) for k in SETTING_KEYS + ACCURACY_KEYS)


def merge_runs(runs: Sequence[Run]) -> Run:
    """Merge results folders into one; rows of different folders with the same settings collide.

    A collision raises a one-line ``ValueError`` naming the settings and both folders. Within one
    folder a repeated setting keeps the last row written (a retry), with a warning.
    """
    if not runs:
        raise ValueError("no results folders given")
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})[0]
        raise ValueError(f"run {dup!r} is given twice: pass each results folder once")
    seen: dict[tuple[Any, ...], str] = {}
    frames = []
    for one in runs:
        keys = [_row_key(r) for r in one.results.to_dict("records")]
        keep = pd.Series(keys).duplicated(keep="last").map(lambda d: not d).to_numpy()
        if not keep.all():
            log.warning(
                "%s: %d rows repeat an earlier setting; keeping the last of each",
                one.name,
                int((~keep).sum()),
            )
        for key in (k for k, kept in zip(keys, keep) if kept):
            if key in seen:
                settings = " ".join(f"{k}={v}" for k, v in key if v is not None)
                raise ValueError(
                    f"rows collide: {seen[key]} and {one.name} both measured "
                    f"{settings}; merge folders with different settings only"
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
    if not epochs.empty:
        epochs = epochs.drop_duplicates(
            subset=["model", "data", "seed", "world_size", "epoch"], keep="first"
        )
    name = runs[0].name if len(runs) == 1 else f"{runs[0].name}+{len(runs) - 1}"
    metas = tuple(m for r in runs for m in r.metas)
    return Run(name=name, metas=metas, results=results, layers=layers, epochs=epochs)


# --------------------------------------------------------------------------- the paper's facts


def _paper(model: str) -> Any:
    """The registry's PaperFacts of ``model``; None if unknown or the zoo is not importable."""
    try:
        from zoo.registry import get_card
    except ImportError as exc:
        log.warning("zoo is not importable (%s): the papers' columns stay blank", exc)
        return None
    try:
        return get_card(model).paper
    except ValueError:
        return None


def _paper_facts(models: Iterable[str]) -> dict[str, Any]:
    return {m: _paper(m) for m in models}


# --------------------------------------------------------------------------- tables


def _failed(df: pd.DataFrame) -> pd.Series:
    return df["error"].notna() & (df["error"].astype(str).str.strip() != "")


def _family_rank(family: Any) -> tuple[int, str]:
    return plots._family_rank(family)


def _model_order(results: pd.DataFrame) -> list[str]:
    firsts = results.groupby("model", sort=True).agg(
        family=("family", "first"), params=("params", "max")
    )
    firsts["rank"] = [_family_rank(f) for f in firsts["family"]]
    firsts["params_key"] = firsts["params"].fillna(float("inf"))
    firsts = firsts.reset_index().sort_values(["rank", "params_key", "model"])
    return list(firsts["model"])


def _prefer_reference(df: pd.DataFrame) -> pd.DataFrame:
    """Rows at the reference dtype and memory format if there are any, otherwise all rows."""
    ref = df[(df["dtype"] == REFERENCE_DTYPE) & (df["memory_format"] == REFERENCE_FORMAT)]
    return ref if not ref.empty else df


def _first_value(rows: pd.DataFrame, column: str) -> float | None:
    values = _prefer_reference(rows)[column].dropna()
    if values.empty:
        values = rows[column].dropna()
    return float(values.iloc[0]) if not values.empty else None


def _reference_row(rows: pd.DataFrame) -> pd.Series | None:
    """The best-throughput row (ties: smaller batch) at the reference dtype and format."""
    ok = rows[~_failed(rows) & rows["samples_per_s"].notna()]
    if ok.empty:
        return None
    ok = _prefer_reference(ok).sort_values(
        ["samples_per_s", "batch_size"], ascending=[False, True], kind="mergesort"
    )
    return ok.iloc[0]


def memory_rows(results: pd.DataFrame, models: Sequence[str]) -> pd.DataFrame:
    """One train row per model for the memory breakdown: smallest batch, reference settings."""
    train = results[
        (results["mode"] == "train") & ~_failed(results) & results["activations_mib"].notna()
    ]
    picked = []
    for model in models:
        rows = _prefer_reference(train[train["model"] == model])
        if rows.empty:
            continue
        row = rows.sort_values(["batch_size", "device"], kind="mergesort").iloc[0]
        picked.append(row)
    if not picked:
        return _empty(
            (
                "model",
                "label",
                "batch_size",
                "device",
                "dtype",
                "weights_mib",
                "grads_mib",
                "optimizer_mib",
                "activations_mib",
            )
        )
    df = pd.DataFrame(picked).reset_index(drop=True)
    df["label"] = [f"{m} (batch {int(b)})" for m, b in zip(df["model"], df["batch_size"])]
    return df


def summary_table(results: pd.DataFrame, paper: Mapping[str, Any] | None = None) -> pd.DataFrame:
    """The zoo at a glance: one row per model (the content of summary.csv).

    Counts come from the first fp32/contiguous row that has them; throughput and peak memory
    per device and mode come from the row with the best fp32/contiguous samples/s (its batch in
    ``*_batch``); activations per sample from the smallest-batch train row. A number that is
    missing because every row that could give it failed reads ``"error"``.
    """
    paper = dict(paper or {})
    models = _model_order(results)
    devices = sorted(results["device"].dropna().astype(str).unique())
    failed = _failed(results)
    mem = memory_rows(results, models).set_index("model") if models else pd.DataFrame()
    out = []
    for model in models:
        rows = results[results["model"] == model]
        model_failed = failed[rows.index]
        row: dict[str, Any] = {
            "model": model,
            "family": rows["family"].dropna().iloc[0] if rows["family"].notna().any() else None,
            "input_shape": (
                rows["input_shape"].dropna().iloc[0] if rows["input_shape"].notna().any() else None
            ),
        }
        for column, source in (
            ("params", "params"),
            ("params_total", "params_total"),
            ("macs", "macs_fvcore"),
            ("flops", "flops"),
            ("weights_mib", "weights_mib"),
        ):
            value = _first_value(rows, source)
            row[column] = value if value is not None else (ERROR if model_failed.any() else None)
        if model in mem.index:
            m = mem.loc[model]
            row["activations_mib_per_sample"] = float(m["activations_mib"]) / float(m["batch_size"])
        else:
            train = rows[rows["mode"] == "train"]
            row["activations_mib_per_sample"] = ERROR if _failed(train).any() else None
        for device in devices:
            for mode in ("infer", "train"):
                sub = rows[(rows["device"] == device) & (rows["mode"] == mode)]
                ref = _reference_row(sub)
                prefix = f"{device}_{mode}"
                if ref is not None:
                    row[f"{prefix}_samples_per_s"] = float(ref["samples_per_s"])
                    row[f"{prefix}_batch"] = int(ref["batch_size"])
                    row[f"{prefix}_dtype"] = ref["dtype"]
                    peak = ref["peak_mem_mib"]
                    row[f"{prefix}_peak_mem_mib"] = float(peak) if pd.notna(peak) else None
                else:
                    mark = ERROR if _failed(sub).any() else None
                    row[f"{prefix}_samples_per_s"] = mark
                    row[f"{prefix}_batch"] = None
                    row[f"{prefix}_dtype"] = None
                    row[f"{prefix}_peak_mem_mib"] = mark
        row.update(_accuracy_summary(rows))
        facts = paper.get(model)
        row["paper_params"] = getattr(facts, "params", None)
        row["params_diff_pct"] = _diff_pct(row["params"], row["paper_params"])
        row["paper_macs"] = getattr(facts, "macs", None)
        row["macs_diff_pct"] = _diff_pct(row["macs"], row["paper_macs"])
        row["paper_accuracy"] = _paper_accuracy(facts)
        row["paper_reported_on"] = getattr(facts, "reported_on", None)
        row["error_rows"] = int(model_failed.sum())
        out.append(row)
    table = pd.DataFrame(out)
    # Counts stay integers in summary.csv even where a column also holds "error".
    for column in (
        "params",
        "params_total",
        "macs",
        "flops",
        "accuracy_seeds",
        "paper_params",
        "paper_macs",
        "error_rows",
        *(c for c in table.columns if c.endswith("_batch")),
    ):
        if column in table.columns:
            table[column] = pd.Series(
                [_as_int(v) for v in table[column]], index=table.index, dtype=object
            )
    return table


def _as_int(x: Any) -> Any:
    if isinstance(x, float) and x.is_integer():
        return int(x)
    return x


def _accuracy_summary(rows: pd.DataFrame) -> dict[str, Any]:
    acc = rows[rows["mode"] == "accuracy"]
    blank = {
        "accuracy": None,
        "accuracy_data": None,
        "accuracy_seeds": None,
        "target_acc": None,
        "time_to_target_s": None,
        "reached_target": None,
    }
    if acc.empty:
        return blank
    ok = acc[~_failed(acc) & acc["accuracy"].notna()]
    if ok.empty:
        return {**blank, "accuracy": ERROR}
    data = sorted(ok["data"].astype(str).unique())[0]
    ok = ok[ok["data"].astype(str) == data]
    reached = ok["time_to_target_s"].dropna()
    return {
        "accuracy": float(ok["accuracy"].mean()),
        "accuracy_data": data,
        "accuracy_seeds": int(len(ok)),
        "target_acc": float(ok["target_acc"].iloc[0]) if ok["target_acc"].notna().any() else None,
        "time_to_target_s": float(reached.median()) if not reached.empty else None,
        "reached_target": f"{len(reached)}/{len(ok)}",
    }


def _diff_pct(ours: Any, theirs: Any) -> float | None:
    if not isinstance(ours, (int, float)) or not theirs:
        return None
    return 100.0 * (float(ours) - float(theirs)) / float(theirs)


def _paper_accuracy(facts: Any) -> float | None:
    if facts is None:
        return None
    if facts.test_accuracy is not None:
        return float(facts.test_accuracy)
    if facts.top1_error is not None:
        return 1.0 - float(facts.top1_error)
    return None


def layer_shares(layers: pd.DataFrame) -> pd.DataFrame:
    """Per model: % of parameters and MACs in conv / fc / other layers, and the largest layer."""
    if layers.empty:
        return pd.DataFrame()
    df = layers.copy()
    df["kind"] = df["type"].map(plots.layer_kind)
    out = []
    for model in sorted(df["model"].unique()):
        part = df[df["model"] == model]
        row: dict[str, Any] = {"model": model, "family": part["family"].iloc[0]}
        for what in ("params", "macs"):
            total = float(part[what].fillna(0).sum())
            row[f"{what}_total"] = total
            for kind in ("conv", "fc", "other"):
                value = float(part.loc[part["kind"] == kind, what].fillna(0).sum())
                row[f"{what}_{kind}_pct"] = 100.0 * value / total if total else None
        biggest = part.sort_values(
            ["params", "index"], ascending=[False, True], kind="mergesort"
        ).iloc[0]
        row["largest_layer"] = biggest["layer"]
        row["largest_layer_type"] = biggest["type"]
        row["largest_layer_params_pct"] = (
            100.0 * float(biggest["params"]) / row["params_total"] if row["params_total"] else None
        )
        out.append(row)
    return pd.DataFrame(out)


# --------------------------------------------------------------------------- formatting


def fmt_int(x: Any) -> str:
    """An integer with thousands separators; blanks and "error" pass through."""
    if _missing(x):
        return ""
    if isinstance(x, str):
        return x
    return f"{int(round(float(x))):,}"


def fmt_num(x: Any, digits: int = 4) -> str:
    """About ``digits`` significant digits, thousands separated: 527.8, 0.2354, 12,346."""
    if _missing(x):
        return ""
    if isinstance(x, str):
        return x
    x = float(x)
    if x == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(x))))
    return f"{x:,.{decimals}f}"


def fmt_si(x: Any) -> str:
    """A count with an SI suffix and 4 significant digits: 15.47 G, 416.5 k."""
    if _missing(x):
        return ""
    if isinstance(x, str):
        return x
    x = float(x)
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:.4g} {suffix}"
    return f"{x:.4g}"


def fmt_pct(x: Any, signed: bool = False, decimals: int = 2) -> str:
    """A percentage (the value already in percent)."""
    if _missing(x):
        return ""
    if isinstance(x, str):
        return x
    if signed and float(x) == 0:
        return "0"
    return f"{float(x):{'+' if signed else ''}.{decimals}f}%"


def fmt_frac(x: Any) -> str:
    """A fraction as a percentage with two decimals: 0.9905 -> 99.05%."""
    if _missing(x) or isinstance(x, str):
        return "" if _missing(x) else x
    return f"{100 * float(x):.2f}%"


def _missing(x: Any) -> bool:
    if x is None:
        return True
    try:
        return bool(pd.isna(x))
    except (TypeError, ValueError):
        return False


def _ratio(a: float, b: float) -> str:
    r = a / b
    return f"{r:.1f}×" if r < 10 else f"{r:,.0f}×"


def _share(x: float) -> str:
    return f"{x:.0f}%" if x >= 1 else f"{x:.1f}%"


def _duration(seconds: Any) -> str:
    if _missing(seconds):
        return ""
    total = int(round(float(seconds)))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m} min {s} s" if h else (f"{m} min {s} s" if m else f"{s} s")


# --------------------------------------------------------------------------- the document


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...] = ()  # right-align these columns


@dataclass(frozen=True)
class Image:
    file: str
    caption: str


Block = Heading | Para | Bullets | Table | Image


def _table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[bool] = ()
) -> Table:
    return Table(
        tuple(headers),
        tuple(tuple("" if c is None else str(c) for c in r) for r in rows),
        tuple(numeric),
    )


def _shard_text(shard: Any) -> str:
    """``"2 of 4"`` for a ``--shard 2/4`` run; ``"whole plan"`` otherwise."""
    if isinstance(shard, Mapping) and shard.get("count"):
        return f"{shard.get('index')} of {shard.get('count')}"
    return "whole plan"


def _header_blocks(run: Run) -> list[Block]:
    fields: list[tuple[str, Any]] = [
        ("run", lambda m: m.get("run_id")),
        ("started", lambda m: m.get("started")),
        ("finished", lambda m: m.get("finished")),
        ("duration", lambda m: _duration(m.get("duration_s"))),
        ("plan", lambda m: json.dumps(m.get("plan"), sort_keys=True) if m.get("plan") else ""),
        ("shard", lambda m: _shard_text((m.get("plan") or {}).get("shard"))),
        ("CPU", lambda m: m.get("cpu_model")),
        ("CPU flags", lambda m: ", ".join(m.get("cpu_flags") or [])),
        ("GPU", lambda m: m.get("gpu") or "none"),
        ("threads", lambda m: m.get("threads")),
        ("torch", lambda m: m.get("torch_version")),
        ("torchvision", lambda m: m.get("torchvision_version")),
        ("git commit", lambda m: m.get("git_commit")),
        ("host", lambda m: m.get("hostname")),
    ]
    devices = sorted(run.results["device"].dropna().astype(str).unique())
    for device in ["cpu", *(d for d in devices if d != "cpu")]:
        for kind in PEAK_KINDS:
            if any(_peaks(m, device).get(kind) for m in run.metas):
                fields.append(
                    (
                        f"{device} {kind.replace('_', ' ')} peak (GFLOP/s)",
                        lambda m, d=device, k=kind: fmt_num(_peaks(m, d).get(k)),
                    )
                )
    headers = ["", *(str(m.get("run_id")) for m in run.metas)] if len(run.metas) > 1 else ["", ""]
    rows = [
        (label, *("" if _missing(get(m)) else get(m) for m in run.metas)) for label, get in fields
    ]
    results = run.results
    n_failed = int(_failed(results).sum())
    return [
        Heading(2, "What was measured where"),
        _table(headers, rows),
        Para(
            f"{len(results)} result rows ({n_failed} with an error), "
            f"{results['model'].nunique()} models, devices: "
            f"{', '.join(sorted(results['device'].dropna().astype(str).unique()))}."
        ),
    ]


def _peaks(meta: Mapping[str, Any], device: str = "cpu") -> dict[str, float]:
    """The peaks measured for ``device``, keyed as :data:`PEAK_KINDS`.

    In meta.json the CPU's are ``fp32_matmul`` / ``fp32_conv3x3`` / ``bf16_matmul``, another
    device's carry its name as a prefix (``cuda_fp32_matmul``), as bench.machine writes them.
    """
    raw = meta.get("peak_gflops") or {}
    prefix = "" if device == "cpu" else f"{device}_"
    peaks = {}
    for kind in PEAK_KINDS:
        value = raw.get(prefix + kind)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            peaks[kind] = float(value)
    return peaks


def _glance_blocks(summary: pd.DataFrame, devices: Sequence[str]) -> list[Block]:
    size_rows = []
    for _, r in summary.iterrows():
        size_rows.append(
            (
                r["model"],
                r["family"],
                r["input_shape"],
                fmt_int(r["params"]),
                fmt_int(r["paper_params"]),
                fmt_pct(r["params_diff_pct"], signed=True),
                fmt_si(r["macs"]),
                fmt_si(r["paper_macs"]),
                fmt_pct(r["macs_diff_pct"], signed=True),
                fmt_si(r["flops"]),
                fmt_num(r["weights_mib"]),
                fmt_num(r["activations_mib_per_sample"]),
            )
        )
    size = _table(
        (
            "model",
            "family",
            "input",
            "params",
            "paper params",
            "Δ",
            "MACs",
            "paper MACs",
            "Δ",
            "FLOPs",
            "weights MiB",
            "activations MiB/sample",
        ),
        size_rows,
        (False, False, False) + (True,) * 9,
    )
    speed_headers = ["model"]
    for device in devices:
        speed_headers += [
            f"{device} infer samples/s",
            f"{device} train samples/s",
            f"{device} infer peak MiB",
            f"{device} train peak MiB",
        ]
    speed_headers += ["accuracy", "time to target", "paper accuracy"]
    speed_rows = []
    for _, r in summary.iterrows():
        cells = [r["model"]]
        for device in devices:
            for mode in ("infer", "train"):
                cells.append(_throughput_cell(r, f"{device}_{mode}"))
            for mode in ("infer", "train"):
                cells.append(fmt_num(r[f"{device}_{mode}_peak_mem_mib"]))
        cells.append(_accuracy_cell(r))
        cells.append(_time_to_target_cell(r))
        cells.append(_paper_accuracy_cell(r))
        speed_rows.append(cells)
    speed = _table(
        speed_headers, speed_rows, (False,) + (True,) * (4 * len(devices)) + (True, True, False)
    )
    return [
        Heading(2, "The zoo at a glance"),
        Para(
            "Size and cost per sample, our counts beside the papers' (Δ = ours − paper, "
            "relative). MACs are fvcore's forward count; FLOPs are FlopCounterMode's (2 per "
            "MAC of conv/matmul). Activations are the tensors saved for backward, per sample."
        ),
        size,
        Para(
            f"Speed and memory at {REFERENCE_DTYPE}, {REFERENCE_FORMAT}: the best samples/s "
            "over the batch sizes measured (batch in brackets), and the peak memory of that "
            "same row. Accuracy is the mean over seeds of the final test accuracy; time to "
            'target the median wall-clock time of the seeds that reached it. "error" marks a '
            "number every attempt at failed (see Errors)."
        ),
        speed,
    ]


def _throughput_cell(r: pd.Series, prefix: str) -> str:
    value = r[f"{prefix}_samples_per_s"]
    if _missing(value) or isinstance(value, str):
        return fmt_num(value)
    extra = f"b={int(r[f'{prefix}_batch'])}"
    if r[f"{prefix}_dtype"] != REFERENCE_DTYPE:
        extra += f", {r[f'{prefix}_dtype']}"
    return f"{fmt_num(value)} ({extra})"


def _accuracy_cell(r: pd.Series) -> str:
    if _missing(r["accuracy"]) or isinstance(r["accuracy"], str):
        return fmt_frac(r["accuracy"])
    seeds = int(r["accuracy_seeds"])
    return f"{fmt_frac(r['accuracy'])} ({r['accuracy_data']}, {seeds} seed{'s' * (seeds != 1)})"


def _time_to_target_cell(r: pd.Series) -> str:
    if _missing(r["reached_target"]):
        return ""
    target = fmt_frac(r["target_acc"])
    if _missing(r["time_to_target_s"]):
        return f"not reached ({target})"
    return f"{fmt_num(r['time_to_target_s'])} s to {target} ({r['reached_target']} seeds)"


def _paper_accuracy_cell(r: pd.Series) -> str:
    if _missing(r["paper_accuracy"]):
        return ""
    on = f" ({r['paper_reported_on']})" if not _missing(r["paper_reported_on"]) else ""
    return f"{fmt_frac(r['paper_accuracy'])}{on}"


def _paper_blocks(summary: pd.DataFrame, paper: Mapping[str, Any]) -> list[Block]:
    rows = []
    for _, r in summary.iterrows():
        facts = paper.get(r["model"])
        if facts is None:
            continue
        rows.append(
            (
                r["model"],
                facts.citation,
                fmt_int(facts.params),
                fmt_int(r["params"]),
                fmt_si(facts.macs),
                fmt_si(r["macs"]),
                fmt_int(facts.connections),
                fmt_frac(facts.top1_error),
                fmt_frac(facts.top5_error),
                fmt_frac(facts.test_accuracy),
                facts.reported_on or "",
                facts.notes,
            )
        )
    if not rows:
        return [
            Heading(2, "What the papers say"),
            Para("No model in these results has paper facts in the zoo's registry."),
        ]
    return [
        Heading(2, "What the papers say"),
        Para(
            "The papers' own figures, from the zoo's registry (facts, not measurements), beside "
            "our counts. Where a paper's numbers disagree with each other or with our count, "
            "its notes say why."
        ),
        _table(
            (
                "model",
                "source",
                "paper params",
                "our params",
                "paper MACs",
                "our MACs",
                "paper connections",
                "top-1 error",
                "top-5 error",
                "test accuracy",
                "reported on",
                "notes",
            ),
            rows,
            (False, False) + (True,) * 8 + (False, False),
        ),
    ]


def _sentences(
    summary: pd.DataFrame,
    shares: pd.DataFrame,
    results: pd.DataFrame,
    metas: Sequence[Mapping[str, Any]],
    devices: Sequence[str],
) -> list[str]:
    """Comparisons the numbers support, each computed from the rows; missing inputs skip one."""
    out: list[str] = []
    by_model = summary.set_index("model") if not summary.empty else summary
    share_by = shares.set_index("model") if not shares.empty else shares

    def number(model: str, column: str) -> float | None:
        if model not in by_model.index:
            return None
        value = by_model.loc[model, column]
        return None if _missing(value) or isinstance(value, str) else float(value)

    def fc_clause(model: str) -> str:
        if model not in share_by.index or _missing(share_by.loc[model, "params_fc_pct"]):
            return ""
        return (
            f"; {_share(share_by.loc[model, 'params_fc_pct'])} of its parameters are in the "
            "classifier (Linear layers)"
        )

    # The headline pair: the biggest model against the canonical modern one, if both are here.
    sized = [m for m in by_model.index if number(m, "params") and number(m, "macs")]
    pair = None
    if "vgg16" in sized and "resnet34" in sized:
        pair = ("vgg16", "resnet34")
    elif len(sized) >= 2:
        biggest = max(sized, key=lambda m: (number(m, "params"), m))
        others = [m for m in sized if m != biggest]
        pair = (biggest, max(others, key=lambda m: (number(m, "macs"), m)))
    if pair:
        a, b = pair
        out.append(
            f"{a} has {_ratio(number(a, 'params'), number(b, 'params'))} the parameters "
            f"of {b} and {_ratio(number(a, 'macs'), number(b, 'macs'))} its MACs"
            f"{fc_clause(a)}."
        )

    if not shares.empty:
        fc = shares.dropna(subset=["params_fc_pct"])
        if len(fc) >= 2:
            most = fc.sort_values(["params_fc_pct", "model"], ascending=[False, True]).iloc[0]
            least = fc.sort_values(["params_fc_pct", "model"]).iloc[0]
            if most["model"] != least["model"]:
                if not pair or most["model"] != pair[0]:
                    out.append(
                        f"{most['model']} keeps {_share(most['params_fc_pct'])} of its "
                        "parameters in its fully connected (Linear) layers."
                    )
                out.append(
                    f"{least['model']} keeps {_share(least['params_conv_pct'])} of its "
                    f"parameters in conv layers and only {_share(least['params_fc_pct'])} "
                    f"in Linear layers, while its convs do "
                    f"{_share(least['macs_conv_pct'])} of its MACs."
                )
        big = shares.dropna(subset=["largest_layer_params_pct"])
        if not big.empty:
            top = big.sort_values(
                ["largest_layer_params_pct", "model"], ascending=[False, True]
            ).iloc[0]
            out.append(
                f"The single largest layer is {top['model']}'s {top['largest_layer']} "
                f"({top['largest_layer_type']}): {_share(top['largest_layer_params_pct'])} "
                "of that model's parameters."
            )

    for device in devices:
        for mode, verb in (("infer", "infers"), ("train", "trains")):
            col = f"{device}_{mode}_samples_per_s"
            if col not in summary.columns:
                continue
            ok = summary[summary[col].map(lambda v: not _missing(v) and not isinstance(v, str))]
            if len(ok) < 2:
                continue
            ok = ok.assign(_v=ok[col].astype(float)).sort_values(
                ["_v", "model"], ascending=[False, True]
            )
            fast, slow = ok.iloc[0], ok.iloc[-1]
            out.append(
                f"On {device}, {fast['model']} {verb} fastest: {fmt_num(fast['_v'])} "
                f"samples/s (batch {int(fast[f'{device}_{mode}_batch'])}); "
                f"{slow['model']} is slowest at {fmt_num(slow['_v'])} samples/s "
                f"(batch {int(slow[f'{device}_{mode}_batch'])}), "
                f"{_ratio(fast['_v'], slow['_v'])} fewer."
            )

    act = summary[
        summary["activations_mib_per_sample"].map(
            lambda v: not _missing(v) and not isinstance(v, str)
        )
    ]
    if not act.empty:
        top = (
            act.assign(_v=act["activations_mib_per_sample"].astype(float))
            .sort_values(["_v", "model"], ascending=[False, True])
            .iloc[0]
        )
        weights = top["weights_mib"]
        tail = (
            f", against {fmt_num(weights)} MiB of weights"
            if not _missing(weights) and not isinstance(weights, str)
            else ""
        )
        out.append(
            f"{top['model']} saves the most activations for backward: "
            f"{fmt_num(top['_v'])} MiB per sample{tail}."
        )

    out += _peak_sentences(results, metas, devices)
    out += _accuracy_sentences(results)

    with_paper = summary[summary["params_diff_pct"].notna()]
    if not with_paper.empty:
        exact = with_paper[with_paper["params_diff_pct"].abs() < 1e-9]
        text = (
            f"Our parameter counts equal the paper's for {len(exact)} of {len(with_paper)} "
            "models with a published count"
        )
        off = with_paper.drop(exact.index).sort_values("model")
        if not off.empty:
            text += "; they differ for " + ", ".join(
                f"{m} ({fmt_pct(d, signed=True)})"
                for m, d in zip(off["model"], off["params_diff_pct"])
            )
        out.append(text + ".")
    macs = summary[summary["macs_diff_pct"].notna()].sort_values("model")
    if not macs.empty:
        out.append(
            "MACs against the paper: "
            + ", ".join(
                f"{m} {fmt_pct(d, signed=True)}"
                for m, d in zip(macs["model"], macs["macs_diff_pct"])
            )
            + " (the papers round, and some count only the conv layers; see their notes)."
        )

    failed = _failed(results)
    if failed.any():
        dead = sorted(set(results.loc[failed, "model"]) - set(results.loc[~failed, "model"]))
        text = f"{int(failed.sum())} of {len(results)} rows failed (see Errors)"
        if dead:
            text += f"; {', '.join(dead)} {'has' if len(dead) == 1 else 'have'} no successful row"
        out.append(text + ".")
    return out


def _peak_sentences(
    results: pd.DataFrame, metas: Sequence[Mapping[str, Any]], devices: Sequence[str]
) -> list[str]:
    out = []
    ok = results[
        ~_failed(results)
        & results["achieved_gflops"].notna()
        & results["mode"].isin(["infer", "train"])
    ]
    meta_by_run = {str(m.get("run_id")): m for m in metas}
    for device in devices:
        for dtype_name, is_bf16 in (("fp32", False), ("bf16", True)):
            part = ok[
                (ok["device"] == device) & (ok["dtype"].astype(str).str.contains("bf16") == is_bf16)
            ]
            if part.empty:
                continue
            best = part.sort_values(
                ["achieved_gflops", "model", "batch_size"],
                ascending=[False, True, True],
                kind="mergesort",
            ).iloc[0]
            ref = plots.reference_peak(
                _peaks(meta_by_run.get(str(best["run"]), {}), device), dtype_name
            )
            if ref is None:
                continue
            key, peak = ref
            # The model whose best rate is lowest: how far the small networks stay from the peak.
            per_model = (
                part.sort_values(
                    ["achieved_gflops", "batch_size"], ascending=[False, True], kind="mergesort"
                )
                .groupby("model", sort=True)
                .head(1)
            )
            worst = per_model.sort_values(["achieved_gflops", "model"], kind="mergesort").iloc[0]
            best_share = _share(100 * best["achieved_gflops"] / peak)
            text = (
                f"On {device}, the best {best['dtype']} rate is "
                f"{fmt_num(best['achieved_gflops'])} GFLOP/s ({best['model']}, {best['mode']}, "
                f"batch {int(best['batch_size'])}): {best_share} of the measured "
                f"{key.replace('_', ' ')} peak of {fmt_num(peak)} GFLOP/s"
            )
            if worst["model"] != best["model"]:
                worst_share = _share(100 * worst["achieved_gflops"] / peak)
                text += (
                    f"; {worst['model']} reaches {worst_share} at best "
                    f"({worst['mode']}, batch {int(worst['batch_size'])})"
                )
            out.append(text + ".")
    return out


def _accuracy_sentences(results: pd.DataFrame) -> list[str]:
    out = []
    acc = results[(results["mode"] == "accuracy") & ~_failed(results)]
    for data in sorted(acc["data"].dropna().astype(str).unique()):
        part = acc[acc["data"].astype(str) == data]
        stats = []
        for model in sorted(part["model"].unique()):
            rows = part[part["model"] == model]
            reached = rows["time_to_target_s"].dropna()
            stats.append(
                (
                    model,
                    float(reached.median()) if not reached.empty else None,
                    len(reached),
                    len(rows),
                    rows["target_acc"].dropna(),
                )
            )
        fast = sorted((s for s in stats if s[1] is not None), key=lambda s: (s[1], s[0]))
        if not fast:
            continue
        model, median, n, total, targets = fast[0]
        target = fmt_frac(targets.iloc[0]) if not targets.empty else "the target"
        text = (
            f"On {data}, {model} reaches {target} test accuracy fastest: "
            f"{fmt_num(median)} s (median of the {n} of {total} seeds that reached it)"
        )
        for other, other_median, _, other_total, _ in stats:
            if other == model:
                continue
            if other_median is None:
                text += f"; {other} did not reach it ({other_total} seed{'s' * (other_total != 1)})"
            else:
                text += f"; {other} takes {fmt_num(other_median)} s"
        out.append(text + ".")
    return out


def _share_blocks(
    shares: pd.DataFrame, layer_figures: Sequence[tuple[str, str]], share_figure: str | None
) -> list[Block]:
    if shares.empty:
        return []
    rows = [
        (
            r["model"],
            fmt_int(r["params_total"]),
            fmt_pct(r["params_conv_pct"], decimals=1),
            fmt_pct(r["params_fc_pct"], decimals=1),
            fmt_pct(r["params_other_pct"], decimals=1),
            fmt_si(r["macs_total"]),
            fmt_pct(r["macs_conv_pct"], decimals=1),
            fmt_pct(r["macs_fc_pct"], decimals=1),
            fmt_pct(r["macs_other_pct"], decimals=1),
            f"{r['largest_layer']} ({r['largest_layer_type']}, "
            f"{fmt_pct(r['largest_layer_params_pct'], decimals=1)})",
        )
        for _, r in shares.iterrows()
    ]
    blocks: list[Block] = [
        Heading(2, "Where the parameters and the work sit"),
        Para(
            "From layers.jsonl: layers grouped by module type into conv (Conv*), fc (Linear, "
            "and LeNet-5's RBF output) and other (normalisation, pooling, activations)."
        ),
        _table(
            (
                "model",
                "params",
                "conv",
                "fc",
                "other",
                "MACs",
                "conv",
                "fc",
                "other",
                "largest layer (share of params)",
            ),
            rows,
            (False,) + (True,) * 8 + (False,),
        ),
    ]
    if share_figure:
        blocks.append(
            Image(
                share_figure,
                "Share of parameters (left) and MACs (right) in conv, "
                "fully connected and other layers, per model.",
            )
        )
    for family, file in layer_figures:
        blocks.append(
            Image(
                file,
                f"Per-layer parameters and MACs per sample for the {family} family, in forward "
                "order (k = thousand, M = million, G = billion); colour gives the layer kind.",
            )
        )
    return blocks


def _errors_blocks(results: pd.DataFrame, several_runs: bool) -> list[Block]:
    failed = results[_failed(results)]
    if failed.empty:
        return [Heading(2, "Errors"), Para("No row failed.")]
    failed = failed.sort_values(
        ["model", "device", "mode", "dtype", "memory_format", "batch_size", "run"], kind="mergesort"
    )
    headers = ["model", "device", "dtype", "memory format", "threads", "batch", "mode"]
    headers += ["run"] if several_runs else []
    rows = []
    for _, r in failed.iterrows():
        cells = [
            r["model"],
            r["device"],
            r["dtype"],
            r["memory_format"],
            fmt_int(r["threads"]),
            fmt_int(r["batch_size"]),
            r["mode"],
        ]
        if r["mode"] == "accuracy":
            cells[-1] = f"accuracy ({r['data']}, seed {_key_value(r['seed'])})"
        cells += [r["run"]] if several_runs else []
        rows.append((*cells, str(r["error"]).splitlines()[0]))
    return [
        Heading(2, "Errors"),
        Para("Rows that did not measure; their numbers are missing above, never dropped."),
        _table((*headers, "error"), rows),
    ]


def _accuracy_blocks(results: pd.DataFrame, figure: str | None) -> list[Block]:
    acc = results[(results["mode"] == "accuracy")].sort_values(
        ["data", "model", "seed"], kind="mergesort"
    )
    if acc.empty:
        return []
    rows = [
        (
            r["model"],
            r["data"],
            fmt_int(r["seed"]),
            r["recipe"],
            r["device"],
            _processes_cell(r),
            r["dtype"],
            fmt_int(r["batch_size"]),
            fmt_int(r["epochs"]),
            ERROR if _failed(pd.DataFrame([r])).iloc[0] else fmt_frac(r["accuracy"]),
            fmt_frac(r["target_acc"]),
            "not reached" if _missing(r["time_to_target_s"]) else fmt_num(r["time_to_target_s"]),
            fmt_num(r["budget_s"]),
            fmt_num(r["train_s"]),
            "yes"
            if r["data_loading_in_timing"] is True
            else ("" if _missing(r["data_loading_in_timing"]) else "no"),
        )
        for _, r in acc.iterrows()
    ]
    blocks: list[Block] = [
        Heading(2, "Time to accuracy"),
        Para(
            "DAWNBench-style: wall-clock time to the first evaluation at or above the target, "
            "with the per-epoch log below."
        ),
        _table(
            (
                "model",
                "data",
                "seed",
                "recipe",
                "device",
                "processes",
                "dtype",
                "batch",
                "epochs",
                "final accuracy",
                "target",
                "time to target (s)",
                "budget (s)",
                "train (s)",
                "data loading timed",
            ),
            rows,
            (False,) * 5 + (True,) + (False,) + (True,) * 7 + (False,),
        ),
    ]
    if figure:
        blocks.append(
            Image(
                figure,
                "Test accuracy against wall-clock training time, per model "
                "and seed (epochs.jsonl); dashed line: the target.",
            )
        )
    return blocks


def _processes_cell(r: pd.Series) -> str:
    """Training processes of an accuracy row: ``1``, or ``2 (gloo)`` under torchrun."""
    world = 1 if _missing(r.get("world_size")) else int(r["world_size"])
    return f"{world} ({r['backend']})" if world > 1 else "1"


def _measured_blocks(results: pd.DataFrame, metas: Sequence[Mapping[str, Any]]) -> list[Block]:
    # Every row but accuracy runs (shown in their own table): a mode we do not plot still shows.
    rows_df = results[results["mode"] != "accuracy"].copy()
    if rows_df.empty:
        return []
    with_max_batch = bool(rows_df["max_batch"].notna().any())
    order = {m: i for i, m in enumerate(_model_order(results))}
    rows_df["rank"] = rows_df["model"].map(order)
    rows_df = rows_df.sort_values(
        ["rank", "device", "mode", "dtype", "memory_format", "threads", "batch_size"],
        kind="mergesort",
    )
    meta_by_run = {str(m.get("run_id")): m for m in metas}
    rows = []
    for _, r in rows_df.iterrows():
        failed = not _missing(r["error"]) and str(r["error"]).strip() != ""
        ref = plots.reference_peak(
            _peaks(meta_by_run.get(str(r["run"]), {}), str(r["device"])), str(r["dtype"])
        )
        peak = ref[1] if ref else None
        gf = r["achieved_gflops"]

        def cell(value: Any, failed: bool = failed) -> str:
            return ERROR if failed and _missing(value) else fmt_num(value)

        spread = (
            ""
            if _missing(r["step_ms_p10"]) or _missing(r["step_ms_p90"])
            else f" ({fmt_num(r['step_ms_p10'], 3)}–{fmt_num(r['step_ms_p90'], 3)})"
        )
        rows.append(
            (
                r["model"],
                r["device"],
                r["dtype"],
                r["memory_format"],
                fmt_int(r["threads"]),
                fmt_int(r["batch_size"]),
                r["mode"],
                cell(r["step_ms_median"]) + ("" if failed else spread),
                cell(r["samples_per_s"]),
                cell(gf),
                "" if _missing(gf) or not peak else f"{100 * float(gf) / peak:.1f}%",
                cell(r["peak_mem_mib"]),
                *([fmt_int(r["max_batch"])] if with_max_batch else []),
            )
        )
    methods = sorted(rows_df["peak_mem_method"].dropna().astype(str).unique())
    method_note = f" Peak memory measured by: {', '.join(methods)}." if methods else ""
    return [
        Heading(2, "All measured rows"),
        Para(
            "Every row but the accuracy runs, failed ones included; step time is the median "
            "with the 10th–90th percentiles in brackets; % of peak is against the peak measured "
            "for the row's dtype (fp32: the faster of a large matmul and a 3×3 convolution)."
            + method_note
        ),
        _table(
            (
                "model",
                "device",
                "dtype",
                "memory format",
                "threads",
                "batch",
                "mode",
                "step ms",
                "samples/s",
                "GFLOP/s",
                "% of peak",
                "peak MiB",
                *(["largest batch that fits"] if with_max_batch else []),
            ),
            rows,
            (False,) * 4 + (True, True, False) + (True,) * (5 + with_max_batch),
        ),
    ]


# --------------------------------------------------------------------------- rendering


_CODE = re.compile(r"`([^`]+)`")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(title: str, blocks: Sequence[Block]) -> str:
    """The report as Markdown; images by relative path."""
    lines = [f"# {title}", ""]
    for block in blocks:
        if isinstance(block, Heading):
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Para):
            lines += [block.text, ""]
        elif isinstance(block, Bullets):
            lines += [f"- {item}" for item in block.items] + [""]
        elif isinstance(block, Table):
            numeric = block.numeric or (False,) * len(block.headers)
            lines.append("| " + " | ".join(_md_cell(h) for h in block.headers) + " |")
            lines.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            lines.append("")
        elif isinstance(block, Image):
            lines += [f"![{block.caption}]({block.file})", "", f"*{block.caption}*", ""]
    return "\n".join(lines).rstrip("\n") + "\n"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto;
       max-width: 1400px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; display: block;
        overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: .25em .5em; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #ddd; }
figcaption { font-style: italic; color: #555; }
code { background: #f4f4f4; padding: 0 .2em; }
"""


def _html_text(text: str) -> str:
    return _CODE.sub(lambda m: f"<code>{m.group(1)}</code>", html.escape(text))


def render_html(title: str, blocks: Sequence[Block], images: Path) -> str:
    """The report as one self-contained HTML page: PNGs inlined as base64 data URIs."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        f"<style>{_CSS}</style>",
        "</head>",
        "<body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{_html_text(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            out.append(f"<p>{_html_text(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append("<ul>" + "".join(f"<li>{_html_text(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            numeric = block.numeric or (False,) * len(block.headers)
            out.append("<table>")
            out.append(
                "<thead><tr>"
                + "".join(f"<th>{html.escape(h)}</th>" for h in block.headers)
                + "</tr></thead><tbody>"
            )
            for row in block.rows:
                out.append(
                    "<tr>"
                    + "".join(
                        f'<td class="num">{html.escape(c)}</td>'
                        if n
                        else f"<td>{html.escape(c)}</td>"
                        for c, n in zip(row, numeric)
                    )
                    + "</tr>"
                )
            out.append("</tbody></table>")
        elif isinstance(block, Image):
            data = base64.b64encode((images / block.file).read_bytes()).decode("ascii")
            out.append(
                f'<figure><img alt="{html.escape(block.caption)}" '
                f'src="data:image/png;base64,{data}">'
                f"<figcaption>{html.escape(block.caption)}</figcaption></figure>"
            )
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- the report


def _default_out_dir(name: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", name)
    return REPO_ROOT / "reports" / safe


def build_report(results_dirs: Sequence[Path], out_dir: Path | None = None) -> Path:
    """Write the comparison report of one or more results folders; return the report folder.

    The folder (default ``reports/<run_id>/``, or ``reports/<first_run_id>+N`` for N extra
    folders) receives ``report.md``, ``report.html``, ``summary.csv`` and ``fig_*.png``.
    Raises ``FileNotFoundError`` for a missing folder or results.jsonl and ``ValueError`` for
    an empty results file or rows of different folders with the same settings.
    """
    if not results_dirs:
        raise ValueError("no results folders given: pass at least one RESULTS_DIR")
    run_data = merge_runs([load_run(Path(d)) for d in results_dirs])
    out = Path(out_dir) if out_dir is not None else _default_out_dir(run_data.name)
    out.mkdir(parents=True, exist_ok=True)
    for stale in sorted(out.glob("fig_*.png")):  # figures of an earlier build of this folder
        stale.unlink()

    results = run_data.results
    devices = sorted(results["device"].dropna().astype(str).unique())
    models = _model_order(results)
    paper = _paper_facts(models)
    summary = summary_table(results, paper)
    shares = layer_shares(run_data.layers)
    if not shares.empty:
        order = {m: i for i, m in enumerate(models)}
        shares = shares.assign(_o=shares["model"].map(lambda m: order.get(m, len(order))))
        shares = shares.sort_values(["_o", "model"]).drop(columns="_o").reset_index(drop=True)
    summary.to_csv(out / "summary.csv", index=False, lineterminator="\n")

    ok = results[~_failed(results)]
    figures: dict[str, str | None] = {}

    def figure(file: str, made: Path | None) -> str | None:
        figures[file] = file if made is not None else None
        return figures[file]

    figure("fig_params_vs_macs.png", plots.params_vs_macs(summary, out / "fig_params_vs_macs.png"))
    figure(
        "fig_throughput_vs_batch.png",
        plots.throughput_vs_batch(ok, out / "fig_throughput_vs_batch.png"),
    )
    peaks = {d: _peaks(run_data.metas[0], d) for d in devices}
    figure(
        "fig_gflops_vs_peak.png", plots.gflops_vs_peak(ok, peaks, out / "fig_gflops_vs_peak.png")
    )
    mem = memory_rows(results, models)
    figure("fig_memory.png", plots.memory_breakdown(mem, out / "fig_memory.png"))
    acc = ok[ok["mode"] == "accuracy"]
    targets = {
        str(d): float(t)
        for d, t in acc.groupby(acc["data"].astype(str))["target_acc"].first().items()
        if not _missing(t)
    }
    figure(
        "fig_time_to_accuracy.png",
        plots.time_to_accuracy(run_data.epochs, targets, out / "fig_time_to_accuracy.png"),
    )
    share_fig = figure(
        "fig_layer_share.png",
        plots.param_share(shares, out / "fig_layer_share.png") if not shares.empty else None,
    )
    layer_figs = []
    families = sorted(run_data.layers["family"].dropna().astype(str).unique(), key=_family_rank)
    for family in families:
        file = f"fig_layers_{re.sub(r'[^A-Za-z0-9_-]', '_', family)}.png"
        if figure(file, plots.layers_by_family(run_data.layers, family, out / file)):
            layer_figs.append((family, file))

    blocks: list[Block] = [
        Para(
            "Generated by `python -m bench report "
            + " ".join(Path(d).name for d in results_dirs)
            + "`: every number below is read from the results folders or, for the papers' "
            "columns, from the zoo's registry."
        ),
    ]
    blocks += _header_blocks(run_data)
    sentences = _sentences(summary, shares, results, run_data.metas, devices)
    if sentences:
        blocks += [Heading(2, "What the numbers say"), Bullets(tuple(sentences))]
    blocks += _glance_blocks(summary, devices)
    if figures["fig_params_vs_macs.png"]:
        blocks.append(
            Image(
                "fig_params_vs_macs.png",
                "Parameters against MACs per sample (log-log), one point per model.",
            )
        )
    blocks += _paper_blocks(summary, paper)
    speed_figs = [
        (f, c)
        for f, c in (
            (
                "fig_throughput_vs_batch.png",
                "Throughput (samples/s) against batch size per model, "
                "for each device and mode; dashed and dotted lines are "
                "other dtypes or memory formats.",
            ),
            (
                "fig_gflops_vs_peak.png",
                "Best achieved GFLOP/s per model, mode and dtype against the "
                "matmul and 3×3 convolution peaks measured at the start of the run "
                "(meta.json).",
            ),
        )
        if figures[f]
    ]
    if speed_figs:
        blocks.append(Heading(2, "Speed and the hardware limit"))
        blocks += [Image(f, c) for f, c in speed_figs]
    if figures["fig_memory.png"]:
        batches = ", ".join(f"{m} {int(b)}" for m, b in zip(mem["model"], mem["batch_size"]))
        blocks += [
            Heading(2, "Where training memory goes"),
            Image(
                "fig_memory.png",
                "Weights, gradients, optimizer state and activations saved for "
                "backward, from each model's smallest-batch train row at "
                f"{REFERENCE_DTYPE}/{REFERENCE_FORMAT} where measured (batch: "
                f"{batches}).",
            ),
        ]
    blocks += _accuracy_blocks(results, figures["fig_time_to_accuracy.png"])
    blocks += _share_blocks(shares, layer_figs, share_fig)
    blocks += _errors_blocks(results, several_runs=len(run_data.metas) > 1)
    blocks += _measured_blocks(results, run_data.metas)

    title = f"cnn-zoo-bench report: {run_data.name}"
    (out / "report.md").write_text(render_markdown(title, blocks), encoding="utf-8")
    (out / "report.html").write_text(render_html(title, blocks, out), encoding="utf-8")
    log.info("wrote the report of %s to %s", run_data.name, out)
    return out


# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``report``'s arguments: one or more RESULTS_DIR and ``--out``."""
    parser.add_argument(
        "results_dirs",
        nargs="+",
        type=Path,
        metavar="RESULTS_DIR",
        help="results folder(s) written by `bench run`/`bench train`; several "
        "are merged (rows with the same settings are refused)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="report folder (default: reports/<run_id>/ at the repository root)",
    )


def run(args: argparse.Namespace) -> int:
    """Build the report for parsed ``args``; print its folder, or ``error: ...`` and return 2."""
    try:
        out = build_report(args.results_dirs, args.out)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out / "report.md")
    return 0


def register_cli(register: Callable[..., None]) -> None:
    """Register ``report`` with the harness CLI (``python -m bench report``)."""
    register(
        "report",
        help="write the comparison report (Markdown, HTML, CSV, plots) of results folders",
        add_arguments=add_arguments,
        run=run,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.report RESULTS_DIR... [--out DIR]``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.report", description="Write the comparison report of results folders."
    )
    add_arguments(parser)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
