"""What bounds a step: its layers (layer_times.jsonl) against the measured roofs (meta.json).

A module's forward pass is **compute-bound** when its arithmetic intensity (forward FLOPs over
the bytes it moves, :func:`bench.measure.counting.layer_bytes`) is at or above the machine's
ridge point, the compute peak over the memory roof of the step's precision (FLOP/byte): there
the roofline allows the peak. Below the ridge, or with no FLOPs counted (ReLU, max pooling, a
residual addition: bytes and no arithmetic), it is **memory-bound**: the roof it can reach is
its bytes at the memory roof. A module that moves no bytes of its own (a model's forward code
around its layers) is neither, and its time counts with the step's rest.

Shares are of the profiled step (the step with the hooks), so they add up to 100%: compute-bound
modules' forward and backward, memory-bound modules' forward and backward, and the rest (the
loss, zero_grad, the optimizer, the framework and the hooks' own cost). How far a class is from
its roof is read on the forward pass, where its FLOPs and bytes are counted: the class's FLOPs
(or bytes) over its forward seconds, against the peak (or the memory roof).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from bench.report.runs import reference_bandwidth, reference_peak

__all__ = ["STEP_COLUMNS", "Roofs", "Bound", "profiles", "roofs_of", "bound", "bound_sentence"]

# What tells one profiled step from another in layer_times.jsonl (several folders: ``run``).
STEP_COLUMNS = (
    "run", "session", "model", "device", "dtype", "memory_format", "threads", "batch_size",
    "mode",
)  # fmt: skip
_MODE_WORDS = {"train": "training", "infer": "inference"}


@dataclass(frozen=True)
class Roofs:
    """The roofs a step is held against: GFLOP/s (the faster of matmul and 3×3 conv of its
    precision) and GB/s (the triad of its element size); either None if not measured."""

    peak_kind: str | None
    peak_gflops: float | None
    bandwidth_gbs: float | None

    @property
    def ridge(self) -> float | None:
        """The intensity (FLOP/byte) from which the peak, not the memory, bounds a layer."""
        if self.peak_gflops and self.bandwidth_gbs:
            return self.peak_gflops / self.bandwidth_gbs
        return None


@dataclass(frozen=True)
class Bound:
    """One profiled step split by what bounds its modules (module docstring)."""

    compute_share: float  # of the profiled step
    memory_share: float
    rest_share: float
    compute_types: tuple[str, ...]  # module types in the class, most time first
    memory_types: tuple[str, ...]
    compute_of_peak: float | None  # the class's forward FLOP/s over the peak
    memory_of_roof: float | None  # the class's forward bytes/s over the memory roof
    layers_of_step: float  # the modules' sum over the step timed without hooks (the check)
    slowest: tuple[str, ...]  # paper layers, most time first


def profiles(layer_times: pd.DataFrame) -> list[pd.DataFrame]:
    """layer_times.jsonl's lines, one frame per profiled step, in the order written."""
    if layer_times.empty:
        return []
    keyed = layer_times.assign(_k=layer_times[list(STEP_COLUMNS)].astype(str).agg("|".join, axis=1))
    order = list(dict.fromkeys(keyed["_k"]))
    return [keyed[keyed["_k"] == k].drop(columns="_k").reset_index(drop=True) for k in order]


def roofs_of(
    step: Mapping[str, Any],
    peaks_of: Callable[[Mapping[str, Any]], Mapping[str, float]],
    bandwidth_of: Callable[[Mapping[str, Any]], Mapping[str, float]],
) -> Roofs:
    """The :class:`Roofs` of ``step`` (a line of it), from its session's meta."""
    peak = reference_peak(peaks_of(step), str(step["dtype"]))
    bandwidth = reference_bandwidth(bandwidth_of(step), str(step["dtype"]))
    return Roofs(peak[0] if peak else None, peak[1] if peak else None, bandwidth)


def _classes(step: pd.DataFrame, roofs: Roofs) -> pd.Series:
    """Each module's class: "compute", "memory" or "rest" (module docstring)."""
    flops, moved = step["flops"].fillna(0), step["bytes"].fillna(0)
    intensity = flops / moved.where(moved > 0)
    ridge = roofs.ridge
    compute = (flops > 0) & (intensity >= ridge) if ridge is not None else flops < 0
    return pd.Series(
        ["rest" if m <= 0 else "compute" if c else "memory" for m, c in zip(moved, compute)],
        index=step.index,
    )


