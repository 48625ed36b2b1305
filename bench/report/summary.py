"""The per-model summary table (summary.csv) and the computations behind it.

Row selection (reference dtype and format, failed rows), the order of families and the kind of
a layer (which the figures share), the papers' facts from the zoo's registry, the
memory-breakdown rows and the per-model layer shares.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import pandas as pd

from bench.report.runs import empty

log = logging.getLogger("bench.report")  # one logger for the package, as before the split


# The at-a-glance table compares models on equal footing: fp32, contiguous.
REFERENCE_DTYPE = "fp32"
REFERENCE_FORMAT = "contiguous"
REFERENCE_LABEL = f"{REFERENCE_DTYPE}/{REFERENCE_FORMAT}"  # as format_label writes it
ERROR = "error"
# Beside it, each model's fastest format measured (the default plan adds bf16 autocast with
# channels_last where bf16 is native), in the columns <device>_<mode>_fastest_*.
FASTEST = "fastest"


# --------------------------------------------------------------------------- order and kinds

FAMILY_ORDER = ("lenet", "alexnet", "vgg", "resnet")


def family_rank(family: str) -> tuple[int, str]:
    """Sort key of a family: the zoo's order (LeNet, AlexNet, VGG, ResNet), others after."""
    family = str(family)
    return (FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER), family)


def layer_kind(layer_type: str) -> str:
    """Group a layer's module type into ``"conv"``, ``"fc"`` (the classifier) or ``"other"``."""
    lowered = str(layer_type).lower()
    if "conv" in lowered:
        return "conv"
    # LeNet-5's RBF output units act on the F6 vector like a fully connected layer.
    if "linear" in lowered or lowered.startswith("rbf"):
        return "fc"
    return "other"


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


def named_layers(layers: pd.DataFrame) -> pd.DataFrame:
    """``layers`` with ``paper_layer`` filled in from the zoo's map for the models whose lines
    carry none (folders written before the column); unknown models keep their module paths."""
    if layers.empty or "paper_layer" not in layers.columns:
        return layers
    layers = layers.copy()
    for model, part in layers.groupby("model", sort=False):
        if part["paper_layer"].notna().any():
            continue
        part = part.sort_values("index")
        try:
            from zoo.registry import paper_layer_names

            names = paper_layer_names(str(model), list(zip(part["layer"], part["type"])))
        except (ImportError, ValueError):
            names = list(part["layer"])
        layers.loc[part.index, "paper_layer"] = names
    return layers


def paper_facts(models: Iterable[str]) -> dict[str, Any]:
    return {m: _paper(m) for m in models}


# --------------------------------------------------------------------------- tables


def failed_mask(df: pd.DataFrame) -> pd.Series:
    return df["error"].notna() & (df["error"].astype(str).str.strip() != "")


def training_runs(rows: pd.DataFrame) -> pd.DataFrame:
    """The accuracy rows of training runs: not those of given weights scored (``bench eval
    --out``, which have ``weights``; the report's "Given weights, evaluated here")."""
    given = rows["weights"].notna() if "weights" in rows else False
    return rows[(rows["mode"] == "accuracy") & ~given]


def evaluations(rows: pd.DataFrame) -> pd.DataFrame:
    """The accuracy rows of given weights scored (``bench eval --out``)."""
    if "weights" not in rows:
        return rows.iloc[0:0]
    return rows[(rows["mode"] == "accuracy") & rows["weights"].notna()]


def model_order(results: pd.DataFrame) -> list[str]:
    firsts = results.groupby("model", sort=True).agg(
        family=("family", "first"), params=("params", "max")
    )
    firsts["rank"] = [family_rank(f) for f in firsts["family"]]
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
    ok = rows[~failed_mask(rows) & rows["samples_per_s"].notna()]
    if ok.empty:
        return None
    ok = _prefer_reference(ok).sort_values(
        ["samples_per_s", "batch_size"], ascending=[False, True], kind="mergesort"
    )
    return ok.iloc[0]


