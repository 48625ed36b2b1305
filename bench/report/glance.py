"""The sections built from the summary table: "The zoo at a glance" and "What the papers say"."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import pandas as pd

from bench.report.document import Block, Heading, Para, Table, table
from bench.report.formatting import fmt_frac, fmt_int, fmt_num, fmt_pct, fmt_si, missing
from bench.report.summary import FASTEST, REFERENCE_DTYPE, REFERENCE_FORMAT, REFERENCE_LABEL


def glance_blocks(
    summary: pd.DataFrame, devices: Sequence[str], left_out: Collection[str] = ()
) -> list[Block]:
    """One table of size and cost per model, one of speed, memory and accuracy per device;
    ``left_out``: models whose accuracy run a job's budget left out (their accuracy cell says
    so)."""
    return [
        Heading(2, "The zoo at a glance"),
        Para(
            "Size and cost per sample, our counts beside the papers' (Δ = ours − paper, "
            "relative). MACs are fvcore's forward count; FLOPs are FlopCounterMode's (2 per "
            "MAC of conv/matmul). Activations are the tensors saved for backward, per sample."
        ),
        _size_table(summary),
        *_uncounted_blocks(summary),
        Para(
            f"Speed and memory at {REFERENCE_DTYPE}, {REFERENCE_FORMAT}: the best samples/s "
            "over the batch sizes measured (batch in brackets), and the peak memory of that "
            "same row. Accuracy is the mean over seeds of the final test accuracy; time to "
            'target the median wall-clock time of the seeds that reached it. "error" marks a '
            "number every attempt at failed (see Errors). Where other formats were measured on "
            "a device (the default plan adds bf16 autocast with channels_last where bf16 is "
            "native), a column beside fp32's gives each model's fastest: its best samples/s, "
            'batch, dtype/format and speed-up over the fp32 best ("= fp32": none was faster).'
        ),
        _speed_table(summary, devices, left_out),
    ]


# The accuracy cell of a model whose run the job's budget left out (and no row trained since).
LEFT_OUT_CELL = "left out by the job's budget (Time to accuracy)"

_SIZE_HEADERS = (
    "model",
    "family",
    "input",
    "params",
    "paper params",
    "Δ",
    "MACs (1 multiply-add each)",
    "paper MACs",
    "Δ",
    "FLOPs (2 per MAC)",
    "weights MiB",
    "activations MiB/sample",
)


def _size_table(summary: pd.DataFrame) -> Table:
    rows = [
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
        for _, r in summary.iterrows()
    ]
    return table(_SIZE_HEADERS, rows, (False, False, False) + (True,) * 9)


def _speed_table(
    summary: pd.DataFrame, devices: Sequence[str], left_out: Collection[str] = ()
) -> Table:
    """Per device, samples/s (fp32, and the fastest format where others were measured) and
    peak memory of inference and training; then accuracy."""
    fastest = {device: _other_formats(summary, device) for device in devices}
    headers, numeric = ["model"], [False]
    for device in devices:
        for mode in ("infer", "train"):
            headers.append(f"{device} {mode} samples/s")
            headers += [f"{device} {mode} samples/s, fastest format"] if fastest[device] else []
        headers += [f"{device} infer peak MiB", f"{device} train peak MiB"]
        numeric += [True] * (4 + 2 * fastest[device])
    headers += ["accuracy", "time to target", "paper accuracy"]
    rows = []
    for _, r in summary.iterrows():
        cells = [r["model"]]
        for device in devices:
            for mode in ("infer", "train"):
                prefix = f"{device}_{mode}"
                cells.append(_throughput_cell(r, prefix))
                cells += [_fastest_cell(r, f"{prefix}_{FASTEST}")] if fastest[device] else []
            for mode in ("infer", "train"):
                cells.append(fmt_num(r[f"{device}_{mode}_peak_mem_mib"]))
        accuracy = _accuracy_cell(r)
        if not accuracy and r["model"] in left_out:
            accuracy = LEFT_OUT_CELL
        cells += [accuracy, _time_to_target_cell(r), _paper_accuracy_cell(r)]
        rows.append(cells)
    return table(headers, rows, (*numeric, True, True, False))


def _other_formats(summary: pd.DataFrame, device: str) -> bool:
    """Whether any model's fastest row on ``device`` is at another format than fp32's."""
    labels = [summary.get(f"{device}_{mode}_{FASTEST}_format") for mode in ("infer", "train")]
    return any(
        isinstance(label, str) and label != REFERENCE_LABEL
        for column in labels
        if column is not None
        for label in column
    )


def _fastest_cell(r: pd.Series, prefix: str) -> str:
    """``2,345 (b=32, bf16_autocast/channels_last, 1.85× fp32)``, or ``= fp32`` where the
    fp32 row was the fastest."""
    value = r[f"{prefix}_samples_per_s"]
    if missing(value) or isinstance(value, str):
        return fmt_num(value)
    if r[f"{prefix}_format"] == REFERENCE_LABEL:
        return "= fp32"
    speedup = r[f"{prefix}_speedup"]
    times = "" if missing(speedup) else f", {float(speedup):.2f}× fp32"
    return f"{fmt_num(value)} (b={int(r[f'{prefix}_batch'])}, {r[f'{prefix}_format']}{times})"


def _uncounted_blocks(summary: pd.DataFrame) -> list[Block]:
    if "uncounted_ops" not in summary.columns:
        return []
    listed = [
        f"{r['model']}: {r['uncounted_ops']}"
        for _, r in summary.iterrows()
        if isinstance(r["uncounted_ops"], str) and r["uncounted_ops"]
    ]
    if not listed:
        return []
    return [
        Para(
            "Not in the MACs: ops fvcore counts as no work (pooling, additions, activations), "
            "with how often one forward pass calls each. " + "; ".join(listed) + "."
        )
    ]


def _throughput_cell(r: pd.Series, prefix: str) -> str:
    value = r[f"{prefix}_samples_per_s"]
    if missing(value) or isinstance(value, str):
        return fmt_num(value)
    extra = f"b={int(r[f'{prefix}_batch'])}"
    if r[f"{prefix}_dtype"] != REFERENCE_DTYPE:
        extra += f", {r[f'{prefix}_dtype']}"
    return f"{fmt_num(value)} ({extra})"


def _accuracy_cell(r: pd.Series) -> str:
    if missing(r["accuracy"]) or isinstance(r["accuracy"], str):
        return fmt_frac(r["accuracy"])
    seeds = int(r["accuracy_seeds"])
    return f"{fmt_frac(r['accuracy'])} ({r['accuracy_data']}, {seeds} seed{'s' * (seeds != 1)})"


def _time_to_target_cell(r: pd.Series) -> str:
    if missing(r["reached_target"]):
        return ""
    target = fmt_frac(r["target_acc"])
    if missing(r["time_to_target_s"]):
        return f"not reached ({target})"
    return f"{fmt_num(r['time_to_target_s'])} s to {target} ({r['reached_target']} seeds)"


def _paper_accuracy_cell(r: pd.Series) -> str:
    if missing(r["paper_accuracy"]):
        return ""
    on = f" ({r['paper_reported_on']})" if not missing(r["paper_reported_on"]) else ""
    return f"{fmt_frac(r['paper_accuracy'])}{on}"


def paper_blocks(summary: pd.DataFrame, paper: Mapping[str, Any]) -> list[Block]:
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
                _accuracy_cell(r) if facts.test_accuracy is not None else "",
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
        table(
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
                "our test accuracy",
                "reported on",
                "notes",
            ),
            rows,
            (False, False) + (True,) * 9 + (False, False),
        ),
        *_test_error_sentences(summary, paper),
    ]


def _test_error_sentences(summary: pd.DataFrame, paper: Mapping[str, Any]) -> list[Block]:
    """Our test error beside the paper's, with how far ours trained: "lenet5: 1.12% test error
    after 1,200,000 samples (20 passes of 60,000) ... against the paper's 0.95%"."""
    said = []
    for _, r in summary.iterrows():
        facts = paper.get(r["model"])
        if facts is None or facts.test_accuracy is None:
            continue
        if missing(r["accuracy"]) or isinstance(r["accuracy"], str):
            continue
        trained = ""
        if not missing(r.get("accuracy_samples")):
            trained = f" after {fmt_int(r['accuracy_samples'])} training samples"
        if isinstance(r.get("accuracy_recipe"), str):
            trained += f" ({r['accuracy_recipe']})"
        said.append(
            f"{r['model']}: {100 * (1 - float(r['accuracy'])):.2f}% test error on "
            f"{r['accuracy_data']}{trained}, mean of {int(r['accuracy_seeds'])} run(s), against "
            f"the paper's {100 * (1 - facts.test_accuracy):.2f}% ({facts.reported_on})."
        )
    return [Para(" ".join(said))] if said else []
