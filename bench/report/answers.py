"""The report's opening: why these networks differ, in a few sentences computed from the rows,
beside the figures that show it (accuracy against training cost, latency against MACs,
parameters against MACs, where training memory goes)."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from bench.report.document import Block, Bullets, Gallery, Heading, Image
from bench.report.formatting import fmt_num, fmt_si, ratio, share
from bench.report.sentences import accuracy_sentences, headline_sentences
from bench.report.summary import FASTEST, REFERENCE_LABEL, failed_mask

ANSWERS_TITLE = "In short: why these networks differ"

# (figure file, caption) in the order the opening shows them
ANSWER_FIGURES = (
    (
        "fig_accuracy_vs_cost.png",
        "Final test accuracy against training time, one point per training run.",
    ),
    (
        "fig_latency_vs_macs.png",
        "Inference latency at batch 1 (median step, fp32) against MACs per sample, log-log.",
    ),
    (
        "fig_params_vs_macs.png",
        "Parameters against MACs per sample (log-log), one point per model.",
    ),
    (
        "fig_memory.png",
        "Where training memory goes: weights, gradients, optimizer state and activations "
        "saved for backward, from each model's smallest-batch train row.",
    ),
)


def answer_blocks(
    results: pd.DataFrame,
    summary: pd.DataFrame,
    shares: pd.DataFrame,
    memory: pd.DataFrame,
    drawn: Mapping[str, str | None],
) -> list[Block]:
    """The opening section: its sentences and whichever of its figures were drawn."""
    sentences = [
        *accuracy_sentences(results)[:1],
        *latency_sentences(results),
        *format_sentences(summary),
        *headline_sentences(summary, shares),
        *memory_sentences(memory),
    ]
    images = tuple(Image(f, c) for f, c in ANSWER_FIGURES if drawn.get(f))
    if not sentences and not images:
        return []
    blocks: list[Block] = [Heading(2, ANSWERS_TITLE)]
    if sentences:
        blocks.append(Bullets(tuple(sentences)))
    if images:
        blocks.append(Gallery(images))
    return blocks


def latency_sentences(results: pd.DataFrame) -> list[str]:
    """Per device, the batch-1 latency of the model with the fewest MACs and of the one with
    the most (fp32, contiguous, error-free infer rows)."""
    ok = results[~failed_mask(results)]
    rows = ok[
        (ok["mode"] == "infer")
        & (ok["batch_size"] == 1)
        & (ok["dtype"] == "fp32")
        & (ok["memory_format"] == "contiguous")
        & ok["step_ms_median"].notna()
        & (pd.to_numeric(ok["macs_fvcore"], errors="coerce") > 0)
    ]
    out = []
    for device in sorted(rows["device"].dropna().astype(str).unique()):
        part = rows[rows["device"] == device].sort_values(["macs_fvcore", "model"])
        part = part.drop_duplicates("model")
        if len(part) < 2:
            continue
        low, high = part.iloc[0], part.iloc[-1]
        out.append(
            f"Latency follows compute: on {device} at batch 1, {low['model']} "
            f"({fmt_si(low['macs_fvcore'])} MACs) answers in {fmt_num(low['step_ms_median'])} ms "
            f"and {high['model']} ({fmt_si(high['macs_fvcore'])} MACs) in "
            f"{fmt_num(high['step_ms_median'])} ms: "
            f"{ratio(float(high['macs_fvcore']), float(low['macs_fvcore']))} the MACs, "
            f"{ratio(float(high['step_ms_median']), float(low['step_ms_median']))} the time."
        )
    return out


def format_sentences(summary: pd.DataFrame) -> list[str]:
    """Per device where some model ran faster at another format than fp32: the speed-up of each
    model's fastest format over its fp32 best (the summary's ``*_fastest_*`` columns)."""
    suffix = f"_infer_{FASTEST}_speedup"
    devices = [c[: -len(suffix)] for c in summary.columns if c.endswith(suffix)]
    out = []
    for device in devices:
        parts, formats = [], set()
        for mode, work in (("infer", "inference"), ("train", "training")):
            prefix = f"{device}_{mode}_{FASTEST}"
            faster = summary[f"{prefix}_format"].map(
                lambda f: isinstance(f, str) and f != REFERENCE_LABEL
            )
            speedups = pd.to_numeric(summary[f"{prefix}_speedup"], errors="coerce").dropna()
            if not faster.any() or speedups.empty:
                continue
            formats |= set(summary.loc[faster, f"{prefix}_format"])
            parts.append(
                f"{speedups.median():.2f}× fp32's samples/s in {work} ({speedups.min():.2f}× to "
                f"{speedups.max():.2f}× over {len(speedups)} models)"
            )
        if parts:
            out.append(
                f"The fastest format against fp32: on {device}, each model's fastest "
                f"({', '.join(sorted(formats))} where not fp32) reaches a median "
                + " and ".join(parts)
                + "."
            )
    return out


_STATE = ("weights_mib", "grads_mib", "optimizer_mib")


def memory_sentences(memory: pd.DataFrame) -> list[str]:
    """The models whose training step's memory is most and least activations."""
    if memory.empty:
        return []
    df = memory.copy()
    state = sum(df[c].fillna(0).astype(float) for c in _STATE)
    acts = df["activations_mib"].fillna(0).astype(float)
    total = state + acts
    df = df.assign(_share=(100 * acts / total.where(total > 0)), _total=total)
    df = df[df["_share"].notna()].sort_values(["_share", "model"], ascending=[False, True])
    if len(df) < 2:
        return []
    most, least = df.iloc[0], df.iloc[-1]
    return [
        f"Training memory: activations saved for backward are {share(most['_share'])} of "
        f"{most['model']}'s {fmt_num(most['_total'])} MiB (batch {int(most['batch_size'])}), "
        f"while weights, gradients and optimizer state are {share(100 - least['_share'])} of "
        f"{least['model']}'s {fmt_num(least['_total'])} MiB (batch {int(least['batch_size'])})."
    ]
