"""The report's figures: one function per plot, each reading a DataFrame and writing one PNG.

Figures are drawn on matplotlib's Agg canvas directly (``Figure`` + ``FigureCanvasAgg``), so no
display and no pyplot global state is involved, whatever backend the caller has selected. Sizes,
DPI, colours and orders are fixed and the PNG carries no "Software" text chunk, so the same
input gives the same bytes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # the report never needs a display; harmless if already Agg

import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from bench.report.formatting import missing  # noqa: E402
from bench.report.roofline import Roofs  # noqa: E402
from bench.report.runs import (  # noqa: E402
    SPREAD_NOT_MEASURED,
    Curve,
    PeakSpread,
    epoch_curves,
    reference_peak,
)
from bench.report.summary import family_rank, paper_layer_totals  # noqa: E402

__all__ = [
    "DPI",
    "KIND_COLORS",
    "gflops_vs_peak",
    "accuracy_vs_cost",
    "latency_vs_macs",
    "layers_by_family",
    "variant_colors",
    "memory_breakdown",
    "param_share",
    "params_vs_macs",
    "roofline",
    "throughput_vs_batch",
    "time_to_accuracy",
]

log = logging.getLogger(__name__)

DPI = 100
_FAMILY_COLORS = {"lenet": "#1f77b4", "alexnet": "#ff7f0e", "vgg": "#d62728", "resnet": "#2ca02c"}
_OTHER_COLOR = "#7f7f7f"
KIND_COLORS = {"conv": "#4c72b0", "fc": "#dd8452", "other": "#b0b0b0"}
_MEMORY_PARTS = (
    ("weights_mib", "weights", "#4c72b0"),
    ("grads_mib", "gradients", "#55a868"),
    ("optimizer_mib", "optimizer state", "#c44e52"),
    ("activations_mib", "activations (saved for backward)", "#8172b2"),
)
_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _family_color(family: str) -> str:
    return _FAMILY_COLORS.get(str(family), _OTHER_COLOR)


def _model_colors(models: Sequence[str]) -> dict[str, tuple[float, float, float, float]]:
    cmap = matplotlib.colormaps["tab10" if len(models) <= 10 else "tab20"]
    return {m: cmap(i % cmap.N) for i, m in enumerate(models)}


def variant_colors(families: Mapping[str, str]) -> dict[str, tuple[float, float, float]]:
    """One colour per family, a shade of it per variant: ``families`` maps each model to its
    family, in the report's model order; a family's first model is the darkest shade."""
    by_family: dict[str, list[str]] = {}
    for model, family in families.items():
        by_family.setdefault(str(family), []).append(model)
    out = {}
    for family, models in by_family.items():
        base = to_rgb(_family_color(family))
        for k, model in enumerate(models):
            t = -0.35 + 0.8 * k / (len(models) - 1) if len(models) > 1 else 0.0
            mix, towards = (t, 1.0) if t > 0 else (-t, 0.0)
            out[model] = tuple(c + (towards - c) * mix for c in base)
    return out


def _new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    # No "Software" chunk: the PNG bytes then depend only on what was drawn.
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    log.debug("wrote %s", path)
    return path


def _si(x: float, _pos: object = None) -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= scale:
            return f"{x / scale:g}{suffix}"
    return f"{x:g}"


def _log_axis(ax: Axes, axis: str) -> None:
    target = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    target.set_major_locator(LogLocator(base=10))
    target.set_major_formatter(FuncFormatter(_si))
    target.set_minor_formatter(NullFormatter())


def _label_bar_end(ax: Axes, text: str, x: float, y: float) -> None:
    """Write ``text`` just right of the end ``(x, y)`` of a horizontal bar."""
    ax.annotate(text, (x, y), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7)


def params_vs_macs(summary: pd.DataFrame, path: Path) -> Path | None:
    """Log-log scatter of parameters against MACs per sample, one labelled point per model,
    a colour per family and a shade per variant."""
    df = summary[["model", "family", "params", "macs"]].copy()
    df["params"] = pd.to_numeric(df["params"], errors="coerce")
    df["macs"] = pd.to_numeric(df["macs"], errors="coerce")
    df = df[(df["params"] > 0) & (df["macs"] > 0)]
    if df.empty:
        return None
    colors = variant_colors(dict(zip(df["model"], df["family"])))
    df = df.sort_values("model")
    fig = _new_figure(8, 5.5)
    ax = fig.add_subplot()
    ax.scatter(df["macs"], df["params"], s=44, c=[colors[m] for m in df["model"]], zorder=3)
    _log_axis(ax, "x")
    _log_axis(ax, "y")
    _pad_log_limits(ax, df["macs"], df["params"])
    _label_points(fig, ax, list(zip(df["macs"], df["params"], df["model"])))
    ax.set_xlabel("MACs per sample, forward pass (multiply-accumulates, log scale)")
    ax.set_ylabel("trainable parameters (log scale)")
    ax.set_title("Size against compute: parameters vs MACs")
    ax.grid(True, which="major", alpha=0.3)
    _family_key(ax, df["family"])
    return _save(fig, path)


def _family_key(ax: Axes, families: Any) -> None:
    """A small key of the families present (the points and lines carry their own names)."""
    present = sorted({str(f) for f in families}, key=family_rank)
    handles = [Patch(color=_family_color(f), label=f) for f in present]
    ax.legend(handles=handles, title="family", loc="upper left", fontsize=7, title_fontsize=7)


def latency_vs_macs(rows: pd.DataFrame, path: Path) -> Path | None:
    """Batch-1 inference latency (median step) against MACs per sample, log-log, one panel per
    device, one labelled point per model (fp32, contiguous rows; error-free ``rows``)."""
    df = rows[
        (rows["mode"] == "infer")
        & (rows["batch_size"] == 1)
        & (rows["dtype"] == "fp32")
        & (rows["memory_format"] == "contiguous")
        & (pd.to_numeric(rows["step_ms_median"], errors="coerce") > 0)
        & (pd.to_numeric(rows["macs_fvcore"], errors="coerce") > 0)
    ]
    df = df.sort_values("step_ms_median").drop_duplicates(["device", "model"])
    if df.empty:
        return None
    colors = variant_colors(dict(zip(df["model"], df["family"])))
    devices = sorted(df["device"].astype(str).unique())
    fig = _new_figure(8 * len(devices), 5.5)
    axes = fig.subplots(1, len(devices), squeeze=False)[0]
    for ax, device in zip(axes, devices):
        part = df[df["device"] == device].sort_values("model")
        xs, ys = part["macs_fvcore"].astype(float), part["step_ms_median"].astype(float)
        ax.scatter(xs, ys, s=44, c=[colors[m] for m in part["model"]], zorder=3)
        _log_axis(ax, "x")
        _log_axis(ax, "y")
        _pad_log_limits(ax, xs, ys)
        _label_points(fig, ax, list(zip(xs, ys, part["model"])))
        ax.set_xlabel("MACs per sample, forward pass (log scale)")
        ax.set_ylabel("latency: median step at batch 1 (ms, log scale)")
        ax.set_title(f"Latency against compute on {device} (infer, batch 1, fp32)")
        ax.grid(True, which="major", alpha=0.3)
        _family_key(ax, part["family"])
    return _save(fig, path)


# How many of a roofline's slowest layers are named beside their points.
ROOFLINE_LABELS = 8
_MODE_MARKERS = {"train": "o", "infer": "s"}


def roofline(lines: pd.DataFrame, roofs: Roofs, title: str, path: Path) -> Path | None:
    """Each module's forward pass (layer_times.jsonl ``lines`` of one device and precision) at
    its arithmetic intensity and achieved GFLOP/s, log-log, under the compute peak and the
    memory roof of ``roofs`` (either missing: not drawn); one colour per model, circles for
    training steps and squares for inference, the :data:`ROOFLINE_LABELS` slowest named by
    model, paper layer and module type. Modules without counted FLOPs (ReLU, max pooling) have
    no point; None if no module has one."""
    df = lines[
        (pd.to_numeric(lines["forward_gflops"], errors="coerce") > 0)
        & (pd.to_numeric(lines["intensity"], errors="coerce") > 0)
    ].copy()
    if df.empty:
        return None
    df["intensity"] = df["intensity"].astype(float)
    df["gflops"] = df["forward_gflops"].astype(float)
    models = list(dict.fromkeys(df["model"].astype(str)))
    colors = _model_colors(models)
    fig = _new_figure(9, 6)
    ax = fig.subplots()
    for (model, mode), part in df.groupby([df["model"].astype(str), df["mode"].astype(str)]):
        ax.scatter(
            part["intensity"], part["gflops"], s=22, color=colors[model], alpha=0.8, zorder=3,
            marker=_MODE_MARKERS.get(mode, "o"), label=f"{model} ({mode})",
        )  # fmt: skip
    xs, ys = df["intensity"], df["gflops"]
    low, high = xs.min() / 4, xs.max() * 4
    top = max(ys.max(), roofs.peak_gflops or 0) * 2
    ax.set_xlim(low, high)
    ax.set_ylim(ys.min() / 4, top)
    if roofs.bandwidth_gbs:
        end = min(roofs.ridge or high, high)
        ax.plot([low, end], [roofs.bandwidth_gbs * low, roofs.bandwidth_gbs * end], color="black",
                linewidth=1.4)  # fmt: skip
        ax.annotate(
            f"memory roof {roofs.bandwidth_gbs:,.1f} GB/s", (low, roofs.bandwidth_gbs * low),
            xytext=(4, 6), textcoords="offset points", fontsize=8, rotation=0,
        )  # fmt: skip
    if roofs.peak_gflops:
        start = roofs.ridge or low
        ax.plot([max(start, low), high], [roofs.peak_gflops] * 2, color="black", linewidth=1.4)
        ax.annotate(
            f"{(roofs.peak_kind or 'peak').replace('_', ' ')} peak {roofs.peak_gflops:,.0f} "
            "GFLOP/s", (high, roofs.peak_gflops), xytext=(-4, 4), textcoords="offset points",
            ha="right", fontsize=8,
        )  # fmt: skip
    slowest = df.sort_values("forward_ms", ascending=False).head(ROOFLINE_LABELS)
    _label_points(
        fig,
        ax,
        [
            (x, y, f"{m} {p} ({t})")
            for x, y, m, p, t in zip(
                slowest["intensity"],
                slowest["gflops"],
                slowest["model"],
                slowest["paper_layer"],
                slowest["type"],
            )
        ],
    )
    _log_axis(ax, "x")
    _log_axis(ax, "y")
    ax.set_xlabel("arithmetic intensity: forward FLOPs per byte moved (log scale)")
    ax.set_ylabel("achieved GFLOP/s, forward (log scale)")
    ax.set_title(title)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


def accuracy_vs_cost(rows: pd.DataFrame, path: Path) -> Path | None:
    """Final test accuracy against the training clock, one labelled point per training run,
    one panel per data set (error-free accuracy ``rows``)."""
    df = rows[
        (rows["mode"] == "accuracy")
        & (pd.to_numeric(rows["train_s"], errors="coerce") > 0)
        & rows["accuracy"].notna()
    ]
    if df.empty:
        return None
    colors = variant_colors(dict(zip(df["model"], df["family"])))
    datasets = sorted(df["data"].astype(str).unique())
    fig = _new_figure(8 * len(datasets), 5.5)
    axes = fig.subplots(1, len(datasets), squeeze=False)[0]
    for ax, data in zip(axes, datasets):
        part = df[df["data"].astype(str) == data].sort_values(["model", "seed"])
        xs = part["train_s"].astype(float)
        ys = 100 * part["accuracy"].astype(float)
        ax.scatter(xs, ys, s=44, c=[colors[m] for m in part["model"]], zorder=3)
        _log_axis(ax, "x")
        ax.set_xlim(xs.min() / 3, xs.max() * 8)
        span = max(ys.max() - ys.min(), 1.0)
        ax.set_ylim(ys.min() - 0.15 * span, ys.max() + 0.15 * span)
        names = [
            f"{m} (seed {int(s)})" if part["model"].tolist().count(m) > 1 else str(m)
            for m, s in zip(part["model"], part["seed"].fillna(0))
        ]
        _label_points(fig, ax, list(zip(xs, ys, names)))
        _target_lines(ax, targets_of(part))
        ax.set_xlabel("training time (s on the training clock, log scale)")
        ax.set_ylabel("final test accuracy (%)")
        ax.set_title(f"Accuracy against training cost on {data}")
        ax.grid(True, which="major", alpha=0.3)
    return _save(fig, path)


# Label positions tried in turn (points from the marker; horizontal alignment), nearest first.
_LABEL_OFFSETS = (
    (5, 4, "left"), (5, -11, "left"), (-5, 4, "right"), (-5, -11, "right"),
    (5, 14, "left"), (5, -21, "left"), (-5, 14, "right"), (-5, -21, "right"),
    (5, 24, "left"), (5, -31, "left"), (-5, 24, "right"), (-5, -31, "right"),
)  # fmt: skip


def _label_points(fig: Figure, ax: Axes, points: list[tuple[float, float, str]]) -> None:
    """Name each point, at the first nearby place where its label overlaps no label before it
    and no marker (the last place tried if none is free)."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    markers = [ax.transData.transform((x, y)) for x, y, _ in points]
    placed: list[Any] = []
    for x, y, name in points:
        text = ax.annotate(
            name,
            (x, y),
            xytext=_LABEL_OFFSETS[0][:2],
            textcoords="offset points",
            fontsize=8,
            arrowprops={"arrowstyle": "-", "color": "0.6", "lw": 0.6, "shrinkA": 1, "shrinkB": 4},
        )
        for dx, dy, align in _LABEL_OFFSETS:
            text.set_position((dx, dy))
            text.set_horizontalalignment(align)
            text.update_positions(renderer)
            box = Text.get_window_extent(text, renderer).expanded(1.02, 1.1)  # without the line
            free = not any(box.overlaps(other) for other in placed) and not any(
                box.contains(px, py) for px, py in markers
            )
            if free:
                break
        placed.append(Text.get_window_extent(text, renderer))


