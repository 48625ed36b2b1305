"""The comparison report: turn one or more results folders into tables, plots and sentences.

``python -m bench report RESULTS_DIR...`` (or ``python -m bench.report``) reads the folders
described in docs/ARCHITECTURE.md (meta.json, results.jsonl, layers.jsonl, epochs.jsonl) and
writes ``reports/<run_id>/`` under the current directory: ``report.md`` with its ``fig_*.png``
plots, ``summary.csv`` (the at-a-glance table) and a self-contained ``report.html`` (images
inlined; sortable, filterable tables and collapsible details by the inline ``page.js``). It
opens with the answers (why the networks differ, four figures), then a table of contents, then
the details. Every number comes from the results or, for the papers' figures, from the
registry's ``PaperFacts``; the output depends only on those inputs, so building twice gives
identical bytes.

Modules: ``runs`` (reading and merging folders; the peaks a row is judged against),
``summary`` (the per-model table; family order, layer kinds, layers summed by paper layer),
``formatting``, ``document`` (blocks, Markdown and HTML), ``answers`` (the opening),
``glance``, ``model_details`` (each model's layers), ``sections`` and ``sentences`` (the
report's text),
``figures`` (the plots, drawn only by ``build``) and ``build`` (build_report); the subcommand is
:mod:`bench.cli.report`.
"""

from bench.report.build import build_report
from bench.report.formatting import fmt_frac, fmt_int, fmt_num, fmt_pct, fmt_si
from bench.report.runs import Run, load_run, merge_runs
from bench.report.summary import layer_shares, summary_table

__all__ = [
    "Run",
    "build_report",
    "fmt_frac",
    "fmt_int",
    "fmt_num",
    "fmt_pct",
    "fmt_si",
    "layer_shares",
    "load_run",
    "merge_runs",
    "summary_table",
]
