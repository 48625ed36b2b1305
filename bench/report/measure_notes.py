"""What the report says about a row's noise, its analytical memory estimate and its compile
mode: the ``noisy`` mark, the estimate's cell, the compile note, and the sentences
that explain the first two."""

from __future__ import annotations

from typing import Any

import pandas as pd

from bench.report.formatting import fmt_num, missing

__all__ = ["NOISY_NOTE", "ESTIMATE_NOTE", "noisy_mark", "estimate_cell", "compile_note"]

NOISY_NOTE = (
    "A step time marked noisy had an interquartile range above 10% of its median "
    "(torch.utils.benchmark's threshold): other work competed for the machine, or the step "
    "itself varies; read its numbers with that spread in mind."
)
ESTIMATE_NOTE = (
    "Analytic train MiB: weights, gradients, optimizer state, the batch and every tensor the "
    "forward pass creates (kept for backward), added up as torchinfo does, beside the measured "
    "peak (training rows). The measured peak is usually higher: autograd also saves inputs of "
    "in-place ops and masks no layer outputs, autocast keeps bf16 copies of the weights, the "
    "allocator keeps freed blocks, and on CPU oneDNN takes scratch space and reordered copies "
    "of the weights."
)


def noisy_mark(row: pd.Series | dict[str, Any]) -> str:
    """`` noisy`` for a row flagged noisy, else ``""``."""
    value = row.get("noisy")  # True, False, or missing (None/NaN) without a spread
    return " noisy" if not missing(value) and bool(value) else ""


def estimate_cell(row: pd.Series | dict[str, Any]) -> str:
    """``123.4 (×1.8)``: the analytical training estimate and the measured peak's ratio to it;
    ``""`` where the row has none (inference rows, failed rows, older folders)."""
    estimate = row.get("mem_estimate_mib")
    if missing(estimate):
        return ""
    ratio = row.get("mem_estimate_ratio")
    return fmt_num(estimate) + ("" if missing(ratio) else f" (×{float(ratio):.1f})")


def compile_note(row: pd.Series | dict[str, Any]) -> str:
    """`` compiled (default, 41.2 s to compile (cold cache))`` for a row run through
    ``torch.compile``; ``""`` for an eager row (``compile`` none or missing)."""
    mode = row.get("compile")
    if missing(mode) or mode == "none":
        return ""
    seconds = row.get("compile_s")
    cache = row.get("compile_cache")
    # Rows written before compile_cache timed the first call, a step included, with inductor's
    # cache as they found it.
    how = "cold cache" if cache == "cold" else "first call, cache as found"
    took = "" if missing(seconds) else f", {float(seconds):.1f} s to compile ({how})"
    return f" compiled ({mode}{took})"