def _pad_log_limits(ax: Axes, xs: pd.Series, ys: pd.Series) -> None:
    # Labels sit beside the points, left or right (_label_points); room for them inside the axes.
    ax.set_xlim(xs.min() / 3, xs.max() * 8)
    ax.set_ylim(ys.min() / 3, ys.max() * 3)


def throughput_vs_batch(rows: pd.DataFrame, path: Path) -> Path | None:
    """Samples/s against batch size, one panel per device and mode, one line per model setting
    measured at more than one batch, named at its end; None if no setting was swept.

    ``rows``: measured (error-free) infer/train rows with ``samples_per_s``.
    """
    df = rows[rows["mode"].isin(["infer", "train"]) & rows["samples_per_s"].notna()]
    setting = ["device", "mode", "model", "dtype", "memory_format"]
    swept = df.groupby(setting)["batch_size"].transform("nunique") > 1
    df = df[swept]
    if df.empty:
        return None
    panels = sorted(
        {(str(d), str(m)) for d, m in zip(df["device"], df["mode"])},
        key=lambda p: (p[0], p[1] != "infer"),
    )
    colors = variant_colors(dict(zip(df["model"], df["family"])))
    reference = {("fp32", "contiguous")}
    fig = _new_figure(7.5 * len(panels), 5.2)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (device, mode) in zip(axes, panels):
        part = df[(df["device"] == device) & (df["mode"] == mode)]
        ends = []
        for (model, dtype, fmt), line in part.groupby(["model", "dtype", "memory_format"]):
            line = line.sort_values("batch_size")
            other = (dtype, fmt) not in reference
            ax.plot(
                line["batch_size"],
                line["samples_per_s"],
                color=colors[model],
                linestyle="--" if other else "-",
                marker="o",
                markersize=4,
            )
            name = f"{model} ({dtype}, {fmt})" if other else str(model)
            ends.append(
                (float(line["batch_size"].iloc[-1]), float(line["samples_per_s"].iloc[-1]), name)
            )
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _p: f"{x:g}"))
        _log_axis(ax, "y")
        xs = part["batch_size"].astype(float)
        ax.set_xlim(xs.min() / 1.5, xs.max() * 6)
        _label_points(fig, ax, ends)
        ax.set_xlabel("batch size (samples, log scale)")
        ax.set_ylabel("throughput (samples/s, log scale)")
        ax.set_title(f"{mode} on {device}: models measured at several batches")
        ax.grid(True, which="major", alpha=0.3)
    return _save(fig, path)


