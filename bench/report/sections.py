"""The report's sections built from the rows: the header, layer shares, time to accuracy, errors
and all measured rows."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from bench.report.document import Block, Bullets, Heading, Image, Para, table
from bench.report.formatting import duration, fmt_frac, fmt_int, fmt_num, fmt_pct, fmt_si, missing
from bench.report.measure_notes import (
    ESTIMATE_NOTE,
    NOISY_NOTE,
    compile_note,
    estimate_cell,
    noisy_mark,
)
from bench.report.runs import (
    PEAK_KINDS,
    SPREAD_NOT_MEASURED,
    PeakSpread,
    Run,
    device_peaks,
    device_spreads,
    mixed_machines,
    reference_peak,
    row_peaks,
    row_spreads,
    split_sessions,
    spread_text,
)
from bench.report.summary import ERROR, failed_mask, model_order, training_runs
from bench.schema import key_value


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
        *_plan_fields(metas),
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
                name = f"{device} {kind.replace('_', ' ')} peak"
                fields += [
                    (
                        f"{name} (GFLOP/s)",
                        lambda m, d=device, k=kind: fmt_num(device_peaks(m, d).get(k)),
                    ),
                    (f"{name}: spread", lambda m, d=device, k=kind: _spread_cell(m, d, k)),
                ]
    headers = ["", *(str(m.get("run_id")) for m in metas)] if len(metas) > 1 else ["", ""]
    rows = [(label, *("" if missing(get(m)) else get(m) for m in metas)) for label, get in fields]
    results = run.results
    n_failed = int(failed_mask(results).sum())
    return [
        Heading(2, "What was measured where"),
        table(headers, rows, interactive=False),
        Para(
            f"{len(results)} result rows ({n_failed} with an error), "
            f"{results['model'].nunique()} models, devices: "
            f"{', '.join(sorted(results['device'].dropna().astype(str).unique()))}."
        ),
        *origin_blocks(run),
    ]


def _spread_cell(meta: Mapping[str, Any], device: str, kind: str) -> str:
    """A peak's spread over its repeats in the header (:func:`spread_text`); blank where the
    session measured no such peak."""
    if not device_peaks(meta, device).get(kind):
        return ""
    return spread_text(device_spreads(meta, device).get(kind))


def origin_blocks(run: Run) -> list[Block]:
    """For a report of several results folders: which rows came from which folder and
    machine (one line per folder); nothing for one folder."""
    if len(run.metas) < 2:
        return []
    results = run.results
    rows = []
    for meta in run.metas:
        name = str(meta.get("run_id"))
        mine = results[results["run"] == name]
        rows.append(
            (
                name,
                meta.get("hostname") or "",
                meta.get("cpu_model") or "",
                meta.get("gpu") or "none",
                _shard_text((meta.get("plan") or {}).get("shard")),
                len(mine),
                ", ".join(sorted(mine["device"].dropna().astype(str).unique())),
                ", ".join(sorted(mine["mode"].dropna().astype(str).unique())),
                ", ".join(model_order(mine)) if not mine.empty else "",
            )
        )
    mixed = [
        f"the {device} rows on "
        + " and ".join(f"{kind} ({', '.join(folders)})" for kind, folders in kinds.items())
        for device, kinds in mixed_machines(results).items()
    ]
    return [
        Heading(3, "Where the rows came from"),
        Para(
            f"This report merges {len(run.metas)} results folders; every table's rows are "
            "from one of them (the `folder` column of the measured rows says which)."
            + (
                f" Merged across machines (--across-machines): {'; '.join(mixed)}; their "
                "speeds differ by machine as well as by settings."
                if mixed
                else ""
            )
        ),
        table(
            ("folder", "host", "CPU", "GPU", "shard", "rows", "devices", "modes", "models"),
            rows,
            (False,) * 5 + (True,) + (False,) * 3,
        ),
    ]


_PLAN_LABELS = {
    "infer_batches": "infer batches",
    "train_batches": "train batches",
    "timer": "timer",
    "large_timer": "timer (ImageNet-sized inputs)",
    "batch_sizes": "batch sizes",
    "memory_formats": "memory formats",
    "max_batch": "largest batch that fits",
}


def _plan_fields(metas: Sequence[Mapping[str, Any]]) -> list[tuple[str, Any]]:
    """One header line per setting of the plans (the shard has its own line)."""
    keys: list[str] = []
    for meta in metas:
        for key in meta.get("plan") or {}:
            if key not in keys and key != "shard":
                keys.append(key)
    return [
        (
            f"plan: {_PLAN_LABELS.get(key, key.replace('_', ' '))}",
            lambda m, k=key: plan_text(k, (m.get("plan") or {}).get(k)) if m.get("plan") else "",
        )
        for key in keys
    ]


def plan_text(key: str, value: Any) -> str:
    """A plan setting as a reader reads it: lists joined, batch tables by input size, the
    timer's stopping rule in words."""
    if key in ("infer_batches", "train_batches") and isinstance(value, list) and len(value) == 2:
        small, large = (", ".join(str(b) for b in part) for part in value)
        return f"{small} (small inputs); {large} (ImageNet-sized inputs)"
    if isinstance(value, Mapping) and "min_steps" in value:
        return _timer_text(value)
    if value is None:
        return "by input size" if key == "batch_sizes" else "none"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        items = [str(v) for v in value]
        return f"{len(items)}: {', '.join(items)}" if key == "models" else ", ".join(items)
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {plan_text(str(k), v)}" for k, v in value.items())
    return str(value)


