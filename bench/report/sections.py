"""The report's sections built from the rows: the header, layer shares, time to accuracy, errors
and all measured rows."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from bench.report import figures
from bench.report.document import Block, Heading, Image, Para, table
from bench.report.formatting import duration, fmt_frac, fmt_int, fmt_num, fmt_pct, fmt_si, missing
from bench.report.runs import (
    PEAK_KINDS,
    Run,
    device_peaks,
    key_value,
    session_meta,
    split_sessions,
)
from bench.report.summary import ERROR, failed_mask, model_order


def _shard_text(shard: Any) -> str:
    """``"2 of 4"`` for a ``--shard 2/4`` run; ``"whole plan"`` otherwise."""
    if isinstance(shard, Mapping) and shard.get("count"):
        return f"{shard.get('index')} of {shard.get('count')}"
    return "whole plan"


def header_blocks(run: Run) -> list[Block]:
    metas = [m for meta in run.metas for m in split_sessions(meta)]  # a column per session
    fields: list[tuple[str, Any]] = [
        ("run", lambda m: m.get("run_id")),
        ("started", lambda m: m.get("started")),
        ("finished", lambda m: m.get("finished")),
        ("duration", lambda m: duration(m.get("duration_s"))),
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
            if any(device_peaks(m, device).get(kind) for m in metas):
                fields.append(
                    (
                        f"{device} {kind.replace('_', ' ')} peak (GFLOP/s)",
                        lambda m, d=device, k=kind: fmt_num(device_peaks(m, d).get(k)),
                    )
                )
    headers = ["", *(str(m.get("run_id")) for m in metas)] if len(metas) > 1 else ["", ""]
    rows = [(label, *("" if missing(get(m)) else get(m) for m in metas)) for label, get in fields]
    results = run.results
    n_failed = int(failed_mask(results).sum())
    return [
        Heading(2, "What was measured where"),
        table(headers, rows),
        Para(
            f"{len(results)} result rows ({n_failed} with an error), "
            f"{results['model'].nunique()} models, devices: "
            f"{', '.join(sorted(results['device'].dropna().astype(str).unique()))}."
        ),
    ]


def share_blocks(
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
        table(
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


def errors_blocks(results: pd.DataFrame, several_runs: bool) -> list[Block]:
    failed = results[failed_mask(results)]
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
            cells[-1] = f"accuracy ({r['data']}, seed {key_value(r['seed'])})"
        cells += [r["run"]] if several_runs else []
        rows.append((*cells, str(r["error"]).splitlines()[0]))
    return [
        Heading(2, "Errors"),
        Para("Rows that did not measure; their numbers are missing above, never dropped."),
        table((*headers, "error"), rows),
    ]


def _data_on_clock_cell(row: pd.Series) -> str:
    if not missing(row.get("data_on_clock")):
        return str(row["data_on_clock"])
    # Rows from before data_on_clock: data_loading_in_timing was written true on every row.
    return "" if missing(row.get("data_loading_in_timing")) else "data loading (unspecified)"


def accuracy_blocks(results: pd.DataFrame, figure: str | None) -> list[Block]:
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
            "" if missing(r["epochs"]) else f"{float(r['epochs']):.3g}",  # budgeted: 0.038
            ERROR if failed_mask(pd.DataFrame([r])).iloc[0] else fmt_frac(r["accuracy"]),
            fmt_frac(r["target_acc"]),
            "not reached" if missing(r["time_to_target_s"]) else fmt_num(r["time_to_target_s"]),
            fmt_num(r["budget_s"]),
            fmt_num(r["train_s"]),
            _data_on_clock_cell(r),
        )
        for _, r in acc.iterrows()
    ]
    blocks: list[Block] = [
        Heading(2, "Time to accuracy"),
        Para(
            "DAWNBench-style: wall-clock time to the first evaluation at or above the target, "
            "with the per-epoch log below."
        ),
        table(
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
                "data on the clock",
            ),
            rows,
            (False,) * 5 + (True,) + (False,) + (True,) * 7 + (False,),
        ),
    ]
    if figure:
        blocks.append(
            Image(
                figure,
                "Test accuracy against wall-clock training time, one line per training run "
                "(epochs.jsonl); dashed line: the target.",
            )
        )
    return blocks


def _processes_cell(r: pd.Series) -> str:
    """Training processes of an accuracy row: ``1``, or ``2 (gloo)`` under torchrun."""
    world = 1 if missing(r.get("world_size")) else int(r["world_size"])
    return f"{world} ({r['backend']})" if world > 1 else "1"


def measured_blocks(results: pd.DataFrame, metas: Sequence[Mapping[str, Any]]) -> list[Block]:
    # Every row but accuracy runs (shown in their own table): a mode we do not plot still shows.
    rows_df = results[results["mode"] != "accuracy"].copy()
    if rows_df.empty:
        return []
    with_max_batch = bool(rows_df["max_batch"].notna().any())
    order = {m: i for i, m in enumerate(model_order(results))}
    rows_df["rank"] = rows_df["model"].map(order)
    rows_df = rows_df.sort_values(
        ["rank", "device", "mode", "dtype", "memory_format", "threads", "batch_size"],
        kind="mergesort",
    )
    meta_by_run = {str(m.get("run_id")): m for m in metas}
    rows = []
    for _, r in rows_df.iterrows():
        failed = not missing(r["error"]) and str(r["error"]).strip() != ""
        meta = session_meta(meta_by_run.get(str(r["run"]), {}), r["session"])
        ref = figures.reference_peak(device_peaks(meta, str(r["device"])), str(r["dtype"]))
        peak = ref[1] if ref else None
        gf = r["achieved_gflops"]

        def cell(value: Any, failed: bool = failed) -> str:
            return ERROR if failed and missing(value) else fmt_num(value)

        spread = (
            ""
            if missing(r["step_ms_p10"]) or missing(r["step_ms_p90"])
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
                "" if missing(gf) or not peak else f"{100 * float(gf) / peak:.1f}%",
                cell(r["peak_mem_mib"]),
                fmt_num(r["peak_mem_estimate_mib"]),
                *([fmt_int(r["max_batch"])] if with_max_batch else []),
            )
        )
    methods = sorted(rows_df["peak_mem_method"].dropna().astype(str).unique())
    method_note = f" Peak memory measured by: {', '.join(methods)}." if methods else ""
    return [
        Heading(2, "All measured rows"),
        Para(
            "Every row but the accuracy runs, failed ones included; step time is the median "
            "with the 10th–90th percentiles in brackets (rows of at least 10 timed steps); % of "
            "peak is against the faster of a large matmul and a 3×3 convolution measured in the "
            "row's precision (fp32, or bf16 for both bf16 dtypes). Estimated peak: what the "
            "CPU memory guard planned for before the row ran (CPU rows only; it refuses a batch "
            "whose estimate exceeds 70% of the available memory)." + method_note
        ),
        table(
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
                "measured peak MiB",
                "estimated peak MiB",
                *(["largest batch that fits"] if with_max_batch else []),
            ),
            rows,
            (False,) * 4 + (True, True, False) + (True,) * (6 + with_max_batch),
        ),
    ]