# The measured peaks drawn as vertical lines, one style each.
_PEAK_STYLES = (
    ("fp32_matmul", "--"),
    ("fp32_conv3x3", "-."),
    ("bf16_matmul", ":"),
    ("bf16_conv3x3", (0, (3, 1, 1, 1, 1, 1))),  # dash-dot-dot
)


def gflops_vs_peak(
    rows: pd.DataFrame,
    peaks: Mapping[str, Mapping[str, float]],
    path: Path,
    row_peaks: Callable[[Mapping[str, Any]], Mapping[str, float]] | None = None,
    spreads: Mapping[str, Mapping[str, PeakSpread]] | None = None,
) -> Path | None:
    """Best achieved GFLOP/s per model, mode and dtype, against the measured peaks.

    ``rows``: error-free infer/train rows with ``achieved_gflops``; ``peaks``: per device,
    ``{"fp32_matmul": x, "fp32_conv3x3": y, "bf16_matmul": z, "bf16_conv3x3": w}`` (any may be
    missing), drawn as lines; ``spreads``: per device, those peaks' spreads over their repeats,
    each drawn as a band from the slowest to the fastest repeat and written in the line's
    label (``spread not measured`` where a peak has none); the share written beside each bar
    is of :func:`reference_peak` of ``row_peaks(row)`` (the peaks of the session that measured
    the row), by default of the device's ``peaks``.
    """
    df = rows[rows["mode"].isin(["infer", "train"]) & rows["achieved_gflops"].notna()]
    if df.empty:
        return None
    best = (
        df.sort_values(["achieved_gflops", "batch_size"], ascending=[False, True])
        .groupby(["device", "model", "mode", "dtype"], sort=True)
        .head(1)
    )
    panels = sorted(
        {(str(d), str(m)) for d, m in zip(best["device"], best["mode"])},
        key=lambda p: (p[0], p[1] != "infer"),
    )
    devices = sorted({d for d, _ in panels})
    modes = [m for m in ("infer", "train") if any(pm == m for _, pm in panels)]
    colors = variant_colors(dict(zip(best["model"], best["family"])))
    most = max(len(best[(best["device"] == d) & (best["mode"] == m)]) for d, m in panels)
    fig = _new_figure(7.5 * len(modes), (0.3 * most + 1.8) * len(devices))
    axes = fig.subplots(len(devices), len(modes), squeeze=False)
    for i, device in enumerate(devices):
        for j, mode in enumerate(modes):
            part = best[(best["device"] == device) & (best["mode"] == mode)]
            if part.empty:
                axes[i][j].set_axis_off()
                continue
            _gflops_panel(
                axes[i][j],
                part,
                (device, mode),
                (peaks.get(device, {}), (spreads or {}).get(device, {})),
                row_peaks,
                colors,
            )
    return _save(fig, path)