def _timer_text(timer: Mapping[str, Any]) -> str:
    """``warm-up 1 step; at least 10 steps and 0.5 s; at most 3 s and 10,000 steps``."""

    def num(x: Any) -> str:
        return f"{x:,g}" if isinstance(x, (int, float)) else str(x)

    most = (
        [f"{num(timer.get('max_time_s'))} s"]
        if math.isfinite(timer.get("max_time_s") or math.inf)
        else []
    )
    if timer.get("max_steps") is not None:
        most.append(f"{num(timer['max_steps'])} steps")
    text = (
        f"warm-up {num(timer.get('warmup'))} step(s); at least {num(timer.get('min_steps'))} "
        f"steps and {num(timer.get('min_time_s'))} s"
    )
    if most:
        text += f"; at most {' or '.join(most)}"
    if timer.get("floor_steps") is not None:
        text += f" (never under {num(timer['floor_steps'])} steps)"
    return text


def _section(title: str, intro: str, body: Block, images: Sequence[Image] = ()) -> list[Block]:
    """A section of tables: its heading, what the table shows, the table, then its figures."""
    return [Heading(2, title), Para(intro), body, *images]


# The columns that say which measurement a row is, as the errors and measured tables head them.
_SETTING_HEADERS = ("model", "device", "dtype", "memory format", "threads", "batch", "mode")


def _setting_cells(r: pd.Series) -> list[str]:
    """A row's cells under :data:`_SETTING_HEADERS`."""
    return [
        r["model"],
        r["device"],
        r["dtype"],
        r["memory_format"],
        fmt_int(r["threads"]),
        fmt_int(r["batch_size"]),
        r["mode"] + compile_note(r),
    ]


_LAYER_KINDS = ("conv", "fc", "other")
_SHARE_HEADERS = (
    "model",
    "params",
    *_LAYER_KINDS,
    "MACs (1 multiply-add each)",
    *_LAYER_KINDS,
    "largest layer (share of params)",
)


def _share_row(r: pd.Series) -> tuple[str, ...]:
    """A model's cells under :data:`_SHARE_HEADERS`."""
    return (
        r["model"],
        fmt_int(r["params_total"]),
        *(fmt_pct(r[f"params_{kind}_pct"], decimals=1) for kind in _LAYER_KINDS),
        fmt_si(r["macs_total"]),
        *(fmt_pct(r[f"macs_{kind}_pct"], decimals=1) for kind in _LAYER_KINDS),
        f"{r['largest_layer']} ({r['largest_layer_type']}, "
        f"{fmt_pct(r['largest_layer_params_pct'], decimals=1)})",
    )


def share_blocks(
    shares: pd.DataFrame, layer_figures: Sequence[tuple[str, str]], share_figure: str | None
) -> list[Block]:
    """The layer shares per model (``shares``: :func:`~bench.report.summary.layer_shares`),
    with the share figure and one per-layer figure per family (``(family, file)``)."""
    if shares.empty:
        return []
    images = []
    if share_figure:
        images.append(
            Image(
                share_figure,
                "Share of parameters (left) and MACs (right) in conv, "
                "fully connected and other layers, per model.",
            )
        )
    for family, file in layer_figures:
        images.append(
            Image(
                file,
                f"Per-layer parameters and MACs per sample for the {family} family, in forward "
                "order (k = thousand, M = million, G = billion); colour gives the layer kind.",
            )
        )
    return _section(
        "Where the parameters and the work sit",
        "From layers.jsonl: layers grouped by module type into conv (Conv*), fc (Linear, "
        "and LeNet-5's RBF output) and other (normalisation, pooling, activations).",
        table(
            _SHARE_HEADERS,
            [_share_row(r) for _, r in shares.iterrows()],
            (False,) + (True,) * 8 + (False,),
        ),
        images,
    )


