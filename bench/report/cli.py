"""The ``report`` subcommand: ``python -m bench report`` and ``python -m bench.report``."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.report.build import build_report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``report``'s arguments: one or more RESULTS_DIR and ``--out``."""
    parser.add_argument(
        "results_dirs",
        nargs="+",
        type=Path,
        metavar="RESULTS_DIR",
        help="results folder(s) written by `bench run`/`bench train`; several "
        "are merged (rows with the same settings are refused)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="report folder (default: reports/<run_id>/ at the repository root)",
    )


def run(args: argparse.Namespace) -> int:
    """Build the report for parsed ``args``; print its folder, or ``error: ...`` and return 2."""
    try:
        out = build_report(args.results_dirs, args.out)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(out / "report.md")
    return 0


def register_cli(register: Callable[..., None]) -> None:
    """Register ``report`` with the harness CLI (``python -m bench report``)."""
    register(
        "report",
        help="write the comparison report (Markdown, HTML, CSV, plots) of results folders",
        add_arguments=add_arguments,
        run=run,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bench.report RESULTS_DIR... [--out DIR]``."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.report", description="Write the comparison report of results folders."
    )
    add_arguments(parser)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run(parser.parse_args(argv))
