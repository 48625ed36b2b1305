"""The comparison report: turn one or more results folders into tables, plots and sentences.

``python -m bench report RESULTS_DIR...`` (or ``python -m bench.report``) reads the folders
described in docs/ARCHITECTURE.md (meta.json, results.jsonl, layers.jsonl, epochs.jsonl) and
writes ``reports/<run_id>/``: ``report.md`` with its ``fig_*.png`` plots, ``summary.csv`` (the
at-a-glance table) and a self-contained ``report.html`` (images inlined). Every number comes from
the results or, for the papers' figures, from the registry's ``PaperFacts``; the output depends
only on those inputs, so building twice gives identical bytes.

Modules: ``runs`` (reading and merging folders), ``summary`` (the per-model table),
``formatting``, ``document`` (blocks, Markdown and HTML), ``sections`` and ``sentences`` (the
report's content), ``build`` (build_report) and ``cli`` (the subcommand).
"""

from bench.report.build import build_report
from bench.report.cli import add_arguments, main, register_cli, run
from bench.report.formatting import fmt_frac, fmt_int, fmt_num, fmt_pct, fmt_si
from bench.report.runs import Run, load_run, merge_runs
from bench.report.summary import layer_shares, summary_table

__all__ = [
    "Run",
    "add_arguments",
    "build_report",
    "fmt_frac",
    "fmt_int",
    "fmt_num",
    "fmt_pct",
    "fmt_si",
    "layer_shares",
    "load_run",
    "main",
    "merge_runs",
    "register_cli",
    "run",
    "summary_table",
]