def errors_blocks(results: pd.DataFrame, several_runs: bool) -> list[Block]:
    failed = results[failed_mask(results)]
    if failed.empty:
        return [Heading(2, "Errors"), Para("No row failed.")]
    failed = failed.sort_values(
        ["model", "device", "mode", "dtype", "memory_format", "batch_size", "run"], kind="mergesort"
    )
    headers = [*_SETTING_HEADERS, *(["run"] if several_runs else [])]
    rows = []
    for _, r in failed.iterrows():
        cells = _setting_cells(r)
        if r["mode"] == "accuracy":
            cells[-1] = f"accuracy ({r['data']}, seed {key_value(r['seed'])})"
        cells += [r["run"]] if several_runs else []
        rows.append((*cells, str(r["error"]).splitlines()[0]))
    return _section(
        "Errors",
        "Rows that did not measure; their numbers are missing above, never dropped.",
        table((*headers, "error"), rows),
    )


def _data_on_clock_cell(row: pd.Series) -> str:
    """What the training clock included besides the steps, the share of it the loop waited for
    batches (``data_wait_s``) and the rate the data path fed alone against training's
    (``data_fed_per_s``, per process), each where written."""
    if missing(row.get("data_on_clock")):
        # Rows from before data_on_clock: data_loading_in_timing was written true on every row.
        return "" if missing(row.get("data_loading_in_timing")) else "data loading (unspecified)"
    parts = [str(row["data_on_clock"])]
    wait, train = row.get("data_wait_s"), row.get("train_s")
    if not (missing(wait) or missing(train)) and float(train) > 0:
        share = fmt_pct(100 * float(wait) / float(train), decimals=0)
        parts.append(f"{float(wait):.3g} s waiting for batches ({share})")
    fed, trained = row.get("data_fed_per_s"), row.get("samples_per_s")
    if not (missing(fed) or missing(trained)):
        processes = 1 if missing(row.get("world_size")) else int(row["world_size"])
        parts.append(
            f"data alone {fmt_int(fed)} images/s, training {fmt_int(float(trained) / processes)}"
            f"/s{' a process' if processes > 1 else ''}"
        )
    return "; ".join(parts)


_ACCURACY_HEADERS = (
    "model",
    "data",
    "seed",
    "recipe",
    "device",
    "processes",
    "dtype",
    "batch",
    "epochs",
    "samples seen",
    "stopped by",
    "final accuracy",
    "evaluated in",
    "target",
    "time to target (s)",
    "budget (s)",
    "train (s)",
    "data on the clock",
)


def _accuracy_row(r: pd.Series, failed: bool) -> tuple[str, ...]:
    """An accuracy row's cells under :data:`_ACCURACY_HEADERS`."""
    return (
        r["model"],
        r["data"],
        fmt_int(r["seed"]),
        r["recipe"],
        r["device"],
        _processes_cell(r),
        r["dtype"],
        fmt_int(r["batch_size"]),
        "" if missing(r["epochs"]) else f"{float(r['epochs']):.3g}",  # budgeted: 0.038
        fmt_int(r.get("samples_seen")),
        "" if missing(r.get("stopped_by")) else str(r["stopped_by"]),
        ERROR if failed else fmt_frac(r["accuracy"]),
        "" if missing(r.get("eval_dtype")) else str(r["eval_dtype"]),
        fmt_frac(r["target_acc"]),
        "not reached" if missing(r["time_to_target_s"]) else fmt_num(r["time_to_target_s"]),
        fmt_num(r["budget_s"]),
        fmt_num(r["train_s"]),
        _data_on_clock_cell(r),
    )


