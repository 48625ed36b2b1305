"""build_report: load and merge the folders, write summary.csv, the figures, report.md and
report.html."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.report import figures
from bench.report.document import (
    Block,
    Bullets,
    Heading,
    Image,
    Para,
    render_html,
    render_markdown,
)
from bench.report.formatting import missing
from bench.report.glance import glance_blocks, paper_blocks
from bench.report.runs import device_peaks, load_run, merge_runs, session_meta
from bench.report.sections import (
    accuracy_blocks,
    errors_blocks,
    header_blocks,
    measured_blocks,
    share_blocks,
)
from bench.report.sentences import comparison_sentences
from bench.report.summary import (
    REFERENCE_DTYPE,
    REFERENCE_FORMAT,
    failed_mask,
    layer_shares,
    memory_rows,
    model_order,
    paper_facts,
    summary_table,
)

log = logging.getLogger("bench.report")  # one logger for the package, as before the split

REPO_ROOT = Path(__file__).resolve().parents[2]


def _default_out_dir(name: str) -> Path:
    """``reports/<name>``, ``name`` made one safe folder name: a run id read from meta.json
    (``..``, ``a/b``, ``/abs``) cannot place the report elsewhere, or in a hidden folder."""
    safe = re.sub(r"[^A-Za-z0-9._+-]", "_", name).lstrip(".") or "run"
    return REPO_ROOT / "reports" / safe


def build_report(results_dirs: Sequence[Path], out_dir: Path | None = None) -> Path:
    """Write the comparison report of one or more results folders; return the report folder.

    The folder (default ``reports/<run_id>/``, or ``reports/<first_run_id>+N`` for N extra
    folders) receives ``report.md``, ``report.html``, ``summary.csv`` and ``fig_*.png``.
    Raises ``FileNotFoundError`` for a missing folder or results.jsonl and ``ValueError`` for
    an empty results file or rows of different folders with the same settings.
    """
    if not results_dirs:
        raise ValueError("no results folders given: pass at least one RESULTS_DIR")
    run_data = merge_runs([load_run(Path(d)) for d in results_dirs])
    out = Path(out_dir) if out_dir is not None else _default_out_dir(run_data.name)
    out.mkdir(parents=True, exist_ok=True)
    for stale in sorted(out.glob("fig_*.png")):  # figures of an earlier build of this folder
        stale.unlink()

    results = run_data.results
    devices = sorted(results["device"].dropna().astype(str).unique())
    models = model_order(results)
    paper = paper_facts(models)
    summary = summary_table(results, paper)
    shares = layer_shares(run_data.layers)
    if not shares.empty:
        order = {m: i for i, m in enumerate(models)}
        shares = shares.assign(_o=shares["model"].map(lambda m: order.get(m, len(order))))
        shares = shares.sort_values(["_o", "model"]).drop(columns="_o").reset_index(drop=True)
    summary.to_csv(out / "summary.csv", index=False, lineterminator="\n")

    ok = results[~failed_mask(results)]
    made_files: dict[str, str | None] = {}

    def figure(file: str, made: Path | None) -> str | None:
        made_files[file] = file if made is not None else None
        return made_files[file]

    figure(
        "fig_params_vs_macs.png", figures.params_vs_macs(summary, out / "fig_params_vs_macs.png")
    )
    figure(
        "fig_throughput_vs_batch.png",
        figures.throughput_vs_batch(ok, out / "fig_throughput_vs_batch.png"),
    )
    peaks = {d: device_peaks(session_meta(run_data.metas[0]), d) for d in devices}
    meta_by_run = {str(m.get("run_id")): m for m in run_data.metas}

    def row_peaks(row: Mapping[str, Any]) -> dict[str, float]:
        meta = session_meta(meta_by_run.get(str(row["run"]), {}), row["session"])
        return device_peaks(meta, str(row["device"]))

    figure(
        "fig_gflops_vs_peak.png",
        figures.gflops_vs_peak(ok, peaks, out / "fig_gflops_vs_peak.png", row_peaks),
    )
    mem = memory_rows(results, models)
    figure("fig_memory.png", figures.memory_breakdown(mem, out / "fig_memory.png"))
    acc = ok[ok["mode"] == "accuracy"]
    targets = {
        str(d): float(t)
        for d, t in acc.groupby(acc["data"].astype(str))["target_acc"].first().items()
        if not missing(t)
    }
    figure(
        "fig_time_to_accuracy.png",
        figures.time_to_accuracy(run_data.epochs, targets, out / "fig_time_to_accuracy.png"),
    )
    share_fig = figure(
        "fig_layer_share.png",
        figures.param_share(shares, out / "fig_layer_share.png") if not shares.empty else None,
    )
    layer_figs = []
    families = sorted(
        run_data.layers["family"].dropna().astype(str).unique(), key=figures.family_rank
    )
    for family in families:
        file = f"fig_layers_{re.sub(r'[^A-Za-z0-9_-]', '_', family)}.png"
        if figure(file, figures.layers_by_family(run_data.layers, family, out / file)):
            layer_figs.append((family, file))

    blocks: list[Block] = [
        Para(
            "Generated by `python -m bench report "
            + " ".join(Path(d).name for d in results_dirs)
            + "`: every number below is read from the results folders or, for the papers' "
            "columns, from the zoo's registry."
        ),
    ]
    blocks += header_blocks(run_data)
    sentences = comparison_sentences(summary, shares, results, run_data.metas, devices)
    if sentences:
        blocks += [Heading(2, "What the numbers say"), Bullets(tuple(sentences))]
    blocks += glance_blocks(summary, devices)
    if made_files["fig_params_vs_macs.png"]:
        blocks.append(
            Image(
                "fig_params_vs_macs.png",
                "Parameters against MACs per sample (log-log), one point per model.",
            )
        )
    blocks += paper_blocks(summary, paper)
    speed_figs = [
        (f, c)
        for f, c in (
            (
                "fig_throughput_vs_batch.png",
                "Throughput (samples/s) against batch size per model, "
                "for each device and mode; dashed and dotted lines are "
                "other dtypes or memory formats.",
            ),
            (
                "fig_gflops_vs_peak.png",
                "Best achieved GFLOP/s per model, mode and dtype against the "
                "matmul and 3×3 convolution peaks measured at the start of the run "
                "(meta.json).",
            ),
        )
        if made_files[f]
    ]
    if speed_figs:
        blocks.append(Heading(2, "Speed and the hardware limit"))
        blocks += [Image(f, c) for f, c in speed_figs]
    if made_files["fig_memory.png"]:
        batches = ", ".join(f"{m} {int(b)}" for m, b in zip(mem["model"], mem["batch_size"]))
        blocks += [
            Heading(2, "Where training memory goes"),
            Image(
                "fig_memory.png",
                "Weights, gradients, optimizer state and activations saved for "
                "backward, from each model's smallest-batch train row at "
                f"{REFERENCE_DTYPE}/{REFERENCE_FORMAT} where measured (batch: "
                f"{batches}).",
            ),
        ]
    blocks += accuracy_blocks(results, made_files["fig_time_to_accuracy.png"])
    blocks += share_blocks(shares, layer_figs, share_fig)
    blocks += errors_blocks(results, several_runs=len(run_data.metas) > 1)
    blocks += measured_blocks(results, run_data.metas)

    title = f"cnn-zoo-bench report: {run_data.name}"
    (out / "report.md").write_text(render_markdown(title, blocks), encoding="utf-8")
    (out / "report.html").write_text(render_html(title, blocks, out), encoding="utf-8")
    log.info("wrote the report of %s to %s", run_data.name, out)
    return out