def memory_rows(results: pd.DataFrame, models: Sequence[str]) -> pd.DataFrame:
    """One train row per model for the memory breakdown: smallest batch, reference settings."""
    train = results[
        (results["mode"] == "train") & ~failed_mask(results) & results["activations_mib"].notna()
    ]
    picked = []
    for model in models:
        rows = _prefer_reference(train[train["model"] == model])
        if rows.empty:
            continue
        row = rows.sort_values(["batch_size", "device"], kind="mergesort").iloc[0]
        picked.append(row)
    if not picked:
        return empty(
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
    ``*_batch``); beside them ``*_fastest_*``, the best row over every dtype and memory format
    (its format and its speed-up over the fp32 best; empty where only one format was measured);
    activations per sample from the
    smallest-batch train row. A number that is missing because every row that could give it
    failed reads ``"error"``.
    """
    paper = dict(paper or {})
    models = model_order(results)
    devices = sorted(results["device"].dropna().astype(str).unique())
    mem = memory_rows(results, models).set_index("model") if models else pd.DataFrame()
    table = pd.DataFrame(
        [
            _summary_row(model, results[results["model"] == model], devices, mem, paper.get(model))
            for model in models
        ]
    )
    return _integer_counts(table)


# Summary columns taken from the first row that has them: (summary column, results column).
_COUNT_SOURCES = (
    ("params", "params"),
    ("params_total", "params_total"),
    ("macs", "macs_fvcore"),
    ("flops", "flops"),
    ("weights_mib", "weights_mib"),
)


def _summary_row(
    model: str, rows: pd.DataFrame, devices: Sequence[str], mem: pd.DataFrame, facts: Any
) -> dict[str, Any]:
    """``model``'s row of :func:`summary_table` from its result ``rows``; the keys' order is
    the order of summary.csv's columns."""
    failed = failed_mask(rows)
    row: dict[str, Any] = {
        "model": model,
        "family": _first_present(rows, "family"),
        "input_shape": _first_present(rows, "input_shape"),
    }
    for column, source in _COUNT_SOURCES:
        value = _first_value(rows, source)
        row[column] = value if value is not None else (ERROR if failed.any() else None)
    # The ops fvcore counts as no work, e.g. "max_pool2d×2, relu×4" (null: not counted).
    ops = rows["uncounted_ops"].dropna() if "uncounted_ops" in rows else pd.Series(dtype=object)
    row["uncounted_ops"] = str(ops.iloc[0]) if not ops.empty else None
    if model in mem.index:
        m = mem.loc[model]
        row["activations_mib_per_sample"] = float(m["activations_mib"]) / float(m["batch_size"])
    else:
        train = rows[rows["mode"] == "train"]
        row["activations_mib_per_sample"] = ERROR if failed_mask(train).any() else None
    for device in devices:
        for mode in ("infer", "train"):
            sub = rows[(rows["device"] == device) & (rows["mode"] == mode)]
            row.update(_speed_columns(sub, f"{device}_{mode}"))
            fp32 = row[f"{device}_{mode}_samples_per_s"]
            row.update(_fastest_columns(sub, f"{device}_{mode}_{FASTEST}", fp32))
    row.update(_accuracy_summary(rows))
    row.update(_paper_columns(row, facts))
    row["error_rows"] = int(failed.sum())
    return row


def _first_present(rows: pd.DataFrame, column: str) -> Any:
    return rows[column].dropna().iloc[0] if rows[column].notna().any() else None


def _speed_columns(rows: pd.DataFrame, prefix: str) -> dict[str, Any]:
    """Samples/s, batch, dtype and peak memory of the best of one device's and mode's rows."""
    ref = _reference_row(rows)
    if ref is None:
        mark = ERROR if failed_mask(rows).any() else None
        return {
            f"{prefix}_samples_per_s": mark,
            f"{prefix}_batch": None,
            f"{prefix}_dtype": None,
            f"{prefix}_peak_mem_mib": mark,
        }
    peak = ref["peak_mem_mib"]
    return {
        f"{prefix}_samples_per_s": float(ref["samples_per_s"]),
        f"{prefix}_batch": int(ref["batch_size"]),
        f"{prefix}_dtype": ref["dtype"],
        f"{prefix}_peak_mem_mib": float(peak) if pd.notna(peak) else None,
    }


def format_label(row: Mapping[str, Any]) -> str:
    """``bf16_autocast/channels_last`` (dtype/memory format), ``, compile=default`` added to a
    compiled row's."""
    label = f"{row['dtype']}/{row['memory_format']}"
    compiled = row.get("compile")
    if compiled in (None, "none") or pd.isna(compiled):
        return label
    return f"{label}, compile={compiled}"


def _fastest_columns(rows: pd.DataFrame, prefix: str, fp32: Any) -> dict[str, Any]:
    """Samples/s, batch and format of the best of one device's and mode's rows over every
    dtype and memory format, and its speed-up over ``fp32`` (the reference's best); empty
    where only one format was measured (nothing to choose from)."""
    ok = rows[~failed_mask(rows) & rows["samples_per_s"].notna()]
    tried, measured = (len({format_label(r) for _, r in df.iterrows()}) for df in (rows, ok))
    if measured < 2:
        mark = ERROR if tried > measured else None  # a format whose every row failed
        return {f"{prefix}_samples_per_s": mark, f"{prefix}_batch": None,
                f"{prefix}_format": None, f"{prefix}_speedup": None}  # fmt: skip
    best = ok.sort_values(
        ["samples_per_s", "batch_size"], ascending=[False, True], kind="mergesort"
    ).iloc[0]
    value = float(best["samples_per_s"])
    return {
        f"{prefix}_samples_per_s": value,
        f"{prefix}_batch": int(best["batch_size"]),
        f"{prefix}_format": format_label(best),
        f"{prefix}_speedup": value / fp32 if isinstance(fp32, float) and fp32 > 0 else None,
    }