def accuracy_blocks(
    results: pd.DataFrame, figure: str | None, over_budget: pd.DataFrame | None = None
) -> list[Block]:
    """The training runs (accuracy rows), with the time-to-accuracy figure if drawn, and the
    runs a job's budget left out (``over_budget``: over_budget.jsonl's lines) that no row has
    trained since."""
    acc = training_runs(results).sort_values(["data", "model", "seed"], kind="mergesort")
    left_out = left_out_lines(over_budget, acc) if over_budget is not None else ()
    if acc.empty:
        if not left_out:
            return []
        return [Heading(2, "Time to accuracy"), Para(_LEFT_OUT_INTRO), Bullets(left_out)]
    rows = [_accuracy_row(r, failed) for (_, r), failed in zip(acc.iterrows(), failed_mask(acc))]
    images = []
    if figure:
        images.append(
            Image(
                figure,
                "Test accuracy against wall-clock training time, one line per training run "
                "(epochs.jsonl); dashed line: the target. Points during training may score "
                "curve_test_samples test images spread over the split; the last point, and any "
                "point that decided the target, score the whole test split.",
            )
        )
    numeric = (False,) * 5 + (True, False) + (True,) * 3 + (False,) + (True, False)
    numeric += (True,) * 4 + (False,)
    blocks = _section(
        "Time to accuracy",
        "DAWNBench-style: wall-clock time to the first evaluation at or above the target, "
        "with the per-epoch log below. Samples seen: training samples over every process; "
        "stopped by: what ended the run, its length (samples or epochs), its budget of "
        "seconds, or its target (under --stop-at-target); evaluated in: the dtype of the "
        "evaluations (by default the one the run trained in; --eval-dtype fp32 for fp32).",
        table(_ACCURACY_HEADERS, rows, numeric),
        images,
    )
    copies = _data_copies(acc)
    blocks = blocks[:3] + ([Bullets(copies)] if copies else []) + blocks[3:]
    return blocks + ([Para(_LEFT_OUT_INTRO), Bullets(left_out)] if left_out else [])


_LEFT_OUT_INTRO = (
    "Left out by the job's budget (`bench all --job-budget-min`): before each run, its time "
    "was predicted from the rates the harness measured in this folder, and a run over what "
    "was left of the budget was not trained. Each line gives the prediction and the command "
    "that trains it into this folder."
)


def left_out_runs(over_budget: pd.DataFrame, acc: pd.DataFrame) -> pd.DataFrame:
    """The runs of over_budget.jsonl (each one's last line) that no accuracy row in ``acc``
    trained since (the same model, recipe, data, device, seed and length; a line from before
    the ``length`` column, by the others alone)."""
    if over_budget.empty:
        return over_budget
    key = ["model", "recipe_name", "data", "device", "seed", "length"]

    def keys(table: pd.DataFrame, columns: list[str]) -> list[tuple[Any, ...]]:
        rows = table.reindex(columns=columns).itertuples(index=False)  # a column missing: null
        return [tuple(key_value(v) for v in r) for r in rows]

    trained = set(keys(acc, key)) if not acc.empty else set()
    trained_any_length = {k[:-1] for k in trained}

    def still_left(line: tuple[Any, ...]) -> bool:
        if line[-1] is None:  # no length: written before the column
            return line[:-1] not in trained_any_length
        return line not in trained

    last = over_budget[~over_budget.reindex(columns=key).duplicated(keep="last")]
    return last[[still_left(k) for k in keys(last, key)]]


def left_out_lines(over_budget: pd.DataFrame, acc: pd.DataFrame) -> tuple[str, ...]:
    """A line per run a job's budget left out that no row trained since (:func:`left_out_runs`):
    its prediction, what was left, and the command that trains it."""
    lines = []
    for _, r in left_out_runs(over_budget, acc).iterrows():
        recipe = f" ({r['recipe_name']})" if not missing(r["recipe_name"]) else ""
        lines.append(
            f"`{r['model']}`{recipe} on {r['data']}, {r['device']}, seed {fmt_int(r['seed'])}: "
            f"{r['predicted']} predicted, {duration(r['left_s']) or '0 s'} left; "
            f"`{r['command']}`"
        )
    return tuple(lines)


def _data_copies(acc: pd.DataFrame) -> tuple[str, ...]:
    """Which copy of each data set the rows trained on (a JPEG copy can move accuracy)."""
    if "data_source" not in acc:
        return ()
    pairs = acc[["data", "data_source"]].dropna().drop_duplicates()
    return tuple(f"{data}: {source}" for data, source in pairs.itertuples(index=False))


