"""build_report: load and merge the folders, write summary.csv, the figures, report.md and
report.html."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from bench.compare import Comparison, compare_folders
from bench.report import figures
from bench.report.answers import answer_blocks
from bench.report.by_class import evaluation_blocks, per_class_blocks
from bench.report.document import (
    Block,
    Bullets,
    Contents,
    Heading,
    Image,
    Para,
    render_html,
    render_markdown,
)
from bench.report.glance import glance_blocks, paper_blocks
from bench.report.model_details import model_detail_blocks
from bench.report.roofline import bound_sentence, profiles, roofs_of
from bench.report.run_against_run import compare_blocks
from bench.report.runs import (
    Run,
    device_peaks,
    device_spreads,
    load_run,
    merge_runs,
    results_folders,
    row_bandwidth,
    row_peaks,
    session_meta,
)
from bench.report.sections import (
    accuracy_blocks,
    errors_blocks,
    header_blocks,
    left_out_runs,
    measured_blocks,
    share_blocks,
)
from bench.report.sentences import comparison_sentences
from bench.report.summary import (
    REFERENCE_DTYPE,
    REFERENCE_FORMAT,
    evaluations,
    failed_mask,
    family_rank,
    layer_shares,
    memory_rows,
    model_order,
    named_layers,
    paper_facts,
    summary_table,
    training_runs,
)

log = logging.getLogger("bench.report")  # one logger for the package, as before the split


def _default_out_dir(name: str) -> Path:
    """``reports/<name>`` under the current directory (where the user works, as ``results/``
    of ``bench run``; never the installed package), ``name`` made one safe folder name: a run
    id read from meta.json (``..``, ``a/b``, ``/abs``) cannot place the report elsewhere, or in
    a hidden folder."""
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", name).lstrip(".") or "run"
    return Path("reports") / safe


def build_report(
    results_dirs: Sequence[Path],
    out_dir: Path | None = None,
    *,
    compare_with: Path | None = None,
    across_machines: bool = False,
) -> Path:
    """Write the comparison report of one or more results folders; return the report folder.

    The folder (default ``reports/<run_id>/`` under the current directory, or
    ``reports/<first_run_id>+N`` for N extra folders) receives ``report.md``, ``report.html``,
    ``summary.csv`` and ``fig_*.png``.
    ``compare_with``: an earlier results folder (OLD) to compare the one folder given (NEW)
    with, in a section of its own (:mod:`bench.compare`; folders from different machines
    only with ``across_machines``, which also lets folders of different hardware merge,
    :func:`bench.report.runs.merge_runs`). A folder holding no results.jsonl but
    ``shard-I-of-N`` folders (``--shard auto``) is read as those slices, every one of its
    split required (:func:`bench.report.runs.results_folders`). Raises ``FileNotFoundError``
    for a missing folder or results.jsonl and ``ValueError`` for an empty results file, rows
    of different folders with the same settings, a root lacking a slice, or a comparison
    refused; nothing is written then.
    """
    if not results_dirs:
        raise ValueError("no results folders given: pass at least one RESULTS_DIR")
    folders = results_folders(results_dirs)
    comparison = None
    if compare_with is not None:
        if len(results_dirs) != 1:
            raise ValueError(
                f"--compare needs one RESULTS_DIR, the NEW side; got {len(results_dirs)}"
            )
        if folders != [Path(results_dirs[0])]:
            raise ValueError(
                f"--compare needs one results folder, the NEW side; {results_dirs[0]} is a "
                "root of slices: compare one shard-I-of-N folder at a time"
            )
        comparison = compare_folders(
            Path(compare_with), Path(results_dirs[0]), across_machines=across_machines
        )
    run_data = merge_runs([load_run(d) for d in folders], across_machines=across_machines)
    if len(results_dirs) == 1 and folders != [Path(results_dirs[0])]:  # a root of slices
        run_data = replace(run_data, name=Path(results_dirs[0]).resolve().name)
    run_data = replace(run_data, layers=named_layers(run_data.layers))
    out = Path(out_dir) if out_dir is not None else _default_out_dir(run_data.name)
    out.mkdir(parents=True, exist_ok=True)
    for stale in sorted(out.glob("fig_*.png")):  # figures of an earlier build of this folder
        stale.unlink()
    tables = _tables(run_data)
    tables.summary.to_csv(out / "summary.csv", index=False, lineterminator="\n")
    drawn = _draw_figures(run_data, tables, out)
    layer_figs = _draw_layer_figures(run_data.layers, out, model_order(run_data.results))
    extra = _time_blocks(run_data, out), evaluation_blocks(evaluations(run_data.results))
    blocks = _report_blocks(results_dirs, run_data, tables, drawn, layer_figs, comparison, extra)
    title = f"cnn-zoo-bench report: {run_data.name}"
    (out / "report.md").write_text(render_markdown(title, blocks), encoding="utf-8")
    (out / "report.html").write_text(render_html(title, blocks, out), encoding="utf-8")
    log.info("wrote the report of %s to %s", run_data.name, out)
    return out


@dataclass(frozen=True)
class _Tables:
    """What the report computes from the merged rows before it draws or writes anything."""

    devices: list[str]
    paper: dict[str, Any]
    summary: pd.DataFrame
    shares: pd.DataFrame  # layer shares, in model order
    memory: pd.DataFrame  # the rows of the memory figure


def _tables(run_data: Run) -> _Tables:
    results = run_data.results
    models = model_order(results)
    paper = paper_facts(models)
    shares = layer_shares(run_data.layers)
    if not shares.empty:
        order = {m: i for i, m in enumerate(models)}
        shares = shares.assign(_o=shares["model"].map(lambda m: order.get(m, len(order))))
        shares = shares.sort_values(["_o", "model"]).drop(columns="_o").reset_index(drop=True)
    return _Tables(
        devices=sorted(results["device"].dropna().astype(str).unique()),
        paper=paper,
        summary=summary_table(results, paper),
        shares=shares,
        memory=memory_rows(results, models),
    )


def _draw_figures(run_data: Run, tables: _Tables, out: Path) -> dict[str, str | None]:
    """Draw the report's fixed figures into ``out``: each file's name if drawn, else None."""
    ok = run_data.results[~failed_mask(run_data.results)]
    first = session_meta(run_data.metas[0])
    peaks = {d: device_peaks(first, d) for d in tables.devices}
    spreads = {d: device_spreads(first, d) for d in tables.devices}
    acc = training_runs(ok)
    targets = {
        str(data): figures.targets_of(rows) for data, rows in acc.groupby(acc["data"].astype(str))
    }
    draw: dict[str, Callable[[Path], Path | None]] = {
        "fig_accuracy_vs_cost.png": lambda path: figures.accuracy_vs_cost(acc, path),
        "fig_latency_vs_macs.png": lambda path: figures.latency_vs_macs(ok, path),
        "fig_params_vs_macs.png": lambda path: figures.params_vs_macs(tables.summary, path),
        "fig_throughput_vs_batch.png": lambda path: figures.throughput_vs_batch(ok, path),
        "fig_gflops_vs_peak.png": lambda path: figures.gflops_vs_peak(
            ok, peaks, path, row_peaks(run_data.metas), spreads
        ),
        "fig_memory.png": lambda path: figures.memory_breakdown(tables.memory, path),
        "fig_time_to_accuracy.png": lambda path: figures.time_to_accuracy(
            run_data.epochs,
            targets,
            path,
            dict(zip(tables.summary["model"], tables.summary["family"])),
        ),
        "fig_layer_share.png": lambda path: figures.param_share(tables.shares, path),
    }
    return {file: file if figure(out / file) is not None else None for file, figure in draw.items()}


def _draw_layer_figures(
    layers: pd.DataFrame, out: Path, order: Sequence[str] = ()
) -> list[tuple[str, str]]:
    """One per-layer figure per family, in the zoo's order, its models in ``order``:
    ``(family, file)`` of those drawn."""
    drawn = []
    for family in sorted(layers["family"].dropna().astype(str).unique(), key=family_rank):
        file = f"fig_layers_{re.sub(r'[^A-Za-z0-9_-]', '_', family)}.png"
        if figures.layers_by_family(layers, family, out / file, order) is not None:
            drawn.append((family, file))
    return drawn


def _report_blocks(
    results_dirs: Sequence[Path],
    run_data: Run,
    tables: _Tables,
    drawn: Mapping[str, str | None],
    layer_figs: Sequence[tuple[str, str]],
    comparison: Comparison | None = None,
    extra: tuple[Sequence[Block], Sequence[Block]] = ((), ()),
) -> list[Block]:
    """The report's sections, in reading order (``drawn``: :func:`_draw_figures`): the
    answers and their figures first, then the contents, then the details (the comparison
    with an earlier run, if asked for, after the bullets of what the numbers say)."""
    results, summary = run_data.results, tables.summary
    blocks: list[Block] = [
        Para(
            "Generated by `python -m bench report "
            + " ".join(Path(d).name for d in results_dirs)
            + (f" --compare {comparison.old.path.name}" if comparison is not None else "")
            + "`: every number below is read from the results folders or, for the papers' "
            "columns, from the zoo's registry."
        ),
        *answer_blocks(results, summary, tables.shares, tables.memory, drawn),
        Contents(),
        *header_blocks(run_data),
    ]
    sentences = comparison_sentences(
        summary, tables.shares, results, run_data.metas, tables.devices
    )
    if sentences:
        blocks += [Heading(2, "What the numbers say"), Bullets(tuple(sentences))]
    blocks += compare_blocks(comparison) if comparison is not None else []
    left_out = left_out_runs(run_data.over_budget, training_runs(results))["model"]
    blocks += glance_blocks(summary, tables.devices, set(left_out))
    blocks += paper_blocks(summary, tables.paper)
    time_blocks, evaluations = extra
    blocks += _speed_blocks(drawn)
    blocks += time_blocks
    blocks += _memory_blocks(drawn["fig_memory.png"], tables.memory)
    blocks += accuracy_blocks(results, drawn["fig_time_to_accuracy.png"], run_data.over_budget)
    blocks += per_class_blocks(training_runs(results))
    blocks += evaluations
    blocks += share_blocks(tables.shares, (), drawn["fig_layer_share.png"])
    blocks += model_detail_blocks(run_data.layers, model_order(results), layer_figs)
    blocks += errors_blocks(results, several_runs=len(run_data.metas) > 1)
    blocks += measured_blocks(results, run_data.metas)
    return blocks


_SPEED_CAPTIONS = (
    (
        "fig_throughput_vs_batch.png",
        "Throughput (samples/s) against batch size, one panel per device and mode, for the "
        "settings measured at more than one batch; dashed lines are other dtypes or memory "
        "formats.",
    ),
    (
        "fig_gflops_vs_peak.png",
        "Best achieved GFLOP/s per model and dtype, one panel per device and mode, against the "
        "matmul and 3×3 convolution peaks of the precisions shown, measured at the start of "
        "the run (meta.json): each line is the best of its repeats, the shaded band behind it "
        "spans the slowest to the fastest repeat (both written beside the line, or 'spread "
        "not measured' for a folder from before peaks were repeated).",
    ),
)


def _time_blocks(run_data: Run, out: Path) -> list[Block]:
    """ "Where the time goes" (layer_times.jsonl, ``--layer-times``): a sentence per profiled
    step saying what bounds it (:func:`bench.report.roofline.bound_sentence`), and a roofline
    figure per device and precision, drawn into ``out``; nothing without layer times."""
    steps = profiles(run_data.layer_times)
    if not steps:
        return []
    peaks_of, bandwidth_of = row_peaks(run_data.metas), row_bandwidth(run_data.metas)
    sentences = []
    for step in steps:
        first = step.iloc[0].to_dict()
        sentences.append(bound_sentence(step, roofs_of(first, peaks_of, bandwidth_of)))
    lines = run_data.layer_times
    precision = lines["dtype"].map(lambda d: "bf16" if "bf16" in str(d) else "fp32")
    images: list[Block] = []
    for (device, prec), part in lines.groupby([lines["device"].astype(str), precision]):
        first = part.iloc[0].to_dict()
        file = f"fig_roofline_{re.sub(r'[^A-Za-z0-9_-]', '_', device)}_{prec}.png"
        title = f"Roofline on {device}, {prec}: each layer's forward pass"
        if figures.roofline(part, roofs_of(first, peaks_of, bandwidth_of), title, out / file):
            images.append(
                Image(
                    file,
                    f"Each module's forward pass on {device} in {prec} at its arithmetic "
                    "intensity (forward FLOPs over the bytes of its inputs, outputs and "
                    "weights) and achieved GFLOP/s, under the measured roofs of the run's "
                    "first session (the triad's GB/s, the faster of matmul and 3×3 conv); "
                    "layers without counted FLOPs (ReLU, max pooling) have no point.",
                )
            )
    return [
        Heading(2, "Where the time goes"),
        Para(
            "From layer_times.jsonl (`--layer-times`): each profiled step's modules timed by "
            "hooks in steps of their own, after the row's timing. A module is compute-bound "
            "when its intensity reaches the ridge (the compute peak over the memory roof), "
            "memory-bound below it or with no counted FLOPs; shares are of the step with the "
            "hooks, distances to the roofs are read on the forward pass."
        ),
        Bullets(tuple(sentences)),
        *images,
    ]


def _speed_blocks(drawn: Mapping[str, str | None]) -> list[Block]:
    images: list[Block] = [Image(f, c) for f, c in _SPEED_CAPTIONS if drawn[f]]
    return [Heading(2, "Speed and the hardware limit"), *images] if images else []


def _memory_blocks(figure: str | None, memory: pd.DataFrame) -> list[Block]:
    """The memory figure's rows, in words (the figure itself opens the report)."""
    if not figure:
        return []
    batches = ", ".join(f"{m} {int(b)}" for m, b in zip(memory["model"], memory["batch_size"]))
    return [
        Heading(2, "Where training memory goes"),
        Para(
            "The figure at the top (Where training memory goes) stacks weights, gradients, "
            "optimizer state and activations saved for backward, from each model's "
            f"smallest-batch train row at {REFERENCE_DTYPE}/{REFERENCE_FORMAT} where measured "
            f"(batch: {batches})."
        ),
    ]