def _paper_columns(row: Mapping[str, Any], facts: Any) -> dict[str, Any]:
    """The paper's counts and accuracy beside ours (``facts``: PaperFacts, or None)."""
    paper_params = getattr(facts, "params", None)
    paper_macs = getattr(facts, "macs", None)
    return {
        "paper_params": paper_params,
        "params_diff_pct": _diff_pct(row["params"], paper_params),
        "paper_macs": paper_macs,
        "macs_diff_pct": _diff_pct(row["macs"], paper_macs),
        "paper_accuracy": _paper_accuracy(facts),
        "paper_reported_on": getattr(facts, "reported_on", None),
    }


_INTEGER_COLUMNS = (
    "params",
    "params_total",
    "macs",
    "flops",
    "accuracy_seeds",
    "paper_params",
    "paper_macs",
    "error_rows",
)


def _integer_counts(table: pd.DataFrame) -> pd.DataFrame:
    """Counts stay integers in summary.csv even where a column also holds "error"."""
    for column in (*_INTEGER_COLUMNS, *(c for c in table.columns if c.endswith("_batch"))):
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
    acc = training_runs(rows)
    blank = {
        "accuracy": None,
        "accuracy_data": None,
        "accuracy_seeds": None,
        "accuracy_samples": None,
        "accuracy_recipe": None,
        "target_acc": None,
        "time_to_target_s": None,
        "reached_target": None,
    }
    if acc.empty:
        return blank
    ok = acc[~failed_mask(acc) & acc["accuracy"].notna()]
    if ok.empty:
        return {**blank, "accuracy": ERROR}
    data = sorted(ok["data"].astype(str).unique())[0]
    ok = _longest_recipe(ok[ok["data"].astype(str) == data])
    reached = ok["time_to_target_s"].dropna()
    return {
        "accuracy": float(ok["accuracy"].mean()),
        "accuracy_data": data,
        "accuracy_seeds": int(len(ok)),
        "accuracy_samples": _mean_or_none(ok, "samples_seen"),
        "accuracy_recipe": str(ok["recipe"].iloc[0]) if "recipe" in ok.columns else None,
        "target_acc": float(ok["target_acc"].iloc[0]) if ok["target_acc"].notna().any() else None,
        "time_to_target_s": float(reached.median()) if not reached.empty else None,
        "reached_target": f"{len(reached)}/{len(ok)}",
    }


def _longest_recipe(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of one recipe (as run: its length included), so that a model's accuracy is one
    recipe's mean over seeds: the model's own recipe where it ran (not an alternative asked for
    with --recipe, such as LeNet-5's SGD stand-in), the one that saw the most samples (LeNet-5's
    20 passes, not a one-pass run)."""
    if "recipe" not in rows.columns or "samples_seen" not in rows.columns:
        return rows
    if "recipe_name" in rows.columns and rows["recipe_name"].isna().any():
        rows = rows[rows["recipe_name"].isna()]
    seen = rows.groupby(rows["recipe"].astype(str))["samples_seen"].mean()
    return rows[rows["recipe"].astype(str) == seen.idxmax()]


def _mean_or_none(rows: pd.DataFrame, column: str) -> float | None:
    if column not in rows.columns or rows[column].isna().all():
        return None
    return float(rows[column].mean())


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
    df["kind"] = df["type"].map(layer_kind)
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


def paper_layer_totals(layers: pd.DataFrame) -> pd.DataFrame:
    """One model's layer lines summed by paper layer (``paper_layer``, else the module path),
    in forward order: ``paper_layer, kind, params, macs, activation_mib, output_shape`` (its
    last part's) and ``parts`` (the module paths); a name that comes back after another
    starts a new group."""
    columns = ["paper_layer", "kind", "params", "macs", "activation_mib", "output_shape", "parts"]
    if layers.empty:
        return pd.DataFrame(columns=columns)
    df = layers.sort_values("index")
    paper = df["paper_layer"] if "paper_layer" in df.columns else df["layer"]
    names = [
        str(p) if isinstance(p, str) and p else str(layer) for p, layer in zip(paper, df["layer"])
    ]
    group = pd.Series(names, index=df.index)
    starts = (group != group.shift()).cumsum()
    kinds = df["type"].map(lambda t: layer_kind(str(t)))
    out = []
    for _, idx in starts.groupby(starts).groups.items():
        part_kinds = set(kinds.loc[idx])
        out.append(
            {
                "paper_layer": group.loc[idx[0]],
                "kind": "conv" if "conv" in part_kinds else "fc" if "fc" in part_kinds else "other",
                "params": float(df.loc[idx, "params"].fillna(0).sum()),
                "macs": float(df.loc[idx, "macs"].fillna(0).sum()),
                "activation_mib": float(df.loc[idx, "activation_mib"].fillna(0).sum()),
                "output_shape": str(df.loc[idx[-1], "output_shape"] or ""),
                "parts": [str(x) for x in df.loc[idx, "layer"]],
            }
        )
    return pd.DataFrame(out, columns=columns)