def _processes_cell(r: pd.Series) -> str:
    """Training processes of an accuracy row: ``1``, or ``2 (gloo)`` under torchrun."""
    world = 1 if missing(r.get("world_size")) else int(r["world_size"])
    return f"{world} ({r['backend']})" if world > 1 else "1"


_MEASURED_HEADERS = (
    *_SETTING_HEADERS,
    "step ms",
    "samples/s",
    "GFLOP/s",
    "% of peak",
    "that peak's repeats (GFLOP/s)",
    "measured peak MiB",
    "estimated peak MiB",
    "analytic train MiB (peak ÷ it)",
)
_MEASURED_INTRO = (
    "Every row but the accuracy runs, failed ones included; step time is the median "
    "with the 10th–90th percentiles in brackets (rows of at least 10 timed steps); % of "
    "peak is against the faster of a large matmul and a 3×3 convolution measured in the "
    "row's precision (fp32, or bf16 for both bf16 dtypes), the best of the repeats that "
    "measured it at the start of the row's session; beside it, the slowest and fastest of "
    "those repeats (against the slowest the share would be higher by fastest ÷ slowest), or "
    f"'{SPREAD_NOT_MEASURED}' for a folder from before peaks were repeated. Estimated peak: "
    "what the CPU memory guard planned for before the row ran (CPU rows only; it refuses a batch "
    "whose estimate exceeds 70% of the available memory). " + NOISY_NOTE + " " + ESTIMATE_NOTE
)


def _measured_row(
    r: pd.Series,
    failed: bool,
    peaks: Mapping[str, float],
    spreads: Mapping[str, PeakSpread],
    with_max_batch: bool,
) -> tuple[str, ...]:
    """A row's cells under :data:`_MEASURED_HEADERS` (``peaks`` and ``spreads``: its
    session's, by kind)."""
    ref = reference_peak(peaks, str(r["dtype"]))
    gf = r["achieved_gflops"]
    # The share of the row's peak and, beside it, that peak's range over its repeats.
    share = (
        ("", "")
        if missing(gf) or ref is None
        else (f"{100 * float(gf) / ref[1]:.1f}%", _repeats_cell(spreads.get(ref[0])))
    )

    def cell(value: Any) -> str:
        return ERROR if failed and missing(value) else fmt_num(value)

    spread = (
        ""
        if failed or missing(r["step_ms_p10"]) or missing(r["step_ms_p90"])
        else f" ({fmt_num(r['step_ms_p10'], 3)}–{fmt_num(r['step_ms_p90'], 3)})"
    )
    return (
        *_setting_cells(r),
        cell(r["step_ms_median"]) + spread + noisy_mark(r),
        cell(r["samples_per_s"]),
        cell(gf),
        *share,
        cell(r["peak_mem_mib"]),
        fmt_num(r["peak_mem_estimate_mib"]),
        estimate_cell(r),
        *([fmt_int(r["max_batch"])] if with_max_batch else []),
    )


def _repeats_cell(spread: PeakSpread | None) -> str:
    """``331.0–429.0 (5 repeats)``: the range of the peak a row's share is of."""
    if spread is None:
        return SPREAD_NOT_MEASURED
    return f"{spread.range_text()} ({spread.repeats} repeats)"


def measured_blocks(results: pd.DataFrame, metas: Sequence[Mapping[str, Any]]) -> list[Block]:
    """Every row but the accuracy runs, in model order, failed ones included."""
    # Accuracy runs have their own table; a mode we do not plot still shows here.
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
    peaks_of, spreads_of = row_peaks(metas), row_spreads(metas)
    several = len(metas) > 1  # one meta per results folder: say which folder each row is from
    rows = [
        (
            *_measured_row(r, failed, peaks_of(r), spreads_of(r), with_max_batch),
            *([r["run"]] if several else []),
        )
        for (_, r), failed in zip(rows_df.iterrows(), failed_mask(rows_df))
    ]
    methods = sorted(rows_df["peak_mem_method"].dropna().astype(str).unique())
    method_note = f" Peak memory measured by: {', '.join(methods)}." if methods else ""
    return _section(
        "All measured rows",
        _MEASURED_INTRO + method_note,
        table(
            (
                *_MEASURED_HEADERS,
                *(["largest batch that fits"] if with_max_batch else []),
                *(["folder"] if several else []),
            ),
            rows,
            (False,) * 4
            + (True, True, False)
            + (True,) * 4
            + (False,)
            + (True,) * (3 + with_max_batch)
            + (False,) * several,
        ),
    )