def _gflops_panel(
    ax: Axes,
    part: pd.DataFrame,
    where: tuple[str, str],
    lines: tuple[Mapping[str, float], Mapping[str, PeakSpread]],
    row_peaks: Callable[[Mapping[str, Any]], Mapping[str, float]] | None,
    colors: Mapping[str, Any],
) -> None:
    """One device and mode's bars of :func:`gflops_vs_peak`, the peaks of the precisions
    present as named lines over the bands of their repeats, and each bar's share (``lines``:
    the device's peaks and their spreads)."""
    device_peaks, spreads = lines
    part = part.copy()
    part["rank"] = part["family"].map(family_rank)
    # Smallest family and model at the top (barh draws bottom-up).
    part = part.sort_values(["rank", "params", "model", "dtype"], ascending=False)
    several = part["dtype"].nunique() > 1
    labels = [f"{m} ({d})" if several else str(m) for m, d in zip(part["model"], part["dtype"])]
    ys = list(range(len(part)))
    ax.barh(ys, part["achieved_gflops"], color=[colors[m] for m in part["model"]], height=0.7)
    ax.set_yticks(ys, labels, fontsize=8)
    precisions = {"bf16" if str(d).startswith("bf16") else "fp32" for d in part["dtype"]}
    drawn = {k: v for k, v in device_peaks.items() if v and k.split("_")[0] in precisions}
    for key, style in _PEAK_STYLES:
        if key in drawn:
            spread = spreads.get(key)
            if spread is not None and spread.low < spread.high:
                ax.axvspan(
                    spread.low, spread.high, color="black", alpha=0.08, linewidth=0, zorder=0
                )
            ax.axvline(drawn[key], color="black", linestyle=style, linewidth=1.2)
            ax.annotate(
                f"{key.replace('_', ' ')} peak {drawn[key]:,.0f}\n{_spread_label(spread)}",
                (drawn[key], 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(2, -2),
                textcoords="offset points",
                rotation=90,
                va="top",
                fontsize=7,
            )
    for y, row in enumerate(part.to_dict("records")):
        gf = row["achieved_gflops"]
        ref = reference_peak(row_peaks(row) if row_peaks else device_peaks, row["dtype"])
        share = f" ({100 * gf / ref[1]:.0f}% of {ref[0].replace('_', ' ')})" if ref else ""
        _label_bar_end(ax, f"{gf:,.1f}{share}", gf, y)
    top = max([part["achieved_gflops"].max(), *drawn.values()])
    ax.set_xlim(0, top * 1.45)
    ax.set_xlabel("achieved GFLOP/s (best over batch sizes and memory formats)")
    ax.set_title(f"{where[1]} on {where[0]}: distance to the measured peaks")
    ax.grid(True, axis="x", alpha=0.3)


def _spread_label(spread: PeakSpread | None) -> str:
    """``331–429 over 5 repeats``, beside a peak's line."""
    if spread is None:
        return SPREAD_NOT_MEASURED
    return f"{spread.low:,.0f}–{spread.high:,.0f} over {spread.repeats} repeats"


def memory_breakdown(rows: pd.DataFrame, path: Path) -> Path | None:
    """Stacked bars of weights / gradients / optimizer state / activations per model.

    ``rows``: one train row per model (its label column ``label`` names model and batch).
    Left: MiB; right: the same as shares, so small models stay readable.
    """
    if rows.empty:
        return None
    df = rows.iloc[::-1]  # barh draws bottom-up; keep the caller's order top-down
    fig = _new_figure(12, 0.45 * len(df) + 1.8)
    ax_abs, ax_share = fig.subplots(1, 2)
    ys = list(range(len(df)))
    totals = sum(df[col].fillna(0) for col, _, _ in _MEMORY_PARTS)
    left_abs = pd.Series(0.0, index=df.index)
    left_share = pd.Series(0.0, index=df.index)
    for col, label, color in _MEMORY_PARTS:
        values = df[col].fillna(0).astype(float)
        share = (100 * values / totals.where(totals > 0)).fillna(0)
        ax_abs.barh(ys, values, left=left_abs, color=color, label=label, height=0.7)
        ax_share.barh(ys, share, left=left_share, color=color, label=label, height=0.7)
        left_abs += values
        left_share += share
    for y, total in zip(ys, totals):
        _label_bar_end(ax_abs, f"{total:,.1f}", total, y)
    ax_abs.set_yticks(ys, list(df["label"]), fontsize=8)
    ax_share.set_yticks(ys, [""] * len(ys))
    ax_abs.set_xlim(0, float(totals.max()) * 1.2 if float(totals.max()) > 0 else 1)
    ax_abs.set_xlabel("memory for one training step (MiB)")
    ax_share.set_xlabel("share of that memory (%)")
    ax_share.set_xlim(0, 100)
    ax_abs.set_title("Where training memory goes")
    ax_share.set_title("The same, as shares")
    ax_abs.grid(True, axis="x", alpha=0.3)
    fig.legend(*ax_abs.get_legend_handles_labels(), loc="outside lower center", ncols=4, fontsize=8)
    return _save(fig, path)


def _curve_label(c: Curve) -> str:
    """``lenet5 (seed 0, recipe lenet5_sgd, cuda, 2 processes``: what sets a run apart (the
    caller closes the bracket, after a run id where two labels would be the same)."""
    return (
        f"{c.model} (seed {c.seed}"
        + (f", recipe {c.recipe_name}" if c.recipe_name else "")
        + (f", {c.device}" if c.device not in (None, "cpu") else "")
        + (f", {c.world_size} processes" if c.world_size > 1 else "")
    )


def time_to_accuracy(
    epochs: pd.DataFrame,
    targets: Mapping[str, Mapping[float, Sequence[str]]],
    path: Path,
    families: Mapping[str, str] | None = None,
) -> Path | None:
    """Test accuracy against wall-clock training time, one line per training run, named at
    its last evaluation.

    ``epochs``: the per-epoch log (curves: :func:`bench.report.runs.epoch_curves`); ``targets``:
    per data set, each target accuracy (a fraction) with the models timed to it; ``families``:
    model → family, for a colour per family and a shade per variant. One panel per data set.
    """
    curves = epoch_curves(epochs)
    if not curves:
        return None
    datasets = sorted({c.data for c in curves})
    models = sorted({c.model for c in curves})
    colors: Mapping[str, Any] = (
        variant_colors({m: families.get(m, "") for m in models})
        if families
        else _model_colors(models)
    )
    fig = _new_figure(8, 4.8 * len(datasets))
    axes = fig.subplots(len(datasets), 1, squeeze=False)
    for i, data in enumerate(datasets):
        ax = axes[i][0]
        ends: list[tuple[float, float, str]] = []  # each curve named at its last point
        for model in models:
            mine = [c for c in curves if c.data == data and c.model == model]
            labels = [_curve_label(c) for c in mine]
            for k, (curve, label) in enumerate(zip(mine, labels)):
                if labels.count(label) > 1:  # the same settings trained twice: name the run
                    label += f", run {curve.run}"
                ax.plot(
                    curve.points["wall_s"],
                    100 * curve.points["test_accuracy"],
                    color=colors[model],
                    linestyle=_LINESTYLES[k % len(_LINESTYLES)],
                    marker="o",
                    markersize=3,
                    label=label + ")",
                )
                last = curve.points.iloc[-1]
                ends.append(
                    (float(last["wall_s"]), 100 * float(last["test_accuracy"]), label + ")")
                )
        _target_lines(ax, targets.get(data, {}))
        ax.set_xlabel("wall-clock training time (s, evaluation excluded)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"Time to accuracy on {data}")
        ax.set_xlim(0, 1.45 * max((x for x, _, _ in ends), default=1.0))
        ax.grid(True, alpha=0.3)
        _label_points(fig, ax, ends)
    return _save(fig, path)


def targets_of(rows: pd.DataFrame) -> dict[float, list[str]]:
    """The targets (fractions) of accuracy ``rows``, each with the models timed to it."""
    targets: dict[float, list[str]] = {}
    for target, model in zip(rows["target_acc"], rows["model"]):
        if not missing(target):
            models = targets.setdefault(float(target), [])
            models += [] if model in models else [str(model)]
    return targets


def _target_lines(ax: Axes, targets: Mapping[float, Sequence[str]]) -> None:
    """Each target accuracy (a fraction) as a dashed line, named at its left end; with the
    models timed to it where the models have different targets."""
    for target, models in sorted(targets.items()):
        if math.isnan(target):
            continue
        whose = f" ({', '.join(models)})" if len(targets) > 1 else ""
        ax.axhline(100 * target, color="black", linestyle="--", linewidth=1)
        ax.annotate(
            f"target {100 * target:.2f}%{whose}",
            (0.01, 100 * target),
            xycoords=("axes fraction", "data"),
            xytext=(0, 3),
            textcoords="offset points",
            fontsize=7,
        )


def param_share(shares: pd.DataFrame, path: Path) -> Path | None:
    """100% stacked bars: the share of parameters and of MACs in conv / fc / other layers.

    ``shares``: one row per model with columns ``params_<kind>_pct`` and ``macs_<kind>_pct``.
    """
    if shares.empty:
        return None
    df = shares.iloc[::-1]
    fig = _new_figure(11, 0.4 * len(df) + 1.9)
    axes = fig.subplots(1, 2)
    ys = list(range(len(df)))
    for ax, what, title in ((axes[0], "params", "parameters"), (axes[1], "macs", "MACs")):
        left = pd.Series(0.0, index=df.index)
        for kind, label in (
            ("conv", "conv layers"),
            ("fc", "fully connected (classifier)"),
            ("other", "other (norm, pool, ...)"),
        ):
            values = df[f"{what}_{kind}_pct"].fillna(0).astype(float)
            ax.barh(ys, values, left=left, color=KIND_COLORS[kind], label=label, height=0.7)
            left += values
        ax.set_xlim(0, 100)
        ax.set_xlabel(f"share of the model's {title} (%)")
        ax.set_title(f"Where the {title} sit")
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].set_yticks(ys, list(df["model"]), fontsize=8)
    axes[1].set_yticks(ys, [""] * len(ys))
    fig.legend(
        *axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=8
    )
    return _save(fig, path)


def layers_by_family(
    layers: pd.DataFrame, family: str, path: Path, order: Sequence[str] = ()
) -> Path | None:
    """Per paper layer (LeNet-5's C1 … OUTPUT, VGG's conv1_1 … fc8), parameters and MACs for
    every model of one family (layers with either > 0), in ``order``, then by name."""
    df = layers[layers["family"] == family]
    rank = {m: i for i, m in enumerate(order)}
    totals = {
        str(m): t[(t["params"] > 0) | (t["macs"] > 0)]
        for m in sorted(df["model"].unique(), key=lambda m: (rank.get(m, len(rank)), m))
        for t in [paper_layer_totals(df[df["model"] == m])]
    }
    totals = {m: t for m, t in totals.items() if not t.empty}
    if not totals:
        return None
    most = max(len(t) for t in totals.values())
    width = min(max(8.0, 0.3 * most + 3), 16.0)
    fig = _new_figure(width, 4.2 * len(totals))
    axes = fig.subplots(2 * len(totals), 1, squeeze=False)
    for i, (model, part) in enumerate(totals.items()):
        xs = list(range(len(part)))
        colors = [KIND_COLORS[k] for k in part["kind"]]
        for j, (col, what) in enumerate((("params", "parameters"), ("macs", "MACs per sample"))):
            ax = axes[2 * i + j][0]
            ax.bar(xs, part[col], color=colors, width=0.8)
            ax.yaxis.set_major_formatter(FuncFormatter(_si))
            ax.set_ylabel(f"{what}", fontsize=8)
            ax.set_xlim(-0.7, len(part) - 0.3)
            ax.grid(True, axis="y", alpha=0.3)
            if j == 0:
                ax.set_title(f"{model}: parameters and MACs per layer", fontsize=10)
                ax.set_xticks(xs, [""] * len(xs))
            else:
                ax.set_xticks(
                    xs, list(part["paper_layer"]), rotation=90 if most > 12 else 0, fontsize=8
                )
                ax.set_xlabel("layer, as the paper names it (forward order)", fontsize=8)
    handles = [
        Patch(color=KIND_COLORS[k], label=label)
        for k, label in (("conv", "conv"), ("fc", "fully connected"), ("other", "other"))
    ]
    fig.legend(handles=handles, loc="outside upper right", ncols=3, fontsize=8)
    return _save(fig, path)
