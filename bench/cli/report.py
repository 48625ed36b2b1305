"""``report``: ``python -m bench report`` and ``python -m bench.report``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.cli.compare import add_compare_with
from bench.cli.options import Parser, add_out

__all__ = ["add_report_arguments", "run_report", "main"]


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``report``: one or more RESULTS_DIR, ``--out``, ``--compare OLD``."""
    parser.add_argument(
        "results_dirs",
        nargs="+",
        type=Path,
        metavar="RESULTS_DIR",
        help="results folder(s) written by `bench run`/`bench train`; several "
        "are merged (rows with the same settings are refused); a ROOT of shard-I-of-N "
        "folders (`--shard auto`) is read as all its slices",
    )
    add_out(parser, "report folder (default: reports/<run_id>/ under the current directory)")
    add_compare_with(
        parser,
        "merge folders whose rows on one device came from different CPUs or GPUs, and "
        "compare with an OLD from another machine (both refused otherwise)",
    )


def run_report(args: argparse.Namespace) -> int:
    """Build the report for parsed ``args``; print its folder, or ``error: ...`` and return 2."""
    from bench.report.build import build_report

    try:
        out = build_report(
            args.results_dirs,
            args.out,
            compare_with=args.compare,
            across_machines=args.across_machines,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out / "report.md")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.report RESULTS_DIR... [--out DIR] [--compare OLD]``."""
    parser = Parser(
        prog="python -m bench.report", description="Write the comparison report of results folders."
    )
    add_report_arguments(parser)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_report(parser.parse_args(argv))