def bound(step: pd.DataFrame, roofs: Roofs) -> Bound:
    """What bounds the profiled ``step`` (its lines): :class:`Bound`. Without a ridge (a roof
    not measured) no module is called compute-bound: read ``compute_of_peak`` as None then."""
    first = step.iloc[0]
    total_ms = float(first["hooked_step_ms"])
    own = step["forward_ms"].fillna(0) + step["backward_ms"].fillna(0)
    classes = _classes(step, roofs)

    def share(kind: str) -> float:
        return float(own[classes == kind].sum()) / total_ms

    def types(kind: str) -> tuple[str, ...]:
        by_type = own[classes == kind].groupby(step["type"][classes == kind]).sum()
        return tuple(str(t) for t in by_type.sort_values(ascending=False).index)

    def rate(kind: str, column: str) -> float | None:
        seconds = float(step["forward_ms"][classes == kind].sum()) / 1e3
        amount = float(step[column][classes == kind].sum())
        return amount / seconds if seconds > 0 and amount > 0 else None

    flop_rate, byte_rate = rate("compute", "flops"), rate("memory", "bytes")
    by_layer = own.groupby(step["paper_layer"]).sum().sort_values(ascending=False)
    return Bound(
        compute_share=share("compute"),
        memory_share=share("memory"),
        # Medians of the parts need not add up to the median step: never below nothing.
        rest_share=max(0.0, 1.0 - share("compute") - share("memory")),
        compute_types=types("compute"),
        memory_types=types("memory"),
        compute_of_peak=(
            flop_rate / 1e9 / roofs.peak_gflops if flop_rate and roofs.peak_gflops else None
        ),
        memory_of_roof=(
            byte_rate / 1e9 / roofs.bandwidth_gbs if byte_rate and roofs.bandwidth_gbs else None
        ),
        layers_of_step=float(first["layers_ms"]) / float(first["step_ms"]),
        slowest=tuple(str(name) for name in by_layer.index[:3]),
    )


def _types(types: Sequence[str]) -> str:
    shown = ", ".join(types[:3]) + (", …" if len(types) > 3 else "")
    return f" ({shown})" if shown else ""


def bound_sentence(step: pd.DataFrame, roofs: Roofs) -> str:
    """One sentence: what bounds the profiled ``step``, its shares and distances to the roofs,
    and how far its layers' sum is from the step's own clock."""
    first = step.iloc[0]
    found = bound(step, roofs)
    precision = "bf16" if "bf16" in str(first["dtype"]) else "fp32"
    where = (
        f"{first['model']}, {first['dtype']} {first['memory_format']} "
        f"{_MODE_WORDS.get(str(first['mode']), first['mode'])} at batch "
        f"{int(first['batch_size'])} on {first['device']}"
    )
    if roofs.ridge is None:
        missing = "compute peak" if not roofs.peak_gflops else "memory roof"
        return (
            f"{where}: no {precision} {missing} measured, so no layer is judged against the "
            f"roofs; the slowest layers are {', '.join(found.slowest)}."
        )
    parts = [
        f"{found.compute_share:.0%} of the step in compute-bound layers"
        f"{_types(found.compute_types)}"
        + (
            f", their forward at {found.compute_of_peak:.0%} of the {precision} peak "
            f"({roofs.peak_gflops:,.0f} GFLOP/s)"
            if found.compute_of_peak is not None
            else ""
        ),
        f"{found.memory_share:.0%} in memory-bound layers{_types(found.memory_types)}"
        + (
            f", their forward at {found.memory_of_roof:.0%} of the memory roof "
            f"({roofs.bandwidth_gbs:,.1f} GB/s)"
            if found.memory_of_roof is not None
            else ""
        ),
        f"{found.rest_share:.0%} outside the layers (loss, optimizer, framework, the hooks)"
        if first["mode"] == "train"
        else f"{found.rest_share:.0%} outside the layers (framework, the hooks)",
    ]
    return (
        f"{where}: " + "; ".join(parts) + f". Slowest layers: {', '.join(found.slowest)}; "
        f"the layers add up to {found.layers_of_step:.0%} of the step timed without hooks "
        f"(ridge {roofs.ridge:.1f} FLOP/byte)."
    )
