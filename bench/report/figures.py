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
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.text import Text  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: E402

from bench.report.runs import epoch_curves, reference_peak  # noqa: E402
from bench.report.summary import family_rank, layer_kind  # noqa: E402

__all__ = [
    "DPI",
    "KIND_COLORS",
    "gflops_vs_peak",
    "layers_by_family",
    "memory_breakdown",
    "param_share",
    "params_vs_macs",
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
    """Log-log scatter of parameters against MACs per sample, one labelled point per model."""
    df = summary[["model", "family", "params", "macs"]].copy()
    df["params"] = pd.to_numeric(df["params"], errors="coerce")
    df["macs"] = pd.to_numeric(df["macs"], errors="coerce")
    df = df[(df["params"] > 0) & (df["macs"] > 0)].sort_values("model")
    if df.empty:
        return None
    fig = _new_figure(8, 5.5)
    ax = fig.add_subplot()
    for family in sorted(df["family"].unique(), key=family_rank):
        part = df[df["family"] == family]
        ax.scatter(
            part["macs"], part["params"], s=40, color=_family_color(family), label=family, zorder=3
        )
    _log_axis(ax, "x")
    _log_axis(ax, "y")
    _pad_log_limits(ax, df["macs"], df["params"])
    _label_points(fig, ax, list(zip(df["macs"], df["params"], df["model"])))
    ax.set_xlabel("MACs per sample, forward pass (multiply-accumulates, log scale)")
    ax.set_ylabel("trainable parameters (log scale)")
    ax.set_title("Size against compute: parameters vs MACs")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(title="family", loc="upper left", fontsize=8)
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
    """Samples/s against batch size, one panel per device and mode, one line per model setting.

    ``rows``: measured (error-free) infer/train rows with ``samples_per_s``.
    """
    df = rows[rows["mode"].isin(["infer", "train"]) & rows["samples_per_s"].notna()]
    if df.empty:
        return None
    devices = sorted(df["device"].unique())
    modes = [m for m in ("infer", "train") if m in set(df["mode"])]
    models = sorted(df["model"].unique())
    colors = _model_colors(models)
    variants = sorted(
        {(d, f) for d, f in zip(df["dtype"], df["memory_format"])},
        key=lambda v: (v != ("fp32", "contiguous"), v),
    )
    fig = _new_figure(6.5 * len(modes), 4.8 * len(devices))
    axes = fig.subplots(len(devices), len(modes), squeeze=False)
    for i, device in enumerate(devices):
        for j, mode in enumerate(modes):
            ax = axes[i][j]
            part = df[(df["device"] == device) & (df["mode"] == mode)]
            for model in models:
                for k, (dtype, fmt) in enumerate(variants):
                    line = part[
                        (part["model"] == model)
                        & (part["dtype"] == dtype)
                        & (part["memory_format"] == fmt)
                    ].sort_values("batch_size")
                    if line.empty:
                        continue
                    label = (
                        model
                        if (dtype, fmt) == ("fp32", "contiguous")
                        else (f"{model} ({dtype}, {fmt})")
                    )
                    ax.plot(
                        line["batch_size"],
                        line["samples_per_s"],
                        color=colors[model],
                        linestyle=_LINESTYLES[k % len(_LINESTYLES)],
                        marker=_MARKERS[k % len(_MARKERS)],
                        markersize=4,
                        label=label,
                    )
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _p: f"{x:g}"))
            _log_axis(ax, "y")
            ax.set_xlabel("batch size (samples, log scale)")
            ax.set_ylabel("throughput (samples/s, log scale)")
            ax.set_title(f"{mode} on {device}")
            ax.grid(True, which="major", alpha=0.3)
            if ax.has_data():
                ax.legend(fontsize=7, loc="best")
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
) -> Path | None:
    """Best achieved GFLOP/s per model, mode and dtype, against the measured peaks.

    ``rows``: error-free infer/train rows with ``achieved_gflops``; ``peaks``: per device,
    ``{"fp32_matmul": x, "fp32_conv3x3": y, "bf16_matmul": z, "bf16_conv3x3": w}`` (any may be
    missing), drawn as lines; the share written beside each bar is of :func:`reference_peak` of
    ``row_peaks(row)`` (the peaks of the session that measured the row), by default of the
    device's ``peaks``.
    """
    df = rows[rows["mode"].isin(["infer", "train"]) & rows["achieved_gflops"].notna()]
    if df.empty:
        return None
    best = (
        df.sort_values(["achieved_gflops", "batch_size"], ascending=[False, True])
        .groupby(["device", "model", "mode", "dtype"], sort=True)
        .head(1)
    )
    devices = sorted(best["device"].unique())
    heights = [0.32 * len(best[best["device"] == d]) + 1.6 for d in devices]
    fig = _new_figure(9, sum(heights) + 0.4)
    axes = fig.subplots(len(devices), 1, squeeze=False, height_ratios=heights)
    for i, device in enumerate(devices):
        device_peaks = peaks.get(device, {})
        part = best[best["device"] == device]
        _gflops_panel(axes[i][0], part, device, device_peaks, row_peaks)
    return _save(fig, path)


def _gflops_panel(
    ax: Axes,
    part: pd.DataFrame,
    device: str,
    device_peaks: Mapping[str, float],
    row_peaks: Callable[[Mapping[str, Any]], Mapping[str, float]] | None,
) -> None:
    """One device's bars of :func:`gflops_vs_peak`, its peak lines and each bar's share."""
    part = part.copy()
    part["rank"] = part["family"].map(family_rank)
    # Smallest family and model at the top (barh draws bottom-up).
    part = part.sort_values(["rank", "params", "model", "mode", "dtype"], ascending=False)
    labels = [f"{m} {mo} {d}" for m, mo, d in zip(part["model"], part["mode"], part["dtype"])]
    ys = range(len(part))
    ax.barh(
        list(ys),
        part["achieved_gflops"],
        color=[_family_color(f) for f in part["family"]],
        height=0.7,
    )
    ax.set_yticks(list(ys), labels, fontsize=8)
    for key, style in _PEAK_STYLES:
        value = device_peaks.get(key)
        if value:
            ax.axvline(
                value,
                color="black",
                linestyle=style,
                linewidth=1.2,
                label=f"{key.replace('_', ' ')} peak: {value:,.0f} GFLOP/s",
            )
    for y, row in enumerate(part.to_dict("records")):
        gf = row["achieved_gflops"]
        ref = reference_peak(row_peaks(row) if row_peaks else device_peaks, row["dtype"])
        share = f" ({100 * gf / ref[1]:.0f}% of {ref[0].replace('_', ' ')})" if ref else ""
        _label_bar_end(ax, f"{gf:,.1f}{share}", gf, y)
    top = max([part["achieved_gflops"].max(), *[v for v in device_peaks.values() if v]])
    ax.set_xlim(0, top * 1.35)
    ax.set_xlabel("achieved GFLOP/s (best over batch sizes and memory formats)")
    ax.set_title(f"Distance to the hardware limit on {device}")
    ax.grid(True, axis="x", alpha=0.3)
    if device_peaks:
        ax.legend(fontsize=8, loc="lower right")


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


def time_to_accuracy(epochs: pd.DataFrame, targets: Mapping[str, float], path: Path) -> Path | None:
    """Test accuracy against wall-clock training time, one line per training run.

    ``epochs``: the per-epoch log (curves: :func:`bench.report.runs.epoch_curves`); ``targets``:
    target accuracy (fraction) per data set. One panel per data set.
    """
    curves = epoch_curves(epochs)
    if not curves:
        return None
    datasets = sorted({c.data for c in curves})
    models = sorted({c.model for c in curves})
    colors = _model_colors(models)
    fig = _new_figure(8, 4.8 * len(datasets))
    axes = fig.subplots(len(datasets), 1, squeeze=False)
    for i, data in enumerate(datasets):
        ax = axes[i][0]
        for model in models:
            mine = [c for c in curves if c.data == data and c.model == model]
            labels = [
                f"{model} (seed {c.seed}"
                + (f", {c.device}" if c.device not in (None, "cpu") else "")
                + (f", {c.world_size} processes" if c.world_size > 1 else "")
                for c in mine
            ]
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
        target = targets.get(data)
        if target is not None and not math.isnan(target):
            ax.axhline(
                100 * target,
                color="black",
                linestyle="--",
                linewidth=1,
                label=f"target {100 * target:.2f}%",
            )
        ax.set_xlabel("wall-clock training time (s, evaluation excluded)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"Time to accuracy on {data}")
        ax.set_xlim(left=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    return _save(fig, path)


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


def layers_by_family(layers: pd.DataFrame, family: str, path: Path) -> Path | None:
    """Per-layer parameters and MACs for every model of one family (layers with either > 0)."""
    df = layers[
        (layers["family"] == family)
        & ((layers["params"].fillna(0) > 0) | (layers["macs"].fillna(0) > 0))
    ]
    if df.empty:
        return None
    models = sorted(df["model"].unique())
    most = max(len(df[df["model"] == m]) for m in models)
    width = min(max(9.0, 0.17 * most + 3), 16.0)
    fig = _new_figure(width, 4.6 * len(models))
    axes = fig.subplots(2 * len(models), 1, squeeze=False)
    for i, model in enumerate(models):
        part = df[df["model"] == model].sort_values("index")
        xs = list(range(len(part)))
        colors = [KIND_COLORS[layer_kind(t)] for t in part["type"]]
        names = [str(n) for n in part["layer"]]
        label_size = 7 if len(part) <= 40 else 5
        for j, (col, what) in enumerate((("params", "parameters"), ("macs", "MACs per sample"))):
            ax = axes[2 * i + j][0]
            ax.bar(xs, part[col].fillna(0), color=colors, width=0.8)
            ax.yaxis.set_major_formatter(FuncFormatter(_si))
            ax.set_ylabel(f"{what} (count)", fontsize=8)
            ax.set_xlim(-0.7, len(part) - 0.3)
            ax.grid(True, axis="y", alpha=0.3)
            if j == 0:
                ax.set_title(f"{model}: parameters and MACs per layer", fontsize=10)
                ax.set_xticks(xs, [""] * len(xs))
            else:
                ax.set_xticks(xs, names, rotation=90, fontsize=label_size)
                ax.set_xlabel("layer (module path, forward order)", fontsize=8)
    handles = [
        Patch(color=KIND_COLORS[k], label=label)
        for k, label in (("conv", "conv"), ("fc", "fully connected"), ("other", "other"))
    ]
    fig.legend(handles=handles, loc="outside upper right", ncols=3, fontsize=8)
    return _save(fig, path)
